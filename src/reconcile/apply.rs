//! Server-side apply of an environment's objects, stage by stage, skipping what is unchanged.
//!
//! Before any write, every object is validated and its kind resolved through discovery (a
//! custom resource may instead be defined by a CRD in the same environment); then the live
//! objects are read with one list per kind. An object is written only when it is missing, its
//! rendered hash differs from the one on the live object, or the live object drifted from what
//! was applied. An unchanged resync therefore makes no write calls.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;

use super::context::Context;
use super::diff::differences;
use super::discovery::Kind;
use super::error::{ObjectFailure, ReconcileError, describe, describe_change, is_transient};
use super::health;
use super::object::{DesiredObject, ENV_LABEL, HASH_ANNOTATION, ObjectId, split_api_version};
use super::order::{Stage, stage};
use super::owners;
use super::report::Action;

/// A desired object and the resource that serves it (`None`: a custom resource whose CRD is
/// applied in this reconcile).
pub struct Planned {
    pub object: DesiredObject,
    pub kind: Option<Kind>,
}

/// Resolve every object's kind. Objects of kinds the server does not serve must be defined
/// by a CRD among `desired`; otherwise nothing is applied.
pub async fn resolve(
    ctx: &Context,
    env: &str,
    desired: Vec<DesiredObject>,
) -> Result<Vec<Planned>, ReconcileError> {
    let defined = crd_kinds(&desired);
    let mut planned = Vec::with_capacity(desired.len());
    let mut unknown = Vec::new();
    let mut resolved: HashMap<(String, String), Option<Kind>> = HashMap::new();
    for mut object in desired {
        let key = (object.api_version.clone(), object.kind.clone());
        let kind = match resolved.get(&key) {
            Some(k) => k.clone(),
            None => {
                let k = ctx
                    .discovery
                    .resolve(&ctx.client, &object.api_version, &object.kind)
                    .await
                    .map_err(|source| ReconcileError::Api {
                        action: "discovering",
                        object: format!("{} {}", object.api_version, object.kind),
                        source,
                    })?;
                resolved.insert(key.clone(), k.clone());
                k
            }
        };
        match &kind {
            Some(k) => object.set_scope(k.namespaced),
            None if defined.contains(&key) => {}
            None => {
                unknown.push(format!(
                    "{}: the API serves no kind {} in {}",
                    object.id(),
                    object.kind,
                    object.api_version
                ));
                continue;
            }
        }
        planned.push(Planned { object, kind });
    }
    if unknown.is_empty() {
        Ok(planned)
    } else {
        Err(ReconcileError::UnknownKinds {
            env: env.to_string(),
            objects: unknown,
        })
    }
}

/// `(apiVersion, kind)` pairs served by the CRDs among `desired`.
fn crd_kinds(desired: &[DesiredObject]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for crd in desired.iter().filter(|o| o.id().is_crd()) {
        let spec = &crd.object["spec"];
        let (Some(group), Some(kind)) = (
            spec["group"].as_str(),
            spec.pointer("/names/kind").and_then(Value::as_str),
        ) else {
            continue;
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] != Value::Bool(false)
                && let Some(v) = version["name"].as_str()
            {
                out.insert((format!("{group}/{v}"), kind.to_string()));
            }
        }
    }
    out
}

fn dynamic_api(
    ctx: &Context,
    resource: &ApiResource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, resource),
        None => Api::all_with(ctx.client.clone(), resource),
    }
}

