//! `replacements`: copy a value from one field of one object into fields of others, as
//! kustomize's `ReplacementTransformer` does. A source is selected by exact id (current or
//! any previous name) and read with kyaml's path getter (`[name=x]` matches exactly, `*` is
//! refused); targets are selected the same way, narrowed by label and annotation selectors and
//! `reject`, and written with kyaml's path matcher (`[name=x]` is an unanchored regular
//! expression, `*` visits every list element, `options.create` makes what is missing). A
//! scalar target keeps its type; a created or non-scalar target takes the source's value.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{Map, Value};

use super::error::{Location, RenderError};
use super::kustomization::Dec;
use super::resource::{ResId, Resource, scalar_text};
use super::select::selector_matches;
use super::value::{self, Dialect, Raw};

/// An exact-match id selector (kustomize `ResId` used as a selector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSelector {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl IdSelector {
    fn is_empty(&self) -> bool {
        *self == IdSelector::default()
    }

    fn selects(&self, id: &ResId) -> bool {
        (self.name.is_empty() || self.name == id.name)
            && (self.namespace.is_empty() || self.namespace == id.effective_namespace())
            && id
                .gvk
                .is_selected_by(&self.group, &self.version, &self.kind)
    }
}

impl std::fmt::Display for IdSelector {
    /// kustomize's `ResId.String()`: `Kind.version.group/name.namespace` with placeholders.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or = |s: &str, d: &'static str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "{}.{}.{}/{}.{}",
            or(&self.kind, "[noKind]"),
            or(&self.version, "[noVer]"),
            or(&self.group, "[noGrp]"),
            or(&self.name, "[noName]"),
            or(&self.namespace, "[noNs]")
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub id: IdSelector,
    pub label_selector: String,
    pub annotation_selector: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub delimiter: String,
    pub index: i64,
    pub create: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub id: IdSelector,
    pub field_path: String,
    pub options: Options,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSpec {
    pub select: Option<Selector>,
    pub reject: Vec<Selector>,
    pub field_paths: Vec<String>,
    pub options: Options,
}

/// One replacement, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub source: Option<Source>,
    pub targets: Vec<TargetSpec>,
    pub at: Location,
}

/// A `replacements` entry: inline, or a file holding one replacement or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Inline(Box<Replacement>),
    Path { path: String, line: usize },
}

const DEFAULT_FIELD_PATH: &str = "metadata.name";

// ---- parsing -------------------------------------------------------------------------------

