//! Resources and their identities, with the bookkeeping kustomize keeps while it builds
//! (previous names, applied prefixes and suffixes, generator behaviour) — kustomize stores
//! these in `internal.config.kubernetes.io/*` annotations; here they are plain fields.

use std::fmt;

use serde_json::{Map, Value};

use super::error::Location;

/// An API type: group, version, kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// Empty fields of `selector` match anything.
    pub fn is_selected_by(&self, group: &str, version: &str, kind: &str) -> bool {
        (group.is_empty() || self.group == group)
            && (version.is_empty() || self.version == version)
            && (kind.is_empty() || self.kind == kind)
    }

    /// Known (per the Kubernetes API kustomize ships) to be cluster-scoped.
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped(&self.group, &self.version, &self.kind)
    }

    /// kustomize's stable sort key for a GVK (`group_version_kind`, `~G` for no group).
    pub fn sort_key(&self) -> String {
        let g = if self.group.is_empty() {
            "~G"
        } else {
            &self.group
        };
        let v = if self.version.is_empty() {
            "~V"
        } else {
            &self.version
        };
        let k = if self.kind.is_empty() {
            "~K"
        } else {
            &self.kind
        };
        format!("{g}_{v}_{k}")
    }
}

impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.kind)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.kind)
        }
    }
}

/// The namespace kustomize uses for equality: cluster-scoped objects have none, and an empty
/// namespace is `default`.
pub const CLUSTER_SCOPE: &str = "_non_namespaceable_";

/// An object identity: type, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResId {
    pub gvk: Gvk,
    pub namespace: String,
    pub name: String,
}

impl ResId {
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped() {
            CLUSTER_SCOPE
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// Same type, name and effective namespace.
    pub fn equals(&self, other: &ResId) -> bool {
        self.gvk == other.gvk
            && self.name == other.name
            && self.effective_namespace() == other.effective_namespace()
    }
}

impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.gvk, self.name)
        } else {
            write!(f, "{} {}/{}", self.gvk, self.namespace, self.name)
        }
    }
}

/// A previous identity (kustomize records kind, name and *effective* namespace; the group and
/// version are the resource's current ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevId {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

/// What a generated ConfigMap/Secret does when one with the same id already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// No `behavior:` given (acts as `create`; kustomize records it as `unspecified`).
    #[default]
    Unspecified,
    Create,
    Merge,
    Replace,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Unspecified => "unspecified",
            Behavior::Create => "create",
            Behavior::Merge => "merge",
            Behavior::Replace => "replace",
        }
    }
}

/// Prefix of kustomize's build annotations (kept on resources while it builds, removed from
/// the output).
pub const INTERNAL_PREFIX: &str = "internal.config.kubernetes.io/";

/// A resource being built.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The object; always a mapping.
    pub value: Value,
    /// Where it came from (the file, or the kustomization of a generator).
    pub origin: Location,
    pub prev_ids: Vec<PrevId>,
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    /// Set on generated ConfigMaps/Secrets whose name gets a content hash.
    pub needs_hash: bool,
    /// Set on generated resources.
    pub behavior: Option<Behavior>,
    /// For generated objects: the `configuredBy` lines of kustomize's origin annotation.
    pub configured_by: Option<String>,
    /// kustomize's transformer annotation (a YAML list), when the build records it.
    pub transformations: String,
    /// Which step set each field (`baton render --explain`), when the build explains.
    pub trace: Option<Box<super::explain::Trace>>,
}

impl Resource {
    pub fn new(value: Value, origin: Location) -> Self {
        Resource {
            value,
            origin,
            prev_ids: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            behavior: None,
            configured_by: None,
            transformations: String::new(),
            trace: None,
        }
    }

