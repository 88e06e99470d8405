//! Strategic merge patches, with the semantics of kustomize's kyaml `merge2` walker (which is
//! not quite Kubernetes' own strategic merge):
//!
//! - mappings merge key by key; `key: null` in the patch deletes the key;
//!   `$patch: delete` deletes the mapping, `$patch: replace` replaces it;
//! - lists whose schema says `patchStrategy: merge` merge element by element on their merge
//!   key; patch elements come first (kustomize prepends), then the remaining elements of the
//!   target in their order; an element `$patch: delete` deletes its match, a list element
//!   `{$patch: replace}` replaces the whole list;
//! - lists with several merge keys (container ports, service ports, topology spread
//!   constraints) merge a patch element only into an element with exactly the same keys; a
//!   patch element whose keys are merely compatible (one side lacks `protocol`) is dropped;
//!   other patch elements are prepended — this mirrors what kustomize does, quirks included;
//! - all other lists, and every list of a custom resource, are replaced by the patch's;
//! - scalars are replaced.

use serde_json::{Map, Value};

use super::resource::scalar_text;
use super::schema::{self, Field, Type};

const DIRECTIVE: &str = "$patch";

/// Schema of the node being merged.
#[derive(Debug, Clone, Copy)]
enum Sch<'a> {
    None,
    Obj(Type),
    List {
        keys: &'static [&'static str],
        item: Type,
    },
    /// A node of a custom OpenAPI document.
    Custom(&'a schema::Custom, &'a Value),
}

impl<'a> Sch<'a> {
    fn field(self, name: &str) -> Sch<'a> {
        match self {
            Sch::Obj(t) => match schema::field(t, name) {
                Some(Field::Object(t)) => Sch::Obj(t),
                Some(Field::MergeList { keys, item }) => Sch::List { keys, item },
                None => Sch::None,
            },
            Sch::Custom(c, s) => c.field(s, name).map_or(Sch::None, |f| Sch::Custom(c, f)),
            _ => Sch::None,
        }
    }

    fn item(self) -> Sch<'a> {
        match self {
            Sch::List { item, .. } => Sch::Obj(item),
            Sch::Custom(c, s) => c.elements(s).map_or(Sch::None, |e| Sch::Custom(c, e)),
            _ => Sch::None,
        }
    }

    /// The merge keys of a list that merges; `None` for a list a patch replaces.
    fn merge_keys(self) -> Option<Vec<&'a str>> {
        match self {
            Sch::List { keys, .. } => Some(keys.to_vec()),
            Sch::Custom(_, s) => schema::custom_merge_keys(s),
            _ => None,
        }
    }
}

/// Which schema the patched object has: baton's built-in slice of the Kubernetes schema, or
/// a custom document (which then replaces the built-in one entirely, as in kustomize).
#[derive(Debug, Clone, Copy)]
pub enum Root<'a> {
    Builtin(Option<Type>),
    Custom(Option<(&'a schema::Custom, &'a Value)>),
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "a mapping",
        Value::Array(_) => "a list",
        Value::Null => "null",
        _ => "a scalar",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Merge,
    Delete,
    Replace,
}

/// Read and remove a mapping's `$patch` directive.
fn take_map_directive(m: &mut Map<String, Value>) -> Result<Directive, String> {
    let Some(v) = m.get(DIRECTIVE) else {
        return Ok(Directive::Merge);
    };
    let d = match v.as_str() {
        Some("delete") => Directive::Delete,
        Some("replace") => Directive::Replace,
        Some("merge") => Directive::Merge,
        _ => return Err(format!("unknown patch strategy {:?}", scalar_text(v))),
    };
    m.remove(DIRECTIVE);
    Ok(d)
}

/// Read and remove a list's directive element (`- $patch: replace`).
fn take_list_directive(items: &mut Vec<Value>) -> Result<Directive, String> {
    let Some(idx) = items.iter().position(|e| e.get(DIRECTIVE).is_some()) else {
        return Ok(Directive::Merge);
    };
    let elem = &items[idx];
    if elem.as_object().map(Map::len) != Some(1) {
        return Ok(Directive::Merge);
    }
    let d = match elem.get(DIRECTIVE).and_then(Value::as_str) {
        Some("delete") => Directive::Delete,
        Some("replace") => Directive::Replace,
        Some("merge") => Directive::Merge,
        _ => {
            return Err(format!(
                "unknown patch strategy {:?}",
                scalar_text(&elem[DIRECTIVE])
            ));
        }
    };
    items.remove(idx);
    Ok(d)
}

/// Apply `patch` to `target` (a whole resource). `None` means the patch deleted the resource.
pub fn strategic_merge(
    target: &Value,
    patch: &Value,
    root: Root<'_>,
) -> Result<Option<Value>, String> {
    let sch = match root {
        Root::Builtin(t) => t.map(Sch::Obj).unwrap_or(Sch::None),
        Root::Custom(c) => c.map_or(Sch::None, |(c, s)| Sch::Custom(c, s)),
    };
    walk(Some(target.clone()), Some(patch), sch, "")
}

