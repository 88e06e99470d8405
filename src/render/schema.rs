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
