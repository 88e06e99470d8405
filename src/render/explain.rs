//! `baton render --explain`: which file, patch, generator, replacement or transformer last
//! changed each field of an object. When a build explains, every object carries a trace: its
//! fields as of the last step, and for each leaf field the step that last set it. After each
//! step (a kustomization's field, a plugin configuration, the final name hashing, name
//! references and vars) the object is compared with its snapshot and the changed leaves are
//! attributed to that step; a new object's leaves are attributed to where it came from.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resource::{Resource, scalar_text};

/// The provenance of one object's fields.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    snapshot: Value,
    /// Leaf path → the step that last set it.
    fields: BTreeMap<String, String>,
}

/// A list element's path segment: `[name=x]` when it has a string `name`, else its index.
fn element(item: &Value, i: usize) -> String {
    match item.get("name").and_then(Value::as_str) {
        Some(n) => format!("[name={n}]"),
        None => format!("[{i}]"),
    }
}

fn join(path: &str, key: &str) -> String {
    if key.contains(['.', '[', ']']) {
        format!("{path}[{key:?}]")
    } else if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(x, &join(path, k), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, &format!("{path}{}", element(x, i)), out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// Leaves of `new` that differ from `old` (or are new).
fn diff(old: Option<&Value>, new: &Value, path: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Object(o)), Value::Object(n)) if !n.is_empty() => {
            for (k, x) in n {
                diff(o.get(k), x, &join(path, k), out);
            }
        }
        (Some(Value::Array(o)), Value::Array(n)) if !n.is_empty() => {
            for (i, x) in n.iter().enumerate() {
                let seg = element(x, i);
                let before = if seg.starts_with("[name=") {
                    o.iter().find(|e| e.get("name") == x.get("name"))
                } else {
                    o.get(i)
                };
                diff(before, x, &format!("{path}{seg}"), out);
            }
        }
        (Some(o), n) if o == n => {}
        (_, n) => leaves(n, path, out),
    }
}

/// Where an object came from, for its first attribution.
fn origin(r: &Resource) -> String {
    match &r.configured_by {
        Some(by) => {
            let kind = by
                .lines()
                .find_map(|l| l.trim().strip_prefix("kind: "))
                .unwrap_or("generator");
            format!("{} ({kind})", r.origin)
        }
        None => r.origin.to_string(),
    }
}

/// Attribute what changed since the last step to `label`.
pub fn step(ra: &mut [Resource], label: &str) {
    for r in ra.iter_mut().filter(|r| !r.is_empty()) {
        match r.trace.take() {
            None => {
                let mut paths = Vec::new();
                leaves(&r.value, "", &mut paths);
                let from = origin(r);
                let fields = paths.into_iter().map(|p| (p, from.clone())).collect();
                r.trace = Some(Box::new(Trace {
                    snapshot: r.value.clone(),
                    fields,
                }));
            }
            Some(mut t) => {
                if t.snapshot != r.value {
                    let mut changed = Vec::new();
                    diff(Some(&t.snapshot), &r.value, "", &mut changed);
                    for p in changed {
                        t.fields.insert(p, label.to_string());
                    }
                    t.snapshot = r.value.clone();
                }
                r.trace = Some(t);
            }
        }
    }
}

/// One field of the explained object: its path, value and the step that last set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub path: String,
    pub value: String,
    pub source: String,
}

fn leaf_values<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaf_values(x, &join(path, k), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                leaf_values(x, &format!("{path}{}", element(x, i)), out);
            }
        }
        _ => out.push((path.to_string(), v)),
    }
}

/// The fields of `r` as they are now, each with its source, sorted by path.
pub fn fields(r: &Resource) -> Vec<Field> {
    let mut leaves = Vec::new();
    leaf_values(&r.value, "", &mut leaves);
    let mut out: Vec<Field> = leaves
        .into_iter()
        .map(|(path, v)| Field {
            value: match v {
                Value::String(s) => s.clone(),
                Value::Object(_) => "{}".into(),
                Value::Array(_) => "[]".into(),
                other => scalar_text(other),
            },
            source: r
                .trace
                .as_ref()
                .and_then(|t| t.fields.get(&path).cloned())
                .unwrap_or_else(|| origin(r)),
            path,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::error::Location;
    use serde_json::json;

    #[test]
    fn changed_leaves_go_to_the_step_that_changed_them() {
        let mut ra = vec![Resource::new(
            json!({"kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}}}),
            Location::file(std::path::Path::new("base/deploy.yaml")),
        )];
        step(&mut ra, "load");
        ra[0].value["metadata"]["name"] = json!("p-web");
        step(&mut ra, "namePrefix");
        ra[0].value["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:2");
        ra[0].value["metadata"]["labels"] = json!({"team": "shop"});
        step(&mut ra, "images");
        let f: BTreeMap<String, (String, String)> = fields(&ra[0])
            .into_iter()
            .map(|f| (f.path, (f.value, f.source)))
            .collect();
        assert_eq!(f["kind"].1, "base/deploy.yaml");
        assert_eq!(f["metadata.name"], ("p-web".into(), "namePrefix".into()));
        assert_eq!(
            f["spec.template.spec.containers[name=app].image"],
            ("a:2".into(), "images".into())
        );
        assert_eq!(
            f["spec.template.spec.containers[name=app].name"].1,
            "base/deploy.yaml"
        );
        assert_eq!(f["metadata.labels.team"].1, "images");
    }
}