/// A live object as plain JSON. Its `managedFields` (large, and never compared) are cut down to
/// one entry holding the time of the last write to the object itself (not a subresource), which
/// health needs to tell a stale rollout condition from a current one.
pub fn to_value(mut object: DynamicObject, resource: &ApiResource) -> Value {
    let managed = object.metadata.managed_fields.take();
    if object.types.is_none() {
        object.types = Some(kube::core::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
    }
    let mut value = serde_json::to_value(object).expect("a DynamicObject serializes");
    let last_write = managed
        .and_then(|m| serde_json::to_value(m).ok())
        .and_then(|m| {
            m.as_array()?
                .iter()
                .filter(|e| {
                    e.get("subresource")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                })
                .filter_map(|e| e.get("time").and_then(Value::as_str).map(String::from))
                .max()
        });
    if let (Some(time), Some(meta)) = (
        last_write,
        value.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        meta.insert(
            "managedFields".into(),
            serde_json::json!([{ "time": time }]),
        );
    }
    value
}

/// The id of a live object served by `resource`.
pub fn live_id(resource: &ApiResource, object: &Value) -> ObjectId {
    ObjectId {
        group: resource.group.clone(),
        kind: resource.kind.clone(),
        namespace: object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string),
        name: object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    }
}

/// Drop `managedFields` from a live object read with them.
fn without_managed_fields(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

/// The environment's live objects of the planned objects' kinds, selected by the environment
/// label: one (paged) list per kind across namespaces, or per kind and namespace under a
/// namespaces [`super::Scope`]. They keep their `managedFields` until [`apply_all`] has decided
/// what to do with them.
pub async fn list_live(
    ctx: &Context,
    env: &str,
    planned: &[Planned],
) -> Result<HashMap<ObjectId, Value>, ReconcileError> {
    let selector = format!("{ENV_LABEL}={env}");
    let mut live = HashMap::new();
    let targets = ctx
        .list_scope()
        .list_targets(planned.iter().filter_map(|p| {
            let kind = p.kind.as_ref()?;
            Some((&kind.resource, p.object.namespace.as_deref()))
        }));
    for (r, namespace) in &targets {
        let api = dynamic_api(ctx, r, namespace.as_deref());
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().labels(&selector).limit(500);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = super::retrying(ctx, || api.list(&params))
                .await
                .map_err(|source| ReconcileError::Api {
                    action: "listing",
                    object: match namespace {
                        Some(ns) => format!("{} ({}) in namespace {ns}", r.plural, r.api_version),
                        None => format!("{} ({})", r.plural, r.api_version),
                    },
                    source,
                })?;
            token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
            for mut item in page.items {
                let fields = item.metadata.managed_fields.take();
                let mut value = to_value(item, r);
                if let Some(f) = fields {
                    value["metadata"]["managedFields"] =
                        serde_json::to_value(f).expect("managedFields serialize");
                }
                live.insert(live_id(r, &value), value);
            }
            if token.is_none() {
                break;
            }
        }
    }
    Ok(live)
}

/// What to do with one object, decided from its live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not in the cluster (or not labelled for this environment): apply.
    Create,
    /// Git changed it since the last apply: apply.
    Update,
    /// Unchanged in Git, but the live object no longer holds what was applied: apply again.
    Drift(Vec<String>),
    /// Nothing to do.
    Skip,
}

/// Decide from the live object (and whether the inventory says it was applied before).
pub fn decide(desired: &DesiredObject, live: Option<&Value>, in_inventory: bool) -> Decision {
    let Some(live) = live else {
        return if in_inventory {
            Decision::Drift(vec!["(deleted)".into()])
        } else {
            Decision::Create
        };
    };
    let applied_hash = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str);
    if applied_hash != Some(desired.hash.as_str()) {
        return Decision::Update;
    }
    let fields = differences(&desired.object, live);
    if fields.is_empty() {
        Decision::Skip
    } else {
        Decision::Drift(fields)
    }
}

/// One applied (or skipped) object and its live state afterwards.
pub struct Applied {
    pub id: ObjectId,
    pub api_version: String,
    pub resource: ApiResource,
    pub action: Action,
    pub live: Value,
    pub images: Vec<String>,
}

