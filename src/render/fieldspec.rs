//! Field specs — "in objects of this kind, the value at this path" — and kustomize's built-in
//! tables of them: where labels, annotations and namespaces go, and which fields hold names of
//! other objects. The traversal follows kustomize's `fieldspec` filter: `/`-separated path
//! (`\/` escapes a slash), sequences are walked element by element, and missing mappings are
//! created only when the spec says `create`.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::kustomization::FieldSpec;
use super::resource::Gvk;

fn fs(path: &str, group: &str, version: &str, kind: &str, create: bool) -> FieldSpec {
    FieldSpec {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        path: path.into(),
        create,
    }
}

/// Split a field-spec path on `/`, honouring `\/`.
pub fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'/') {
            cur.push('/');
            chars.next();
        } else if c == '/' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Does the spec apply to an object of this type?
pub fn matches_gvk(spec: &FieldSpec, gvk: &Gvk) -> bool {
    gvk.is_selected_by(&spec.group, &spec.version, &spec.kind)
}

/// What to create at the end of a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Never create (name references, images).
    Nothing,
    /// A scalar (namespace, replicas).
    Scalar,
    /// A mapping (labels, annotations).
    Map,
}

/// Walk `path` in `obj` and call `set` on every node it reaches. Intermediate mappings (and
/// the final node, as `create`) are created when the spec allows. Errors describe the path.
pub fn visit(
    obj: &mut Value,
    spec: &FieldSpec,
    create: Create,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let path = split_path(&spec.path);
    walk(obj, &path, spec.create, create, set)
}

fn walk(
    node: &mut Value,
    path: &[String],
    may_create: bool,
    create: Create,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    if path.is_empty() {
        return set(node);
    }
    match node {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                walk(item, path, may_create, create, set)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            let (name, is_seq) = match path[0].strip_suffix("[]") {
                Some(n) => (n, true),
                None => (path[0].as_str(), false),
            };
            if name.is_empty() {
                return Err("cannot set or create an empty field name".into());
            }
            let last = path.len() == 1;
            let creating = may_create && create != Create::Nothing && !is_seq;
            if !map.contains_key(name) {
                if !creating {
                    return Ok(());
                }
                let fresh = if last && create == Create::Scalar {
                    Value::Null
                } else {
                    Value::Object(Map::new())
                };
                map.insert(name.to_string(), fresh);
            }
            let Some(field) = map.get_mut(name) else {
                return Ok(());
            };
            // A null field becomes the kind being created.
            if field.is_null() {
                if is_seq {
                    *field = Value::Array(Vec::new());
                } else if creating && !(last && create == Create::Scalar) {
                    *field = Value::Object(Map::new());
                }
            }
            walk(field, &path[1..], may_create, create, set)
        }
        _ => Err(format!(
            "expected a mapping or list at `{}`, found a scalar",
            path.join("/")
        )),
    }
}

/// Does `obj` have a value at `path` (split with [`split_path`]), without creating anything?
pub fn has_field_split(obj: &Value, path: &[String]) -> bool {
    fn has(node: &Value, path: &[String]) -> bool {
        if path.is_empty() {
            return true;
        }
        match node {
            Value::Array(items) => items.iter().any(|i| has(i, path)),
            Value::Object(m) => {
                let name = path[0].strip_suffix("[]").unwrap_or(&path[0]);
                m.get(name).is_some_and(|v| has(v, &path[1..]))
            }
            _ => false,
        }
    }
    has(obj, path)
}

/// The workload kinds whose pod template sits at `spec/template`.
const TEMPLATE_KINDS: [&str; 5] = [
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "StatefulSet",
    "Job",
];

