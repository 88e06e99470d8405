//! The reconciler: applies an environment's rendered objects to its cluster with server-side
//! apply, prunes what the environment no longer renders, assesses health and corrects drift.
//!
//! Its input is what the renderer produced for an environment at a commit (full Kubernetes
//! objects as JSON); its output is a [`Report`], pure data from which the forge reporting and
//! the planner's [`crate::promote::state::Deployment`]s are built. One call:
//!
//! ```no_run
//! # async fn demo(repo: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use baton::reconcile::{Context, Env, Options, reconcile, render_input};
//! let ctx = Context::for_url("http://127.0.0.1:6443", Options::default())?;
//! let env = Env::new("dev");
//! let objects = render_input(&env, "1a2b3c4", repo, "environments/dev".as_ref())?;
//! let report = reconcile(&env, &objects, "1a2b3c4", &ctx).await?;
//! println!("{}", report.summary());
//! # Ok(()) }
//! ```
//!
//! A reconcile: validates every object and resolves its kind (nothing is written if any
//! object is invalid, of an unknown kind, or outside baton's RBAC [`Scope`]), reads the
//! inventory and the live objects (one list per kind, or per kind and namespace under a
//! namespaces scope), applies what changed or drifted stage by stage (namespaces and CRDs
//! first), prunes what the inventory has and the input does not (only after every apply
//! succeeded), saves the inventory, then waits for health up to the environment's timeout.
//! [`runner`] drives it per environment on triggers and a resync interval.

pub mod apply;
pub mod context;
pub mod diff;
pub mod discovery;
pub mod error;
pub mod health;
pub mod identity;
pub mod inventory;
pub mod object;
pub mod order;
pub mod owners;
pub mod prune;
pub mod report;
pub mod runner;
pub mod scope;
pub mod verify;
pub mod wait;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

pub use context::{ClientError, Context, Env, Options};
pub use error::ReconcileError;
pub use health::{EnvHealth, Health, HealthStatus};
pub use object::ObjectId;
pub use report::{Action, ObjectReport, Pruned, Report};
pub use scope::Scope;

use apply::{Applied, version_of};
use context::EnvMemory;
use inventory::Inventory;

/// Reconcile one environment to `objects`, rendered at `commit`.
///
/// Waits its turn: one reconcile per environment at a time, and at most
/// [`Options::max_concurrent_envs`] on the cluster at once. An unhealthy rollout is an `Ok`
/// report whose health is Failed; errors are for work that could not be done, and say whether
/// a retry may help ([`ReconcileError::is_transient`]).
#[tracing::instrument(name = "reconcile", skip_all, fields(env = %env.name, commit))]
pub async fn reconcile(
    env: &Env,
    objects: &[Value],
    commit: &str,
    ctx: &Context,
) -> Result<Report, ReconcileError> {
    reconcile_owned(env, objects.to_vec(), commit, ctx).await
}

/// [`reconcile`], taking the rendered objects by value: they are dropped once applied, not
/// held through the health wait (the runner's way; see docs/performance.md).
pub async fn reconcile_owned(
    env: &Env,
    objects: Vec<Value>,
    commit: &str,
    ctx: &Context,
) -> Result<Report, ReconcileError> {
    let _turn = ctx.turn(&env.name).await;
    let acting = ctx.acting_as(env);
    let result = reconcile_turn(env, objects, commit, ctx, &acting).await;
    match &env.service_account {
        Some(account) => result.map_err(|e| identity::explain(e, &env.name, account)),
        None => result,
    }
}

