//! What a reconcile outcome becomes: persisted for every replica (the soak clocks, the rollout),
//! then, on the engine's leader only, reported on GitHub (`Engine::report_rollout`) and
//! verified (`verify:` Jobs). The replica that reconciles a cluster and the one that reports on
//! GitHub may differ (docs/service.md, "Replicas share the clusters").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::mpsc;

use super::Loops;
use crate::engine::Engine;
use crate::forge::github::GitHubForge;
use crate::reconcile::Env;
use crate::reconcile::runner;
use crate::reconcile::verify::{VerifyJob, VerifyRun};

impl Loops {
    /// After a healthy rollout in an environment with `verify:` steps, run its acceptance
    /// Jobs for each app's digest (once per digest and attempt), in the background, then report.
    pub(super) async fn maybe_verify(self: &Arc<Self>, rollout: &crate::engine::Rollout) {
        use crate::promote::state::DeployState;
        let Some(pipeline) = self.source.pipeline() else {
            return;
        };
        let Some(env_cfg) = pipeline.environment(&rollout.env).cloned() else {
            return;
        };
        if env_cfg.verify.is_empty()
            || !matches!(rollout.state, crate::engine::RolloutState::Healthy { .. })
        {
            return;
        }
        let Some(ctx) = self.verify_contexts.get(&rollout.env).cloned() else {
            return;
        };
        let commit = rollout.commit.as_str();
        let pinned = self.engine.snapshot().pinned;
        for d in &rollout.apps {
            if d.state != DeployState::Healthy {
                continue;
            }
            let digest = d.digest.to_string();
            // Once per digest and attempt, also across restarts (the state remembers results;
            // a run cut short is read back from its Job, never started again).
            let Some(attempt) = self.next_verification(&rollout.env, &d.app, &digest).await else {
                continue;
            };
            let key = (rollout.env.clone(), d.app.clone(), digest.clone(), attempt);
            if !self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone())
            {
                continue;
            }
            let tag = pinned
                .get(&(rollout.env.clone(), d.app.clone()))
                .filter(|p| p.digest == d.digest)
                .and_then(|p| p.tag.clone());
            let this = self.clone();
            let commit = commit.to_string();
            let env_cfg = env_cfg.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let jobs = VerifyJob::load_all(&this.source.tree(&commit), &env_cfg);
                let result = match jobs {
                    Err(d) => Err(d.to_string()),
                    Ok(jobs) => {
                        let run = VerifyRun::new(&key.1, &key.2, tag, key.3);
                        crate::reconcile::verify::verify(
                            &ctx,
                            &Env::new(&key.0).with_service_account(env_cfg.service_account()),
                            &jobs,
                            &run,
                        )
                        .await
                        .map_err(|e| e.to_string())
                    }
                };
                match result {
                    Ok(report) => {
                        tracing::info!(env = %key.0, app = %key.1, "{}", report.summary());
                        // Reported on GitHub first, then recorded: a bot killed in between
                        // reads the finished Job back and reports it again (idempotent), and
                        // never runs it twice.
                        match this
                            .engine
                            .report_verification(&commit, &report, env_cfg.on_failure)
                            .await
                        {
                            Ok(outcomes) => this.handle(&outcomes),
                            Err(e) => {
                                tracing::warn!(env = %key.0, error = %e, "cannot report the verification")
                            }
                        }
                        this.record_verification(&report).await;
                        this.state.nudge.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(env = %key.0, app = %key.1, error = %e, "verification could not run; retried on the next resync")
                    }
                }
                this.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                // A `/retry` that arrived while this attempt ran: start the next one now.
                if this.retry_pending(&key.0, &key.1) {
                    this.trigger(&key.0);
                }
            });
        }
    }

    /// Keep each environment's latest report; a change of health may open the next gate. The
    /// rollout is persisted, then reported on GitHub here when this replica leads the engine,
    /// else by the one that does (nudged through its Lease).
    pub(super) async fn report_loop(
        self: Arc<Self>,
        mut outcomes: mpsc::Receiver<runner::Outcome>,
    ) {
        let mut last = tokio::time::Instant::now();
        loop {
            // One task reports everything, so nothing is reported twice at once; another
            // replica's rollouts (found by the engine's pass) wait their turn here.
            let outcome = tokio::select! {
                o = outcomes.recv() => match o {
                    Some(o) => o,
                    None => return,
                },
                _ = self.remote_ready.notified() => {
                    let remote = std::mem::take(
                        &mut *self.remote_rollouts.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    for rollout in remote.values() {
                        if self.leading.load(std::sync::atomic::Ordering::SeqCst) {
                            self.report_once(rollout).await;
                        }
                    }
                    continue;
                }
            };
            self.state
                .metrics
                .reconcile_outcome(&outcome, last.elapsed());
            last = tokio::time::Instant::now();
            let summary = crate::server::view::ReconcileSummary::from_outcome(&outcome, Utc::now());
            self.reconciles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(outcome.env.clone(), summary.clone());
            let mut changed = false;
            match &outcome.result {
                Ok(report) => {
                    tracing::debug!(env = %outcome.env, "{}", report.summary());
                    let mut reports = self
                        .shared
                        .reports
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let before = reports
                        .get(&outcome.env)
                        .map(|r| (r.commit.clone(), r.health.state));
                    reports.insert(outcome.env.clone(), report.clone());
                    changed = before != Some((report.commit.clone(), report.health.state));
                }
                Err(e) => {
                    tracing::warn!(env = %outcome.env, error = %e, "reconcile failed");
                }
            }
            let rollout = match &outcome.commit {
                Some(commit) => match self
                    .engine
                    .rollout_of(&outcome.env, commit, &outcome.result)
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(env = %outcome.env, error = %e, "cannot read the rollout's pipeline");
                        None
                    }
                },
                None => None,
            };
            changed |= self
                .record_outcome(&outcome.env, &outcome.result, rollout.as_ref(), &summary)
                .await;
            match &rollout {
                Some(r) if self.leading.load(std::sync::atomic::Ordering::SeqCst) => {
                    self.report_once(r).await
                }
                _ => {}
            }
            if changed {
                // Here: the next pass reads it. On a follower: passed on to the leader.
                self.state.nudge.notify_one();
            }
            tokio::task::block_in_place(|| self.refresh_view());
        }
    }

    /// Report `rollout` on GitHub (commit status `baton/<env>`, PR timelines, rollbacks) and
    /// start its verifications, unless it is the one this replica reported last.
    pub(super) async fn report_once(self: &Arc<Self>, rollout: &crate::engine::Rollout) {
        if self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&rollout.env)
            == Some(rollout)
        {
            return;
        }
        self.maybe_verify(rollout).await;
        match self.engine.report_rollout(rollout, Utc::now()).await {
            Ok(outcomes) => {
                self.handle(&outcomes);
                self.reported
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(rollout.env.clone(), rollout.clone());
            }
            Err(e) => {
                tracing::warn!(env = %rollout.env, error = %e, "cannot report the rollout")
            }
        }
    }
}