/// `metadata/labels` and the pod-template labels (kustomize `templateLabels`).
pub fn template_labels() -> &'static [FieldSpec] {
    static T: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    T.get_or_init(|| {
        vec![
            fs("metadata/labels", "", "", "", true),
            fs(
                "spec/template/metadata/labels",
                "",
                "v1",
                "ReplicationController",
                true,
            ),
            fs("spec/template/metadata/labels", "", "", "Deployment", true),
            fs("spec/template/metadata/labels", "", "", "ReplicaSet", true),
            fs("spec/template/metadata/labels", "", "", "DaemonSet", true),
            fs(
                "spec/template/metadata/labels",
                "apps",
                "",
                "StatefulSet",
                true,
            ),
            fs(
                "spec/volumeClaimTemplates[]/metadata/labels",
                "apps",
                "",
                "StatefulSet",
                true,
            ),
            fs("spec/template/metadata/labels", "batch", "", "Job", true),
            fs(
                "spec/jobTemplate/metadata/labels",
                "batch",
                "",
                "CronJob",
                true,
            ),
            fs(
                "spec/jobTemplate/spec/template/metadata/labels",
                "batch",
                "",
                "CronJob",
                true,
            ),
        ]
    })
}

/// Where `commonLabels` (and `labels` with `includeSelectors`) go: selectors and templates.
pub fn common_labels() -> &'static [FieldSpec] {
    static T: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    T.get_or_init(|| {
        let affinity = [
            "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
            "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
            "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
            "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
            "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels",
        ];
        let mut v = vec![
            fs("spec/selector", "", "v1", "Service", true),
            fs("spec/selector", "", "v1", "ReplicationController", true),
            fs("spec/selector/matchLabels", "", "", "Deployment", true),
        ];
        v.extend(affinity.iter().map(|p| fs(p, "apps", "", "Deployment", false)));
        v.push(fs("spec/selector/matchLabels", "", "", "ReplicaSet", true));
        v.push(fs("spec/selector/matchLabels", "", "", "DaemonSet", true));
        v.push(fs("spec/selector/matchLabels", "apps", "", "StatefulSet", true));
        v.push(fs("spec/volumeClaimTemplates[]/metadata/labels", "apps", "", "StatefulSet", true));
        v.extend(affinity.iter().map(|p| fs(p, "apps", "", "StatefulSet", false)));
        v.push(fs("spec/selector/matchLabels", "batch", "", "Job", false));
        v.push(fs("spec/jobTemplate/spec/selector/matchLabels", "batch", "", "CronJob", false));
        v.push(fs("spec/selector/matchLabels", "policy", "", "PodDisruptionBudget", false));
        v.push(fs("spec/podSelector/matchLabels", "networking.k8s.io", "", "NetworkPolicy", false));
        v.push(fs("spec/ingress/from/podSelector/matchLabels", "networking.k8s.io", "", "NetworkPolicy", false));
        v.push(fs("spec/egress/to/podSelector/matchLabels", "networking.k8s.io", "", "NetworkPolicy", false));
        for t in template_labels() {
            if !v.iter().any(|x| x.path == t.path && x.group == t.group && x.version == t.version && x.kind == t.kind) {
                v.push(t.clone());
            }
        }
        v
    })
}

/// Where `commonAnnotations` go.
pub fn common_annotations() -> &'static [FieldSpec] {
    static T: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    T.get_or_init(|| {
        vec![
            fs("metadata/annotations", "", "", "", true),
            fs(
                "spec/template/metadata/annotations",
                "",
                "v1",
                "ReplicationController",
                true,
            ),
            fs(
                "spec/template/metadata/annotations",
                "",
                "",
                "Deployment",
                true,
            ),
            fs(
                "spec/template/metadata/annotations",
                "",
                "",
                "ReplicaSet",
                true,
            ),
            fs(
                "spec/template/metadata/annotations",
                "",
                "",
                "DaemonSet",
                true,
            ),
            fs(
                "spec/template/metadata/annotations",
                "",
                "",
                "StatefulSet",
                true,
            ),
            fs(
                "spec/template/metadata/annotations",
                "batch",
                "",
                "Job",
                true,
            ),
            fs(
                "spec/jobTemplate/metadata/annotations",
                "batch",
                "",
                "CronJob",
                true,
            ),
            fs(
                "spec/jobTemplate/spec/template/metadata/annotations",
                "batch",
                "",
                "CronJob",
                true,
            ),
        ]
    })
}