/// One reconcile, its turn taken: the environment's objects are read, applied, pruned and
/// watched through `ctx` (the environment's identity, [`Context::acting_as`]); the inventory
/// through `own` (baton's own identity, in baton's namespace).
async fn reconcile_turn(
    env: &Env,
    objects: Vec<Value>,
    commit: &str,
    own: &Context,
    ctx: &Context,
) -> Result<Report, ReconcileError> {
    let started = tokio::time::Instant::now();
    let started_at = Utc::now();
    let name = env.name.as_str();

    // Validate and resolve everything before the first write.
    let desired =
        object::prepare_owned(name, objects).map_err(|problems| ReconcileError::InvalidInput {
            env: name.to_string(),
            problems,
        })?;
    let planned = apply::resolve(ctx, name, desired).await?;
    let ids: Vec<ObjectId> = planned.iter().map(|p| p.object.id()).collect();
    let outside = scope::out_of_scope(&ctx.options.scope, &ids);
    if !outside.is_empty() {
        return Err(ReconcileError::OutOfScope {
            env: name.to_string(),
            scope: ctx.options.scope.describe(),
            objects: outside,
        });
    }
    if let Some(allow) = &env.allow {
        let outside = scope::out_of_allow(allow, &ids);
        if !outside.is_empty() {
            return Err(ReconcileError::NotAllowed {
                env: name.to_string(),
                allow: format!(
                    "namespaces {}; kinds {}",
                    allow.namespaces.join(", "),
                    if allow.kinds.is_empty() {
                        "any namespaced".to_string()
                    } else {
                        allow.kinds.join(", ")
                    }
                ),
                objects: outside,
            });
        }
    }
    let previous = inventory::load(own, name).await?;
    let previous_ids = previous.as_ref().map(Inventory::ids).unwrap_or_default();
    let live = apply::list_live(ctx, name, &planned).await?;
    let desired_ids: BTreeSet<ObjectId> = planned.iter().map(|p| p.object.id()).collect();

    // Apply.
    let applied = match apply::apply_all(ctx, name, planned, live, &previous_ids).await {
        Ok(applied) => applied,
        Err((error, partial)) => {
            // Remember what did get applied, so that it can be pruned later; prune nothing.
            let mut keep = previous.clone().unwrap_or_default();
            for a in &partial {
                keep.objects
                    .insert(a.id.clone(), version_of(&a.api_version).to_string());
            }
            // (A reconcile that applied nothing, e.g. refused in the dry run, writes nothing.)
            if !partial.is_empty()
                && previous.as_ref() != Some(&keep)
                && let Err(e) = inventory::save(own, name, &keep).await
            {
                tracing::warn!(env = name, error = %e, "could not record the partial apply in the inventory");
            }
            return Err(error);
        }
    };
    let apply_took = started.elapsed();

    // Prune, then record the new inventory (objects that failed to prune stay in it).
    let prune_started = tokio::time::Instant::now();
    let mut next = Inventory::default();
    for a in &applied {
        next.objects
            .insert(a.id.clone(), version_of(&a.api_version).to_string());
    }
    let mut removed = match (&previous, ctx.options.prune) {
        (Some(prev), true) => prev.removed(&desired_ids),
        _ => Vec::new(),
    };
    // A render that would delete a large share of the environment waits for `/prune`: a
    // moved overlay or a broken `resources:` list must not delete everything.
    let deleting: Vec<&ObjectId> = removed
        .iter()
        .map(|(id, _)| id)
        .filter(|id| prune::policy_skip(ctx, id).is_none())
        .collect();
    let inventory_size = previous.as_ref().map_or(0, |p| p.objects.len());
    let prune_held = if prune::must_hold(&env.prune, commit, deleting.len(), inventory_size) {
        let mut objects: Vec<String> = deleting.iter().map(|id| id.to_string()).collect();
        objects.sort();
        let hold = prune::PruneHold {
            objects,
            inventory: inventory_size,
            max_fraction: env.prune.max_fraction,
        };
        tracing::warn!(env = name, commit, "{}", hold.describe(name));
        for (id, v) in std::mem::take(&mut removed) {
            next.objects.insert(id, v);
        }
        Some(hold)
    } else {
        None
    };
    let removed_count = removed.len();
    let (pruned, prune_failures) = prune::prune(ctx, name, removed).await;
    let mut failures = Vec::new();
    for (id, version, failure) in prune_failures {
        next.objects.insert(id, version);
        failures.push(failure);
    }
    if !ctx.options.prune
        && let Some(prev) = &previous
    {
        // Without pruning, removed objects stay ours, to be pruned once it is turned on.
        for (id, v) in prev.removed(&desired_ids) {
            next.objects.insert(id, v);
        }
    }
    if previous.as_ref() != Some(&next) {
        inventory::save(own, name, &next).await?;
    }
    if !failures.is_empty() {
        return Err(prune::prune_error(failures, removed_count));
    }
    let prune_took = prune_started.elapsed();

    // Health.
    let health_started = tokio::time::Instant::now();
    let timeout = env.health_timeout.unwrap_or(ctx.options.health_timeout);
    let (objects, health) = assess_and_wait(ctx, env, applied, started + timeout).await;
    let drift = objects
        .iter()
        .filter(|o| matches!(o.action, Action::DriftCorrected { .. }))
        .count();
    let report = Report {
        env: name.to_string(),
        commit: commit.to_string(),
        started_at,
        finished_at: Utc::now(),
        objects,
        pruned,
        prune_held,
        health,
        drift,
        durations: report::Durations {
            apply: apply_took,
            prune: prune_took,
            health: health_started.elapsed(),
            total: started.elapsed(),
        },
    };
    tracing::info!(env = name, commit, drift, "{}", report.summary());
    Ok(report)
}

