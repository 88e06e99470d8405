//! Drift: does the live object still hold every field baton applied, with the same value?
//!
//! The comparison is a subset check (applied ⊆ live) because the API server adds defaults and
//! other managers own fields of their own; only fields baton set can drift. It is pure and
//! cheap, so a resync needs one list per kind and no dry-run writes.

use serde_json::Value;

/// Metadata the server owns or rewrites; never compared.
const IGNORED_METADATA: [&str; 6] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
];

/// Fields of `applied` that `live` lacks or holds with another value, as kubectl-style paths
/// (`.spec.template.spec.containers[name=web].image`). Empty: no drift.
pub fn differences(applied: &Value, live: &Value) -> Vec<String> {
    if applied.get("kind").and_then(Value::as_str) == Some("Secret")
        && applied.get("stringData").is_some()
    {
        return differences(&fold_string_data(applied), live);
    }
    let mut out = Vec::new();
    if let (Some(a), Some(l)) = (applied.as_object(), live.as_object()) {
        for (key, value) in a {
            match key.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    let empty = Value::Null;
                    let live_meta = l.get("metadata").unwrap_or(&empty);
                    if let Some(meta) = value.as_object() {
                        for (k, v) in meta {
                            if IGNORED_METADATA.contains(&k.as_str()) {
                                continue;
                            }
                            compare(v, live_meta.get(k), &mut format!(".metadata.{k}"), &mut out);
                        }
                    }
                }
                _ => compare(value, l.get(key), &mut format!(".{key}"), &mut out),
            }
        }
    }
    out
}

/// A Secret as the server stores it: `stringData` folded into `data`, base64-encoded.
fn fold_string_data(secret: &Value) -> Value {
    use base64::Engine as _;
    let mut out = secret.clone();
    let Some(Value::Object(strings)) = out.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return out;
    };
    let data = out
        .as_object_mut()
        .expect("a Secret is an object")
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            data.insert(
                k,
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn compare(applied: &Value, live: Option<&Value>, path: &mut String, out: &mut Vec<String>) {
    let Some(live) = live.filter(|l| !l.is_null()) else {
        // The server drops empty maps and lists, and zero values (`false`, `0`, `""`) of
        // fields with `omitempty`.
        if !is_empty(applied) && !is_zero(applied) {
            out.push(path.clone());
        }
        return;
    };
    match (applied, live) {
        (Value::Object(a), Value::Object(l)) => {
            for (k, v) in a {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                compare(v, l.get(k), path, out);
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(l)) => compare_lists(a, l, path, out),
        (a, l) => {
            if !scalar_eq(a, l, path) {
                out.push(path.clone());
            }
        }
    }
}

/// Keys that identify list items, in the order they are tried (Kubernetes' merge keys:
/// containers, env, volumes by `name`; ports by `containerPort` or `port`; mounts by
/// `mountPath`). A key is used only when every applied item has it, with distinct values.
const MERGE_KEYS: [&str; 6] = [
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "ip",
];

fn merge_key(items: &[Value]) -> Option<&'static str> {
    MERGE_KEYS.into_iter().find(|key| {
        let mut seen = std::collections::BTreeSet::new();
        items.iter().all(|item| {
            item.get(key)
                .filter(|v| v.is_string() || v.is_number())
                .is_some_and(|v| seen.insert(v.to_string()))
        })
    })
}

fn compare_lists(applied: &[Value], live: &[Value], path: &mut String, out: &mut Vec<String>) {
    if let Some(key) = merge_key(applied) {
        // Associative list: items other managers added are theirs, not drift.
        for item in applied {
            let id = &item[key];
            let len = path.len();
            let shown = id.as_str().map_or_else(|| id.to_string(), str::to_string);
            path.push_str(&format!("[{key}={shown}]"));
            let found = live.iter().find(|l| l.get(key) == Some(id));
            compare(item, found, path, out);
            path.truncate(len);
        }
        return;
    }
    if applied.len() != live.len() {
        out.push(path.clone());
        return;
    }
    for (i, (a, l)) in applied.iter().zip(live).enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        compare(a, Some(l), path, out);
        path.truncate(len);
    }
}

fn scalar_eq(applied: &Value, live: &Value, path: &str) -> bool {
    if applied == live {
        return true;
    }
    match (applied, live) {
        (Value::Number(a), Value::Number(l)) => a.as_f64() == l.as_f64(),
        // The server writes quantities canonically (`0.5` → `500m`, `1024Mi` → `1Gi`).
        (Value::String(_) | Value::Number(_), Value::String(l)) if is_quantity_path(path) => {
            let a = match applied {
                Value::String(s) => quantity(s),
                Value::Number(n) => n.as_f64(),
                _ => None,
            };
            a.is_some() && a == quantity(l)
        }
        _ => false,
    }
}