/// Apply the planned objects stage by stage. Returns every object with its live state, or
/// the failures of the first stage that had any (later stages are not attempted), together
/// with what was applied before it.
pub async fn apply_all(
    ctx: &Context,
    env: &str,
    mut planned: Vec<Planned>,
    mut live: HashMap<ObjectId, Value>,
    previous: &BTreeSet<ObjectId>,
) -> Result<Vec<Applied>, (ReconcileError, Vec<Applied>)> {
    let total = planned.len();
    // Fields another manager took through `/scale` are neither applied nor compared.
    for p in &mut planned {
        if let Some(current) = live.get(&p.object.id()) {
            let theirs = owners::yielded(current, &ctx.options.field_manager);
            owners::remove(&mut p.object.object, &theirs);
        }
    }
    if ctx.options.dry_run
        && let Err(failures) = dry_run(ctx, &planned, &live, previous).await
    {
        return Err((ReconcileError::DryRun { failures, total }, Vec::new()));
    }
    let mut by_stage: Vec<(Stage, Vec<Planned>)> =
        Stage::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for p in planned {
        let s = stage(p.object.group(), &p.object.kind);
        by_stage
            .iter_mut()
            .find(|(st, _)| *st == s)
            .expect("every stage listed")
            .1
            .push(p);
    }
    let mut done: Vec<Applied> = Vec::with_capacity(total);
    for (stage, mut objects) in by_stage {
        if objects.is_empty() {
            continue;
        }
        // Custom resources of CRDs applied in this reconcile: resolve now.
        for p in objects.iter_mut().filter(|p| p.kind.is_none()) {
            match resolve_new_kind(ctx, &p.object).await {
                Ok(kind) => {
                    p.object.set_scope(kind.namespaced);
                    p.kind = Some(kind);
                }
                Err(e) => return Err((e, done)),
            }
        }
        objects.sort_by_key(|p| p.object.id());
        // Live objects move into the results (they are large; no copies).
        let decided: Vec<(Planned, Decision, Option<Value>)> = objects
            .into_iter()
            .map(|p| {
                let id = p.object.id();
                let current = live.remove(&id).map(without_managed_fields);
                let decision = decide(&p.object, current.as_ref(), previous.contains(&id));
                (p, decision, current)
            })
            .collect();
        let results: Vec<Result<Applied, ObjectFailure>> = futures::stream::iter(decided)
            .map(|(p, decision, current)| apply_one(ctx, env, p, decision, current))
            .buffered(ctx.options.concurrency.max(1))
            .collect()
            .await;
        let mut failures = Vec::new();
        for r in results {
            match r {
                Ok(a) => done.push(a),
                Err(f) => failures.push(f),
            }
        }
        if !failures.is_empty() {
            return Err((ReconcileError::Apply { failures, total }, done));
        }
        if stage == Stage::Foundation {
            let crds: Vec<&Applied> = done
                .iter()
                .filter(|a| a.id.is_crd() && a.action.wrote())
                .collect();
            for crd in crds {
                if let Err(e) = wait_established(ctx, crd).await {
                    return Err((e, done));
                }
            }
        }
    }
    Ok(done)
}