/// Assess every applied object, wait for the ones still progressing (when configured), and
/// remember healthy rollouts.
async fn assess_and_wait(
    ctx: &Context,
    env: &Env,
    applied: Vec<Applied>,
    deadline: tokio::time::Instant,
) -> (Vec<ObjectReport>, EnvHealth) {
    let mut memory = ctx.memory(&env.name);
    let marks: HashMap<ObjectId, health::RolloutMark> = memory
        .rollouts
        .iter()
        .map(|(id, (mark, _))| (id.clone(), mark.clone()))
        .collect();
    let mut pending = HashMap::new();
    let mut reports = Vec::with_capacity(applied.len());
    // What the memory below needs of each live object; a live object itself is kept only
    // while it is waited on (an environment's live objects are its largest data: at 1,000
    // Deployments, held whole through the wait, they made most of the service's peak).
    let mut seen: Vec<Option<Seen>> = Vec::with_capacity(applied.len());
    // Objects that were healthy at the last reconcile and are not now: their healthy time
    // restarts once they are healthy again (the soak counts only uninterrupted health).
    let mut interrupted: HashMap<ObjectId, String> = HashMap::new();
    for a in applied {
        let mut health = health::settle(&a.live, health::assess(&a.live), marks.get(&a.id));
        if !health.is_healthy() && a.id.group.is_empty() && a.id.kind == "PersistentVolumeClaim" {
            health = claim_health(ctx, &a.live).await.unwrap_or(health);
        }
        if !health.is_healthy() && was_healthy(&memory, &a.id, &a.live) {
            interrupted.insert(
                a.id.clone(),
                format!("{}/{}: {}", a.id.kind, a.id.name, health.reason),
            );
        }
        if health.is_healthy() {
            seen.push(Some(Seen::of(&a.live)));
        } else {
            seen.push(None);
            pending.insert(
                a.id.clone(),
                wait::Pending {
                    resource: a.resource,
                    live: a.live,
                    health: health.clone(),
                },
            );
        }
        reports.push(ObjectReport {
            object: a.id,
            api_version: a.api_version,
            action: a.action,
            health,
            images: a.images,
            healthy_since: None,
            interrupted: None,
        });
    }
    let waited = ctx.options.wait_for_health && !pending.is_empty();
    let mut settled = if waited {
        wait::until_settled(ctx, &env.name, pending, &marks, deadline).await
    } else {
        pending
    };
    let timed_out = tokio::time::Instant::now() >= deadline;
    for (report, seen) in reports.iter_mut().zip(seen.iter_mut()) {
        let Some(p) = settled.remove(&report.object) else {
            continue;
        };
        *seen = Some(Seen::of(&p.live));
        if !waited {
            continue;
        }
        report.health = p.health;
        if timed_out && report.health.status == HealthStatus::Progressing {
            let timeout = env.health_timeout.unwrap_or(ctx.options.health_timeout);
            report.health = Health::failed(
                "HealthTimeout",
                format!(
                    "not healthy within {}: {} ({})",
                    human(timeout),
                    report.health.message,
                    report.health.reason
                ),
            );
        }
    }

    // Remember healthy rollouts (keeping the time they first became healthy).
    let now = Utc::now();
    let mut next = EnvMemory::default();
    for (report, seen) in reports.iter_mut().zip(seen) {
        report.interrupted = interrupted.remove(&report.object);
        if !report.health.is_healthy() {
            continue;
        }
        if report.interrupted.is_some() {
            // Healthy again within this reconcile: the healthy time starts over.
            memory.rollouts.remove(&report.object);
            memory.healthy.remove(&report.object);
        }
        let Seen { mark, rendered } = seen.unwrap_or_default();
        let Some(mark) = mark else {
            // Not a workload with a rollout: healthy since it was first healthy as rendered
            // now (a Job running the app's image must not restart the app's soak).
            let since = match memory.healthy.get(&report.object) {
                Some((hash, since)) if *hash == rendered => *since,
                _ => now,
            };
            report.healthy_since = Some(since);
            next.healthy
                .insert(report.object.clone(), (rendered, since));
            continue;
        };
        let since = match memory.rollouts.get(&report.object) {
            Some((old, since)) if old.template == mark.template => *since,
            _ => now,
        };
        // A rollout held healthy while scaling keeps its original mark.
        let mark = match memory.rollouts.get(&report.object) {
            Some((old, _)) if report.health.reason == "Scaling" => old.clone(),
            _ => mark,
        };
        report.healthy_since = Some(since);
        next.rollouts.insert(report.object.clone(), (mark, since));
    }
    ctx.remember(&env.name, next);
    let health = EnvHealth::of(reports.iter().map(|r| (&r.object, &r.health)));
    (reports, health)
}

