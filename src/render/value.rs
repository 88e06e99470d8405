//! Reading YAML into JSON values with the scalar semantics kustomize uses.
//!
//! kustomize reads YAML in two dialects, and the difference is visible in its output:
//! - resources and strategic-merge patches go through kyaml, i.e. go-yaml v3 decoding into
//!   `interface{}` followed by `encoding/json` ([`Dialect::Kyaml`]): `yes` stays a string,
//!   `0644` is the octal 420, plain timestamps become RFC 3339 strings;
//! - kustomization files and JSON 6902 patches go through `sigs.k8s.io/yaml`, i.e. go-yaml v2
//!   (YAML 1.1, [`Dialect::Yaml11`]): `yes`, `on`, `y` are booleans, timestamps stay text.
//!
//! Both normalise numbers the way a trip through Go's JSON encoder does: an integral float such
//! as `1e3` becomes the integer 1000.
//!
//! The reader first builds a [`Raw`] tree that keeps each node's source line (for
//! `file:line` errors) and each scalar's text and style, then resolves it to a
//! [`serde_json::Value`].

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Which YAML library kustomize reads a given input with (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// go-yaml v3 through kyaml: resources and strategic-merge patches.
    Kyaml,
    /// go-yaml v2 through `sigs.k8s.io/yaml`: kustomization files and JSON 6902 patches.
    Yaml11,
}

/// A YAML node before scalar resolution, with its 1-based source line.
#[derive(Debug, Clone)]
pub enum Raw {
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
        line: usize,
    },
    Seq {
        items: Vec<Raw>,
        line: usize,
    },
    Map {
        entries: Vec<(Raw, Raw)>,
        line: usize,
    },
}