/// Namespace fields besides `metadata/namespace` (which has its own rule).
pub fn namespace_fields() -> &'static [FieldSpec] {
    static T: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    T.get_or_init(|| {
        vec![
            fs("metadata/name", "", "", "Namespace", true),
            fs(
                "spec/service/namespace",
                "apiregistration.k8s.io",
                "",
                "APIService",
                true,
            ),
            fs(
                "spec/conversion/webhook/clientConfig/service/namespace",
                "apiextensions.k8s.io",
                "",
                "CustomResourceDefinition",
                false,
            ),
        ]
    })
}

/// Where `replicas` go.
pub fn replicas() -> &'static [FieldSpec] {
    static T: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    T.get_or_init(|| {
        [
            "Deployment",
            "ReplicationController",
            "ReplicaSet",
            "StatefulSet",
        ]
        .iter()
        .map(|k| fs("spec/replicas", "", "", k, true))
        .collect()
    })
}

/// Where `namePrefix` and `nameSuffix` go by default.
pub fn name_affix() -> &'static [FieldSpec] {
    static T: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    T.get_or_init(|| vec![fs("metadata/name", "", "", "", false)])
}

/// kustomize's `effectivelyEquals` as `FsSlice.MergeOne` calls it: the same path, and the
/// incoming spec's type selects the existing one's (so an existing `metadata/name` of
/// `Deployment` covers an incoming `metadata/name` of every kind, but not the reverse).
fn covered_by(existing: &FieldSpec, incoming: &FieldSpec) -> bool {
    existing.path == incoming.path && existing.group_version_kind_selected_by(incoming)
}

impl FieldSpec {
    fn group_version_kind_selected_by(&self, selector: &FieldSpec) -> bool {
        (selector.group.is_empty() || self.group == selector.group)
            && (selector.version.is_empty() || self.version == selector.version)
            && (selector.kind.is_empty() || self.kind == selector.kind)
    }
}

/// Merge `more` into `into` as kustomize's `FsSlice.MergeAll` does: specs already covered are
/// skipped, and one that differs only in `create` is kustomize's `conflicting fieldspecs`.
pub fn merge_into(into: &mut Vec<FieldSpec>, more: &[FieldSpec]) -> Result<(), String> {
    for f in more {
        match into.iter().find(|x| covered_by(x, f)) {
            Some(x) if x.create != f.create => {
                return Err(format!(
                    "conflicting fieldspecs for path {} (create: {} and {})",
                    f.path, x.create, f.create
                ));
            }
            Some(_) => {}
            None => into.push(f.clone()),
        }
    }
    Ok(())
}

/// kustomize's type order for field-spec tables (`Gvk.IsLessThan`): kinds it orders first,
/// then every other kind (and none), then webhooks; ties by `group_version_kind` text.
fn table_key(f: &FieldSpec) -> (i32, String) {
    const FIRST: [&str; 22] = [
        "Namespace",
        "ResourceQuota",
        "StorageClass",
        "CustomResourceDefinition",
        "ServiceAccount",
        "PodSecurityPolicy",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "ConfigMap",
        "Secret",
        "Endpoints",
        "Service",
        "LimitRange",
        "PriorityClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Deployment",
        "StatefulSet",
        "CronJob",
        "PodDisruptionBudget",
    ];
    const LAST: [&str; 2] = [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let order = if let Some(i) = FIRST.iter().position(|k| *k == f.kind) {
        i as i32 - FIRST.len() as i32
    } else if let Some(i) = LAST.iter().position(|k| *k == f.kind) {
        1 + i as i32
    } else {
        0
    };
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    (
        order,
        format!(
            "{}_{}_{}",
            or(&f.group, "~G"),
            or(&f.version, "~V"),
            or(&f.kind, "~K")
        ),
    )
}

/// Sort a table as kustomize's `sortFields` does after every merge.
pub fn sort_table(t: &mut [FieldSpec]) {
    t.sort_by_cached_key(table_key);
}

/// `TransformerConfig.Merge` for one table: merge, then sort. Which of two overlapping specs
/// survives depends on this order, as in kustomize.
pub fn merge_table(into: &mut Vec<FieldSpec>, more: &[FieldSpec]) -> Result<(), String> {
    merge_into(into, more)?;
    sort_table(into);
    Ok(())
}

/// One name-reference rule: objects of `target` type are referred to by name from `referrers`.
#[derive(Debug, Clone)]
pub struct BackRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub referrers: Vec<FieldSpec>,
}

