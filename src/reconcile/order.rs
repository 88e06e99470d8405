//! The order objects are applied in: what others depend on goes first. Pruning runs the same
//! order backwards, so workloads go before the namespaces that hold them.

use super::object::ObjectId;

/// Apply stages, in order. Objects in one stage do not depend on each other and may be
/// applied concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Namespaces and CustomResourceDefinitions; CRDs must be `Established` before the next
    /// stage, which may hold their custom resources.
    Foundation,
    /// Cluster policy that admission reads: quotas, limit ranges, priority and storage classes.
    Policy,
    /// Identities and permissions: ServiceAccounts, (Cluster)Roles.
    Rbac,
    /// (Cluster)RoleBindings, after the roles they bind: the API server checks a binding
    /// against its role's rules unless the applier may `bind`, and a role not yet created
    /// fails that check.
    Bindings,
    /// ConfigMaps, Secrets, volumes and claims that pods mount.
    Config,
    /// Services and other networking that workloads are reached through.
    Network,
    /// Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Pods.
    Workload,
    /// Everything that points at workloads (HPAs, PDBs, Ingresses) and custom resources.
    Rest,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Foundation,
        Stage::Policy,
        Stage::Rbac,
        Stage::Bindings,
        Stage::Config,
        Stage::Network,
        Stage::Workload,
        Stage::Rest,
    ];
}

/// The stage an object is applied in, by group and kind.
pub fn stage(group: &str, kind: &str) -> Stage {
    match (group, kind) {
        ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            Stage::Foundation
        }
        ("", "ResourceQuota" | "LimitRange")
        | ("scheduling.k8s.io", "PriorityClass")
        | ("storage.k8s.io", "StorageClass")
        | ("node.k8s.io", "RuntimeClass") => Stage::Policy,
        ("", "ServiceAccount") | ("rbac.authorization.k8s.io", "ClusterRole" | "Role") => {
            Stage::Rbac
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding" | "RoleBinding") => Stage::Bindings,
        ("", "ConfigMap" | "Secret" | "PersistentVolume" | "PersistentVolumeClaim") => {
            Stage::Config
        }
        ("", "Service" | "Endpoints") | ("networking.k8s.io", "NetworkPolicy" | "IngressClass") => {
            Stage::Network
        }
        ("", "Pod" | "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job" | "CronJob") => Stage::Workload,
        _ => Stage::Rest,
    }
}

/// A sort key for ids: by stage, then by id, so the order is the same on every run.
pub fn apply_order(id: &ObjectId) -> (Stage, &ObjectId) {
    (stage(&id.group, &id.kind), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    #[test]
    fn namespaces_and_crds_come_first_then_roles_their_bindings_config_services_workloads_and_the_rest()
     {
        let mut ids = vec![
            id("example.com", "Widget", "w"),
            id("autoscaling", "HorizontalPodAutoscaler", "web"),
            id("apps", "Deployment", "web"),
            id("", "Service", "web"),
            id("", "ConfigMap", "web"),
            id("rbac.authorization.k8s.io", "RoleBinding", "web"),
            id("rbac.authorization.k8s.io", "Role", "web"),
            id("", "ServiceAccount", "web"),
            id(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "widgets.example.com",
            ),
            id("", "Namespace", "shop"),
        ];
        ids.sort_by(|a, b| apply_order(a).cmp(&apply_order(b)));
        let kinds: Vec<&str> = ids.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ConfigMap",
                "Service",
                "Deployment",
                "HorizontalPodAutoscaler",
                "Widget"
            ]
        );
        // A stage is applied concurrently: bindings need a stage after their roles'.
        let rbac = "rbac.authorization.k8s.io";
        for role in ["Role", "ClusterRole"] {
            for binding in ["RoleBinding", "ClusterRoleBinding"] {
                assert!(stage(rbac, role) < stage(rbac, binding), "{role} {binding}");
            }
        }
    }
}