/// A YAML syntax or type problem, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl Raw {
    pub fn line(&self) -> usize {
        match self {
            Raw::Scalar { line, .. } | Raw::Seq { line, .. } | Raw::Map { line, .. } => *line,
        }
    }

    /// True for an explicit or implicit null (`~`, `null`, empty).
    pub fn is_null(&self) -> bool {
        match self {
            Raw::Scalar {
                text,
                plain: true,
                tag: None,
                ..
            } => {
                matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            Raw::Scalar { tag: Some(t), .. } => t == "null",
            _ => false,
        }
    }

    /// The mapping entries, if this is a mapping.
    pub fn entries(&self) -> Option<&[(Raw, Raw)]> {
        match self {
            Raw::Map { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The scalar's text when it is a scalar (whatever it resolves to).
    pub fn text(&self) -> Option<&str> {
        match self {
            Raw::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Raw> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.text() == Some(key))
            .map(|(_, v)| v)
    }

    /// Resolve to a JSON value. Annotation values (`metadata.annotations.*` of a document) keep
    /// their source text, because kustomize rewrites every annotation as a string of its text.
    pub fn to_value(&self, dialect: Dialect) -> Result<Value, YamlError> {
        self.resolve(dialect, 0, Ctx::Root)
    }

    /// Resolve a patch document: like [`Raw::to_value`], except that a null annotation stays
    /// null (in a patch it deletes the annotation).
    pub fn to_patch_value(&self, dialect: Dialect) -> Result<Value, YamlError> {
        self.resolve(dialect, 0, Ctx::PatchRoot)
    }

    /// Resolve without the document-level annotation rule (for values nested in other things).
    pub fn to_plain_value(&self, dialect: Dialect) -> Result<Value, YamlError> {
        self.resolve(dialect, 0, Ctx::Other)
    }

    fn resolve(&self, dialect: Dialect, depth: usize, ctx: Ctx) -> Result<Value, YamlError> {
        if depth > 512 {
            return Err(YamlError {
                line: self.line(),
                message: "document nests too deeply".into(),
            });
        }
        match self {
            Raw::Scalar {
                text,
                plain,
                tag,
                line,
            } => {
                if ctx == Ctx::Annotation || (ctx == Ctx::PatchAnnotation && !self.is_null()) {
                    return Ok(Value::String(text.clone()));
                }
                resolve_scalar(text, *plain, tag.as_deref(), dialect).map_err(|message| YamlError {
                    line: *line,
                    message,
                })
            }
            Raw::Seq { items, .. } => items
                .iter()
                .map(|i| i.resolve(dialect, depth + 1, Ctx::Other))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Raw::Map { entries, line } => {
                let mut map = Map::new();
                let mut merges: Vec<&Raw> = Vec::new();
                for (k, v) in entries {
                    let key = map_key(k, dialect)?;
                    if key == "<<" && matches!(k, Raw::Scalar { plain: true, .. }) {
                        merges.push(v);
                        continue;
                    }
                    if map.contains_key(&key) {
                        return Err(YamlError {
                            line: k.line(),
                            message: format!(
                                "mapping key {key:?} already defined (line {line} starts the mapping)"
                            ),
                        });
                    }
                    let child_ctx = match (ctx, key.as_str()) {
                        (Ctx::Root, "metadata") => Ctx::Metadata,
                        (Ctx::Metadata, "annotations") => Ctx::Annotations,
                        (Ctx::Annotations, _) => Ctx::Annotation,
                        (Ctx::PatchRoot, "metadata") => Ctx::PatchMetadata,
                        (Ctx::PatchMetadata, "annotations") => Ctx::PatchAnnotations,
                        (Ctx::PatchAnnotations, _) => Ctx::PatchAnnotation,
                        _ => Ctx::Other,
                    };
                    let value = v.resolve(dialect, depth + 1, child_ctx)?;
                    map.insert(key, value);
                }
                // `<<` merge keys: explicit keys win, then earlier merged maps.
                for merge in merges {
                    let sources: Vec<&Raw> = match merge {
                        Raw::Seq { items, .. } => items.iter().collect(),
                        other => vec![other],
                    };
                    for source in sources {
                        match source.resolve(dialect, depth + 1, ctx)? {
                            Value::Object(m) => {
                                for (k, v) in m {
                                    map.entry(k).or_insert(v);
                                }
                            }
                            _ => {
                                return Err(YamlError {
                                    line: source.line(),
                                    message: "map merge requires a mapping or a list of mappings"
                                        .into(),
                                });
                            }
                        }
                    }
                }
                Ok(Value::Object(map))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Root,
    Metadata,
    Annotations,
    Annotation,
    PatchRoot,
    PatchMetadata,
    PatchAnnotations,
    PatchAnnotation,
    Other,
}

fn map_key(k: &Raw, dialect: Dialect) -> Result<String, YamlError> {
    match k {
        Raw::Scalar {
            text,
            plain,
            tag,
            line,
        } => {
            // Keys are strings in Kubernetes objects; a key that would resolve to something else
            // (`1:`, `true:`) is kept as its text, which is what sigs.k8s.io/yaml does too.
            match resolve_scalar(text, *plain, tag.as_deref(), dialect) {
                Ok(Value::String(s)) => Ok(s),
                Ok(Value::Null) if text.is_empty() || text == "~" => Ok(String::new()),
                Ok(_) => Ok(text.clone()),
                Err(message) => Err(YamlError {
                    line: *line,
                    message,
                }),
            }
        }
        other => Err(YamlError {
            line: other.line(),
            message: "a mapping key must be a scalar".into(),
        }),
    }
}

/// Resolve one scalar. `plain` is false for quoted and block scalars. `tag` is the suffix of a
/// `!!` tag (`str`, `int`, ...) or a full local tag.
pub fn resolve_scalar(
    text: &str,
    plain: bool,
    tag: Option<&str>,
    dialect: Dialect,
) -> Result<Value, String> {
    match tag {
        Some("str") | Some("binary") => return Ok(Value::String(text.to_string())),
        Some("null") => return Ok(Value::Null),
        Some("bool") | Some("int") | Some("float") | Some("timestamp") => {
            let v = resolve_plain(text, dialect);
            let ok = match (tag, &v) {
                (Some("bool"), Ok(Value::Bool(_))) => true,
                (Some("int"), Ok(Value::Number(n))) => !n.is_f64(),
                (Some("float"), Ok(Value::Number(_))) => true,
                (Some("timestamp"), Ok(Value::String(_))) => true,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "cannot decode {text:?} as !!{}",
                    tag.unwrap_or_default()
                ));
            }
            return v;
        }
        Some(_) => {
            // Application tags: go-yaml leaves the value as it would resolve untagged, and
            // kyaml strips unknown tags on the way to JSON.
        }
        None => {}
    }
    if !plain {
        return Ok(Value::String(text.to_string()));
    }
    resolve_plain(text, dialect)
}

/// go-yaml's implicit resolution of a plain scalar.
fn resolve_plain(text: &str, dialect: Dialect) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return Err(format!(
                "{text} cannot be represented in JSON (kustomize rejects it too)"
            ));
        }
        _ => {}
    }
    if dialect == Dialect::Yaml11 {
        match text {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => return Ok(Value::Bool(true)),
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                return Ok(Value::Bool(false));
            }
            _ => {}
        }
    }
    let first = text.as_bytes()[0];
    match first {
        b'0'..=b'9' | b'+' | b'-' => {
            if dialect == Dialect::Kyaml
                && let Some(ts) = parse_timestamp(text)
            {
                return Ok(Value::String(ts));
            }
            let stripped: String = text.chars().filter(|&c| c != '_').collect();
            if let Some(i) = go_parse_int(&stripped) {
                return Ok(Value::Number(Number::from(i)));
            }
            if let Some(u) = go_parse_uint(&stripped) {
                return Ok(Value::Number(Number::from(u)));
            }
            if is_yaml_style_float(&stripped)
                && let Ok(f) = stripped.parse::<f64>()
                && f.is_finite()
            {
                return Ok(number_from_f64(f));
            }
            Ok(Value::String(text.to_string()))
        }
        b'.' => match go_parse_float(text) {
            Some(f) => Ok(number_from_f64(f)),
            None => Ok(Value::String(text.to_string())),
        },
        _ => Ok(Value::String(text.to_string())),
    }
}

