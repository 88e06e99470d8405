//! The promotion loop of the engine's leader: scan the registries, run a pass (observe,
//! answer commands, plan, act), then what follows a pass (answers on closed PRs, the state's
//! pending writes, `baton/validate` checks, the status page, the dashboard), and act on what
//! the pass did.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::Loops;
use crate::engine::Outcome;

impl Loops {
    /// Scan (on registry hints or every `intervals.registry`), plan and act (on any nudge or
    /// every `intervals.plan`). One pass at a time; a nudge during a pass makes one more.
    pub(super) async fn promotion_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let registry_every = self.cfg.intervals.registry.0;
        let plan_every = self.cfg.intervals.plan.0;
        let mut last_scan: Option<tokio::time::Instant> = None;
        let mut failures = 0u32;
        // Commands a previous run died handling on PRs it had closed (until it succeeds once).
        let mut swept_closed = false;
        let mut guard_reported = false;
        loop {
            if *stop.borrow() {
                return;
            }
            // Registry: hints make the next scan re-read the repositories they name.
            let hints = self.state.take_registry_hints();
            let due = last_scan.is_none_or(|t| t.elapsed() >= registry_every);
            if !hints.is_empty() || due {
                if let Some(pipeline) = self.source.pipeline() {
                    for app in pipeline.apps.values() {
                        if let Ok(repo) = crate::registry::repo::Repo::parse(&app.image)
                            && hints.iter().any(|h| h.concerns(&repo))
                        {
                            for h in hints.iter().filter(|h| h.concerns(&repo)) {
                                self.scanner.invalidate(&repo, h.tag.as_deref());
                            }
                            // Its registry notifies: idle scans need not ask it again.
                            self.scanner.note_notifying(&repo.registry);
                        }
                    }
                }
                self.state.metrics.registry_scans.inc();
                match self.engine.releases(&self.scanner).await {
                    Ok((releases, problems)) => {
                        for p in problems {
                            tracing::warn!(problem = %p, "registry scan");
                        }
                        *self
                            .shared
                            .releases
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = releases;
                        last_scan = Some(tokio::time::Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "registry scan failed"),
                }
            }

            // What the replicas reconciling the other clusters found: reported, then planned on.
            self.sync_rollouts().await;
            let releases = self
                .shared
                .releases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let deployments = match self.source.pipeline() {
                Some(p) => self.shared.deployments(&p),
                None => BTreeMap::new(),
            };
            let pass_started = std::time::Instant::now();
            let result = self
                .engine
                .run_once(&releases, &deployments, Utc::now())
                .await;
            self.state
                .metrics
                .plan_pass_seconds
                .set(pass_started.elapsed().as_secs_f64());
            self.state.metrics.promotion_pass(&result);
            self.state.metrics.forge_calls(
                "github",
                &self.engine.forge().calls(),
                self.engine.forge().rate_limit(),
            );
            self.state
                .metrics
                .registry_calls(&self.scanner.client().stats());
            let wait = match result {
                Ok(outcomes) => {
                    failures = 0;
                    self.state.set_ready(true);
                    self.handle(&outcomes);
                    *self.last_outcomes.lock().unwrap_or_else(|e| e.into_inner()) = outcomes;
                    plan_every
                }
                Err(e) => {
                    // GitHub or Git unreachable: not ready until a pass succeeds again.
                    self.state.set_ready(false);
                    failures += 1;
                    let wait = crate::reconcile::error::backoff(
                        failures,
                        Duration::from_secs(1),
                        plan_every,
                    );
                    if e.is_transient() {
                        tracing::warn!(error = %e, retry_in = ?wait, "promotion pass failed; retrying");
                    } else {
                        tracing::error!(error = %e, "promotion pass failed");
                    }
                    wait
                }
            };
            if !swept_closed {
                match self.engine.answer_recently_closed(10).await {
                    Ok(outcomes) => {
                        swept_closed = true;
                        self.handle(&outcomes);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read recently closed PRs"),
                }
            }
            // Commands typed on merged or closed promotion PRs (`/rollback prod`).
            for pr in self.state.take_commented() {
                match self.engine.answer_pr(pr).await {
                    Ok(outcomes) => self.handle(&outcomes),
                    Err(e) => tracing::warn!(pr, error = %e, "cannot answer a command"),
                }
            }
            self.flush_state().await;
            // Once: whether the branch rules and CODEOWNERS make the gates bind people's PRs.
            if !guard_reported {
                guard_reported =
                    crate::prcheck::guard::log_once(self.checker.guard(self.engine.forge()).await);
            }
            // `baton/validate` on the merge groups a merge queue asked about.
            for (sha, head_ref) in self.state.take_merge_groups() {
                if let Err(e) = self
                    .checker
                    .check_merge_group(self.engine.forge(), &sha, &head_ref)
                    .await
                {
                    tracing::warn!(group = %sha, error = %e, "cannot check a merge group");
                    if e.is_transient() {
                        // Try again next pass: the queue waits for this check.
                        self.state
                            .merge_groups
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((sha, head_ref));
                    }
                }
            }
            // The `baton/validate` check on every open PR's head (skips heads already checked).
            match self.checker.run_once(self.engine.forge()).await {
                Ok(checked) => {
                    if checked
                        .iter()
                        .any(|c| matches!(c, crate::prcheck::CheckOutcome::Checked { .. }))
                    {
                        // A new check result may open a gate.
                        self.state.nudge.notify_one();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "baton/validate check failed"),
            }
            self.update_dora().await;
            tokio::task::block_in_place(|| self.refresh_view());
            self.publish_open().await;
            self.sync_dashboard().await;
            // The config branch moved (a merge here, or a push by anyone): reconcile it.
            // Off the worker: the clone's lock may be held through a fetch.
            if let Some(tip) = tokio::task::block_in_place(|| self.engine.config_tip())
                && self.tip_moved(&tip)
            {
                tracing::info!(tip = %&tip[..tip.len().min(12)], "config branch moved; reconciling");
                self.trigger_all();
            }
            tokio::select! {
                _ = self.state.nudge.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Act on what a pass did (the engine logs each step itself): a merge moves the
    /// environment's config, so reconcile it now.
    pub(super) fn handle(&self, outcomes: &[Outcome]) {
        self.notify(outcomes);
        for o in outcomes {
            match o {
                Outcome::Merged { env, .. } => self.trigger(env),
                // Plan again at once: the rollback PR may merge in the next pass.
                Outcome::RollbackOpened { .. } => self.state.nudge.notify_one(),
                Outcome::PruneApproved { env, by, pr } => {
                    // The approval covers what the latest reconcile held back, at its commit.
                    // Persisted: the replica reconciling the environment may be another one,
                    // and a restart does not ask the approver again.
                    let held_at = self
                        .shared
                        .state
                        .with(env, |s| s.and_then(|s| s.prune_held.clone()));
                    match held_at {
                        Some(commit) => {
                            tracing::info!(env = %env, commit = %commit, by = %by, pr, "held deletions approved");
                            self.shared
                                .state
                                .change(env, |s| s.prune_approved = Some(commit));
                            self.trigger(env);
                        }
                        None => {
                            tracing::info!(env = %env, by = %by, pr, "/prune: nothing is held back in this environment")
                        }
                    }
                }
                Outcome::RetryRequested { env, app, .. } => {
                    // Run again whatever digest the environment runs once its current
                    // verification is done (see `maybe_verify`).
                    self.request_retry(env, app);
                    self.trigger(env);
                    // The next pass starts it from the persisted rollout, wherever the
                    // environment is reconciled.
                    self.state.nudge.notify_one();
                }
                _ => {}
            }
        }
    }
}