/// Fields that hold resource quantities: under `resources`, quota `hard`, `capacity`,
/// `overhead`, LimitRange `default`/`defaultRequest`/`min`/`max`/`maxLimitRequestRatio`, or
/// an `emptyDir`'s `sizeLimit`.
fn is_quantity_path(path: &str) -> bool {
    const PARENTS: [&str; 9] = [
        "resources",
        "hard",
        "capacity",
        "overhead",
        "default",
        "defaultRequest",
        "min",
        "max",
        "maxLimitRequestRatio",
    ];
    let mut segments = path.split('.').map(|s| s.split('[').next().unwrap_or(s));
    let last = path.rsplit('.').next().unwrap_or("");
    last == "sizeLimit" || segments.any(|s| PARENTS.contains(&s))
}

/// A resource quantity as a number (`500m` → 0.5, `1Gi` → 1073741824).
fn quantity(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f)))
        .unwrap_or((s, 1.0));
    let value: f64 = number.parse().ok()?;
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{
                    "name": "web", "image": image,
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "0.5", "memory": "64Mi"}},
                }]}}
            }
        })
    }

    /// What the API server hands back: defaults, status, server metadata, other managers.
    fn live(image: &str, replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "9",
                "generation": 3, "labels": {"app": "web", "other": "x"}, "managedFields": []},
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "template": {"spec": {"containers": [
                    {"name": "istio-proxy", "image": "proxy:1"},
                    {"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                     "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}},
                ]}}
            },
            "status": {"replicas": 1}
        })
    }

    #[test]
    fn defaults_server_metadata_and_other_managers_fields_are_not_drift() {
        assert_eq!(
            differences(&deployment("web:1", 2), &live("web:1", 2)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_changed_image_or_replica_count_is_drift_named_by_its_path() {
        assert_eq!(
            differences(&deployment("web:1", 2), &live("web:2", 5)),
            [
                ".spec.replicas",
                ".spec.template.spec.containers[name=web].image"
            ]
        );
    }

    #[test]
    fn a_removed_label_or_container_is_drift() {
        let mut l = live("web:1", 2);
        l["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        l["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .remove(1);
        assert_eq!(
            differences(&deployment("web:1", 2), &l),
            [
                ".metadata.labels.app",
                ".spec.template.spec.containers[name=web]"
            ]
        );
    }

    #[test]
    fn lists_without_a_merge_key_must_match_item_for_item() {
        let a = json!({"spec": {"args": ["--queue", "orders"]}});
        assert!(differences(&a, &json!({"spec": {"args": ["--queue", "orders"]}})).is_empty());
        assert_eq!(
            differences(&a, &json!({"spec": {"args": ["--queue", "orders", "-v"]}})),
            [".spec.args"]
        );
        assert_eq!(
            differences(&a, &json!({"spec": {"args": ["--queue", "jobs"]}})),
            [".spec.args[1]"]
        );
    }

    #[test]
    fn empty_maps_and_lists_the_server_drops_are_not_drift() {
        let a = json!({"metadata": {"annotations": {}}, "spec": {"tolerations": [], "x": null}});
        assert!(differences(&a, &json!({"metadata": {}, "spec": {}})).is_empty());
    }

    #[test]
    fn secret_string_data_compares_with_the_data_the_server_stores() {
        let a =
            json!({"kind": "Secret", "stringData": {"token": "s3cret"}, "data": {"raw": "eA=="}});
        let l = json!({"kind": "Secret", "data": {"token": "czNjcmV0", "raw": "eA=="}});
        assert!(differences(&a, &l).is_empty());
        let edited = json!({"kind": "Secret", "data": {"token": "b3RoZXI=", "raw": "eA=="}});
        assert_eq!(differences(&a, &edited), [".data.token"]);
    }

    #[test]
    fn zero_values_the_server_omits_are_not_drift_but_other_missing_values_are() {
        let a = json!({"spec": {"hostNetwork": false, "paused": false, "delay": 0, "name": "", "on": true}});
        assert_eq!(differences(&a, &json!({"spec": {}})), [".spec.on"]);
    }

    #[test]
    fn limit_range_defaults_and_size_limits_are_quantities() {
        let a = json!({"spec": {"limits": [{"default": {"cpu": "1000m", "memory": "0.5Gi"}}],
            "volumes": [{"name": "t", "emptyDir": {"sizeLimit": "1024Mi"}}]}});
        let l = json!({"spec": {"limits": [{"default": {"cpu": "1", "memory": "512Mi"}}],
            "volumes": [{"name": "t", "emptyDir": {"sizeLimit": "1Gi"}}]}});
        assert!(differences(&a, &l).is_empty());
    }

    #[test]
    fn quantities_compare_by_value_only_under_resources() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("1Gi"), quantity("1024Mi"));
        assert_eq!(quantity("abc"), None);
        let a = json!({"spec": {"resources": {"limits": {"memory": "1024Mi"}}, "label": "1k"}});
        let l = json!({"spec": {"resources": {"limits": {"memory": "1Gi"}}, "label": "1000"}});
        assert_eq!(differences(&a, &l), [".spec.label"]);
    }
}