/// kustomize's built-in name-reference table (which fields hold the names of which kinds).
pub fn name_references() -> &'static [BackRef] {
    static T: OnceLock<Vec<BackRef>> = OnceLock::new();
    T.get_or_init(build_name_references)
}

fn pod_spec_paths(suffixes: &[&str], kinds_with_template: &[&str]) -> Vec<FieldSpec> {
    let mut out = Vec::new();
    for s in suffixes {
        out.push(fs(&format!("spec/{s}"), "", "v1", "Pod", false));
    }
    for s in suffixes {
        out.push(fs(
            &format!("template/spec/{s}"),
            "",
            "",
            "PodTemplate",
            false,
        ));
    }
    for k in kinds_with_template {
        for s in suffixes {
            out.push(fs(&format!("spec/template/spec/{s}"), "", "", k, false));
        }
    }
    for s in suffixes {
        out.push(fs(
            &format!("spec/jobTemplate/spec/template/spec/{s}"),
            "",
            "",
            "CronJob",
            false,
        ));
    }
    out
}

fn build_name_references() -> Vec<BackRef> {
    let hpa = |kind: &'static str| BackRef {
        group: "".into(),
        version: "".into(),
        kind: kind.into(),
        referrers: vec![fs(
            "spec/scaleTargetRef/name",
            "",
            "",
            "HorizontalPodAutoscaler",
            false,
        )],
    };
    let mut config_map = pod_spec_paths(
        &[
            "volumes/configMap/name",
            "containers/env/valueFrom/configMapKeyRef/name",
            "initContainers/env/valueFrom/configMapKeyRef/name",
            "containers/envFrom/configMapRef/name",
            "initContainers/envFrom/configMapRef/name",
            "volumes/projected/sources/configMap/name",
        ],
        &TEMPLATE_KINDS,
    );
    config_map.extend([
        fs("spec/configSource/configMap", "", "", "Node", false),
        fs("rules/resourceNames", "", "", "Role", false),
        fs("rules/resourceNames", "", "", "ClusterRole", false),
        fs(
            "metadata/annotations/nginx.ingress.kubernetes.io\\/fastcgi-params-configmap",
            "",
            "",
            "Ingress",
            false,
        ),
    ]);
    let mut secret = pod_spec_paths(
        &[
            "volumes/secret/secretName",
            "containers/env/valueFrom/secretKeyRef/name",
            "initContainers/env/valueFrom/secretKeyRef/name",
            "containers/envFrom/secretRef/name",
            "initContainers/envFrom/secretRef/name",
            "imagePullSecrets/name",
            "volumes/projected/sources/secret/name",
        ],
        &TEMPLATE_KINDS,
    );
    secret.extend([
        fs("spec/tls/secretName", "", "", "Ingress", false),
        fs(
            "metadata/annotations/ingress.kubernetes.io\\/auth-secret",
            "",
            "",
            "Ingress",
            false,
        ),
        fs(
            "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-secret",
            "",
            "",
            "Ingress",
            false,
        ),
        fs(
            "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-tls-secret",
            "",
            "",
            "Ingress",
            false,
        ),
        fs("imagePullSecrets/name", "", "", "ServiceAccount", false),
        fs("parameters/secretName", "", "", "StorageClass", false),
        fs("parameters/adminSecretName", "", "", "StorageClass", false),
        fs("parameters/userSecretName", "", "", "StorageClass", false),
        fs("parameters/secretRef", "", "", "StorageClass", false),
        fs("rules/resourceNames", "", "", "Role", false),
        fs("rules/resourceNames", "", "", "ClusterRole", false),
        fs(
            "spec/template/spec/containers/env/valueFrom/secretKeyRef/name",
            "serving.knative.dev",
            "v1",
            "Service",
            false,
        ),
        fs(
            "spec/azureFile/secretName",
            "",
            "",
            "PersistentVolume",
            false,
        ),
    ]);
    let workload_field = |field: &str, kinds: &[&str]| -> Vec<FieldSpec> {
        let mut v = vec![fs(&format!("spec/{field}"), "", "", "Pod", false)];
        for k in kinds {
            if *k == "CronJob" {
                v.push(fs(
                    &format!("spec/jobTemplate/spec/template/spec/{field}"),
                    "",
                    "",
                    k,
                    false,
                ));
            } else {
                v.push(fs(&format!("spec/template/spec/{field}"), "", "", k, false));
            }
        }
        v
    };
    let workloads = [
        "StatefulSet",
        "Deployment",
        "ReplicationController",
        "CronJob",
        "Job",
        "DaemonSet",
    ];
    let mut service_account = vec![
        fs(
            "subjects",
            "rbac.authorization.k8s.io",
            "",
            "RoleBinding",
            false,
        ),
        fs(
            "subjects",
            "rbac.authorization.k8s.io",
            "",
            "ClusterRoleBinding",
            false,
        ),
    ];
    service_account.extend(workload_field("serviceAccountName", &workloads));
    vec![
        hpa("Deployment"),
        hpa("ReplicationController"),
        hpa("ReplicaSet"),
        hpa("StatefulSet"),
        BackRef {
            group: "".into(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            referrers: config_map,
        },
        BackRef {
            group: "".into(),
            version: "v1".into(),
            kind: "Secret".into(),
            referrers: secret,
        },
        BackRef {
            group: "".into(),
            version: "v1".into(),
            kind: "Service".into(),
            referrers: vec![
                fs("spec/serviceName", "apps", "", "StatefulSet", false),
                fs(
                    "spec/rules/http/paths/backend/serviceName",
                    "",
                    "",
                    "Ingress",
                    false,
                ),
                fs("spec/backend/serviceName", "", "", "Ingress", false),
                fs(
                    "spec/rules/http/paths/backend/service/name",
                    "",
                    "",
                    "Ingress",
                    false,
                ),
                fs("spec/defaultBackend/service/name", "", "", "Ingress", false),
                fs(
                    "spec/service/name",
                    "apiregistration.k8s.io",
                    "",
                    "APIService",
                    false,
                ),
                fs(
                    "webhooks/clientConfig/service",
                    "admissionregistration.k8s.io",
                    "",
                    "ValidatingWebhookConfiguration",
                    false,
                ),
                fs(
                    "webhooks/clientConfig/service",
                    "admissionregistration.k8s.io",
                    "",
                    "MutatingWebhookConfiguration",
                    false,
                ),
            ],
        },
        BackRef {
            group: "rbac.authorization.k8s.io".into(),
            version: "".into(),
            kind: "Role".into(),
            referrers: vec![fs(
                "roleRef/name",
                "rbac.authorization.k8s.io",
                "",
                "RoleBinding",
                false,
            )],
        },
        BackRef {
            group: "rbac.authorization.k8s.io".into(),
            version: "".into(),
            kind: "ClusterRole".into(),
            referrers: vec![
                fs(
                    "roleRef/name",
                    "rbac.authorization.k8s.io",
                    "",
                    "RoleBinding",
                    false,
                ),
                fs(
                    "roleRef/name",
                    "rbac.authorization.k8s.io",
                    "",
                    "ClusterRoleBinding",
                    false,
                ),
            ],
        },
        BackRef {
            group: "".into(),
            version: "v1".into(),
            kind: "ServiceAccount".into(),
            referrers: service_account,
        },
        BackRef {
            group: "".into(),
            version: "v1".into(),
            kind: "PersistentVolumeClaim".into(),
            referrers: workload_field("volumes/persistentVolumeClaim/claimName", &workloads),
        },
        BackRef {
            group: "".into(),
            version: "v1".into(),
            kind: "PersistentVolume".into(),
            referrers: vec![
                fs("spec/volumeName", "", "", "PersistentVolumeClaim", false),
                fs("rules/resourceNames", "", "", "ClusterRole", false),
            ],
        },
        BackRef {
            group: "storage.k8s.io".into(),
            version: "v1".into(),
            kind: "StorageClass".into(),
            referrers: vec![
                fs("spec/storageClassName", "", "", "PersistentVolume", false),
                fs(
                    "spec/storageClassName",
                    "",
                    "",
                    "PersistentVolumeClaim",
                    false,
                ),
                fs(
                    "spec/volumeClaimTemplates/spec/storageClassName",
                    "",
                    "",
                    "StatefulSet",
                    false,
                ),
            ],
        },
        BackRef {
            group: "scheduling.k8s.io".into(),
            version: "v1".into(),
            kind: "PriorityClass".into(),
            referrers: workload_field("priorityClassName", &workloads),
        },
        BackRef {
            group: "admissionregistration.k8s.io".into(),
            version: "".into(),
            kind: "ValidatingAdmissionPolicy".into(),
            referrers: vec![fs(
                "spec/policyName",
                "admissionregistration.k8s.io",
                "",
                "ValidatingAdmissionPolicyBinding",
                false,
            )],
        },
        // kustomize's table names the group `networking.k8s.io/v1`, which matches nothing;
        // kept as is so that IngressClass references behave exactly as in kustomize.
        BackRef {
            group: "networking.k8s.io/v1".into(),
            version: "v1".into(),
            kind: "IngressClass".into(),
            referrers: vec![fs("spec/ingressClassName", "", "", "Ingress", false)],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_split_on_unescaped_slashes() {
        assert_eq!(
            split_path("metadata/annotations/a.io\\/b"),
            ["metadata", "annotations", "a.io/b"]
        );
    }

    #[test]
    fn visit_creates_mappings_only_when_allowed() {
        let mut obj = json!({"spec": {"template": {}}});
        let spec = fs("spec/template/metadata/labels", "", "", "", true);
        visit(&mut obj, &spec, Create::Map, &mut |v| {
            v.as_object_mut().unwrap().insert("a".into(), json!("b"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            obj,
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}})
        );
        let mut obj = json!({"spec": {}});
        let spec = fs("spec/selector/matchLabels", "", "", "", false);
        visit(&mut obj, &spec, Create::Map, &mut |_| {
            panic!("must not be called")
        })
        .unwrap();
        assert_eq!(obj, json!({"spec": {}}));
    }

    #[test]
    fn visit_walks_every_sequence_element() {
        let mut obj =
            json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}, {"name": "c"}]}});
        let spec = fs("spec/containers[]/image", "", "", "", true);
        let mut seen = Vec::new();
        visit(&mut obj, &spec, Create::Nothing, &mut |v| {
            seen.push(v.as_str().unwrap().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn table_merges_keep_the_spec_kustomize_keeps() {
        // Sorted, `Deployment` comes before "every kind", so a later merge of the sorted
        // table drops the general spec: kustomize then prefixes only Deployments.
        let mut t = name_affix().to_vec();
        merge_table(&mut t, &[fs("metadata/name", "", "", "Deployment", false)]).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].kind, "Deployment");
        let mut again = Vec::new();
        merge_table(&mut again, &t).unwrap();
        assert_eq!(again, [fs("metadata/name", "", "", "Deployment", false)]);
        // Differing only in `create` is a conflict.
        let mut t = vec![fs("spec/x", "", "", "Deployment", true)];
        assert!(merge_table(&mut t, &[fs("spec/x", "", "", "", false)]).is_err());
        // Unrelated kinds both stay.
        let mut t = vec![fs("spec/x", "", "", "A", false)];
        merge_table(&mut t, &[fs("spec/x", "", "", "B", false)]).unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn scalars_in_the_middle_of_a_path_are_an_error() {
        let mut obj = json!({"spec": "oops"});
        let spec = fs("spec/selector", "", "", "", true);
        assert!(visit(&mut obj, &spec, Create::Map, &mut |_| Ok(())).is_err());
    }
}