    fn str_at(&self, path: &[&str]) -> &str {
        let mut v = &self.value;
        for p in path {
            match v.get(p) {
                Some(next) => v = next,
                None => return "",
            }
        }
        v.as_str().unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }

    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"])
    }

    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }

    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"])
    }

    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.api_version(), self.kind())
    }

    pub fn cur_id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }

    /// Previous identities, oldest first, as full ids.
    pub fn prev_res_ids(&self) -> Vec<ResId> {
        let gvk = self.gvk();
        self.prev_ids
            .iter()
            .map(|p| ResId {
                gvk: Gvk {
                    kind: p.kind.clone(),
                    ..gvk.clone()
                },
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            })
            .collect()
    }

    /// The original identity (before any rename).
    pub fn org_id(&self) -> ResId {
        self.prev_res_ids()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.cur_id())
    }

    /// Effective namespace of the original identity. Previous ids store the effective
    /// namespace already.
    pub fn org_effective_namespace(&self) -> String {
        match self.prev_ids.first() {
            Some(p) => p.namespace.clone(),
            None => self.cur_id().effective_namespace().to_string(),
        }
    }

    /// Does any identity (previous or current) equal `id`?
    pub fn matches_any_id(&self, id: &ResId) -> bool {
        // Cheap name test first: this runs for every resource on every patch and generator.
        if self.name() != id.name && !self.prev_ids.iter().any(|p| p.name == id.name) {
            return false;
        }
        if !self.prev_ids.is_empty() {
            let want_ns = id.effective_namespace();
            let gvk = self.gvk();
            let same_group_version = gvk.group == id.gvk.group && gvk.version == id.gvk.version;
            if same_group_version
                && self
                    .prev_ids
                    .iter()
                    .any(|p| p.name == id.name && p.namespace == want_ns && p.kind == id.gvk.kind)
            {
                return true;
            }
        }
        self.name() == id.name && self.cur_id().equals(id)
    }

    pub fn store_previous_id(&mut self) {
        let id = self.cur_id();
        let namespace = id.effective_namespace().to_string();
        self.prev_ids.push(PrevId {
            kind: id.gvk.kind,
            name: id.name,
            namespace,
        });
    }

    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let obj = object_mut(&mut self.value);
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        object_mut(meta)
    }

    pub fn set_name(&mut self, name: String) {
        self.metadata_mut()
            .insert("name".into(), Value::String(name));
    }

    pub fn set_namespace(&mut self, ns: &str) {
        if ns.is_empty() {
            self.metadata_mut().remove("namespace");
        } else {
            self.metadata_mut()
                .insert("namespace".into(), Value::String(ns.to_string()));
        }
    }

    pub fn set_kind(&mut self, kind: &str) {
        object_mut(&mut self.value).insert("kind".into(), Value::String(kind.to_string()));
    }

    /// `metadata.labels` (or `metadata.annotations`) as strings.
    pub fn string_map(&self, field: &str) -> Map<String, Value> {
        match self.value.get("metadata").and_then(|m| m.get(field)) {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(scalar_text(v))))
                .collect(),
            _ => Map::new(),
        }
    }

    pub fn labels(&self) -> Map<String, Value> {
        self.string_map("labels")
    }

    pub fn annotations(&self) -> Map<String, Value> {
        self.string_map("annotations")
    }

    /// Set `metadata.<field>` to a string map; an empty map removes the field.
    pub fn set_string_map(&mut self, field: &str, m: Map<String, Value>) {
        if m.is_empty() {
            self.metadata_mut().remove(field);
        } else {
            self.metadata_mut()
                .insert(field.to_string(), Value::Object(m));
        }
    }

    /// The build annotations kustomize would carry on this resource at this point of the
    /// build (`internal.config.kubernetes.io/previousNames` and the rest). Filters that see
    /// the whole object — JSON patches, replacements — see these too.
    pub fn build_annotations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let key = |k: &str| format!("{INTERNAL_PREFIX}{k}");
        if let Some(b) = self.behavior {
            out.push((key("generatorBehavior"), b.as_str().to_string()));
        }
        if self.needs_hash {
            out.push((key("needsHashSuffix"), "enabled".to_string()));
        }
        if !self.prefixes.is_empty() {
            out.push((key("prefixes"), self.prefixes.join(",")));
        }
        if !self.prev_ids.is_empty() {
            let join =
                |f: fn(&PrevId) -> &str| self.prev_ids.iter().map(f).collect::<Vec<_>>().join(",");
            out.push((key("previousKinds"), join(|p| &p.kind)));
            out.push((key("previousNames"), join(|p| &p.name)));
            out.push((key("previousNamespaces"), join(|p| &p.namespace)));
        }
        if !self.suffixes.is_empty() {
            out.push((key("suffixes"), self.suffixes.join(",")));
        }
        out
    }

    /// Run `f` on the object as kustomize holds it, build annotations included, then take
    /// them out again (changes to them are dropped, as kustomize restores its own; an
    /// annotations mapping left empty is removed, as in kustomize's output).
    pub fn with_build_annotations<T>(&mut self, f: impl FnOnce(&mut Value) -> T) -> T {
        let build = self.build_annotations();
        if !build.is_empty() {
            let meta = self.metadata_mut();
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if ann.is_null() {
                *ann = Value::Object(Map::new());
            }
            if let Value::Object(a) = ann {
                for (k, v) in build {
                    a.insert(k, Value::String(v));
                }
            }
        }
        let out = f(&mut self.value);
        if let Some(Value::Object(meta)) = self.value.get_mut("metadata")
            && let Some(Value::Object(a)) = meta.get_mut("annotations")
        {
            a.retain(|k, _| !k.starts_with(INTERNAL_PREFIX));
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
        out
    }

    /// Has the resource been emptied (a `$patch: delete`)?
    pub fn is_empty(&self) -> bool {
        match &self.value {
            Value::Object(m) => m.is_empty(),
            Value::Null => true,
            _ => false,
        }
    }
}

