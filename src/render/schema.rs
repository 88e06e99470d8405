//! The slice of the Kubernetes OpenAPI schema that strategic merge needs: which list fields of
//! the built-in types merge by key (`x-kubernetes-patch-strategy: merge`) and on which keys.
//! kustomize reads this from the Kubernetes OpenAPI document it embeds; every other list, and
//! every list of a custom resource, is replaced wholesale by a patch.

use super::resource::Gvk;

/// A position in a built-in type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A built-in type with only `metadata` to merge specially.
    Object,
    Pod,
    PodTemplate,
    /// ReplicationController, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job: `spec.template`.
    Workload,
    CronJob,
    Service,
    ServiceAccount,
    WebhookConfiguration,
    Node,
    ObjectMeta,
    TemplateSpec,
    PodTemplateSpec,
    PodSpec,
    Container,
    CronJobSpec,
    JobTemplateSpec,
    ServiceSpec,
    NodeSpec,
    /// A known field without further merge rules below it.
    Opaque,
}

/// What the schema says about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A nested object of this type.
    Object(Type),
    /// A list merged by these keys; no keys means a list of scalars merged as a set.
    MergeList {
        keys: &'static [&'static str],
        item: Type,
    },
}

/// The schema of a whole object, if kustomize knows its type.
pub fn for_resource(gvk: &Gvk) -> Option<Type> {
    let g = gvk.group.as_str();
    let v = gvk.version.as_str();
    let k = gvk.kind.as_str();
    let t = match (g, v, k) {
        ("", "v1", "Pod") => Type::Pod,
        ("", "v1", "PodTemplate") => Type::PodTemplate,
        ("", "v1", "ReplicationController") => Type::Workload,
        ("apps", "v1", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => Type::Workload,
        ("apps", "v1", "ControllerRevision") => Type::Object,
        ("batch", "v1", "Job") => Type::Workload,
        ("batch", "v1" | "v1beta1", "CronJob") => Type::CronJob,
        ("", "v1", "Service") => Type::Service,
        ("", "v1", "ServiceAccount") => Type::ServiceAccount,
        ("", "v1", "Node") => Type::Node,
        (
            "admissionregistration.k8s.io",
            "v1" | "v1beta1",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => Type::WebhookConfiguration,
        _ if is_known_builtin(g, v, k) => Type::Object,
        _ => return None,
    };
    Some(t)
}

fn is_known_builtin(g: &str, v: &str, k: &str) -> bool {
    match g {
        "" => {
            v == "v1"
                && matches!(
                    k,
                    "Binding"
                        | "ComponentStatus"
                        | "ConfigMap"
                        | "Endpoints"
                        | "Event"
                        | "LimitRange"
                        | "Namespace"
                        | "PersistentVolume"
                        | "PersistentVolumeClaim"
                        | "ResourceQuota"
                        | "Secret"
                )
        }
        "apps" => v == "v1",
        "autoscaling" => {
            matches!(v, "v1" | "v2beta1" | "v2beta2") && k == "HorizontalPodAutoscaler"
        }
        "networking.k8s.io" => {
            matches!(v, "v1" | "v1beta1")
                && matches!(k, "Ingress" | "IngressClass" | "NetworkPolicy")
        }
        "extensions" => {
            v == "v1beta1" && matches!(k, "Ingress" | "NetworkPolicy" | "PodSecurityPolicy")
        }
        "policy" => {
            matches!(v, "v1" | "v1beta1")
                && matches!(k, "PodDisruptionBudget" | "PodSecurityPolicy")
        }
        "rbac.authorization.k8s.io" => {
            matches!(v, "v1" | "v1beta1" | "v1alpha1")
                && matches!(
                    k,
                    "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding"
                )
        }
        "storage.k8s.io" => {
            matches!(v, "v1" | "v1beta1")
                && matches!(
                    k,
                    "StorageClass"
                        | "VolumeAttachment"
                        | "CSIDriver"
                        | "CSINode"
                        | "CSIStorageCapacity"
                )
        }
        "scheduling.k8s.io" => matches!(v, "v1" | "v1beta1" | "v1alpha1") && k == "PriorityClass",
        "coordination.k8s.io" => matches!(v, "v1" | "v1beta1") && k == "Lease",
        "apiextensions.k8s.io" => matches!(v, "v1" | "v1beta1") && k == "CustomResourceDefinition",
        "apiregistration.k8s.io" => matches!(v, "v1" | "v1beta1") && k == "APIService",
        "certificates.k8s.io" => matches!(v, "v1" | "v1beta1") && k == "CertificateSigningRequest",
        "discovery.k8s.io" => matches!(v, "v1" | "v1beta1") && k == "EndpointSlice",
        "events.k8s.io" => matches!(v, "v1" | "v1beta1") && k == "Event",
        "node.k8s.io" => matches!(v, "v1" | "v1beta1" | "v1alpha1") && k == "RuntimeClass",
        "flowcontrol.apiserver.k8s.io" => {
            matches!(v, "v1beta1" | "v1alpha1")
                && matches!(k, "FlowSchema" | "PriorityLevelConfiguration")
        }
        _ => false,
    }
}

const NAME: &[&str] = &["name"];

/// The schema of field `name` inside a `t`.
pub fn field(t: Type, name: &str) -> Option<Field> {
    use Field::{MergeList, Object};
    let f = match (t, name) {
        (
            Type::Object
            | Type::Pod
            | Type::PodTemplate
            | Type::Workload
            | Type::CronJob
            | Type::Service
            | Type::ServiceAccount
            | Type::WebhookConfiguration
            | Type::Node,
            "metadata",
        ) => Object(Type::ObjectMeta),
        (Type::PodTemplateSpec | Type::JobTemplateSpec, "metadata") => Object(Type::ObjectMeta),
        (Type::ObjectMeta, "finalizers") => MergeList {
            keys: &[],
            item: Type::Opaque,
        },
        (Type::ObjectMeta, "ownerReferences") => MergeList {
            keys: &["uid"],
            item: Type::Opaque,
        },
        (Type::Pod, "spec") => Object(Type::PodSpec),
        (Type::PodTemplate, "template") => Object(Type::PodTemplateSpec),
        (Type::Workload, "spec") => Object(Type::TemplateSpec),
        (Type::TemplateSpec, "template") => Object(Type::PodTemplateSpec),
        (Type::PodTemplateSpec, "spec") => Object(Type::PodSpec),
        (Type::CronJob, "spec") => Object(Type::CronJobSpec),
        (Type::CronJobSpec, "jobTemplate") => Object(Type::JobTemplateSpec),
        (Type::JobTemplateSpec, "spec") => Object(Type::TemplateSpec),
        (Type::PodSpec, "containers" | "initContainers" | "ephemeralContainers") => MergeList {
            keys: NAME,
            item: Type::Container,
        },
        (Type::PodSpec, "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates") => {
            MergeList {
                keys: NAME,
                item: Type::Opaque,
            }
        }
        (Type::PodSpec, "hostAliases") => MergeList {
            keys: &["ip"],
            item: Type::Opaque,
        },
        (Type::PodSpec, "topologySpreadConstraints") => MergeList {
            keys: &["topologyKey", "whenUnsatisfiable"],
            item: Type::Opaque,
        },
        (Type::Container, "ports") => MergeList {
            keys: &["containerPort", "protocol"],
            item: Type::Opaque,
        },
        (Type::Container, "env") => MergeList {
            keys: NAME,
            item: Type::Opaque,
        },
        (Type::Container, "volumeMounts") => MergeList {
            keys: &["mountPath"],
            item: Type::Opaque,
        },
        (Type::Container, "volumeDevices") => MergeList {
            keys: &["devicePath"],
            item: Type::Opaque,
        },
        (Type::Service, "spec") => Object(Type::ServiceSpec),
        (Type::ServiceSpec, "ports") => MergeList {
            keys: &["port", "protocol"],
            item: Type::Opaque,
        },
        (Type::ServiceAccount, "secrets") => MergeList {
            keys: NAME,
            item: Type::Opaque,
        },
        (Type::WebhookConfiguration, "webhooks") => MergeList {
            keys: NAME,
            item: Type::Opaque,
        },
        (Type::Node, "spec") => Object(Type::NodeSpec),
        (Type::NodeSpec, "podCIDRs") => MergeList {
            keys: &[],
            item: Type::Opaque,
        },
        _ => return None,
    };
    Some(f)
}

/// A custom OpenAPI document (`openapi: {path: …}`). As in kustomize, once one is loaded it
/// is the only schema strategic merge consults: built-in kinds lose their merge keys too
/// (unless the document defines them), and a `$ref` to a definition the document does not
/// hold resolves to nothing, so such a field is replaced by a patch.
#[derive(Debug)]
pub struct Custom {
    doc: serde_json::Value,
    /// `apiVersion`/`kind` → definition name, from `x-kubernetes-group-version-kind`.
    by_type: std::collections::HashMap<(String, String), String>,
}

impl Custom {
    /// Read a swagger document's `definitions`.
    pub fn new(doc: serde_json::Value) -> Result<Custom, String> {
        let defs = doc
            .get("definitions")
            .and_then(serde_json::Value::as_object)
            .ok_or("the schema has no `definitions` mapping")?;
        let mut by_type = std::collections::HashMap::new();
        for (name, def) in defs {
            let Some(gvks) = def
                .get("x-kubernetes-group-version-kind")
                .and_then(serde_json::Value::as_array)
            else {
                continue;
            };
            for g in gvks {
                let s = |k: &str| g.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
                let api_version = if s("group").is_empty() {
                    s("version").to_string()
                } else {
                    format!("{}/{}", s("group"), s("version"))
                };
                by_type.insert((api_version, s("kind").to_string()), name.clone());
            }
        }
        Ok(Custom { doc, by_type })
    }

    /// The schema of a whole object of this `apiVersion` and `kind`.
    pub fn for_resource(&self, api_version: &str, kind: &str) -> Option<&serde_json::Value> {
        let name = self
            .by_type
            .get(&(api_version.to_string(), kind.to_string()))?;
        self.doc.get("definitions")?.get(name)
    }

    /// Follow `$ref`s (`#/definitions/NAME`) to the schema they name.
    fn resolve<'a>(&'a self, mut s: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        for _ in 0..64 {
            let Some(r) = s.get("$ref").and_then(serde_json::Value::as_str) else {
                return Some(s);
            };
            let name = r.strip_prefix("#/definitions/")?;
            s = self.doc.get("definitions")?.get(name)?;
        }
        None
    }

    /// kyaml's `ResourceSchema.Field`: a property, else the `additionalProperties` schema.
    pub fn field<'a>(
        &'a self,
        s: &'a serde_json::Value,
        name: &str,
    ) -> Option<&'a serde_json::Value> {
        let f = s
            .get("properties")
            .and_then(|p| p.get(name))
            .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))?;
        self.resolve(f)
    }

    /// kyaml's `ResourceSchema.Elements`: the item schema of an `array`.
    pub fn elements<'a>(&'a self, s: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let is_array = match s.get("type") {
            Some(serde_json::Value::String(t)) => t == "array",
            Some(serde_json::Value::Array(t)) => t.len() == 1 && t[0] == "array",
            _ => false,
        };
        if !is_array {
            return None;
        }
        self.resolve(s.get("items")?)
    }
}

/// Does a list with this schema merge (`x-kubernetes-patch-strategy` includes `merge`), and
/// on which keys (`x-kubernetes-list-map-keys`, else `x-kubernetes-patch-merge-key`)?
pub fn custom_merge_keys(s: &serde_json::Value) -> Option<Vec<&str>> {
    let strategy = s.get("x-kubernetes-patch-strategy")?.as_str()?;
    if !strategy.split(',').any(|x| x == "merge") {
        return None;
    }
    if let Some(keys) = s
        .get("x-kubernetes-list-map-keys")
        .and_then(serde_json::Value::as_array)
    {
        return Some(keys.iter().filter_map(serde_json::Value::as_str).collect());
    }
    Some(
        s.get("x-kubernetes-patch-merge-key")
            .and_then(serde_json::Value::as_str)
            .into_iter()
            .collect(),
    )
}
