//! Object identity and the desired objects as the reconciler applies them: validated,
//! labelled with the environment, and stamped with a hash of what was rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// Label on every object baton applies; the value is the environment name. Live objects are
/// listed by it, one list per kind.
pub const ENV_LABEL: &str = "baton.dev/environment";
/// Annotation holding the hash of the rendered object last applied.
pub const HASH_ANNOTATION: &str = "baton.dev/applied-hash";
/// Annotation that lets baton delete and re-create an object when the API server refuses a
/// change to an immutable field (set to `"true"`).
pub const REPLACE_ANNOTATION: &str = "baton.dev/replace";
/// Annotation that keeps an object out of pruning when set to `disabled`.
pub const PRUNE_ANNOTATION: &str = "baton.dev/prune";

/// Which object: group, kind, namespace (none for cluster-scoped) and name. Versions are not
/// part of identity: `apps/v1` and `apps/v1beta2` Deployments are the same object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// Flux's inventory form, `<namespace>_<name>_<group>_<kind>`. Only the name can contain
    /// `_` (RBAC names such as `system:reader_x.y`; namespaces are DNS labels, groups DNS
    /// subdomains, kinds identifiers), so the text stays readable by older inventories' rules.
    pub fn to_inventory(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace.as_deref().unwrap_or(""),
            self.name,
            self.group,
            self.kind
        )
    }

    /// Parse [`ObjectId::to_inventory`]: the namespace up to the first `_`, the group and
    /// kind after the last two, the name (which may hold `_`) in between.
    pub fn from_inventory(s: &str) -> Option<Self> {
        let (ns, rest) = s.split_once('_')?;
        let (rest, kind) = rest.rsplit_once('_')?;
        let (name, group) = rest.rsplit_once('_')?;
        if name.is_empty() || kind.is_empty() {
            return None;
        }
        Some(Self {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.to_string(),
        })
    }

    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.kind == "Namespace"
    }

    pub fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.kind == "CustomResourceDefinition"
    }
}

/// `Kind/namespace/name` (or `Kind/name`), with the group when it is not core or a
/// well-known one: what people type after `kubectl get`.
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let builtin = matches!(
            self.group.as_str(),
            "" | "apps" | "batch" | "rbac.authorization.k8s.io" | "networking.k8s.io"
        );
        if builtin {
            write!(f, "{}", self.kind)?;
        } else {
            write!(f, "{}.{}", self.kind, self.group)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, "/{ns}/{}", self.name),
            None => write!(f, "/{}", self.name),
        }
    }
}

/// `group/version` split; the core group is empty.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// One rendered object, validated and ready to apply.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub api_version: String,
    pub kind: String,
    /// As rendered; made definite once discovery says whether the kind is namespaced.
    pub namespace: Option<String>,
    pub name: String,
    /// Hash of the rendered object (canonical JSON), kept in [`HASH_ANNOTATION`].
    pub hash: String,
    /// The object to apply: the rendered one plus [`ENV_LABEL`] and [`HASH_ANNOTATION`].
    pub object: Value,
}

impl DesiredObject {
    pub fn group(&self) -> &str {
        split_api_version(&self.api_version).0
    }

    pub fn id(&self) -> ObjectId {
        ObjectId {
            group: self.group().to_string(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Settle the namespace once the scope is known: namespaced objects without one go to
    /// `default` (as kubectl does), cluster-scoped ones lose a stray one.
    pub fn set_scope(&mut self, namespaced: bool) {
        self.namespace = if namespaced {
            Some(self.namespace.take().unwrap_or_else(|| "default".into()))
        } else {
            None
        };
        let meta = self.object["metadata"]
            .as_object_mut()
            .expect("validated: metadata is an object");
        match &self.namespace {
            Some(ns) => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
            None => {
                meta.remove("namespace");
            }
        }
    }

    /// Whether the object may be deleted and re-created to change an immutable field.
    pub fn replaceable(&self) -> bool {
        self.object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REPLACE_ANNOTATION))
            .and_then(Value::as_str)
            == Some("true")
    }

    /// Container images of a pod-bearing object (Deployment, StatefulSet, DaemonSet,
    /// ReplicaSet, Job, CronJob, Pod), init containers included.
    pub fn images(&self) -> Vec<String> {
        pod_images(&self.object)
    }
}

/// Container images in an object's pod spec, wherever the kind keeps it.
pub fn pod_images(object: &Value) -> Vec<String> {
    let spec = pod_spec(object);
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.and_then(|s| s.get(list)).and_then(Value::as_array) {
            out.extend(
                cs.iter()
                    .filter_map(|c| c.get("image").and_then(Value::as_str))
                    .map(str::to_string),
            );
        }
    }
    out
}

