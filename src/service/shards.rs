//! Replicas that share the clusters (docs/service.md, "Replicas"). With leader election every
//! replica campaigns for the clusters' Leases (`<lease>-reconcile-<cluster>`,
//! [`crate::leader::shards`]) and runs the reconciler of each cluster it holds, whether or not
//! it leads the engine. What a reconcile finds goes into the environment's persisted state
//! (soak clocks, the rollout, what the prune guard holds back); the replica that leads the
//! engine reads it back there, reports it on GitHub and plans from it. Nothing but the engine's
//! leader writes to GitHub.
//!
//! ```text
//! replica holding cluster C:  runner(C) ─► state ConfigMap of C's envs ─► nudge the engine's Lease
//! engine leader:              each pass: read the others' envs ─► report new rollouts, verify, plan
//! every replica:              config branch moved / /prune approved ─► trigger the runners it holds
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::Loops;
use super::fence::WriteGuard;
use crate::config::pipeline::Pipeline;
use crate::leader::shards::Held;
use crate::reconcile::runner;

/// One cluster's reconciler: its name, the guard its writes pass, its environments.
pub(super) struct ClusterRunner {
    pub name: String,
    pub guard: WriteGuard,
    pub envs: Vec<String>,
}

impl Loops {
    /// Every cluster reconciled here, without election.
    pub(super) fn hold_all(&self) {
        let mut held = self.held_envs.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(self.env_runner.keys().cloned());
    }

    fn holds_env(&self, env: &str) -> bool {
        self.held_envs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(env)
    }

    /// Run the reconciler of each cluster whose Lease this replica holds, and stop it when the
    /// Lease goes (its writes already stopped at the fence). Returns once `stop` is set and
    /// the reconcilers have stopped.
    pub(super) async fn run_shards(
        self: Arc<Self>,
        mut held: watch::Receiver<Held>,
        outcomes: mpsc::Sender<runner::Outcome>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut running: BTreeMap<usize, (watch::Sender<bool>, JoinHandle<()>)> = BTreeMap::new();
        loop {
            let now = held.borrow_and_update().clone();
            running.retain(|&i, (tx, _)| {
                let cluster = &self.clusters[i];
                let keep = now.contains_key(&cluster.name);
                if !keep {
                    tracing::info!(cluster = %cluster.name, "no longer reconciling the cluster: its lease went to another replica");
                    let mut envs = self.held_envs.lock().unwrap_or_else(|e| e.into_inner());
                    for env in &cluster.envs {
                        envs.remove(env);
                    }
                    let _ = tx.send(true);
                }
                keep
            });
            for (i, cluster) in self.clusters.iter().enumerate() {
                let Some(fence) = now.get(&cluster.name) else {
                    continue;
                };
                if running.contains_key(&i) {
                    continue;
                }
                cluster.guard.add(fence.clone());
                self.state_guard.add(fence.clone());
                self.take_cluster(cluster).await;
                let (tx, mut rx) = watch::channel(false);
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let task = tokio::spawn(self.runners[i].clone().run(outcomes.clone(), stopped));
                tracing::info!(cluster = %cluster.name, envs = ?cluster.envs, "reconciling the cluster");
                running.insert(i, (tx, task));
            }
            tokio::select! {
                r = held.changed() => if r.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (_, (tx, task)) in running {
            let _ = tx.send(true);
            let _ = task.await;
        }
    }

    /// Before reconciling a cluster just taken: read its environments' state (another replica
    /// wrote it) and give its reconciler back the rollout marks.
    async fn take_cluster(&self, cluster: &ClusterRunner) {
        for attempt in 1..=3u32 {
            match self.shared.state.refresh(&cluster.envs).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    tracing::warn!(cluster = %cluster.name, error = %e, "cannot read the cluster's state yet; retrying");
                    tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::error!(cluster = %cluster.name, error = %e, "cannot read the cluster's state; its soak clocks start over");
                }
            }
        }
        let mut held = self.held_envs.lock().unwrap_or_else(|e| e.into_inner());
        for env in &cluster.envs {
            if let Some(ctx) = self.contexts.get(env) {
                let marks = self
                    .shared
                    .state
                    .with(env, |s| s.map(|s| s.rollouts.clone()).unwrap_or_default());
                ctx.restore(env, &marks);
            }
            held.insert(env.clone());
        }
    }