/// The fields of a selector other than the id ones, by canonical name.
type OtherFields = Vec<(&'static str, Raw)>;

fn id_fields(
    d: &Dec<'_>,
    raw: &Raw,
    field: &str,
    extra: &[&'static str],
) -> Result<(IdSelector, OtherFields), RenderError> {
    let mut allowed = vec!["group", "version", "kind", "name", "namespace"];
    allowed.extend_from_slice(extra);
    let mut id = IdSelector::default();
    let mut rest = Vec::new();
    for (name, v) in d.fields(raw, field, &allowed)? {
        let f = format!("{field}.{name}");
        match name {
            "group" => id.group = d.string(v, &f)?,
            "version" => id.version = d.string(v, &f)?,
            "kind" => id.kind = d.string(v, &f)?,
            "name" => id.name = d.string(v, &f)?,
            "namespace" => id.namespace = d.string(v, &f)?,
            other => rest.push((other, v.clone())),
        }
    }
    Ok((id, rest))
}

fn selector(d: &Dec<'_>, raw: &Raw, field: &str) -> Result<Selector, RenderError> {
    let (id, rest) = id_fields(d, raw, field, &["labelSelector", "annotationSelector"])?;
    let mut s = Selector {
        id,
        ..Default::default()
    };
    for (name, v) in rest {
        let text = d.string(&v, &format!("{field}.{name}"))?;
        if name == "labelSelector" {
            s.label_selector = text;
        } else {
            s.annotation_selector = text;
        }
    }
    Ok(s)
}

fn options(d: &Dec<'_>, raw: &Raw, field: &str) -> Result<Options, RenderError> {
    let mut o = Options::default();
    for (name, v) in d.fields(raw, field, &["delimiter", "index", "create"])? {
        let f = format!("{field}.{name}");
        match name {
            "delimiter" => o.delimiter = d.string(v, &f)?,
            "index" => o.index = d.int(v, &f)?,
            _ => o.create = d.boolean(v, &f)?,
        }
    }
    Ok(o)
}

fn replacement(d: &Dec<'_>, raw: &Raw, field: &str) -> Result<Replacement, RenderError> {
    let mut r = Replacement {
        source: None,
        targets: Vec::new(),
        at: d.at(raw.line()),
    };
    for (name, v) in d.fields(raw, field, &["source", "targets"])? {
        if name == "source" {
            if v.is_null() {
                continue;
            }
            let f = format!("{field}.source");
            let (id, rest) = id_fields(d, v, &f, &["fieldPath", "options"])?;
            let mut s = Source {
                id,
                ..Default::default()
            };
            for (n, sv) in rest {
                if n == "fieldPath" {
                    s.field_path = d.string(&sv, &format!("{f}.fieldPath"))?;
                } else {
                    s.options = options(d, &sv, &format!("{f}.options"))?;
                }
            }
            r.source = Some(s);
        } else {
            let f = format!("{field}.targets");
            for item in d.list(v, &f)? {
                let mut t = TargetSpec::default();
                for (n, tv) in d.fields(item, &f, &["select", "reject", "fieldPaths", "options"])? {
                    let tf = format!("{f}.{n}");
                    match n {
                        "select" if !tv.is_null() => t.select = Some(selector(d, tv, &tf)?),
                        "select" => {}
                        "reject" => {
                            for rj in d.list(tv, &tf)? {
                                t.reject.push(selector(d, rj, &tf)?);
                            }
                        }
                        "fieldPaths" => t.field_paths = d.plain_strings(tv, &tf)?,
                        _ => t.options = options(d, tv, &tf)?,
                    }
                }
                r.targets.push(t);
            }
        }
    }
    Ok(r)
}

/// The `replacements` field of a kustomization.
pub fn parse_entries(d: &Dec<'_>, raw: &Raw, field: &str) -> Result<Vec<Entry>, RenderError> {
    let mut out = Vec::new();
    for item in d.list(raw, field)? {
        let has_path = item
            .entries()
            .is_some_and(|e| e.iter().any(|(k, _)| k.text() == Some("path")));
        if has_path {
            let mut path = String::new();
            let mut inline = false;
            for (name, v) in d.fields(item, field, &["path", "source", "targets"])? {
                if name == "path" {
                    path = d.string(v, &format!("{field}.path"))?;
                } else if !v.is_null() {
                    inline = true;
                }
            }
            if inline && !path.is_empty() {
                return Err(d.err(
                    item,
                    field,
                    "cannot specify both path and inline replacement",
                ));
            }
            if !path.is_empty() {
                out.push(Entry::Path {
                    path,
                    line: item.line(),
                });
                continue;
            }
        }
        out.push(Entry::Inline(Box::new(replacement(d, item, field)?)));
    }
    Ok(out)
}

/// The `replacements` of a `ReplacementTransformer` configuration (given as JSON text).
pub fn parse_inline_json(text: &str, file: &Path, line: usize) -> Result<Vec<Entry>, RenderError> {
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: Location::at(file, line),
        message: e.message,
    })?;
    let d = Dec { file };
    match docs.iter().find(|d| !d.is_null()) {
        None => Ok(Vec::new()),
        Some(root) => parse_entries(&d, root, "replacements"),
    }
}

/// A file named by a `replacements[].path`: one replacement, or a list of them.
pub fn parse_file(text: &str, file: &Path) -> Result<Vec<Replacement>, RenderError> {
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: Location::at(file, e.line),
        message: e.message,
    })?;
    let d = Dec { file };
    let Some(root) = docs.iter().find(|d| !d.is_null()) else {
        return Ok(Vec::new());
    };
    match root {
        Raw::Seq { items, .. } => items
            .iter()
            .map(|i| replacement(&d, i, "replacements"))
            .collect(),
        Raw::Map { .. } => Ok(vec![replacement(&d, root, "replacements")?]),
        _ => Err(RenderError::invalid(
            Location::at(file, root.line()),
            "replacements",
            "unsupported replacement type encountered within replacement path: string",
        )),
    }
}

// ---- paths ---------------------------------------------------------------------------------