fn pod_spec(object: &Value) -> Option<&Value> {
    match object.get("kind").and_then(Value::as_str)? {
        "Pod" => object.get("spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => object.pointer("/spec/template/spec"),
    }
}

/// Why the input cannot be applied. Every problem is listed, and nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// Position in the rendered list (0-based).
    pub index: usize,
    /// `Kind/name` when known.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "object #{} ({o}): {}", self.index + 1, self.message),
            None => write!(f, "object #{}: {}", self.index + 1, self.message),
        }
    }
}

/// Validate rendered objects and prepare them for apply. Fails with every problem found:
/// a partial environment is never applied.
pub fn prepare(env: &str, objects: &[Value]) -> Result<Vec<DesiredObject>, Vec<InputProblem>> {
    prepare_owned(env, objects.to_vec())
}

/// [`prepare`], taking the objects by value: each becomes its [`DesiredObject`] without a
/// copy (an environment of 1,000 Deployments is megabytes of JSON values).
pub fn prepare_owned(
    env: &str,
    objects: Vec<Value>,
) -> Result<Vec<DesiredObject>, Vec<InputProblem>> {
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(objects.len());
    let mut seen: BTreeMap<(String, String, Option<String>, String), usize> = BTreeMap::new();
    for (index, mut object) in objects.into_iter().enumerate() {
        let text = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind, name) =
            (text("/apiVersion"), text("/kind"), text("/metadata/name"));
        let (api_version, kind, name) = (api_version.as_str(), kind.as_str(), name.as_str());
        let label = (!kind.is_empty() && !name.is_empty()).then(|| format!("{kind}/{name}"));
        let mut problem = |message: String| {
            problems.push(InputProblem {
                index,
                object: label.clone(),
                message,
            })
        };
        if !object.is_object() || !object["metadata"].is_object() {
            problem("not a Kubernetes object (needs apiVersion, kind and metadata)".into());
            continue;
        }
        if api_version.is_empty() || kind.is_empty() {
            problem("apiVersion and kind are required".into());
            continue;
        }
        if name.is_empty() {
            problem("metadata.name is required (generateName is not supported: baton must know the name to prune it)".into());
            continue;
        }
        if kind == "List" || (kind.ends_with("List") && object.get("items").is_some()) {
            problem("lists are not applied as objects; render their items".into());
            continue;
        }
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let group = split_api_version(api_version).0.to_string();
        let key = (group, kind.to_string(), namespace.clone(), name.to_string());
        if let Some(first) = seen.insert(key, index) {
            problem(format!("duplicate of object #{}", first + 1));
            continue;
        }
        let hash = hash_object(&object);
        let meta = object["metadata"].as_object_mut().expect("checked above");
        for noise in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(noise);
        }
        insert_string(meta, "labels", ENV_LABEL, env);
        insert_string(meta, "annotations", HASH_ANNOTATION, &hash);
        out.push(DesiredObject {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
            hash,
            object,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn insert_string(meta: &mut Map<String, Value>, map: &str, key: &str, value: &str) {
    let entry = meta.entry(map).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry
        .as_object_mut()
        .expect("made an object")
        .insert(key.into(), Value::String(value.into()));
}

/// A stable hash of an object: SHA-256 over its JSON with keys sorted, so that key order in
/// the rendered YAML does not matter. 32 hex digits are plenty to tell versions apart.
pub fn hash_object(object: &Value) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    write_canonical(object, &mut hasher);
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

fn write_canonical(value: &Value, out: &mut sha2::Sha256) {
    use sha2::Digest as _;
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.update(b"{");
            for (k, v) in sorted {
                out.update(serde_json::to_string(k).expect("string").as_bytes());
                out.update(b":");
                write_canonical(v, out);
                out.update(b",");
            }
            out.update(b"}");
        }
        Value::Array(items) => {
            out.update(b"[");
            for v in items {
                write_canonical(v, out);
                out.update(b",");
            }
            out.update(b"]");
        }
        other => out.update(other.to_string().as_bytes()),
    }
}

