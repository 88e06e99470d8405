//! Field ownership (`metadata.managedFields`): which of the fields baton renders belong to
//! another manager that baton leaves alone.
//!
//! A workload's `.spec.replicas` written through the `/scale` subresource (the
//! HorizontalPodAutoscaler controller, `kubectl scale`, KEDA through its HPA) is that
//! manager's once baton no longer owns it: baton neither re-applies it nor reports it as drift.
//! Fields other managers change through the main resource (`kubectl edit`) are still drift.

use serde_json::{Map, Value};

/// Field managers of the tools baton takes objects over from: client-side `kubectl apply`
/// (and what it left from before server-side apply), Helm 3, Flux, Argo CD.
const ADOPTED: [&str; 6] = [
    "kubectl-client-side-apply",
    "before-first-apply",
    "helm",
    "kustomize-controller",
    "argocd-controller",
    "argocd-application-controller",
];

/// Annotation client-side `kubectl apply` keeps its last applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// After baton's first apply of an object another tool made: a JSON patch that hands the
/// fields of that tool's managers (main resource only) to baton's apply entry and drops the
/// `last-applied` annotation (a merge patch), so that a field later removed from Git is removed
/// from the object (as Flux's `ssa` does). `None` when there is nothing to take over.
pub fn adoption_patch(live: &Value, manager: &str) -> Option<Value> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    let foreign = |e: &Value| {
        e["manager"]
            .as_str()
            .is_some_and(|m| m != manager && ADOPTED.contains(&m))
            && e.get("subresource").is_none_or(|s| s == "")
    };
    let ours = |e: &Value| {
        e["manager"] == manager
            && e["operation"] == "Apply"
            && e.get("subresource").is_none_or(|s| s == "")
    };
    let last_applied = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_some();
    if !entries.iter().any(foreign) && !last_applied {
        return None;
    }
    let mut fields = entries
        .iter()
        .find(|e| ours(e))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| Value::Object(Map::new()));
    for e in entries.iter().filter(|e| foreign(e)) {
        merge(&mut fields, &e["fieldsV1"]);
    }
    let mut kept: Vec<Value> = entries
        .iter()
        .filter(|e| !foreign(e) && !ours(e))
        .cloned()
        .collect();
    if let Some(e) = entries.iter().find(|e| ours(e)) {
        let mut e = e.clone();
        e["fieldsV1"] = fields;
        kept.push(e);
    }
    // A merge patch: lists (managedFields) are replaced whole; `null` removes the annotation,
    // which is not in baton's fields.
    let mut patch = serde_json::json!({"metadata": {"managedFields": kept}});
    if last_applied {
        patch["metadata"]["annotations"] = serde_json::json!({LAST_APPLIED: null});
    }
    Some(patch)
}

/// Union of two `FieldsV1` sets.
fn merge(into: &mut Value, from: &Value) {
    let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) else {
        return;
    };
    for (k, v) in from {
        match into.get_mut(k) {
            Some(existing) => merge(existing, v),
            None => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Paths (map keys from the object's root) of leaf fields that a manager writing through the
/// `/scale` subresource owns and `manager` does not.
pub fn yielded(live: &Value, manager: &str) -> Vec<Vec<String>> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let fields_of = |keep: &dyn Fn(&Value) -> bool| {
        let mut out = Vec::new();
        for e in entries.iter().filter(|e| keep(e)) {
            if let Some(f) = e.get("fieldsV1").and_then(Value::as_object) {
                leaf_paths(f, &mut Vec::new(), &mut out);
            }
        }
        out
    };
    let ours =
        fields_of(&|e| e["manager"] == manager && e.get("subresource").is_none_or(|s| s == ""));
    fields_of(&|e| e["manager"] != manager && e["subresource"] == "scale")
        .into_iter()
        .filter(|p| !ours.contains(p))
        .collect()
}

/// Leaf paths of a `FieldsV1` set made of map keys (`f:name`); list items (`k:`, `v:`, `i:`)
/// are not followed.
fn leaf_paths(set: &Map<String, Value>, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, sub) in set {
        let Some(name) = key.strip_prefix("f:") else {
            continue;
        };
        path.push(name.to_string());
        match sub.as_object().filter(|m| m.keys().any(|k| k != ".")) {
            Some(m) => leaf_paths(m, path, out),
            None => out.push(path.clone()),
        }
        path.pop();
    }
}

/// Remove `paths` from `object` (a rendered object about to be applied or compared).
pub fn remove(object: &mut Value, paths: &[Vec<String>]) {
    for path in paths {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let pointer: String = parents.iter().map(|p| format!("/{p}")).collect();
        if let Some(m) = object.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            m.remove(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(baton_owns_replicas: bool) -> Value {
        let mut baton = json!({"f:spec": {"f:template": {"f:spec": {}}}});
        if baton_owns_replicas {
            baton["f:spec"]["f:replicas"] = json!({});
        }
        json!({"metadata": {"managedFields": [
            {"manager": "baton", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": baton},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-edit", "operation": "Update",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:paused": {}}}},
        ]}})
    }

    #[test]
    fn replicas_written_through_scale_are_yielded_once_baton_no_longer_owns_them() {
        assert_eq!(yielded(&live(false), "baton"), [vec!["spec", "replicas"]]);
        assert!(yielded(&live(true), "baton").is_empty());
        assert!(yielded(&json!({"metadata": {}}), "baton").is_empty());
        let mut object = json!({"spec": {"replicas": 2, "paused": false}});
        remove(&mut object, &yielded(&live(false), "baton"));
        assert_eq!(object, json!({"spec": {"paused": false}}));
    }
}