/// kyaml's `SmarterPathSplitter`: split on `.` outside `[...]`; `\.` is a literal dot.
pub fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                cur.push('.');
                chars.next();
            }
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn is_index(p: &str) -> Option<usize> {
    let digits = p.strip_prefix('+').unwrap_or(p);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

fn list_match(p: &str) -> Option<(&str, &str)> {
    let inner = p.strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.split_once('=').unwrap_or((inner, "")))
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "MappingNode",
        Value::Array(_) => "SequenceNode",
        _ => "ScalarNode",
    }
}

/// kyaml's path getter (the source side): exact matches only.
fn lookup<'a>(node: &'a Value, path: &[String]) -> Result<Option<&'a Value>, String> {
    let mut cur = node;
    for p in path {
        if p == "*" {
            return Err("wildcard is not supported in PathGetter".into());
        }
        let next = if let Some((field, want)) = list_match(p) {
            cur.as_array().and_then(|items| {
                items.iter().find(|e| {
                    let v = if field.is_empty() {
                        Some(*e)
                    } else {
                        e.get(field)
                    };
                    v.is_some_and(|v| !v.is_object() && !v.is_array() && scalar_text(v) == want)
                })
            })
        } else if let (Some(i), Value::Array(items)) = (is_index(p), cur) {
            items.get(i)
        } else {
            cur.as_object().and_then(|m| m.get(p.as_str()))
        };
        match next {
            Some(n) => cur = n,
            None => return Ok(None),
        }
    }
    let empty = match cur {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    Ok(if empty { None } else { Some(cur) })
}

/// A node made where `create` found nothing: a list before an index, a mapping before a field,
/// and at the end a placeholder (`Null`) the value replaces.
fn fresh(next: Option<&String>) -> Value {
    match next {
        Some(p) if list_match(p).is_some() || is_index(p).is_some() => Value::Array(Vec::new()),
        Some(_) => Value::Object(Map::new()),
        None => Value::Null,
    }
}

/// kyaml's path matcher (the target side); calls `set` on every node the path reaches.
fn matcher(
    node: &mut Value,
    path: &[String],
    create: bool,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<usize, String> {
    let Some(p) = path.first() else {
        set(node)?;
        return Ok(1);
    };
    let rest = &path[1..];
    if node.is_null() && create {
        *node = if list_match(p).is_some() || is_index(p).is_some() || p == "*" {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        };
    }
    if let Some(idx) = is_index(p) {
        let Value::Array(items) = node else {
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {}",
                kind_name(node)
            ));
        };
        if items.len() == idx && create {
            items.push(fresh(rest.first()));
        }
        if items.len() < idx + 1 {
            return Err(format!(
                "index {idx} specified but only {} elements found",
                items.len()
            ));
        }
        return matcher(&mut items[idx], rest, create, set);
    }
    if let Some((field, pattern)) = list_match(p) {
        let Value::Array(items) = node else {
            if node.is_null() {
                return Ok(0);
            }
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {}",
                kind_name(node)
            ));
        };
        let re = Regex::new(pattern).map_err(|e| e.to_string())?;
        let selected = |e: &Value| -> bool {
            let v = if field.is_empty() {
                Some(e)
            } else {
                e.as_object().and_then(|m| m.get(field))
            };
            match v {
                Some(v) if !v.is_null() => re.is_match(
                    if v.is_object() || v.is_array() {
                        String::new()
                    } else {
                        scalar_text(v)
                    }
                    .trim(),
                ),
                _ => false,
            }
        };
        let mut hits = 0;
        for e in items.iter_mut() {
            if selected(e) {
                hits += matcher(e, rest, create, set)?;
            }
        }
        if hits == 0 && create && !items.iter().any(selected) {
            let v = value::resolve_scalar(pattern, true, None, Dialect::Kyaml)
                .unwrap_or_else(|_| Value::String(pattern.to_string()));
            items.push(if field.is_empty() {
                v
            } else {
                let mut m = Map::new();
                m.insert(field.to_string(), v);
                Value::Object(m)
            });
            return matcher(node, path, create, set);
        }
        return Ok(hits);
    }
    if p == "*" {
        let Value::Array(items) = node else {
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {}",
                kind_name(node)
            ));
        };
        let mut hits = 0;
        for e in items.iter_mut() {
            hits += matcher(e, rest, create, set)?;
        }
        return Ok(hits);
    }
    match node {
        Value::Object(m) => {
            if !m.contains_key(p.as_str()) {
                if !create {
                    return Ok(0);
                }
                m.insert(p.clone(), fresh(rest.first()));
            }
            match m.get_mut(p.as_str()) {
                Some(child) => matcher(child, rest, create, set),
                None => Ok(0),
            }
        }
        Value::Null => Ok(0),
        other => Err(format!(
            "wrong node kind: expected MappingNode but got {}",
            kind_name(other)
        )),
    }
}

