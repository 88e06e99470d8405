//! `vars` (deprecated in kustomize, still common): every var names an object and a field of
//! it; after names are final (prefixes, hashes, name references), `$(NAME)` in kustomize's
//! var-reference fields is replaced by the field's value. A string that is exactly one
//! reference takes the value's type; `$$` escapes a `$`; unknown references stay as written.

use std::collections::HashMap;

use serde_json::Value;

use super::error::{Location, RenderError};
use super::fieldspec::{self, Create};
use super::kustomization::{Dec, FieldSpec};
use super::replace;
use super::resource::{Gvk, Resource, scalar_text};
use super::value::Raw;

/// The warning `kubectl kustomize` prints for a kustomization with `vars`.
pub const DEPRECATION: &str = "# Warning: 'vars' is deprecated. Please use 'replacements' instead. [EXPERIMENTAL] Run 'kustomize edit fix' to update your Kustomization automatically.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub object: String,
    pub namespace: String,
    pub field_path: String,
    pub at: Location,
}

/// The `vars` field of a kustomization.
pub fn parse(d: &Dec<'_>, raw: &Raw, field: &str) -> Result<Vec<Var>, RenderError> {
    let mut out = Vec::new();
    for item in d.list(raw, field)? {
        let mut v = Var {
            name: String::new(),
            group: String::new(),
            version: String::new(),
            kind: String::new(),
            object: String::new(),
            namespace: String::new(),
            field_path: String::new(),
            at: d.at(item.line()),
        };
        for (name, x) in d.fields(item, field, &["name", "objref", "fieldref"])? {
            let f = format!("{field}.{name}");
            match name {
                "name" => v.name = d.string(x, &f)?,
                "objref" => {
                    for (n, y) in d.fields(
                        x,
                        &f,
                        &[
                            "group",
                            "version",
                            "kind",
                            "name",
                            "namespace",
                            "apiVersion",
                        ],
                    )? {
                        let s = d.string(y, &format!("{f}.{n}"))?;
                        match n {
                            "group" => v.group = s,
                            "version" => v.version = s,
                            "kind" => v.kind = s,
                            "name" => v.object = s,
                            "namespace" => v.namespace = s,
                            _ => {
                                let g = Gvk::from_api_version(&s, "");
                                v.group = g.group;
                                v.version = g.version;
                            }
                        }
                    }
                }
                _ => {
                    for (_, y) in d.fields(x, &f, &["fieldPath"])? {
                        v.field_path = d.string(y, &format!("{f}.fieldPath"))?;
                    }
                }
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// kustomize's default var-reference fields.
fn var_references() -> Vec<FieldSpec> {
    let mut out = Vec::new();
    let fs = |path: &str, kind: &str| FieldSpec {
        path: path.into(),
        kind: kind.into(),
        ..Default::default()
    };
    let container_fields = ["args", "command", "env/value", "volumeMounts/mountPath"];
    for (kind, prefix) in [
        ("CronJob", "spec/jobTemplate/spec/template/spec"),
        ("DaemonSet", "spec/template/spec"),
        ("Deployment", "spec/template/spec"),
        ("Job", "spec/template/spec"),
        ("Pod", "spec"),
        ("ReplicaSet", "spec/template/spec"),
        ("StatefulSet", "spec/template/spec"),
    ] {
        for list in ["containers", "initContainers"] {
            for f in container_fields {
                out.push(fs(&format!("{prefix}/{list}/{f}"), kind));
            }
        }
    }
    out.extend([
        fs("spec/rules/host", "Ingress"),
        fs("spec/tls/hosts", "Ingress"),
        fs("spec/tls/secretName", "Ingress"),
        fs("spec/ports/port", "Service"),
        fs("spec/ports/targetPort", "Service"),
        fs("metadata/labels", ""),
    ]);
    out
}

/// `spec.ports[0].port` → `spec`, `ports`, `0`, `port`.
fn field_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in replace::split_path(path) {
        match part.find('[') {
            Some(i) if i > 0 && part.ends_with(']') => {
                out.push(part[..i].to_string());
                let inner = &part[i + 1..part.len() - 1];
                if inner.contains('=') {
                    out.push(part[i..].to_string());
                } else {
                    out.push(inner.to_string());
                }
            }
            _ => out.push(part),
        }
    }
    out
}

/// Kubernetes' `$(VAR)` expansion. One reference making up the whole string yields the
/// value itself (typed); anything else yields a string.
fn expand(s: &str, vars: &HashMap<String, Value>) -> Value {
    if let Some(name) = s.strip_prefix("$(").and_then(|r| r.strip_suffix(')'))
        && !name.contains(['(', ')', '$'])
        && let Some(v) = vars.get(name)
    {
        return v.clone();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(')
            && let Some(end) = tail.find(')')
        {
            let name = &tail[..end];
            match vars.get(name) {
                Some(v) => out.push_str(&scalar_text(v)),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Value::String(out)
}

fn substitute(node: &mut Value, vars: &HashMap<String, Value>) {
    match node {
        Value::String(s) => *node = expand(s, vars),
        Value::Array(items) => {
            for i in items.iter_mut().filter(|i| i.is_string()) {
                substitute(i, vars);
            }
        }
        Value::Object(m) => {
            for v in m.values_mut().filter(|v| v.is_string()) {
                substitute(v, vars);
            }
        }
        _ => {}
    }
}

/// Resolve every var against the final objects and substitute its references.
/// `extra`: var-reference field specs from `configurations`.
pub fn resolve(
    resources: &mut [Resource],
    vars: &[Var],
    extra: &[FieldSpec],
) -> Result<(), RenderError> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values = HashMap::new();
    for v in vars {
        let matches: Vec<&Resource> = resources
            .iter()
            .filter(|r| !r.is_empty())
            .filter(|r| {
                let mut ids = r.prev_res_ids();
                ids.push(r.cur_id());
                ids.iter().any(|id| {
                    id.name == v.object
                        && id.gvk.is_selected_by(&v.group, &v.version, &v.kind)
                        && (v.namespace.is_empty() || id.effective_namespace() == v.namespace)
                })
            })
            .collect();
        let r = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(RenderError::build(
                    v.at.clone(),
                    format!(
                        "var '{}' cannot be mapped to a field in the set of known resources",
                        v.name
                    ),
                ));
            }
            many => {
                return Err(RenderError::build(
                    v.at.clone(),
                    format!(
                        "found {} resId matches for var '{}' (unable to disambiguate)",
                        many.len(),
                        v.name
                    ),
                ));
            }
        };
        let path = if v.field_path.is_empty() {
            "metadata.name"
        } else {
            &v.field_path
        };
        let value = lookup(&r.value, &field_path(path)).ok_or_else(|| {
            RenderError::build(
                v.at.clone(),
                format!(
                    "var '{}': field {path:?} not found in {}",
                    v.name,
                    r.cur_id()
                ),
            )
        })?;
        values.insert(v.name.clone(), value);
    }
    let mut specs = var_references();
    specs.extend(extra.iter().cloned());
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        let gvk = r.gvk();
        for spec in specs.iter().filter(|s| fieldspec::matches_gvk(s, &gvk)) {
            let _ = fieldspec::visit(&mut r.value, spec, Create::Nothing, &mut |node| {
                substitute(node, &values);
                Ok(())
            });
        }
    }
    Ok(())
}

fn lookup(v: &Value, path: &[String]) -> Option<Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Array(items) => items.get(p.parse::<usize>().ok()?)?,
            Value::Object(m) => m.get(p.as_str())?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars: HashMap<String, Value> = [
            ("H".to_string(), json!("db")),
            ("P".to_string(), json!(5432)),
        ]
        .into();
        assert_eq!(expand("$(P)", &vars), json!(5432));
        assert_eq!(expand("--db=$(H):$(P)", &vars), json!("--db=db:5432"));
        assert_eq!(expand("$(X) $$(H) $", &vars), json!("$(X) $(H) $"));
    }

    #[test]
    fn field_paths_take_bracket_indexes() {
        assert_eq!(
            field_path("spec.ports[0].port"),
            ["spec", "ports", "0", "port"]
        );
    }
}
