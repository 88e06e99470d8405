//! `configMapGenerator` and `secretGenerator`, and the content hash kustomize appends to
//! generated names (byte-identical to kustomize's: SHA-256 over a Go-style JSON encoding of
//! kind, name, data — and type for Secrets — first ten hex digits, with vowels and some digits
//! swapped for consonants).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::{Location, RenderError};
use super::kustomization::{GeneratorKind, GeneratorOptions, GeneratorSpec};
use super::loader::Loader;
use super::resource::{Behavior, Resource};

/// Options of one generator: its own, with the kustomization-wide ones filled in (local labels
/// and annotations win; either side can disable the hash or make it immutable).
fn merged_options(
    local: Option<&GeneratorOptions>,
    global: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut out = local.cloned().unwrap_or_default();
    if let Some(g) = global {
        for (k, v) in &g.labels {
            out.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &g.annotations {
            out.annotations
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        out.disable_name_suffix_hash |= g.disable_name_suffix_hash;
        out.immutable |= g.immutable;
    }
    out
}

/// `key=value`, with one pair of surrounding quotes removed from the value.
fn parse_literal(source: &str) -> Option<(String, String)> {
    let (key, value) = source.split_once('=')?;
    if key.is_empty() {
        return None;
    }
    let b = value.as_bytes();
    let value = if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &value[1..value.len() - 1]
    } else {
        value
    };
    Some((key.to_string(), value.to_string()))
}

/// An env file: `KEY=VALUE` lines, `#` comments, blank lines skipped; leading whitespace and a
/// UTF-8 BOM on the first line are dropped; nothing else is trimmed or unquoted. A line without
/// `=` gives an empty value (kustomize v5 no longer reads the process environment).
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if i == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => out.push((line.to_string(), String::new())),
        }
    }
    out
}

