//! What the build does to the objects themselves: parse a file of documents, the
//! `buildMetadata` annotations and labels, content hashes, and the YAML quirks kustomize
//! keeps (folded lines, string annotations, null list items).

use super::*;

/// `buildMetadata` of the top kustomization: kustomize's origin annotation (paths relative to
/// the top directory) and managed-by label (with the version string `kubectl kustomize`
/// reports for its embedded kustomize).
pub(super) fn add_build_metadata(resources: &mut [Resource], k: &Kustomization, top: &Path) {
    let has = |o: &str| k.build_metadata.iter().any(|m| m.value == o);
    let (origin, managed) = (has("originAnnotations"), has("managedByLabel"));
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        if !r.transformations.is_empty() {
            let text = std::mem::take(&mut r.transformations);
            let meta = r.metadata_mut();
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert(
                    "alpha.config.kubernetes.io/transformations".into(),
                    Value::String(text),
                );
            }
        }
        if origin {
            let rel = relative_to(&r.origin.file, top);
            let text = match &r.configured_by {
                Some(by) => format!("configuredIn: {rel}\nconfiguredBy:\n{by}"),
                None => format!("path: {rel}\n"),
            };
            let meta = r.metadata_mut();
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert("config.kubernetes.io/origin".into(), Value::String(text));
            }
        }
        if managed {
            let meta = r.metadata_mut();
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(l) = labels {
                l.insert(
                    "app.kubernetes.io/managed-by".into(),
                    Value::String("kustomize-(devel)".into()),
                );
            }
        }
    }
}

/// kustomize's `alpha.config.kubernetes.io/transformations` entry for a transformer that ran
/// over every object in `ra` (it records the transformer whether or not it changed them).
pub(super) fn record_transformer(
    ra: &mut [Resource],
    configured_in: &str,
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: &str,
) {
    let mut item = format!(
        "- configuredIn: {configured_in}\n  configuredBy:\n    apiVersion: {api_version}\n    kind: {kind}\n"
    );
    if !name.is_empty() {
        item.push_str(&format!("    name: {name}\n"));
    }
    if !namespace.is_empty() {
        item.push_str(&format!("    namespace: {namespace}\n"));
    }
    for r in ra.iter_mut().filter(|r| !r.is_empty()) {
        r.transformations.push_str(&item);
    }
}

/// The objects of one YAML stream (a resource file, or helm's output): every non-empty
/// document; `*List` kinds expand into their items, after the stream's other documents.
pub(super) fn parse_resources(text: &str, file: &Path) -> Result<Vec<Resource>, RenderError> {
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: Location::at(file, e.line),
        message: e.message,
    })?;
    let mut queue: std::collections::VecDeque<(Value, usize)> = std::collections::VecDeque::new();
    for d in &docs {
        if d.is_null() {
            continue;
        }
        let v = d.to_value(Dialect::Kyaml).map_err(|e| RenderError::Yaml {
            at: Location::at(file, e.line),
            message: e.message,
        })?;
        queue.push_back((v, d.line()));
    }
    let mut out = Vec::new();
    while let Some((v, line)) = queue.pop_front() {
        let here = Location::at(file, line);
        let obj = match &v {
            Value::Object(m) if m.is_empty() => continue,
            Value::Object(m) => m,
            other => {
                return Err(RenderError::build(
                    here,
                    format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        if other.is_array() {
                            "a list"
                        } else {
                            "a scalar"
                        }
                    ),
                ));
            }
        };
        let kind = obj.get("kind").map(scalar_text).unwrap_or_default();
        if kind.is_empty() {
            return Err(RenderError::build(here, "object has no `kind`"));
        }
        if kind.ends_with("List") {
            match obj.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        queue.push_back((item.clone(), line));
                    }
                }
                Some(_) => {
                    return Err(RenderError::build(
                        here,
                        format!("expected a list in {kind}.items"),
                    ));
                }
            }
            continue;
        }
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .map(scalar_text)
            .unwrap_or_default();
        if name.is_empty() {
            return Err(RenderError::build(
                here,
                format!("{kind} has no metadata.name"),
            ));
        }
        if let Some(path) = null_list_item(&v, &mut Vec::new()) {
            return Err(RenderError::build(
                here,
                format!("{kind} {name}: empty item at {path}"),
            ));
        }
        out.push(Resource::new(v, here));
    }
    Ok(out)
}

/// `path` (relative to the repo root) as seen from directory `dir` (also repo-relative).
pub(super) fn relative_to(path: &Path, dir: &Path) -> String {
    let p: Vec<_> = path.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out.display().to_string()
}

/// Append content hashes to the names of generated objects that want one.
pub(super) fn add_hashes(resources: &mut [Resource]) {
    for r in resources
        .iter_mut()
        .filter(|r| r.needs_hash && !r.is_empty())
    {
        let hash = generate::content_hash(&r.value);
        r.store_previous_id();
        let name = format!("{}-{hash}", r.name());
        r.set_name(name);
        // kustomize leaves the request in place: a HashTransformer plugin's hash gets the
        // final hash appended again at the end of the build.
    }
}

/// kustomize's last step reads its JSON back with a YAML 1.1 parser, for which U+0085 (NEXT
/// LINE) inside a quoted string is a line break and gets folded: one break becomes a space,
/// several become newlines, and spaces around them are dropped.
pub(super) fn fold_next_lines(v: &mut Value) {
    fn fold(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('\u{85}') {
            out.push_str(rest[..i].trim_end_matches(' '));
            rest = &rest[i + '\u{85}'.len_utf8()..];
            let mut breaks = 1;
            loop {
                let trimmed = rest.trim_start_matches(' ');
                match trimmed.strip_prefix('\u{85}') {
                    Some(after) => {
                        breaks += 1;
                        rest = after;
                    }
                    None => {
                        rest = trimmed;
                        break;
                    }
                }
            }
            if breaks == 1 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', breaks - 1));
            }
        }
        out.push_str(rest);
        out
    }
    match v {
        Value::String(s) if s.contains('\u{85}') => *s = fold(s),
        Value::Array(items) => items.iter_mut().for_each(fold_next_lines),
        Value::Object(m) => {
            if m.keys().any(|k| k.contains('\u{85}')) {
                let old = std::mem::take(m);
                *m = old
                    .into_iter()
                    .map(|(k, v)| (if k.contains('\u{85}') { fold(&k) } else { k }, v))
                    .collect();
            }
            m.values_mut().for_each(fold_next_lines);
        }
        _ => {}
    }
}

/// kustomize rewrites every annotation as a string when it strips its build annotations.
pub(super) fn stringify_annotations(v: &mut Value) {
    if let Some(Value::Object(a)) = v.get_mut("metadata").and_then(|m| m.get_mut("annotations")) {
        for val in a.values_mut() {
            if !val.is_string() && !val.is_object() && !val.is_array() {
                *val = Value::String(scalar_text(val));
            }
        }
    }
}

/// A path to a list that has a null item, if any (kustomize rejects such resources).
pub(super) fn null_list_item(v: &Value, path: &mut Vec<String>) -> Option<String> {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                if let Some(p) = null_list_item(x, path) {
                    return Some(p);
                }
                path.pop();
            }
            None
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                if x.is_null() {
                    return Some(format!("{}[{i}]", path.join(".")));
                }
                path.push(format!("[{i}]"));
                if let Some(p) = null_list_item(x, path) {
                    return Some(p);
                }
                path.pop();
            }
            None
        }
        _ => None,
    }
}