fn path_join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    dest: Option<Value>,
    origin: Option<&Value>,
    sch: Sch<'_>,
    path: &str,
) -> Result<Option<Value>, String> {
    let first = [dest.as_ref(), origin]
        .into_iter()
        .flatten()
        .find(|v| !v.is_null());
    let Some(first) = first else {
        // Both absent or null: nothing to set.
        return Ok(None);
    };
    let shape = kind_name(first);
    for v in [dest.as_ref(), origin].into_iter().flatten() {
        if !v.is_null() && kind_name(v) != shape {
            let at = if path.is_empty() {
                "the object".to_string()
            } else {
                format!("`{path}`")
            };
            return Err(format!(
                "cannot merge {} into {} at {at}",
                kind_name(v),
                shape
            ));
        }
    }
    match first {
        Value::Object(_) => walk_map(dest, origin, sch, path),
        Value::Array(_) => walk_list(dest, origin, sch, path),
        _ => {
            // Scalars: the patch wins; a null patch value clears the field.
            let v = match origin {
                Some(o) => o.clone(),
                None => dest.unwrap_or(Value::Null),
            };
            Ok(if v.is_null() { None } else { Some(v) })
        }
    }
}

fn walk_map(
    dest: Option<Value>,
    origin: Option<&Value>,
    sch: Sch<'_>,
    path: &str,
) -> Result<Option<Value>, String> {
    let mut origin = match origin {
        None => return Ok(dest),
        Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => unreachable!("shapes checked by walk"),
    };
    let directive = take_map_directive(&mut origin)?;
    let mut dest = match dest {
        Some(Value::Object(m)) => match directive {
            Directive::Delete => return Ok(None),
            Directive::Replace => origin.clone(),
            Directive::Merge => m,
        },
        _ => {
            if directive == Directive::Delete {
                return Ok(None);
            }
            origin.clone()
        }
    };
    let mut keys: Vec<String> = dest.keys().chain(origin.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let d = dest.remove(&key);
        let merged = walk(d, origin.get(&key), sch.field(&key), &path_join(path, &key))?;
        if let Some(v) = merged {
            dest.insert(key, v);
        }
    }
    Ok(Some(Value::Object(dest)))
}

fn key_text(elem: &Value, key: &str) -> String {
    match elem.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(v) => scalar_text(v),
    }
}

fn is_empty_map(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty())
}

fn walk_list(
    dest: Option<Value>,
    origin: Option<&Value>,
    sch: Sch<'_>,
    path: &str,
) -> Result<Option<Value>, String> {
    let Some(keys) = sch.merge_keys() else {
        // Not a merge list: the patch replaces it verbatim.
        return Ok(match origin {
            Some(Value::Null) => None,
            Some(o) => Some(o.clone()),
            None => dest,
        });
    };
    let mut origin: Vec<Value> = match origin {
        None => return Ok(dest),
        Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => unreachable!("shapes checked by walk"),
    };
    let directive = take_list_directive(&mut origin)?;
    let dest: Vec<Value> = match (directive, dest) {
        (Directive::Delete, _) => return Ok(None),
        (Directive::Replace, _) => Vec::new(),
        (Directive::Merge, Some(Value::Array(a))) => a,
        (Directive::Merge, _) => Vec::new(),
    };
    let item = sch.item();
    let merged = match keys.len() {
        0 => merge_primitive(dest, &origin),
        1 => merge_by_key(dest, &origin, keys[0], item, path)?,
        _ => merge_by_keys(dest, &origin, &keys, item, path)?,
    };
    Ok(Some(Value::Array(merged)))
}

/// A list of scalars merged as a set, patch values first.
fn merge_primitive(dest: Vec<Value>, origin: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for v in origin.iter().chain(dest.iter()) {
        if v.is_null() {
            continue;
        }
        let t = scalar_text(v);
        if !seen.contains(&t) {
            seen.push(t);
            out.push(v.clone());
        }
    }
    out
}

fn merge_by_key(
    mut dest: Vec<Value>,
    origin: &[Value],
    key: &str,
    item: Sch<'_>,
    path: &str,
) -> Result<Vec<Value>, String> {
    let mut values: Vec<String> = Vec::new();
    for e in origin.iter().chain(dest.iter()) {
        let v = key_text(e, key);
        if !values.contains(&v) {
            values.push(v);
        }
    }
    let mut items: Vec<(String, Value)> = Vec::new();
    for v in values {
        let di = dest
            .iter()
            .position(|e| e.is_object() && key_text(e, key) == v);
        let o = origin
            .iter()
            .find(|e| e.is_object() && key_text(e, key) == v);
        let d = di.map(|i| dest[i].clone());
        let elem_path = format!("{path}[{key}={v}]");
        let merged = walk(d, o, item, &elem_path)?;
        match merged {
            None => {
                dest.retain(|e| !(e.is_object() && key_text(e, key) == v));
            }
            Some(m) if is_empty_map(&m) => {
                dest.retain(|e| !(e.is_object() && key_text(e, key) == v));
            }
            Some(mut m) => {
                if let Value::Object(obj) = &mut m
                    && !obj.contains_key(key)
                {
                    obj.insert(key.to_string(), Value::String(v.clone()));
                }
                if let Some(i) = di {
                    dest[i] = m.clone();
                }
                items.push((v, m));
            }
        }
    }
    // Elements of the target without a usable key stay, after the others.
    let mut out: Vec<Value> = items.into_iter().map(|(_, m)| m).collect();
    for e in dest {
        if !e.is_object() {
            out.push(e);
        }
    }
    Ok(out)
}