/// Before the first apply of a new commit to an environment: commit status `baton/<env>`
/// pending and "applying" on the PR, unless that commit already has a `baton/<env>` status (a
/// restart re-reconciling what was reported). Best effort: a failure here never blocks the
/// apply, and the report after the reconcile sets the final state.
pub(super) async fn announce_applying(
    engine: &Engine<GitHubForge>,
    announced: &Mutex<BTreeMap<String, String>>,
    env: &str,
    commit: &str,
) {
    {
        let mut seen = announced.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get(env).map(String::as_str) == Some(commit) {
            return;
        }
        seen.insert(env.to_string(), commit.to_string());
    }
    let context = format!("baton/{env}");
    match crate::forge::Forge::statuses(engine.forge(), commit).await {
        Ok(statuses) if statuses.iter().any(|s| s.context == context) => return,
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(%env, error = %e, "cannot read statuses; not announcing the apply");
            return;
        }
    }
    let rollout = crate::engine::Rollout {
        env: env.to_string(),
        commit: commit.to_string(),
        state: crate::engine::RolloutState::Applying,
        apps: Vec::new(),
    };
    if let Err(e) = engine.report_rollout(&rollout, Utc::now()).await {
        tracing::debug!(%env, error = %e, "cannot announce the apply");
    }
}
