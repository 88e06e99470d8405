//! Deleting what an environment no longer renders. Runs only after every object applied;
//! leaves Namespaces and CRDs alone unless configured, objects annotated
//! `baton.dev/prune: disabled` or no longer labelled for this environment, and objects outside
//! baton's RBAC scope.

use kube::api::{Api, DeleteParams, DynamicObject};
use serde_json::Value;

use super::apply::{api_version_of, to_value};
use super::context::Context;
use super::error::{ObjectFailure, ReconcileError, describe, is_transient};
use super::object::{ENV_LABEL, ObjectId, PRUNE_ANNOTATION};
use super::report::Pruned;

/// Why an object is kept without looking at it, if it is.
pub fn policy_skip(ctx: &Context, id: &ObjectId) -> Option<String> {
    if id.is_namespace() && !ctx.options.prune_namespaces {
        return Some("namespaces are not pruned (prune_namespaces is off)".into());
    }
    if id.is_crd() && !ctx.options.prune_crds {
        return Some("CustomResourceDefinitions are not pruned (prune_crds is off)".into());
    }
    None
}

/// Why a live object is kept, if it is.
pub fn live_skip(env: &str, live: &Value) -> Option<String> {
    let annotation = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str);
    if annotation == Some("disabled") {
        return Some(format!("annotated {PRUNE_ANNOTATION}: disabled"));
    }
    let owner = live
        .pointer("/metadata/labels")
        .and_then(|l| l.get(ENV_LABEL))
        .and_then(Value::as_str);
    if owner != Some(env) {
        return Some(match owner {
            Some(other) => format!("now belongs to environment {other}"),
            None => format!("no longer labelled {ENV_LABEL}={env}"),
        });
    }
    None
}

/// How much one reconcile may delete without an approver's `/prune <env>`.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneGuard {
    /// The share of the inventory above which deletions wait (1 or more: never).
    pub max_fraction: f64,
    /// The commit whose held deletions an approver let go ahead (`/prune <env>`).
    pub approved: Option<String>,
}

impl PruneGuard {
    /// No guard: any share may be deleted at once (`prune.maxFraction: 1`).
    pub fn off() -> Self {
        Self {
            max_fraction: 1.0,
            approved: None,
        }
    }
}

impl Default for PruneGuard {
    fn default() -> Self {
        Self {
            max_fraction: 0.3,
            approved: None,
        }
    }
}

/// Deletions held back by the [`PruneGuard`], for the report and the PR.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneHold {
    /// What would be deleted (`Kind/namespace/name`).
    pub objects: Vec<String>,
    /// How many objects the environment's inventory holds.
    pub inventory: usize,
    pub max_fraction: f64,
}

impl PruneHold {
    /// One line for a status or PR: how much, what, and how to let it go ahead.
    pub fn describe(&self, env: &str) -> String {
        const SHOWN: usize = 5;
        let mut names = self.objects.iter().take(SHOWN).cloned().collect::<Vec<_>>();
        if self.objects.len() > SHOWN {
            names.push(format!("and {} more", self.objects.len() - SHOWN));
        }
        format!(
            "deletions held: {} of {} objects ({:.0} %, more than prune.maxFraction {:.0} %) would be deleted: {}; an approver of {env} comments `/prune {env}` to let them go",
            self.objects.len(),
            self.inventory,
            self.share() * 100.0,
            self.max_fraction * 100.0,
            names.join(", ")
        )
    }

    fn share(&self) -> f64 {
        self.objects.len() as f64 / self.inventory.max(1) as f64
    }
}

/// Whether deleting `deleting` of an `inventory` of objects at `commit` must wait. A single
/// deletion never waits (removing one object from a small environment is routine); nor does
/// a commit whose held deletions were approved.
pub fn must_hold(guard: &PruneGuard, commit: &str, deleting: usize, inventory: usize) -> bool {
    deleting >= 2
        && inventory > 0
        && deleting as f64 / inventory as f64 > guard.max_fraction
        && guard.approved.as_deref() != Some(commit)
}

/// Prune `removed` (in the order given). Returns what happened to each, and the failures
/// (those objects stay in the inventory, to be tried again).
pub async fn prune(
    ctx: &Context,
    env: &str,
    removed: Vec<(ObjectId, String)>,
) -> (Vec<Pruned>, Vec<(ObjectId, String, ObjectFailure)>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (id, version) in removed {
        match prune_one(ctx, env, &id, &version).await {
            Ok(p) => done.push(p),
            Err(f) => failed.push((id, version, f)),
        }
    }
    (done, failed)
}