/// The text kustomize reads for a scalar when it wants a string.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => super::emit::format_number(n),
        other => other.to_string(),
    }
}

/// The mapping inside `v`, turning `v` into an empty mapping if it is something else.
pub fn object_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made it an object"),
    }
}

/// Kinds the Kubernetes API (as bundled with kustomize) defines as cluster-scoped. Kinds newer
/// than kustomize's bundled schema (ValidatingAdmissionPolicy and its binding) are namespaced
/// as far as kustomize knows, so `namespace:` sets one on them, as `kubectl kustomize` does.
fn is_cluster_scoped(group: &str, _version: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace")
            | ("", "Node")
            | ("", "PersistentVolume")
            | ("", "ComponentStatus")
            | ("rbac.authorization.k8s.io", "ClusterRole")
            | ("rbac.authorization.k8s.io", "ClusterRoleBinding")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
            )
            | (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration"
            )
            | ("storage.k8s.io", "StorageClass")
            | ("storage.k8s.io", "VolumeAttachment")
            | ("storage.k8s.io", "CSIDriver")
            | ("storage.k8s.io", "CSINode")
            | ("scheduling.k8s.io", "PriorityClass")
            | ("networking.k8s.io", "IngressClass")
            | ("node.k8s.io", "RuntimeClass")
            | ("policy", "PodSecurityPolicy")
            | ("extensions", "PodSecurityPolicy")
            | ("certificates.k8s.io", "CertificateSigningRequest")
            | ("flowcontrol.apiserver.k8s.io", "FlowSchema")
            | ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration")
            | ("authentication.k8s.io", "TokenReview")
            | ("authorization.k8s.io", "SelfSubjectAccessReview")
            | ("authorization.k8s.io", "SelfSubjectRulesReview")
            | ("authorization.k8s.io", "SubjectAccessReview")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: Value) -> Resource {
        Resource::new(v, Location::file("x.yaml"))
    }

    #[test]
    fn ids_compare_by_effective_namespace() {
        let a = res(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
        let b = res(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}),
        );
        assert!(a.cur_id().equals(&b.cur_id()));
        let ns = res(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "namespace": "x"}}),
        );
        assert_eq!(ns.cur_id().effective_namespace(), CLUSTER_SCOPE);
    }

    #[test]
    fn previous_ids_keep_the_original_identity() {
        let mut r = res(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        );
        r.store_previous_id();
        r.set_name("p-web".into());
        r.set_namespace("prod");
        assert_eq!(r.org_id().name, "web");
        let original = ResId {
            gvk: r.gvk(),
            namespace: String::new(),
            name: "web".into(),
        };
        assert!(r.matches_any_id(&original));
        assert_eq!(r.cur_id().to_string(), "apps/v1/Deployment prod/p-web");
    }
}
