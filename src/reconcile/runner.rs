//! The reconcile loop: one task per environment, each reconciling when its input may have
//! changed (a trigger: the config branch moved) and on a resync interval (drift), backing off
//! with jitter after transient errors. [`super::reconcile`] itself keeps one reconcile per
//! environment at a time and bounds how many environments run at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use super::context::{Context, Env};
use super::error::{ReconcileError, backoff};
use super::report::Report;

/// What to reconcile an environment to: the commit and its rendered objects.
#[derive(Debug, Clone)]
pub struct Input {
    pub commit: String,
    pub objects: Vec<Value>,
    /// The environment's prune guard at this commit (the pipeline's `prune:` and any
    /// `/prune` approval); `None` keeps the [`Env`]'s.
    pub prune: Option<super::prune::PruneGuard>,
    /// The environment's `allow:` at this commit (`None`: unrestricted).
    pub allow: Option<crate::config::pipeline::Allow>,
    /// The ServiceAccount the environment acts as at this commit (`None`: baton itself).
    pub service_account: Option<crate::config::pipeline::ServiceAccountRef>,
}

/// One finished reconcile, for whoever reports it (commit status, PR comment, metrics).
#[derive(Debug)]
pub struct Outcome {
    pub env: String,
    /// The commit reconciled, when the input could be produced.
    pub commit: Option<String>,
    pub result: Result<Report, ReconcileError>,
    /// Consecutive failed attempts so far (0 after a success).
    pub failures: u32,
    /// When the environment will be reconciled next, unless triggered sooner.
    pub next_in: Duration,
}

/// Loop timings.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Resync interval after a success or a permanent error.
    pub resync: Duration,
    /// First retry delay after a transient error (doubling, with jitter).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl Schedule {
    /// When to run again after `result`, given the failures before it.
    pub fn next(&self, result: &Result<Report, ReconcileError>, failures: u32) -> (Duration, u32) {
        match result {
            Err(e) if e.is_transient() => (
                backoff(failures, self.backoff_base, self.backoff_max).min(self.resync),
                failures + 1,
            ),
            Err(_) => (self.resync, failures + 1),
            Ok(_) => (self.resync, 0),
        }
    }
}

/// Drives reconciles of a cluster's environments. `source` produces an environment's input
/// (`baton run` renders the config branch tip: `service::TipSource`).
pub struct Runner<F> {
    ctx: Arc<Context>,
    source: Arc<F>,
    schedule: Schedule,
    envs: Vec<Env>,
    triggers: HashMap<String, Arc<Notify>>,
}

impl<F, Fut> Runner<F>
where
    F: Fn(Env) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Input, ReconcileError>> + Send + 'static,
{
    pub fn new(ctx: Arc<Context>, envs: Vec<Env>, schedule: Schedule, source: F) -> Self {
        let triggers = envs
            .iter()
            .map(|e| (e.name.clone(), Arc::new(Notify::new())))
            .collect();
        Self {
            ctx,
            source: Arc::new(source),
            schedule,
            envs,
            triggers,
        }
    }

    /// Reconcile `env` as soon as it is free (e.g. the config branch moved). Triggers while a
    /// reconcile runs coalesce into one more. False for an unknown environment.
    pub fn trigger(&self, env: &str) -> bool {
        match self.triggers.get(env) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Run until `shutdown` resolves, sending every outcome to `outcomes`. Each environment
    /// is reconciled once at start. A reconcile in flight at shutdown is abandoned (the next
    /// start picks up where it left: applies are idempotent).
    pub async fn run(
        self: Arc<Self>,
        outcomes: mpsc::Sender<Outcome>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for env in self.envs.clone() {
            let this = self.clone();
            let outcomes = outcomes.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move { this.env_loop(env, outcomes, stop).await });
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }

    async fn env_loop(
        &self,
        env: Env,
        outcomes: mpsc::Sender<Outcome>,
        mut stop: watch::Receiver<bool>,
    ) {
        let trigger = self.triggers[&env.name].clone();
        let mut failures = 0;
        loop {
            let work = async {
                match (self.source)(env.clone()).await {
                    Ok(input) => {
                        let env = match input.prune {
                            Some(guard) => env.clone().with_prune_guard(guard),
                            None => env.clone(),
                        }
                        .with_allow(input.allow)
                        .with_service_account(input.service_account);
                        let r =
                            super::reconcile_owned(&env, input.objects, &input.commit, &self.ctx)
                                .await;
                        (Some(input.commit), r)
                    }
                    Err(e) => (None, Err(e)),
                }
            };
            let (commit, result) = tokio::select! {
                r = work => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (next_in, f) = self.schedule.next(&result, failures);
            failures = f;
            match &result {
                Ok(_) => {}
                Err(e) if e.is_transient() => {
                    tracing::warn!(env = %env.name, error = %e, retry_in = ?next_in, "reconcile failed; retrying")
                }
                Err(e) => tracing::error!(env = %env.name, error = %e, "reconcile failed"),
            }
            let outcome = Outcome {
                env: env.name.clone(),
                commit,
                result,
                failures,
                next_in,
            };
            if outcomes.send(outcome).await.is_err() {
                return;
            }
            tokio::select! {
                _ = trigger.notified() => {}
                _ = tokio::time::sleep(next_in) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_back_off_permanent_ones_wait_for_the_resync() {
        let s = Schedule {
            resync: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        };
        let transient: Result<Report, ReconcileError> = Err(ReconcileError::CrdNotEstablished {
            name: "x".into(),
            waited: Duration::from_secs(1),
        });
        let (d0, f) = s.next(&transient, 0);
        assert!(
            d0 >= Duration::from_millis(500) && d0 <= Duration::from_secs(1),
            "{d0:?}"
        );
        assert_eq!(f, 1);
        let (d5, _) = s.next(&transient, 5);
        assert!(
            d5 >= Duration::from_secs(16) && d5 <= Duration::from_secs(32),
            "{d5:?}"
        );
        let permanent: Result<Report, ReconcileError> = Err(ReconcileError::UnknownKinds {
            env: "dev".into(),
            objects: vec![],
        });
        assert_eq!(s.next(&permanent, 3), (Duration::from_secs(300), 4));
    }
}