async fn prune_one(
    ctx: &Context,
    env: &str,
    id: &ObjectId,
    version: &str,
) -> Result<Pruned, ObjectFailure> {
    let object = id.to_string();
    if let Some(reason) = policy_skip(ctx, id) {
        return Ok(Pruned::Skipped { object, reason });
    }
    if let Some(why) = ctx.options.scope.refusal(id.namespace.as_deref()) {
        // Applied under a wider scope: baton may no longer read or delete it.
        let reason = format!("{why}; left in the cluster (delete it by hand)");
        tracing::warn!(env, object = %id, reason, "not pruned");
        return Ok(Pruned::Skipped { object, reason });
    }
    let failure = |e: kube::Error| ObjectFailure {
        object: id.to_string(),
        message: describe(&e),
        transient: is_transient(&e),
    };
    let api_version = api_version_of(id, version);
    let kind = ctx
        .discovery
        .resolve(&ctx.client, &api_version, &id.kind)
        .await
        .map_err(failure)?;
    let Some(kind) = kind else {
        // The API no longer serves the kind (its CRD is gone): so is the object.
        return Ok(Pruned::Gone { object });
    };
    let api: Api<DynamicObject> = match &id.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &kind.resource),
        None => Api::all_with(ctx.client.clone(), &kind.resource),
    };
    let live = super::retrying(ctx, || api.get_opt(&id.name))
        .await
        .map_err(failure)?;
    let Some(live) = live else {
        return Ok(Pruned::Gone { object });
    };
    let live = to_value(live, &kind.resource);
    if let Some(reason) = live_skip(env, &live) {
        tracing::info!(env, object = %id, reason, "not pruned");
        return Ok(Pruned::Skipped { object, reason });
    }
    let uid = live
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Delete exactly the object looked at, not one recreated since under the same name.
    let mut params = DeleteParams::background();
    if let Some(uid) = uid {
        params = params.preconditions(kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        });
    }
    match super::retrying(ctx, || api.delete(&id.name, &params)).await {
        Ok(_) => {
            tracing::info!(env, object = %id, "pruned");
            Ok(Pruned::Deleted { object })
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Pruned::Gone { object }),
        Err(e) => Err(failure(e)),
    }
}

/// The error for prunes that failed.
pub fn prune_error(failures: Vec<ObjectFailure>, total: usize) -> ReconcileError {
    ReconcileError::Prune { failures, total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_opted_out_or_taken_over_are_not_pruned() {
        let live = |labels: Value, annotations: Value| json!({"metadata": {"labels": labels, "annotations": annotations}});
        assert_eq!(
            live_skip("dev", &live(json!({ENV_LABEL: "dev"}), json!({}))),
            None
        );
        assert_eq!(
            live_skip(
                "dev",
                &live(
                    json!({ENV_LABEL: "dev"}),
                    json!({PRUNE_ANNOTATION: "disabled"})
                )
            ),
            Some("annotated baton.dev/prune: disabled".into())
        );
        assert_eq!(
            live_skip("dev", &live(json!({ENV_LABEL: "staging"}), json!({}))),
            Some("now belongs to environment staging".into())
        );
        assert!(
            live_skip("dev", &live(json!({}), json!({})))
                .unwrap()
                .contains("no longer labelled")
        );
    }

    #[test]
    fn deleting_more_than_the_share_waits_unless_approved_for_that_commit() {
        let guard = PruneGuard::default();
        assert!(!must_hold(&guard, "c1", 3, 10), "30 % is allowed");
        assert!(must_hold(&guard, "c1", 4, 10), "40 % waits");
        assert!(
            !must_hold(&guard, "c1", 1, 2),
            "a single deletion never waits"
        );
        assert!(must_hold(&guard, "c1", 2, 2), "everything waits");
        assert!(!must_hold(&guard, "c1", 0, 0));
        let approved = PruneGuard {
            approved: Some("c1".into()),
            ..guard.clone()
        };
        assert!(!must_hold(&approved, "c1", 10, 10));
        assert!(
            must_hold(&approved, "c2", 10, 10),
            "an approval covers the commit it was given for"
        );
        let off = PruneGuard {
            max_fraction: 1.0,
            approved: None,
        };
        assert!(!must_hold(&off, "c1", 10, 10));
        let hold = PruneHold {
            objects: (0..7).map(|i| format!("ConfigMap/shop/c{i}")).collect(),
            inventory: 8,
            max_fraction: 0.3,
        };
        let line = hold.describe("prod");
        assert!(line.contains("7 of 8 objects (88 %"), "{line}");
        assert!(line.contains("ConfigMap/shop/c4, and 2 more"), "{line}");
        assert!(line.contains("`/prune prod`"), "{line}");
    }
}