/// A float as it comes out of Go's JSON encoder and back: integral values below 1e21 print
/// without a fraction and are read back as integers.
pub fn number_from_f64(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        if f >= i64::MIN as f64 && f < i64::MAX as f64 {
            return Value::Number(Number::from(f as i64));
        }
        if f >= 0.0 && f < u64::MAX as f64 {
            return Value::Number(Number::from(f as u64));
        }
    }
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat` for the inputs that reach it (a leading `.`).
fn go_parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty()
        || !body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Split a Go base-0 integer literal into (negative, radix, digits).
fn go_int_parts(s: &str, allow_sign: bool) -> Option<(bool, u32, &str)> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' if allow_sign => (true, &s[1..]),
        b'+' if allow_sign => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some((neg, radix, digits))
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, radix, digits) = go_int_parts(s, true)?;
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` (no sign allowed).
fn go_parse_uint(s: &str) -> Option<u64> {
    let (_, radix, digits) = go_int_parts(s, false)?;
    u64::from_str_radix(digits, radix).ok()
}

/// go-yaml v3's timestamp resolution, rendered the way Go's `time.Time` marshals to JSON
/// (RFC 3339 with nanoseconds, trailing zeros trimmed).
pub fn parse_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    // Quick check: all date formats start with YYYY-.
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let mut p = Cursor { b, i: 5 };
    let year: u32 = s[..4].parse().ok()?;
    let month = p.num(1, 2)?;
    p.lit(b'-')?;
    let day = p.num(1, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if p.i == b.len() {
        return Some(format!("{date}T00:00:00Z"));
    }
    let sep = b[p.i];
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    p.i += 1;
    let hour = p.num(1, 2)?;
    p.lit(b':')?;
    let min = p.num(1, 2)?;
    p.lit(b':')?;
    let sec = p.num(1, 2)?;
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut frac = String::new();
    if p.i < b.len() && b[p.i] == b'.' {
        p.i += 1;
        let start = p.i;
        while p.i < b.len() && b[p.i].is_ascii_digit() {
            p.i += 1;
        }
        if p.i == start || p.i - start > 9 {
            return None;
        }
        frac = s[start..p.i].trim_end_matches('0').to_string();
    }
    let zone = if sep == b' ' {
        // "2006-1-2 15:4:5.999999999": no zone allowed, UTC.
        if p.i != b.len() {
            return None;
        }
        "Z".to_string()
    } else {
        let rest = &s[p.i..];
        if rest == "Z" {
            "Z".to_string()
        } else {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let hh: u32 = rest[1..3].parse().ok()?;
            let mm: u32 = rest[4..6].parse().ok()?;
            if !rest[1..3].bytes().all(|c| c.is_ascii_digit())
                || !rest[4..6].bytes().all(|c| c.is_ascii_digit())
                || hh > 23
                || mm > 59
            {
                return None;
            }
            if hh == 0 && mm == 0 {
                "Z".to_string()
            } else {
                rest.to_string()
            }
        }
    };
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    Some(format!("{date}T{hour:02}:{min:02}:{sec:02}{frac}{zone}"))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() && self.i - start < max {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    fn lit(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// Parse every document of a YAML stream. Empty documents (only comments, or nothing) are
/// returned as null scalars; callers skip them.
pub fn parse_stream(source: &str) -> Result<Vec<Raw>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, true).map_err(|e| YamlError {
        line: e.marker().line().max(1),
        message: e.info().to_string(),
    })?;
    if let Some(message) = builder.error {
        return Err(message);
    }
    Ok(builder.docs)
}

enum Open {
    Map {
        entries: Vec<(Raw, Raw)>,
        key: Option<Raw>,
        line: usize,
        anchor: usize,
    },
    Seq {
        items: Vec<Raw>,
        line: usize,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    docs: Vec<Raw>,
    anchors: HashMap<usize, Raw>,
    error: Option<YamlError>,
}

impl Builder {
    fn push(&mut self, node: Raw) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

fn tag_suffix(tag: Option<Tag>) -> Option<String> {
    let tag = tag?;
    if tag.handle == "tag:yaml.org,2002:" {
        Some(tag.suffix)
    } else if tag.handle == "!" && tag.suffix.is_empty() {
        // The non-specific tag `!` forces a string.
        Some("str".to_string())
    } else {
        Some(format!("{}{}", tag.handle, tag.suffix))
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line().max(1);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let node = Raw::Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                    tag: tag_suffix(tag),
                    line,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.push(node);
                }
                None => {
                    if self.error.is_none() {
                        self.error = Some(YamlError {
                            line,
                            message: "unknown anchor".into(),
                        });
                    }
                    self.push(Raw::Scalar {
                        text: String::new(),
                        plain: true,
                        tag: None,
                        line,
                    });
                }
            },
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map {
                entries: Vec::new(),
                key: None,
                line,
                anchor,
            }),
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq {
                items: Vec::new(),
                line,
                anchor,
            }),
            Event::MappingEnd | Event::SequenceEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Map {
                        entries,
                        line,
                        anchor,
                        ..
                    }) => (Raw::Map { entries, line }, anchor),
                    Some(Open::Seq {
                        items,
                        line,
                        anchor,
                    }) => (Raw::Seq { items, line }, anchor),
                    None => return,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v3(text: &str) -> Value {
        resolve_plain(text, Dialect::Kyaml).unwrap()
    }

    #[test]
    fn kyaml_scalars_resolve_like_kubectl_kustomize() {
        assert_eq!(v3("0644"), json!(420));
        assert_eq!(v3("0o644"), json!(420));
        assert_eq!(v3("0x1F"), json!(31));
        assert_eq!(v3("1_000"), json!(1000));
        assert_eq!(v3("yes"), json!("yes"));
        assert_eq!(v3("on"), json!("on"));
        assert_eq!(v3("1.10"), json!(1.1));
        assert_eq!(v3("1e3"), json!(1000));
        assert_eq!(v3("-0"), json!(0));
        assert_eq!(v3("09"), json!(9));
        assert_eq!(v3("010"), json!(8));
        assert_eq!(v3("12345678901234567890"), json!(12345678901234567890u64));
        assert_eq!(v3("~"), Value::Null);
        assert_eq!(v3("True"), json!(true));
        assert_eq!(v3("tRUE"), json!("tRUE"));
        assert_eq!(v3(".5"), json!(0.5));
        assert_eq!(v3("1e400"), json!("1e400"));
        assert_eq!(v3("1.2.3"), json!("1.2.3"));
        assert_eq!(v3("-"), json!("-"));
    }

    #[test]
    fn yaml11_reads_yes_and_on_as_booleans() {
        assert_eq!(resolve_plain("yes", Dialect::Yaml11).unwrap(), json!(true));
        assert_eq!(resolve_plain("Off", Dialect::Yaml11).unwrap(), json!(false));
        assert_eq!(
            resolve_plain("2001-12-14", Dialect::Yaml11).unwrap(),
            json!("2001-12-14")
        );
    }

    #[test]
    fn timestamps_render_as_go_marshals_time() {
        assert_eq!(v3("2001-12-14"), json!("2001-12-14T00:00:00Z"));
        assert_eq!(v3("2001-1-4"), json!("2001-01-04T00:00:00Z"));
        assert_eq!(
            v3("2001-12-14t21:59:43.10-05:00"),
            json!("2001-12-14T21:59:43.1-05:00")
        );
        assert_eq!(
            v3("2001-12-14 21:59:43.10"),
            json!("2001-12-14T21:59:43.1Z")
        );
        assert_eq!(v3("2001-13-14"), json!("2001-13-14"));
    }

    #[test]
    fn annotation_values_keep_their_source_text() {
        let docs = parse_stream(
            "metadata:\n  annotations:\n    a: 0644\n    b: 1.10\n  labels:\n    c: 0644\n",
        )
        .unwrap();
        let v = docs[0].to_value(Dialect::Kyaml).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"annotations": {"a": "0644", "b": "1.10"}, "labels": {"c": 420}}})
        );
    }

    #[test]
    fn quoted_and_tagged_scalars_stay_strings() {
        let docs = parse_stream("a: '0644'\nb: !!str 12\nc: \"yes\"\nd: !!int 0x10\n").unwrap();
        let v = docs[0].to_value(Dialect::Yaml11).unwrap();
        assert_eq!(v, json!({"a": "0644", "b": "12", "c": "yes", "d": 16}));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand() {
        let docs =
            parse_stream("base: &b {x: 1, y: 2}\nuse: *b\nmerged:\n  <<: *b\n  y: 3\n").unwrap();
        let v = docs[0].to_value(Dialect::Kyaml).unwrap();
        assert_eq!(v["use"], json!({"x": 1, "y": 2}));
        assert_eq!(v["merged"], json!({"x": 1, "y": 3}));
    }

    #[test]
    fn duplicate_keys_are_an_error_with_a_line() {
        let docs = parse_stream("a: 1\nb: 2\na: 3\n").unwrap();
        let err = docs[0].to_value(Dialect::Kyaml).unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn streams_split_into_documents_with_lines() {
        let docs = parse_stream("a: 1\n---\n# only a comment\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 3);
        assert!(docs[1].is_null());
        assert_eq!(docs[2].line(), 5);
    }
}
