//! How far baton's RBAC reaches on a cluster, and what follows from it. Under
//! [`Scope::Cluster`] (the chart's `rbac.scope: cluster`) baton lists and watches each kind
//! across namespaces; under [`Scope::Namespaces`] (`rbac.scope: namespaces`, a Role per
//! namespace) every list and watch names a namespace, and an environment that renders
//! cluster-scoped objects or objects in other namespaces is refused before anything is written
//! (and by `baton validate --config`).

use std::collections::BTreeSet;

use kube::core::ApiResource;
use serde_json::Value;

use super::object::ObjectId;
use crate::config::runtime::{ClusterConfig, ClusterScope};

/// Where baton may act on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Anywhere, cluster-scoped objects included (a ClusterRole).
    #[default]
    Cluster,
    /// Only namespaced objects in these namespaces (a Role in each).
    Namespaces(BTreeSet<String>),
}

impl Scope {
    pub fn namespaces<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Scope::Namespaces(names.into_iter().map(Into::into).collect())
    }

    /// The scope `baton.yaml` gives a cluster.
    pub fn of(cluster: &ClusterConfig) -> Self {
        match cluster.scope {
            ClusterScope::Cluster => Scope::Cluster,
            ClusterScope::Namespaces => Scope::namespaces(cluster.namespaces.iter().cloned()),
        }
    }

    /// Why an object (namespace `None`: cluster-scoped) is outside the scope, if it is.
    pub fn refusal(&self, namespace: Option<&str>) -> Option<String> {
        let Scope::Namespaces(allowed) = self else {
            return None;
        };
        match namespace {
            None => Some(format!(
                "cluster-scoped, and baton's RBAC scope is {}",
                self.describe()
            )),
            Some(ns) if !allowed.contains(ns) => Some(format!(
                "namespace {ns} is outside baton's RBAC scope ({})",
                self.describe()
            )),
            Some(_) => None,
        }
    }

    /// `cluster-wide`, or `the namespaces a, b`.
    pub fn describe(&self) -> String {
        match self {
            Scope::Cluster => "cluster-wide".into(),
            Scope::Namespaces(ns) => format!(
                "the namespaces {}",
                ns.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Where to list or watch objects of one resource, given the namespaces (`None`:
    /// cluster-scoped) of the objects wanted: `[None]` (across namespaces) under a cluster
    /// scope or for a cluster-scoped resource, else each namespace once.
    pub fn list_namespaces<'a>(
        &self,
        resource_namespaces: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Vec<Option<String>> {
        let namespaces: BTreeSet<Option<&str>> = resource_namespaces.into_iter().collect();
        match self {
            Scope::Namespaces(_) if !namespaces.contains(&None) => namespaces
                .into_iter()
                .map(|n| n.map(String::from))
                .collect(),
            _ => vec![None],
        }
    }

    /// The lists to make for `objects` (their resource and namespace): one per resource and
    /// namespace under a namespaces scope, one per resource otherwise.
    pub fn list_targets<'a>(
        &self,
        objects: impl IntoIterator<Item = (&'a ApiResource, Option<&'a str>)>,
    ) -> Vec<(ApiResource, Option<String>)> {
        let mut by_resource: Vec<(&ApiResource, Vec<Option<&str>>)> = Vec::new();
        for (r, ns) in objects {
            match by_resource.iter_mut().find(|(known, _)| same(known, r)) {
                Some((_, list)) => list.push(ns),
                None => by_resource.push((r, vec![ns])),
            }
        }
        by_resource
            .into_iter()
            .flat_map(|(r, namespaces)| {
                self.list_namespaces(namespaces)
                    .into_iter()
                    .map(move |ns| (r.clone(), ns))
            })
            .collect()
    }
}

fn same(a: &ApiResource, b: &ApiResource) -> bool {
    (&a.group, &a.version, &a.plural) == (&b.group, &b.version, &b.plural)
}

/// The objects outside `scope`, one line each (`Namespace/shop: cluster-scoped, …`).
pub fn out_of_scope<'a>(scope: &Scope, ids: impl IntoIterator<Item = &'a ObjectId>) -> Vec<String> {
    ids.into_iter()
        .filter_map(|id| {
            scope
                .refusal(id.namespace.as_deref())
                .map(|why| format!("{id}: {why}"))
        })
        .collect()
}

/// The rendered objects of an environment (as `baton render` prints them) that `scope` does not
/// allow, without asking a cluster: built-in kinds by kustomize's list of cluster-scoped kinds,
/// custom kinds by a CustomResourceDefinition among the objects (other custom kinds are
/// checked when reconciling, through discovery). A namespaced object without a namespace lands
/// in `default`.
pub fn rendered_out_of_scope(scope: &Scope, objects: &[crate::render::Object]) -> Vec<String> {
    out_of_scope(scope, &rendered_ids(objects))
}

/// The objects an environment's `allow:` does not cover, one line each.
pub fn out_of_allow<'a>(
    allow: &crate::config::pipeline::Allow,
    ids: impl IntoIterator<Item = &'a ObjectId>,
) -> Vec<String> {
    ids.into_iter()
        .filter_map(|id| {
            allow
                .refusal(&id.group, &id.kind, id.namespace.as_deref())
                .map(|why| format!("{id}: {why}"))
        })
        .collect()
}

