//! Waiting for objects to become healthy: one watch per kind (selected by the environment
//! label; per namespace under a namespaces [`super::Scope`]) until every pending object is healthy, one has failed, or the deadline passes.
//! Watches that drop are resumed by kube's watcher, with backoff on errors.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::apply::{live_id, to_value};
use super::context::Context;
use super::health::{self, Health, HealthStatus, RolloutMark};
use super::object::{ENV_LABEL, ObjectId};

/// Up to this many pending objects of one kind are watched one by one.
const SINGLE_WATCHES: usize = 5;

/// An object being waited for.
pub struct Pending {
    pub resource: ApiResource,
    pub live: Value,
    pub health: Health,
}

/// Watch until the pending objects settle. Returns their last live state and health;
/// objects still progressing at the deadline are returned as they are.
pub async fn until_settled(
    ctx: &Context,
    env: &str,
    mut pending: HashMap<ObjectId, Pending>,
    marks: &HashMap<ObjectId, RolloutMark>,
    deadline: tokio::time::Instant,
) -> HashMap<ObjectId, Pending> {
    if settled(&pending) {
        return pending;
    }
    let selector = format!("{ENV_LABEL}={env}");
    // Per kind: a few objects are watched one by one (a promotion usually changes one
    // Deployment, and its kind may have hundreds); more, with one watch on the label.
    let mut by_kind: BTreeMap<(String, String, String), (ApiResource, Vec<&ObjectId>)> =
        BTreeMap::new();
    for (id, p) in &pending {
        let r = &p.resource;
        by_kind
            .entry((r.group.clone(), r.version.clone(), r.plural.clone()))
            .or_insert_with(|| (r.clone(), Vec::new()))
            .1
            .push(id);
    }
    let mut streams = Vec::new();
    for (resource, ids) in by_kind.into_values() {
        let watches: Vec<(Api<DynamicObject>, watcher::Config)> = if ids.len() <= SINGLE_WATCHES {
            ids.iter()
                .map(|id| {
                    let api = match &id.namespace {
                        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
                        None => Api::all_with(ctx.client.clone(), &resource),
                    };
                    (
                        api,
                        watcher::Config::default().fields(&format!("metadata.name={}", id.name)),
                    )
                })
                .collect()
        } else {
            // One watch on the label: across namespaces, or per namespace when baton's RBAC
            // is limited to namespaces (or the environment acts as a ServiceAccount).
            let namespaces = ctx
                .list_scope()
                .list_namespaces(ids.iter().map(|id| id.namespace.as_deref()));
            namespaces
                .into_iter()
                .map(|ns| {
                    let api = match ns {
                        Some(ns) => Api::namespaced_with(ctx.client.clone(), &ns, &resource),
                        None => Api::all_with(ctx.client.clone(), &resource),
                    };
                    (api, watcher::Config::default().labels(&selector))
                })
                .collect()
        };
        for (api, config) in watches {
            let r = resource.clone();
            streams.push(
                watcher(api, config)
                    .default_backoff()
                    .map(move |event| (r.clone(), event))
                    .boxed(),
            );
        }
    }
    let mut events = futures::stream::select_all(streams);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some((resource, event))) = next else {
            tracing::debug!(env, "health wait ended at the deadline");
            return pending;
        };
        let objects = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![(o, false)],
            Ok(watcher::Event::Delete(o)) => vec![(o, true)],
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(e) => {
                tracing::warn!(env, error = %e, "watch failed; resuming");
                continue;
            }
        };
        for (object, deleted) in objects {
            let value = to_value(object, &resource);
            let id = live_id(&resource, &value);
            let Some(p) = pending.get_mut(&id) else {
                continue;
            };
            p.health = if deleted {
                Health::progressing("Deleted", "the object was deleted")
            } else {
                health::settle(&value, health::assess(&value), marks.get(&id))
            };
            p.live = value;
        }
        if settled(&pending) {
            return pending;
        }
    }
}

/// Done waiting: something failed (the environment fails whatever the rest does), or
/// nothing is progressing.
fn settled(pending: &HashMap<ObjectId, Pending>) -> bool {
    pending
        .values()
        .any(|p| p.health.status == HealthStatus::Failed)
        || pending.values().all(|p| p.health.is_healthy())
}