    /// Whether `tip` is new since the reconcilers were last triggered (the first tip seen is
    /// not: each reconciler starts with a reconcile of its own).
    pub(super) fn tip_moved(&self, tip: &str) -> bool {
        let mut last = self.triggered_tip.lock().unwrap_or_else(|e| e.into_inner());
        let moved = last.as_deref().is_some_and(|l| l != tip);
        *last = Some(tip.to_string());
        moved
    }

    /// Every `intervals.plan`, on every replica: fetch the config branch and reconcile the
    /// clusters held here when it moved, and when an approver's `/prune` (written by the
    /// engine's leader) lets held deletions go. Apart from the promotion loop, so that a pass
    /// waiting on GitHub's write pacing does not hold back the reconcilers.
    pub(super) async fn watch_tip(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = self.cfg.intervals.plan.0;
        let mut approvals: BTreeMap<String, Option<String>> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let envs: Vec<String> = self
                .held_envs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect();
            // Also where no cluster is held: the status page's pins and history read it.
            let source = self.source.clone();
            let tip = tokio::task::block_in_place(|| {
                source.invalidate();
                source.refresh().map(|(tip, _)| tip)
            });
            let moved = match tip {
                Ok(tip) if self.tip_moved(&tip) => {
                    if !envs.is_empty() {
                        tracing::info!(tip = %&tip[..tip.len().min(12)], "config branch moved; reconciling the clusters held here");
                    }
                    for env in &envs {
                        self.trigger(env);
                    }
                    true
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the config branch");
                    false
                }
            };
            if !self.leading.load(std::sync::atomic::Ordering::SeqCst) {
                // A follower's status page: what every environment runs, as persisted.
                let all: Vec<String> = self.env_runner.keys().cloned().collect();
                match self.shared.state.refresh(&all).await {
                    Ok(()) => tokio::task::block_in_place(|| self.refresh_view()),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the state for the status page")
                    }
                }
            } else if moved {
                tokio::task::block_in_place(|| self.refresh_view());
            }
            if envs.is_empty() {
                continue;
            }
            let held: Vec<String> = envs
                .iter()
                .filter(|env| {
                    self.shared
                        .state
                        .with(env, |s| s.is_some_and(|s| s.prune_held.is_some()))
                })
                .cloned()
                .collect();
            if held.is_empty() {
                continue;
            }
            if let Err(e) = self.shared.state.refresh(&held).await {
                tracing::warn!(error = %e, "cannot read /prune approvals");
                continue;
            }
            for env in held {
                let approved = self
                    .shared
                    .state
                    .with(&env, |s| s.and_then(|s| s.prune_approved.clone()));
                if approvals.get(&env) != Some(&approved) {
                    if approved.is_some() {
                        self.trigger(&env);
                    }
                    approvals.insert(env, approved);
                }
            }
        }
    }

    /// The open promotion PRs as the last pass saw them, with the gates each waits on.
    pub(super) fn open_promotions(
        &self,
        snapshot: &crate::engine::Snapshot,
    ) -> Vec<crate::server::view::OpenPromotion> {
        use crate::server::view;
        let mut open: Vec<view::OpenPromotion> = snapshot
            .open
            .iter()
            .map(|(pr, url)| view::OpenPromotion::from_pull_request(pr, Some(url.clone())))
            .collect();
        view::apply_outcomes(
            &mut open,
            &self.last_outcomes.lock().unwrap_or_else(|e| e.into_inner()),
        );
        open
    }

    /// On the engine's leader with other replicas, after each pass: keep each environment's
    /// open promotion PRs in its persisted state (written only when they changed), for the
    /// other replicas' status pages.
    pub(super) async fn publish_open(&self) {
        if !self.replicated || !self.leading.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(pipeline) = self.source.pipeline() else {
            return;
        };
        let open = self.open_promotions(&self.engine.snapshot());
        for env in &pipeline.environments {
            let mine: Vec<_> = open.iter().filter(|o| o.env == env.name).cloned().collect();
            self.shared
                .state
                .update(&env.name, |s| s.show_open(mine.clone()))
                .await;
        }
    }

    /// A follower's open promotion PRs: what the leader kept in each environment's state.
    pub(super) fn persisted_open(
        &self,
        pipeline: &Pipeline,
    ) -> Vec<crate::server::view::OpenPromotion> {
        let mut open = Vec::new();
        for env in &pipeline.environments {
            self.shared.state.with(&env.name, |s| {
                open.extend(s.into_iter().flat_map(|s| s.open.clone()))
            });
        }
        open
    }

    /// Each environment's last reconcile: this replica's own, or the one the replica
    /// reconciling its cluster kept in the state, whichever is newer.
    pub(super) fn latest_reconciles(
        &self,
        pipeline: &Pipeline,
    ) -> BTreeMap<String, crate::server::view::ReconcileSummary> {
        let mut latest = self
            .reconciles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for env in &pipeline.environments {
            let Some(kept) = self
                .shared
                .state
                .with(&env.name, |s| s.and_then(|s| s.reconciled.clone()))
            else {
                continue;
            };
            if latest
                .get(&env.name)
                .is_none_or(|own| own.finished_at < kept.finished_at)
            {
                latest.insert(env.name.clone(), kept);
            }
        }
        latest
    }

    /// What a follower's status page shows of the config branch: the pins at the tip its
    /// reconcilers read (the open PRs are the leader's: [`Loops::persisted_open`]).
    pub(super) fn follower_snapshot(&self, pipeline: &Pipeline) -> crate::engine::Snapshot {
        let mut pinned = BTreeMap::new();
        if let Some(tip) = self.source.commit() {
            let tree = self.source.tree(&tip);
            let files = crate::gitrepo::files::FsFiles(&tree);
            for env in &pipeline.environments {
                for app in pipeline.apps.keys() {
                    if let Ok(Some(p)) =
                        crate::gitrepo::bump::current(&files, pipeline, &env.name, app)
                    {
                        pinned.insert((env.name.clone(), app.clone()), p);
                    }
                }
            }
        }
        crate::engine::Snapshot {
            pinned,
            open: Vec::new(),
        }
    }

    /// On the engine's leader, before each pass: read again the state of the environments
    /// reconciled by other replicas, report each rollout not reported yet, and start the
    /// verifications a `/retry` asked for.
    pub(super) async fn sync_rollouts(self: &Arc<Self>) {
        let envs: Vec<String> = self.env_runner.keys().cloned().collect();
        let elsewhere: Vec<String> = envs
            .iter()
            .filter(|e| !self.holds_env(e))
            .cloned()
            .collect();
        if !elsewhere.is_empty()
            && let Err(e) = self.shared.state.refresh(&elsewhere).await
        {
            tracing::warn!(error = %e, "cannot read the state other replicas wrote");
        }
        for env in &envs {
            let Some(rollout) = self
                .shared
                .state
                .with(env, |s| s.and_then(|s| s.rollout.clone()))
            else {
                continue;
            };
            let reported = self
                .reported
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(env)
                .is_some_and(|r| r.same_as(&rollout));
            if !reported {
                // Reported by the report loop, which reports this replica's own rollouts too.
                self.remote_rollouts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(env.clone(), rollout);
                self.remote_ready.notify_one();
            } else if self
                .shared
                .state
                .with(env, |s| s.is_some_and(|s| s.apps.values().any(|a| a.retry)))
            {
                self.maybe_verify(&rollout).await;
            }
        }
    }
}