/// Server-side dry run of every object that is about to be written, so that what the API
/// server would refuse (validation, admission, a missing namespace, a field conflict) stops
/// the reconcile before its first write. Objects in namespaces this reconcile creates, custom
/// resources of CRDs it applies, and bindings of roles it creates cannot be checked before
/// then and are not.
async fn dry_run(
    ctx: &Context,
    planned: &[Planned],
    live: &HashMap<ObjectId, Value>,
    previous: &BTreeSet<ObjectId>,
) -> Result<(), Vec<ObjectFailure>> {
    let new_namespaces: BTreeSet<&str> = planned
        .iter()
        .filter(|p| p.object.id().is_namespace() && !live.contains_key(&p.object.id()))
        .map(|p| p.object.name.as_str())
        .collect();
    // A binding is checked against its role's rules, which a role created in this reconcile
    // does not have yet.
    let new_roles: BTreeSet<ObjectId> = planned
        .iter()
        .map(|p| p.object.id())
        .filter(|id| id.group == RBAC && matches!(id.kind.as_str(), "Role" | "ClusterRole"))
        .filter(|id| !live.contains_key(id))
        .collect();
    // Owned, not borrowed: a stream of borrowed items trips rustc's `Send` inference
    // (rust-lang/rust#102211) once the future is spawned.
    let checks: Vec<(DesiredObject, Kind, Option<Value>)> = planned
        .iter()
        .filter_map(|p| {
            let kind = p.kind.as_ref()?;
            let id = p.object.id();
            let in_new_namespace = id
                .namespace
                .as_deref()
                .is_some_and(|ns| new_namespaces.contains(ns));
            let unchanged =
                decide(&p.object, live.get(&id), previous.contains(&id)) == Decision::Skip;
            let binds_new_role = bound_role(&p.object.object, id.namespace.as_deref())
                .is_some_and(|role| new_roles.contains(&role));
            (!in_new_namespace && !unchanged && !binds_new_role)
                .then(|| (p.object.clone(), kind.clone(), live.get(&id).cloned()))
        })
        .collect();
    let results: Vec<Option<ObjectFailure>> = futures::stream::iter(checks)
        .map(|(object, kind, current)| dry_run_one(ctx, object, kind, current))
        .buffered(ctx.options.concurrency.max(1))
        .collect()
        .await;
    let failures: Vec<ObjectFailure> = results.into_iter().flatten().collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// The role a (Cluster)RoleBinding refers to.
fn bound_role(object: &Value, namespace: Option<&str>) -> Option<ObjectId> {
    let kind = object["kind"].as_str()?;
    if !matches!(kind, "RoleBinding" | "ClusterRoleBinding") {
        return None;
    }
    let role_kind = object.pointer("/roleRef/kind")?.as_str()?;
    Some(ObjectId {
        group: RBAC.to_string(),
        kind: role_kind.to_string(),
        namespace: (role_kind == "Role").then(|| namespace.unwrap_or_default().to_string()),
        name: object.pointer("/roleRef/name")?.as_str()?.to_string(),
    })
}

async fn dry_run_one(
    ctx: &Context,
    object: DesiredObject,
    kind: Kind,
    current: Option<Value>,
) -> Option<ObjectFailure> {
    let api = dynamic_api(ctx, &kind.resource, object.namespace.as_deref());
    let mut params = PatchParams::apply(&ctx.options.field_manager).dry_run();
    params.force = ctx.options.force;
    let patch = Patch::Apply(&object.object);
    super::retrying(ctx, || api.patch(&object.name, &params, &patch))
        .await
        .err()
        // Replaced instead of patched when applied: the refusal is expected.
        .filter(|e| !(object.replaceable() && immutable(e)))
        .map(|e| ObjectFailure {
            object: object.id().to_string(),
            message: describe_change(&e, Some(&object.object), current.as_ref()),
            transient: is_transient(&e),
        })
}

async fn apply_one(
    ctx: &Context,
    env: &str,
    planned: Planned,
    decision: Decision,
    current: Option<Value>,
) -> Result<Applied, ObjectFailure> {
    let Planned { object, kind } = planned;
    let kind = kind.expect("resolved before its stage");
    let id = object.id();
    let images = object.images();
    let action = match decision {
        Decision::Skip => {
            return Ok(Applied {
                id,
                api_version: object.api_version,
                resource: kind.resource,
                action: Action::Unchanged,
                live: current.unwrap_or_default(),
                images,
            });
        }
        Decision::Create => Action::Created,
        Decision::Update => Action::Configured,
        Decision::Drift(fields) => {
            tracing::warn!(env, object = %id, fields = ?fields, "drift: the live object differs from what baton applied; re-applying");
            Action::DriftCorrected { fields }
        }
    };
    let api = dynamic_api(ctx, &kind.resource, id.namespace.as_deref());
    let mut params = PatchParams::apply(&ctx.options.field_manager);
    params.force = ctx.options.force;
    let patch = Patch::Apply(&object.object);
    let mut result = super::retrying(ctx, || api.patch(&object.name, &params, &patch)).await;
    if let Err(e) = &result
        && object.replaceable()
        && immutable(e)
    {
        tracing::info!(env, object = %id, error = %describe(e), "immutable field changed; deleting and re-creating (baton.dev/replace)");
        result = match replace(ctx, &api, &object.name).await {
            Ok(()) => super::retrying(ctx, || api.patch(&object.name, &params, &patch)).await,
            Err(e) => Err(e),
        };
    }
    if let Ok(applied) = &result
        && let Some(handover) = adoption(applied, &ctx.options.field_manager)
    {
        // Made by another tool (client-side kubectl apply, Helm, Flux, Argo CD): take its
        // fields over, then apply again so that what Git no longer sets goes.
        tracing::info!(env, object = %id, "adopting: taking over the fields of the tool that made it");
        let handover_params = PatchParams::default();
        let handover = Patch::Merge(&handover);
        result = match super::retrying(ctx, || api.patch(&object.name, &handover_params, &handover))
            .await
        {
            Ok(_) => super::retrying(ctx, || api.patch(&object.name, &params, &patch)).await,
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(live) => {
            tracing::info!(env, object = %id, action = action.name(), "applied");
            Ok(Applied {
                id,
                api_version: object.api_version,
                live: to_value(live, &kind.resource),
                resource: kind.resource,
                action,
                images,
            })
        }
        Err(e) => {
            if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                // The kind may have gone away (a CRD deleted): discover it afresh next time.
                ctx.discovery.forget(&object.api_version);
            }
            Err(ObjectFailure {
                object: id.to_string(),
                message: describe_change(&e, Some(&object.object), current.as_ref()),
                transient: is_transient(&e),
            })
        }
    }
}

/// The merge patch that hands another tool's fields of a just-applied object to baton.
fn adoption(applied: &DynamicObject, manager: &str) -> Option<Value> {
    let entries = applied.metadata.managed_fields.as_ref()?;
    let live = serde_json::json!({"metadata": {
        "managedFields": serde_json::to_value(entries).ok()?,
        "annotations": applied.metadata.annotations.clone().unwrap_or_default(),
    }});
    owners::adoption_patch(&live, manager)
}

fn immutable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if super::error::is_immutable(s))
}