// ---- applying ------------------------------------------------------------------------------

fn text_of(v: &Value) -> String {
    if v.is_object() || v.is_array() {
        String::new()
    } else {
        scalar_text(v)
    }
}

/// Write `value` into one target node.
fn set_field(target: &mut Value, value: &Value, o: &Options) -> Result<(), String> {
    let mut text = text_of(value);
    if !o.delimiter.is_empty() {
        if target.is_object() || target.is_array() {
            return Err("delimiter option can only be used with scalar nodes".into());
        }
        let current = text_of(target);
        let mut parts: Vec<&str> = current.split(o.delimiter.as_str()).collect();
        let v = text.clone();
        if o.index < 0 {
            parts.insert(0, &v);
        } else if o.index as usize >= parts.len() {
            parts.push(&v);
        } else {
            parts[o.index as usize] = &v;
        }
        text = parts.join(&o.delimiter);
    }
    let value_is_scalar = !value.is_object() && !value.is_array();
    *target = match target {
        // A scalar keeps its own type; only its text changes.
        Value::String(_) => Value::String(text),
        Value::Number(_) => match value::resolve_scalar(&text, true, None, Dialect::Kyaml) {
            Ok(n @ Value::Number(_)) => n,
            _ => Value::String(text),
        },
        Value::Bool(_) => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        // A node `create` made (or a null): untyped, so the text decides, unless the value
        // is a mapping or a list, which is copied whole.
        Value::Null if value_is_scalar || !o.delimiter.is_empty() => {
            value::resolve_scalar(&text, true, None, Dialect::Kyaml).unwrap_or(Value::String(text))
        }
        _ => value.clone(),
    };
    Ok(())
}

fn ids(r: &Resource) -> Vec<ResId> {
    let mut ids = vec![r.cur_id()];
    ids.extend(r.prev_res_ids());
    ids
}

fn labels_match(r: &Resource, s: &Selector) -> Result<bool, String> {
    Ok(selector_matches(&s.annotation_selector, &r.annotations())?
        && selector_matches(&s.label_selector, &r.labels())?)
}

fn apply_one(ra: &mut [Resource], rep: &Replacement) -> Result<(), String> {
    let (Some(source), false) = (&rep.source, rep.targets.is_empty()) else {
        return Err("replacements must specify a source and at least one target".into());
    };
    let mut found: Option<usize> = None;
    for (i, r) in ra.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
        if ids(r).iter().any(|id| source.id.selects(id)) {
            if found.is_some() {
                return Err(format!("multiple matches for selector {}", source.id));
            }
            found = Some(i);
        }
    }
    let Some(si) = found else {
        return Err(format!("nothing selected by {}", source.id));
    };
    let field_path = if source.field_path.is_empty() {
        DEFAULT_FIELD_PATH
    } else {
        &source.field_path
    };
    let mut value = lookup(&ra[si].value, &split_path(field_path))
        .map_err(|e| format!("error looking up replacement source: {e}"))?
        .cloned()
        .ok_or_else(|| {
            format!(
                "fieldPath `{field_path}` is missing for replacement source {}",
                source.id
            )
        })?;
    if !source.options.delimiter.is_empty() {
        if value.is_object() || value.is_array() {
            return Err("delimiter option can only be used with scalar nodes".into());
        }
        let text = scalar_text(&value);
        let parts: Vec<&str> = text.split(source.options.delimiter.as_str()).collect();
        let i = source.options.index;
        if i < 0 || i as usize >= parts.len() {
            return Err(format!(
                "options.index {i} is out of bounds for value {text}"
            ));
        }
        value = Value::String(parts[i as usize].to_string());
    }
    for t in &rep.targets {
        let Some(select) = &t.select else {
            return Err("target must specify resources to select".into());
        };
        let default_paths = [DEFAULT_FIELD_PATH.to_string()];
        let paths: &[String] = if t.field_paths.is_empty() {
            &default_paths
        } else {
            &t.field_paths
        };
        for r in ra.iter_mut().filter(|r| !r.is_empty()) {
            if !labels_match(r, select)? {
                continue;
            }
            let mut rejected = false;
            for rj in &t.reject {
                if (!rj.annotation_selector.is_empty() || !rj.label_selector.is_empty())
                    && labels_match(r, rj)?
                {
                    rejected = true;
                }
            }
            if rejected {
                continue;
            }
            // Selected by any of its ids (current or previous), rejected by any of them.
            let all = ids(r);
            let chosen = all.iter().any(|id| select.id.selects(id))
                && !all.iter().any(|id| {
                    t.reject
                        .iter()
                        .any(|rj| !rj.id.is_empty() && rj.id.selects(id))
                });
            if !chosen {
                continue;
            }
            for fp in paths {
                let what = if t.options.create {
                    format!("unable to find or create field {fp:?} in replacement target")
                } else {
                    format!("unable to find field {fp:?} in replacement target")
                };
                let mut set = |node: &mut Value| set_field(node, &value, &t.options);
                let hits = matcher(&mut r.value, &split_path(fp), t.options.create, &mut set)
                    .map_err(|e| format!("{what}: {e}"))?;
                if hits == 0 {
                    return Err(what);
                }
            }
        }
    }
    Ok(())
}

