//! The service's side of [`crate::state`]: where the state lives (the home cluster), loading
//! it when this process starts to lead, and writing what a reconcile report, a verification
//! or a `/retry` changed.

use chrono::Utc;

use crate::config::RuntimeConfig;
use crate::config::pipeline::Pipeline;
use crate::reconcile::{self, Report};
use crate::state::store::StateStore;
use crate::state::{self, VerifyRecord};

use super::ServiceError;

/// baton's home cluster: the one `inCluster: true`, else the first in `baton.yaml`. Its
/// Lease and its persisted state live there, in that cluster's `namespace`.
pub fn home_cluster(
    cfg: &RuntimeConfig,
) -> Option<(&String, &crate::config::runtime::ClusterConfig)> {
    cfg.clusters
        .iter()
        .find(|(_, c)| c.in_cluster)
        .or_else(|| cfg.clusters.iter().next())
}

/// The state store in the home cluster (in memory when `baton.yaml` names no cluster).
pub async fn home_store(cfg: &RuntimeConfig) -> Result<StateStore, ServiceError> {
    store_in_home(cfg, None).await
}

/// [`home_store`], its writes refused once `guard`'s lease may have passed on.
pub(super) async fn store_in_home(
    cfg: &RuntimeConfig,
    guard: Option<&super::fence::WriteGuard>,
) -> Result<StateStore, ServiceError> {
    match home_cluster(cfg) {
        None => Ok(StateStore::memory()),
        Some((name, cluster)) => {
            let ctx =
                super::cluster_context(name, cluster, reconcile::Options::default(), guard).await?;
            Ok(StateStore::kube(ctx.client, &cluster.namespace))
        }
    }
}

/// Read the state of every environment (the planner's view in `baton plan`).
pub async fn load_deployments(
    cfg: &RuntimeConfig,
    pipeline: &Pipeline,
) -> Result<
    std::collections::BTreeMap<(String, String), crate::promote::state::Deployment>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    let store = home_store(cfg).await?;
    let envs: Vec<String> = pipeline
        .environments
        .iter()
        .map(|e| e.name.clone())
        .collect();
    store.load(&envs).await?;
    Ok(state::deployments(&store.snapshot(), pipeline))
}

impl super::Loops {
    /// On becoming the one that acts: read what the previous leader (or this process before
    /// a restart) wrote, and give each reconciler back its rollout marks. Tried until it
    /// succeeds or a few times; without it the soak clocks start over (never early).
    pub(super) async fn restore_state(&self) {
        let envs: Vec<String> = self.env_runner.keys().cloned().collect();
        let mut tries = 0u32;
        loop {
            match self.shared.state.load(&envs).await {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, "cannot read baton's state yet; retrying");
                    tokio::time::sleep(reconcile::error::backoff(
                        tries,
                        std::time::Duration::from_millis(500),
                        std::time::Duration::from_secs(5),
                    ))
                    .await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read baton's state; soak clocks start over");
                    return;
                }
            }
        }
        for (env, state) in self.shared.state.snapshot() {
            if let Some(ctx) = self.contexts.get(&env) {
                ctx.restore(&env, &state.rollouts);
            }
        }
        tracing::info!(
            envs = envs.len(),
            persistent = self.shared.state.is_persistent(),
            "restored baton's state"
        );
    }

    /// Take in a reconcile outcome: soak clocks, what runs, the rollout marks, what the prune
    /// guard holds back, the rollout to report, and the summary other replicas' status pages
    /// show. Returns whether the rollout changed.
    pub(super) async fn record_outcome(
        &self,
        env: &str,
        result: &Result<Report, reconcile::ReconcileError>,
        rollout: Option<&crate::engine::Rollout>,
        summary: &crate::server::view::ReconcileSummary,
    ) -> bool {
        let Some(pipeline) = self.source.pipeline() else {
            return false;
        };
        let observations = result
            .as_ref()
            .ok()
            .map(|report| state::observations(report, &pipeline));
        let prune_held = result
            .as_ref()
            .ok()
            .map(|r| r.prune_held.as_ref().map(|_| r.commit.clone()));
        let rollouts = self
            .contexts
            .get(env)
            .map(|c| c.remembered(env))
            .unwrap_or_default();
        let now = Utc::now();
        self.shared
            .state
            .update(env, |s| {
                if let Some(observations) = &observations {
                    s.observe(observations, now);
                    s.rollouts = rollouts.clone();
                }
                if let Some(held) = &prune_held {
                    s.prune_held = held.clone();
                }
                s.show_reconcile(summary);
                rollout.is_some_and(|r| s.record_rollout(r))
            })
            .await
    }

    /// Which verification attempt to run for `app` at `digest` (`None`: it has its result).
    pub(super) async fn next_verification(
        &self,
        env: &str,
        app: &str,
        digest: &str,
    ) -> Option<u32> {
        self.shared
            .state
            .update(env, |s| s.next_verification(app, digest))
            .await
    }

    /// Record a verification's result.
    pub(super) async fn record_verification(
        &self,
        report: &crate::reconcile::verify::VerifyReport,
    ) {
        let record = VerifyRecord::from(report);
        self.shared
            .state
            .update(&report.env, |s| {
                s.record_verification(&report.app, record.clone())
            })
            .await;
    }

    /// Record a `/retry` (written by the next write or flush, right after the pass).
    pub(super) fn request_retry(&self, env: &str, app: &str) {
        self.shared.state.change(env, |s| s.request_retry(app));
    }

    /// Write what is not written yet (a `/retry`), logging a failure.
    pub(super) async fn flush_state(&self) {
        if let Err(e) = self.shared.state.flush().await {
            tracing::warn!(error = %e, "cannot write baton's state; trying again after the next pass");
        }
    }

    /// Whether a `/retry` of `app` in `env` waits.
    pub(super) fn retry_pending(&self, env: &str, app: &str) -> bool {
        self.shared.state.get(env).retry_pending(app)
    }
}