fn merge_by_keys(
    mut dest: Vec<Value>,
    origin: &[Value],
    keys: &[&str],
    item: Sch<'_>,
    path: &str,
) -> Result<Vec<Value>, String> {
    let tuple = |e: &Value| -> Vec<String> { keys.iter().map(|k| key_text(e, k)).collect() };
    let mut new: Vec<Value> = Vec::new();
    for p in origin {
        if !p.is_object() {
            continue;
        }
        let pk = tuple(p);
        let elem_path = format!("{path}[{}]", pk.join(","));
        if let Some(i) = dest.iter().position(|d| d.is_object() && tuple(d) == pk) {
            match walk(Some(dest[i].clone()), Some(p), item, &elem_path)? {
                Some(m) if !is_empty_map(&m) => dest[i] = m,
                _ => {
                    dest.remove(i);
                }
            }
            continue;
        }
        let compatible = dest.iter().any(|d| {
            d.is_object()
                && tuple(d)
                    .iter()
                    .zip(&pk)
                    .all(|(a, b)| a.is_empty() || b.is_empty() || a == b)
        });
        if compatible {
            continue;
        }
        if let Some(m) = walk(None, Some(p), item, &elem_path)?
            && !is_empty_map(&m)
        {
            new.push(m);
        }
    }
    new.extend(dest);
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment_schema() -> Root<'static> {
        Root::Builtin(Some(Type::Workload))
    }

    fn merge(target: Value, patch: Value) -> Value {
        strategic_merge(&target, &patch, deployment_schema())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn containers_merge_by_name_with_patch_elements_first() {
        let t = json!({"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "x"}, {"name": "a", "image": "a"}]}}}});
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a2"}, {"name": "b", "image": "b"}]}}}});
        let out = merge(t, p);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a2"}, {"name": "b", "image": "b"}, {"name": "x", "image": "x"}])
        );
    }

    #[test]
    fn null_deletes_a_key_and_directives_delete_or_replace() {
        let t = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w"}]}}}});
        let p = json!({"metadata": {"labels": {"a": null}}, "spec": {"template": {"spec": {"volumes": [{"name": "w", "$patch": "delete"}]}}}});
        let out = merge(t, p);
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "v", "emptyDir": {}}])
        );

        let t =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let p = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}}});
        assert_eq!(
            merge(t, p)["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c"}])
        );
    }

    #[test]
    fn lists_without_a_merge_strategy_are_replaced() {
        let t = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "old"}]}}}});
        let p = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "new"}]}}}});
        assert_eq!(
            merge(t, p)["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "new"}])
        );
        let cr = json!({"spec": {"containers": [{"name": "a"}]}});
        let out = strategic_merge(
            &cr,
            &json!({"spec": {"containers": [{"name": "b"}]}}),
            Root::Builtin(None),
        )
        .unwrap()
        .unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn multi_key_lists_merge_only_exact_matches() {
        let t = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [
            {"containerPort": 70}, {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 90, "protocol": "TCP", "name": "other"}
        ]}]}}}});
        let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [
            {"containerPort": 80, "protocol": "TCP", "name": "p80"}, {"containerPort": 90, "name": "p90"}, {"containerPort": 100}
        ]}]}}}});
        let out = merge(t, p);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 100}, {"containerPort": 70}, {"containerPort": 80, "protocol": "TCP", "name": "p80"}, {"containerPort": 90, "protocol": "TCP", "name": "other"}])
        );
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let t = json!({"metadata": {"finalizers": ["a", "c"]}});
        let p = json!({"metadata": {"finalizers": ["b", "a"]}});
        assert_eq!(
            merge(t, p)["metadata"]["finalizers"],
            json!(["b", "a", "c"])
        );
    }

    #[test]
    fn delete_directive_at_the_top_deletes_the_resource() {
        let t = json!({"kind": "Deployment", "metadata": {"name": "d"}});
        assert_eq!(
            strategic_merge(&t, &json!({"$patch": "delete"}), deployment_schema()).unwrap(),
            None
        );
    }

    #[test]
    fn shape_mismatches_are_errors() {
        let t = json!({"spec": {"replicas": 1}});
        let err = strategic_merge(
            &t,
            &json!({"spec": {"replicas": {"a": 1}}}),
            deployment_schema(),
        )
        .unwrap_err();
        assert!(err.contains("spec.replicas"), "{err}");
    }
}