/// What the memory of healthy objects needs of a live object.
#[derive(Default)]
struct Seen {
    /// A workload's rollout mark.
    mark: Option<health::RolloutMark>,
    /// The rendered hash it carries (empty without one).
    rendered: String,
}

impl Seen {
    fn of(live: &Value) -> Self {
        Self {
            mark: health::rollout_mark(live),
            rendered: live
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(object::HASH_ANNOTATION))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// Whether the last reconcile saw this object healthy as it is rendered now (the same pod
/// template, or the same rendered hash).
fn was_healthy(memory: &EnvMemory, id: &ObjectId, live: &Value) -> bool {
    if let Some((mark, _)) = memory.rollouts.get(id) {
        return health::rollout_mark(live).is_some_and(|m| m.template == mark.template);
    }
    memory.healthy.get(id).is_some_and(|(hash, _)| {
        live.pointer("/metadata/annotations")
            .and_then(|a| a.get(object::HASH_ANNOTATION))
            .and_then(Value::as_str)
            == Some(hash.as_str())
    })
}

/// A pending claim's health from its StorageClass (one GET): healthy while it waits for its
/// first consumer. `None` when the class says nothing more (or cannot be read).
async fn claim_health(ctx: &Context, claim: &Value) -> Option<Health> {
    let class = claim.pointer("/spec/storageClassName")?.as_str()?;
    let api: kube::Api<k8s_openapi::api::storage::v1::StorageClass> =
        kube::Api::all(ctx.client.clone());
    let found = retrying(ctx, || api.get_opt(class)).await.ok()??;
    health::waiting_for_first_consumer(claim, &serde_json::to_value(found).ok()?)
}

/// `300ms`, `45s`, `10m`, `1h30m`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{secs}s"),
        _ if secs.is_multiple_of(3600) => format!("{}h", secs / 3600),
        _ if secs >= 3600 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ if secs.is_multiple_of(60) => format!("{}m", secs / 60),
        _ => format!("{}m{}s", secs / 60, secs % 60),
    }
}

/// Call the API, retrying transient errors a few times with backoff (kube itself already
/// retries 429/503/504).
pub(crate) async fn retrying<T, F, Fut>(ctx: &Context, mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if attempt < ctx.options.call_retries && error::is_transient(&e) => {
                let wait = error::backoff(attempt, ctx.options.retry_base, Duration::from_secs(10));
                tracing::debug!(error = %error::describe(&e), ?wait, "transient API error; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The reconciler's input for an environment: its overlay `env_dir` rendered from
/// `repo_root` (a checkout or tree of `commit`). A render error becomes
/// [`ReconcileError::Render`], naming the file and line, and nothing is applied.
pub fn render_input(
    env: &Env,
    commit: &str,
    repo_root: &std::path::Path,
    env_dir: &std::path::Path,
) -> Result<Vec<Value>, ReconcileError> {
    render_input_with(
        env,
        commit,
        repo_root,
        env_dir,
        &crate::render::Options::default(),
    )
}

/// [`render_input`] with render options (a helm binary for `helmCharts`, from `baton.yaml`'s
/// `render:`).
pub fn render_input_with(
    env: &Env,
    commit: &str,
    repo_root: &std::path::Path,
    env_dir: &std::path::Path,
    options: &crate::render::Options,
) -> Result<Vec<Value>, ReconcileError> {
    let objects = crate::render::render_with(repo_root, env_dir, options)
        .map(|(objects, _warnings)| objects.into_iter().map(|o| o.value).collect());
    rendered(env, commit, objects)
}

/// Turn any renderer's result into the reconciler's input. A render error becomes
/// [`ReconcileError::Render`], and nothing is applied.
pub fn rendered<E>(
    env: &Env,
    commit: &str,
    result: Result<Vec<Value>, E>,
) -> Result<Vec<Value>, ReconcileError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| ReconcileError::Render {
        env: env.name.clone(),
        commit: commit.to_string(),
        source: Box::new(e),
    })
}