/// Apply replacements in order.
pub fn apply(ra: &mut [Resource], replacements: &[Replacement]) -> Result<(), RenderError> {
    for rep in replacements {
        apply_one(ra, rep).map_err(|e| RenderError::build(rep.at.clone(), e))?;
    }
    Ok(())
}

/// Resolve a kustomization's entries (loading `path:` files through `load`) into replacements.
pub fn collect(
    entries: &[Entry],
    mut load: impl FnMut(&str, usize) -> Result<(String, PathBuf), RenderError>,
) -> Result<Vec<Replacement>, RenderError> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Inline(r) => out.push((**r).clone()),
            Entry::Path { path, line } => {
                let (text, rel) = load(path, *line)?;
                out.extend(parse_file(&text, &rel)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_split_on_dots_outside_brackets() {
        assert_eq!(
            split_path("spec.containers.[name=a.b].image"),
            ["spec", "containers", "[name=a.b]", "image"]
        );
        assert_eq!(split_path("data.x\\.y"), ["data", "x.y"]);
    }

    #[test]
    fn the_getter_matches_exactly_and_the_matcher_by_regex() {
        let doc = json!({"c": [{"name": "app", "image": "a"}, {"name": "sidecar", "image": "b"}]});
        let get = |p: &str| lookup(&doc, &split_path(p)).unwrap().cloned();
        assert_eq!(get("c.[name=app].image"), Some(json!("a")));
        assert_eq!(get("c.[name=ap].image"), None);
        assert_eq!(get("c.1.image"), Some(json!("b")));
        assert!(lookup(&doc, &split_path("c.*.image")).is_err());
        let mut doc = doc.clone();
        let mut seen = 0;
        let hits = matcher(
            &mut doc,
            &split_path("c.[name=p].image"),
            false,
            &mut |_| {
                seen += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((hits, seen), (1, 1));
    }

    #[test]
    fn scalar_targets_keep_their_type() {
        let o = Options::default();
        let mut n = json!(1);
        set_field(&mut n, &json!("5"), &o).unwrap();
        assert_eq!(n, json!(5));
        let mut s = json!("x");
        set_field(&mut s, &json!(5), &o).unwrap();
        assert_eq!(s, json!("5"));
        let mut created = Value::Null;
        set_field(&mut created, &json!("5"), &o).unwrap();
        assert_eq!(created, json!(5));
        let mut scalar_from_map = json!("x");
        set_field(&mut scalar_from_map, &json!({"a": 1}), &o).unwrap();
        assert_eq!(scalar_from_map, json!(""));
    }

    #[test]
    fn delimiters_replace_prefix_or_append_parts() {
        let o = |index| Options {
            delimiter: ":".into(),
            index,
            create: false,
        };
        let mut t = json!("nginx:1");
        set_field(&mut t, &json!("2"), &o(1)).unwrap();
        assert_eq!(t, json!("nginx:2"));
        set_field(&mut t, &json!("reg"), &o(-1)).unwrap();
        assert_eq!(t, json!("reg:nginx:2"));
        set_field(&mut t, &json!("x"), &o(9)).unwrap();
        assert_eq!(t, json!("reg:nginx:2:x"));
    }
}