/// Base64 the way kustomize writes generated data: lines of 70 characters, each followed by a
/// newline, once the encoding is 70 characters or longer.
fn encode_base64(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    if enc.len() < LINE {
        return enc;
    }
    let mut out = String::with_capacity(enc.len() + enc.len() / LINE + 1);
    for chunk in enc.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Run one generator entry of the kustomization in `dir` (canonical).
pub fn generate(
    loader: &mut Loader,
    dir: &std::path::Path,
    kust_file: &std::path::Path,
    spec: &GeneratorSpec,
    global: Option<&GeneratorOptions>,
) -> Result<Resource, RenderError> {
    let field = match spec.kind {
        GeneratorKind::ConfigMap => "configMapGenerator",
        GeneratorKind::Secret => "secretGenerator",
    };
    let at = Location::at(kust_file, spec.line);
    if spec.name.is_empty() {
        return Err(RenderError::invalid(
            at,
            format!("{field}.name"),
            "a generator needs a name",
        ));
    }
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for env in &spec.envs {
        let r = loader.resolve(dir, env, &at, &format!("{field}.envs"), false)?;
        let text = loader.read_text(&r, &at)?;
        pairs.extend(
            parse_env_file(&text)
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        );
    }
    for lit in &spec.literals {
        let (k, v) = parse_literal(lit).ok_or_else(|| {
            RenderError::invalid(
                at.clone(),
                format!("{field}.literals"),
                format!("invalid literal {lit:?}; expected key=value"),
            )
        })?;
        pairs.push((k, v.into_bytes()));
    }
    for source in &spec.files {
        let (key, path) = match source.matches('=').count() {
            0 => (
                source.rsplit('/').next().unwrap_or(source).to_string(),
                source.as_str(),
            ),
            1 => {
                let (k, p) = source.split_once('=').unwrap_or_default();
                if k.is_empty() || p.is_empty() {
                    return Err(RenderError::invalid(
                        at.clone(),
                        format!("{field}.files"),
                        format!("{source:?} needs both a key and a path (key=path)"),
                    ));
                }
                (k.to_string(), p)
            }
            _ => {
                return Err(RenderError::invalid(
                    at.clone(),
                    format!("{field}.files"),
                    "key names or file paths cannot contain '='",
                ));
            }
        };
        let r = loader.resolve(dir, path, &at, &format!("{field}.files"), false)?;
        pairs.push((key, loader.read_bytes(&r, &at)?));
    }
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in pairs {
        if data.contains_key(&k) {
            return Err(RenderError::invalid(
                at.clone(),
                field,
                format!(
                    "{} {} repeats the key {k:?}",
                    if spec.kind == GeneratorKind::Secret {
                        "secret"
                    } else {
                        "configmap"
                    },
                    spec.name
                ),
            ));
        }
        data.insert(k, v);
    }

    let options = merged_options(spec.options.as_ref(), global);
    let kind = match spec.kind {
        GeneratorKind::ConfigMap => "ConfigMap",
        GeneratorKind::Secret => "Secret",
    };
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert("kind".into(), json!(kind));
    let mut meta = Map::new();
    meta.insert("name".into(), json!(spec.name));
    if !spec.namespace.is_empty() {
        meta.insert("namespace".into(), json!(spec.namespace));
    }
    if !options.labels.is_empty() {
        meta.insert(
            "labels".into(),
            Value::Object(
                options
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
    }
    if !options.annotations.is_empty() {
        meta.insert(
            "annotations".into(),
            Value::Object(
                options
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
    }
    obj.insert("metadata".into(), Value::Object(meta));
    match spec.kind {
        GeneratorKind::ConfigMap => {
            let mut text = Map::new();
            let mut binary = Map::new();
            for (k, v) in data {
                match String::from_utf8(v) {
                    Ok(s) => {
                        text.insert(k, Value::String(s));
                    }
                    Err(e) => {
                        binary.insert(k, Value::String(encode_base64(&e.into_bytes())));
                    }
                }
            }
            if !text.is_empty() {
                obj.insert("data".into(), Value::Object(text));
            }
            if !binary.is_empty() {
                obj.insert("binaryData".into(), Value::Object(binary));
            }
        }
        GeneratorKind::Secret => {
            let secret_type = if spec.secret_type.is_empty() {
                "Opaque"
            } else {
                &spec.secret_type
            };
            obj.insert("type".into(), json!(secret_type));
            if !data.is_empty() {
                obj.insert(
                    "data".into(),
                    Value::Object(
                        data.into_iter()
                            .map(|(k, v)| (k, Value::String(encode_base64(&v))))
                            .collect(),
                    ),
                );
            }
        }
    }
    if options.immutable {
        obj.insert("immutable".into(), json!(true));
    }
    let mut res = Resource::new(Value::Object(obj), at);
    res.configured_by = Some(format!("  apiVersion: builtin\n  kind: {kind}Generator\n"));
    res.needs_hash = !options.disable_name_suffix_hash;
    res.behavior = Some(match spec.behavior.as_str() {
        "merge" => Behavior::Merge,
        "replace" => Behavior::Replace,
        "create" => Behavior::Create,
        _ => Behavior::Unspecified,
    });
    Ok(res)
}

/// Go's `encoding/json` string escaping (HTML-safe: `<`, `>`, `&` and U+2028/9 escaped).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Marshal` of a decoded value (maps sorted by key).
fn go_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => go_json_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(out, k);
                out.push(':');
                go_json(out, &m[k]);
            }
            out.push('}');
        }
    }
}

/// The hash kustomize appends to a generated ConfigMap or Secret name.
pub fn content_hash(obj: &Value) -> String {
    let field = |name: &str| -> Value {
        match obj.get(name) {
            None | Some(Value::Null) => Value::String(String::new()),
            Some(Value::Object(m)) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::String(super::resource::scalar_text(v))))
                    .collect(),
            ),
            Some(other) => Value::String(super::resource::scalar_text(other)),
        }
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let mut m = Map::new();
    // kustomize looks the name up under a path that never matches, so it always hashes "".
    m.insert("name".into(), json!(""));
    m.insert("data".into(), field("data"));
    if kind == "Secret" {
        m.insert("kind".into(), json!("Secret"));
        m.insert("type".into(), field("type"));
        if let v @ Value::Object(_) = field("stringData") {
            m.insert("stringData".into(), v);
        }
    } else {
        m.insert("kind".into(), json!("ConfigMap"));
        if let v @ Value::Object(_) = field("binaryData") {
            m.insert("binaryData".into(), v);
        }
    }
    let mut encoded = String::new();
    go_json(&mut encoded, &Value::Object(m));
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_kubectl_kustomize() {
        // Names taken from `kubectl kustomize` (v5.5) output for the same content.
        let cm =
            json!({"kind": "ConfigMap", "data": {"A": "1", "B ": " 2 ", "C": "\"q\"", "HOME": ""}});
        assert_eq!(content_hash(&cm), "75t6bh2425");
        let secret =
            json!({"kind": "Secret", "type": "kubernetes.io/tls", "data": {"pw": "aHVudGVyMg=="}});
        assert_eq!(content_hash(&secret), "d76mk5dhbm");
        let empty = json!({"kind": "ConfigMap"});
        assert_eq!(content_hash(&empty), "6ct58987ht");
    }

    #[test]
    fn long_base64_is_wrapped_at_70_columns() {
        assert_eq!(encode_base64(b"hunter2"), "aHVudGVyMg==");
        let long = encode_base64(&[0u8; 60]);
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), [70, 10]);
        assert!(long.ends_with('\n'));
    }

    #[test]
    fn literals_lose_one_pair_of_surrounding_quotes() {
        assert_eq!(
            parse_literal("b=\"quoted\""),
            Some(("b".into(), "quoted".into()))
        );
        assert_eq!(
            parse_literal("c='single'"),
            Some(("c".into(), "single".into()))
        );
        assert_eq!(parse_literal("d=x=y"), Some(("d".into(), "x=y".into())));
        assert_eq!(parse_literal("e="), Some(("e".into(), "".into())));
        assert_eq!(parse_literal("=x"), None);
        assert_eq!(parse_literal("nokey"), None);
    }

    #[test]
    fn env_files_keep_values_verbatim() {
        let pairs = parse_env_file("\u{feff}A=1\r\n# comment\n\n  B = 2 \nC=\"q\"\nHOME\n");
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("B ".into(), " 2 ".into()),
                ("C".into(), "\"q\"".into()),
                ("HOME".into(), "".into())
            ]
        );
    }

    #[test]
    fn local_generator_options_win_over_global_ones() {
        let local = GeneratorOptions {
            labels: [("both".into(), "local".into())].into(),
            ..Default::default()
        };
        let global = GeneratorOptions {
            labels: [("both".into(), "global".into()), ("g".into(), "x".into())].into(),
            disable_name_suffix_hash: true,
            ..Default::default()
        };
        let m = merged_options(Some(&local), Some(&global));
        assert_eq!(m.labels["both"], "local");
        assert_eq!(m.labels["g"], "x");
        assert!(m.disable_name_suffix_hash);
    }
}
