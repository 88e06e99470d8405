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
}