/// `baton validate` and `baton/validate`: the objects each environment with `allow:` renders
/// outside it, as diagnostics naming the environment's overlay and the pipeline entry.
pub fn check_allowed(
    repo: &std::path::Path,
    pipeline: &crate::config::Pipeline,
) -> Vec<crate::config::Diagnostic> {
    let mut out = Vec::new();
    for env in &pipeline.environments {
        let Some(allow) = &env.allow else { continue };
        // A render error is reported on its own; nothing to add here.
        let Ok(objects) = crate::render::render(repo, &env.path()) else {
            continue;
        };
        out.extend(allowed_diagnostics(&env.name, &env.path(), allow, &objects));
    }
    out
}

/// The diagnostics for one environment's rendered `objects` against its `allow:`.
pub fn allowed_diagnostics(
    env: &str,
    path: &std::path::Path,
    allow: &crate::config::pipeline::Allow,
    objects: &[crate::render::Object],
) -> Vec<crate::config::Diagnostic> {
    out_of_allow(allow, &rendered_ids(objects))
        .into_iter()
        .map(|problem| {
            crate::config::Diagnostic::new(
                path.display().to_string(),
                None,
                "",
                format!(
                    "{problem}: environment {env} may apply only what its allow: in policies/pipeline.yaml lists; remove the object, or widen allow: in a PR its approvers approve"
                ),
            )
        })
        .collect()
}

/// Rendered objects as the reconciler will see them: built-in kinds by kustomize's list of
/// cluster-scoped kinds, custom kinds by a CustomResourceDefinition among the objects; a
/// namespaced object without a namespace lands in `default`.
fn rendered_ids(objects: &[crate::render::Object]) -> Vec<ObjectId> {
    let cluster_crds: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|o| o.id.group == "apiextensions.k8s.io" && o.id.kind == "CustomResourceDefinition")
        .filter(|o| o.value.pointer("/spec/scope").and_then(Value::as_str) == Some("Cluster"))
        .filter_map(|o| {
            let group = o.value.pointer("/spec/group")?.as_str()?;
            let kind = o.value.pointer("/spec/names/kind")?.as_str()?;
            Some((group.to_string(), kind.to_string()))
        })
        .collect();
    objects
        .iter()
        .map(|o| {
            let cluster_scoped = o.id.is_cluster_scoped()
                || cluster_crds.contains(&(o.id.group.clone(), o.id.kind.clone()));
            ObjectId {
                group: o.id.group.clone(),
                kind: o.id.kind.clone(),
                namespace: (!cluster_scoped).then(|| {
                    if o.id.namespace.is_empty() {
                        "default".to_string()
                    } else {
                        o.id.namespace.clone()
                    }
                }),
                name: o.id.name.clone(),
            }
        })
        .collect()
}