/// Delete an object (its dependents in the background) and wait until it is gone, so that
/// it can be created again.
async fn replace(ctx: &Context, api: &Api<DynamicObject>, name: &str) -> Result<(), kube::Error> {
    let params = kube::api::DeleteParams::background();
    match super::retrying(ctx, || api.delete(name, &params)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    let deadline = tokio::time::Instant::now() + ctx.options.crd_timeout;
    let mut attempt = 0;
    while super::retrying(ctx, || api.get_opt(name)).await?.is_some() {
        if tokio::time::Instant::now() >= deadline {
            break; // the apply that follows reports what is wrong
        }
        let wait =
            super::error::backoff(attempt, Duration::from_millis(50), Duration::from_secs(1));
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
    Ok(())
}

/// Resolve the kind of a custom resource whose CRD was just applied, giving the API a moment
/// to serve it.
async fn resolve_new_kind(ctx: &Context, object: &DesiredObject) -> Result<Kind, ReconcileError> {
    let deadline = tokio::time::Instant::now() + ctx.options.crd_timeout;
    let mut attempt = 0;
    loop {
        ctx.discovery.forget(&object.api_version);
        let kind = ctx
            .discovery
            .resolve(&ctx.client, &object.api_version, &object.kind)
            .await
            .map_err(|source| ReconcileError::Api {
                action: "discovering",
                object: format!("{} {}", object.api_version, object.kind),
                source,
            })?;
        if let Some(kind) = kind {
            return Ok(kind);
        }
        let wait =
            super::error::backoff(attempt, Duration::from_millis(100), Duration::from_secs(2));
        if tokio::time::Instant::now() + wait > deadline {
            return Err(ReconcileError::CrdNotEstablished {
                name: format!("for {} {}", object.api_version, object.kind),
                waited: ctx.options.crd_timeout,
            });
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Wait until an applied CRD is `Established`, then forget the discovery of its group's
/// versions so its kinds resolve.
async fn wait_established(ctx: &Context, crd: &Applied) -> Result<(), ReconcileError> {
    let forget = |live: &Value| {
        let group = live
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        for v in live
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = v["name"].as_str() {
                ctx.discovery.forget(&format!("{group}/{name}"));
            }
        }
    };
    if health::assess(&crd.live).is_healthy() {
        forget(&crd.live);
        return Ok(());
    }
    let api = dynamic_api(ctx, &crd.resource, None);
    let deadline = tokio::time::Instant::now() + ctx.options.crd_timeout;
    let mut attempt = 0;
    loop {
        let wait =
            super::error::backoff(attempt, Duration::from_millis(100), Duration::from_secs(2));
        if tokio::time::Instant::now() + wait > deadline {
            return Err(ReconcileError::CrdNotEstablished {
                name: crd.id.name.clone(),
                waited: ctx.options.crd_timeout,
            });
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
        let live = super::retrying(ctx, || api.get(&crd.id.name))
            .await
            .map_err(|source| ReconcileError::Api {
                action: "reading",
                object: crd.id.to_string(),
                source,
            })?;
        let live = to_value(live, &crd.resource);
        if health::assess(&live).is_healthy() {
            forget(&live);
            return Ok(());
        }
    }
}

/// The `group/version` of an id applied with `version` (for addressing it later).
pub fn api_version_of(id: &ObjectId, version: &str) -> String {
    if id.group.is_empty() {
        version.to_string()
    } else {
        format!("{}/{version}", id.group)
    }
}

/// The version part of an `apiVersion`.
pub fn version_of(api_version: &str) -> &str {
    split_api_version(api_version).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::object::prepare;
    use serde_json::json;

    fn desired() -> DesiredObject {
        prepare(
            "dev",
            &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "shop"}, "data": {"k": "v"}})],
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn a_missing_object_is_created_or_if_baton_had_applied_it_counted_as_drift() {
        let d = desired();
        assert_eq!(decide(&d, None, false), Decision::Create);
        assert_eq!(
            decide(&d, None, true),
            Decision::Drift(vec!["(deleted)".into()])
        );
    }

    #[test]
    fn an_object_with_the_same_hash_and_fields_is_skipped() {
        let d = desired();
        let mut live = d.object.clone();
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["labels"]["added-by-someone"] = json!("x");
        assert_eq!(decide(&d, Some(&live), true), Decision::Skip);
    }

    #[test]
    fn a_new_hash_is_an_update_and_an_edited_field_is_drift() {
        let d = desired();
        let mut live = d.object.clone();
        live["metadata"]["annotations"][HASH_ANNOTATION] = json!("old");
        assert_eq!(decide(&d, Some(&live), true), Decision::Update);
        let mut live = d.object.clone();
        live["data"]["k"] = json!("edited");
        assert_eq!(
            decide(&d, Some(&live), true),
            Decision::Drift(vec![".data.k".into()])
        );
    }

    #[test]
    fn kinds_defined_by_crds_in_the_environment_are_known_before_they_are_served() {
        let objects = prepare(
            "dev",
            &[json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}, "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": true, "storage": true}, {"name": "v0", "served": false}]}})],
        )
        .unwrap();
        assert_eq!(
            crd_kinds(&objects),
            BTreeSet::from([("example.com/v1".to_string(), "Widget".to_string())])
        );
    }
}
