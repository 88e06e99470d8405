//! Output order. `kubectl kustomize` sorts by kind in "legacy" order (Namespaces first,
//! webhooks last, workloads after what they use), then by type, namespace and name, unless the
//! top kustomization asks for `sortOptions: {order: fifo}` (load order).

use std::cmp::Ordering;

use super::kustomization::SortOrder;
use super::resource::Resource;

const ORDER_FIRST: [&str; 22] = [
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
const ORDER_LAST: [&str; 2] = [
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn rank(kind: &str, first: &[String], last: &[String]) -> i64 {
    if let Some(i) = first.iter().position(|k| k == kind) {
        return i as i64 - first.len() as i64;
    }
    if let Some(i) = last.iter().position(|k| k == kind) {
        return 1 + i as i64;
    }
    0
}

/// Sort in place.
pub fn sort(resources: &mut Vec<Resource>, order: Option<&SortOrder>) {
    let (first, last) = match order {
        Some(SortOrder::Fifo) => return,
        Some(SortOrder::Legacy {
            order_first,
            order_last,
        }) => (
            order_first
                .clone()
                .unwrap_or_else(|| ORDER_FIRST.iter().map(|s| s.to_string()).collect()),
            order_last
                .clone()
                .unwrap_or_else(|| ORDER_LAST.iter().map(|s| s.to_string()).collect()),
        ),
        None => (
            ORDER_FIRST.iter().map(|s| s.to_string()).collect(),
            ORDER_LAST.iter().map(|s| s.to_string()).collect(),
        ),
    };
    let mut keyed: Vec<((i64, String, String, String), Resource)> = std::mem::take(resources)
        .into_iter()
        .map(|r| {
            let id = r.cur_id();
            let ns = if id.namespace.is_empty() {
                "~X".to_string()
            } else {
                id.namespace.clone()
            };
            let name = if id.name.is_empty() {
                "~N".to_string()
            } else {
                id.name.clone()
            };
            // Observed from `kubectl kustomize`: core Namespaces come before `Namespace`
            // kinds of other groups (which otherwise sort by group like any kind).
            let gvk_key = if id.gvk.kind == "Namespace" && id.gvk.group.is_empty() {
                format!("!{}", id.gvk.version)
            } else {
                id.gvk.sort_key()
            };
            ((rank(&id.gvk.kind, &first, &last), gvk_key, ns, name), r)
        })
        .collect();
    // The key is total over distinct identities, so a stable sort gives kustomize's order.
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(Ordering::Equal));
    resources.extend(keyed.into_iter().map(|(_, r)| r));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::error::Location;
    use serde_json::json;

    fn res(api: &str, kind: &str, name: &str, ns: Option<&str>) -> Resource {
        let mut meta = json!({"name": name});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        Resource::new(
            json!({"apiVersion": api, "kind": kind, "metadata": meta}),
            Location::file("x"),
        )
    }

    #[test]
    fn legacy_order_matches_kubectl_kustomize() {
        // Same inputs and expected order as observed from `kubectl kustomize` v5.5.
        let mut all = vec![
            res("v1", "ConfigMap", "c", None),
            res("v1", "ConfigMap", "b", None),
            res("zz/v1", "Zed", "b", None),
            res("aa/v1", "Zed", "a", None),
            res("v1", "Zed", "a", Some("x")),
            res("v1", "Zed", "a", None),
            res("v1", "Aardvark", "z", None),
            res(
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                "w",
                None,
            ),
            res("v1", "Namespace", "n", None),
        ];
        sort(&mut all, None);
        let got: Vec<String> = all
            .iter()
            .map(|r| format!("{} {}", r.api_version(), r.name()))
            .collect();
        assert_eq!(
            got,
            [
                "v1 n",
                "v1 b",
                "v1 c",
                "aa/v1 a",
                "zz/v1 b",
                "v1 z",
                "v1 a",
                "v1 a",
                "admissionregistration.k8s.io/v1 w"
            ]
        );
        assert_eq!(all[6].namespace(), "x");
    }
}