/// `baton validate --config`: every environment of `pipeline` on a cluster of `runtime` whose
/// scope is `namespaces`, rendered from `repo` and checked against that scope; an environment
/// on a cluster `baton.yaml` does not define is a problem too.
pub fn check_environments(
    repo: &std::path::Path,
    pipeline: &crate::config::Pipeline,
    runtime: &crate::config::RuntimeConfig,
    runtime_file: &str,
) -> Vec<crate::config::Diagnostic> {
    use crate::config::Diagnostic;
    let mut out = Vec::new();
    for env in &pipeline.environments {
        let path = env.path();
        let file = path.display().to_string();
        let Some(cluster) = runtime.clusters.get(env.cluster()) else {
            out.push(Diagnostic::new(
                runtime_file,
                None,
                "clusters",
                format!(
                    "environment {} is on cluster `{}`, which is not defined under clusters:",
                    env.name,
                    env.cluster()
                ),
            ));
            continue;
        };
        let scope = Scope::of(cluster);
        if scope == Scope::Cluster {
            continue;
        }
        // A render error is reported by `baton render` and the PR check; nothing to add here.
        let Ok(objects) = crate::render::render(repo, &path) else {
            continue;
        };
        for problem in rendered_out_of_scope(&scope, &objects) {
            out.push(Diagnostic::new(
                &file,
                None,
                "",
                format!(
                    "{problem} (cluster `{}` has scope: namespaces in {runtime_file}; baton's Role there cannot apply it: remove it from the environment, or deploy baton with rbac.scope: cluster)",
                    env.cluster()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;

    fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
    }

    #[test]
    fn a_namespaces_scope_refuses_cluster_scoped_objects_and_other_namespaces() {
        let scope = Scope::namespaces(["shop", "payments"]);
        assert_eq!(scope.refusal(Some("shop")), None);
        assert!(
            scope.refusal(None).unwrap().contains(
                "cluster-scoped, and baton's RBAC scope is the namespaces payments, shop"
            )
        );
        assert!(
            scope
                .refusal(Some("kube-system"))
                .unwrap()
                .contains("kube-system")
        );
        assert_eq!(Scope::Cluster.refusal(None), None);
        let id = |ns: Option<&str>, kind: &str| ObjectId {
            group: String::new(),
            kind: kind.into(),
            namespace: ns.map(String::from),
            name: "x".into(),
        };
        assert_eq!(
            out_of_scope(
                &scope,
                &[id(None, "Namespace"), id(Some("shop"), "ConfigMap")]
            ),
            [
                "Namespace/x: cluster-scoped, and baton's RBAC scope is the namespaces payments, shop"
            ]
        );
    }

    #[test]
    fn lists_are_per_namespace_under_a_namespaces_scope_and_across_namespaces_otherwise() {
        let cm = resource("", "ConfigMap", "configmaps");
        let deploy = resource("apps", "Deployment", "deployments");
        let objects = [
            (&cm, Some("shop")),
            (&cm, Some("payments")),
            (&cm, Some("shop")),
            (&deploy, Some("shop")),
        ];
        let scoped = Scope::namespaces(["shop", "payments"]).list_targets(objects);
        let names: Vec<(String, Option<String>)> = scoped
            .iter()
            .map(|(r, ns)| (r.plural.clone(), ns.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("configmaps".into(), Some("payments".into())),
                ("configmaps".into(), Some("shop".into())),
                ("deployments".into(), Some("shop".into())),
            ]
        );
        let wide = Scope::Cluster.list_targets(objects);
        assert_eq!(wide.len(), 2);
        assert!(wide.iter().all(|(_, ns)| ns.is_none()));
    }

    #[test]
    fn rendered_cluster_scoped_kinds_and_cluster_crds_are_out_of_a_namespaces_scope() {
        let objects = crate::render::render(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"))),
            std::path::Path::new("environments/dev"),
        )
        .unwrap();
        let scope = Scope::namespaces(["shop-dev"]);
        assert_eq!(
            rendered_out_of_scope(&scope, &objects),
            [
                "Namespace/shop-dev: cluster-scoped, and baton's RBAC scope is the namespaces shop-dev"
            ]
        );
        assert!(rendered_out_of_scope(&Scope::Cluster, &objects).is_empty());
    }
}