/// The object ids in a set of desired objects.
pub fn ids(objects: &[DesiredObject]) -> BTreeSet<ObjectId> {
    objects.iter().map(DesiredObject::id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}, "data": {"a": "1"}})
    }

    #[test]
    fn inventory_ids_round_trip_for_namespaced_and_cluster_objects() {
        for id in [
            ObjectId {
                group: "apps".into(),
                kind: "Deployment".into(),
                namespace: Some("shop-dev".into()),
                name: "web".into(),
            },
            ObjectId {
                group: "".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: "shop-dev".into(),
            },
        ] {
            assert_eq!(ObjectId::from_inventory(&id.to_inventory()), Some(id));
        }
        assert_eq!(ObjectId::from_inventory("a_b_c"), None);
        // Only a name can hold `_` (RBAC names do).
        assert_eq!(
            ObjectId::from_inventory("a_b_c_d_e").map(|id| id.name),
            Some("b_c".to_string())
        );
    }

    #[test]
    fn ids_read_like_kubectl_arguments() {
        let id = ObjectId {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        assert_eq!(id.to_string(), "Deployment/shop/web");
        let crd = ObjectId {
            group: "example.com".into(),
            kind: "Widget".into(),
            namespace: None,
            name: "w".into(),
        };
        assert_eq!(crd.to_string(), "Widget.example.com/w");
    }

    #[test]
    fn the_hash_ignores_key_order_but_not_values() {
        let a = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
        let b = json!({"b": {"d": "x", "c": [1, 2]}, "a": 1});
        let c = json!({"b": {"d": "x", "c": [2, 1]}, "a": 1});
        assert_eq!(hash_object(&a), hash_object(&b));
        assert_ne!(hash_object(&a), hash_object(&c));
    }

    #[test]
    fn prepared_objects_carry_the_environment_label_and_the_rendered_hash() {
        let objects = prepare("dev", &[cm("a")]).unwrap();
        let o = &objects[0];
        assert_eq!(o.object["metadata"]["labels"][ENV_LABEL], "dev");
        assert_eq!(o.object["metadata"]["annotations"][HASH_ANNOTATION], o.hash);
        assert_eq!(o.hash, hash_object(&cm("a")));
        assert_eq!(o.id().to_string(), "ConfigMap/shop/a");
    }

    #[test]
    fn every_problem_in_the_input_is_reported_and_nothing_is_prepared() {
        let problems = prepare(
            "dev",
            &[
                cm("a"),
                json!({"kind": "ConfigMap", "metadata": {"name": "b"}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}}),
                cm("a"),
                json!("text"),
            ],
        )
        .unwrap_err();
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(messages[0].starts_with("object #2 (ConfigMap/b): apiVersion"));
        assert!(messages[1].contains("metadata.name is required"));
        assert_eq!(
            messages[2],
            "object #4 (ConfigMap/a): duplicate of object #1"
        );
        assert!(messages[3].starts_with("object #5: not a Kubernetes object"));
    }

    #[test]
    fn scope_defaults_the_namespace_or_drops_a_stray_one() {
        let mut objects = prepare(
            "dev",
            &[
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}}),
            ],
        )
        .unwrap();
        objects[0].set_scope(true);
        objects[1].set_scope(false);
        assert_eq!(objects[0].object["metadata"]["namespace"], "default");
        assert_eq!(objects[0].id().namespace.as_deref(), Some("default"));
        assert!(objects[1].object["metadata"].get("namespace").is_none());
        assert_eq!(objects[1].id().namespace, None);
    }

    #[test]
    fn images_are_found_in_every_pod_bearing_kind() {
        let dep = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"image": "init:1"}], "containers": [{"image": "web:1"}, {"image": "side:2"}]}}}});
        assert_eq!(pod_images(&dep), ["init:1", "web:1", "side:2"]);
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "c:1"}]}}}}}});
        assert_eq!(pod_images(&cron), ["c:1"]);
        let pod = json!({"kind": "Pod", "spec": {"containers": [{"image": "p:1"}]}});
        assert_eq!(pod_images(&pod), ["p:1"]);
        assert!(pod_images(&json!({"kind": "ConfigMap"})).is_empty());
    }
}
