//! What the bot must not forget when it restarts or another replica takes over, and is in
//! neither Git nor GitHub: per environment, the soak clock of each app × digest (healthy
//! since when, and the last interruption), what it runs and how healthy, its verification
//! attempts and results, a pending `/retry`, the reconciler's rollout marks, and which
//! notifications are pending or were delivered.
//!
//! This module is the pure part: the [`EnvState`] document, how a reconcile report, a
//! verification or a `/retry` changes it, how it is written down (JSON in one ConfigMap key)
//! and read back, how it is kept small, and what the planner reads from it
//! ([`deployments`]). [`store`] is the thin I/O part (a ConfigMap per environment). The
//! service, `baton plan` and the status page all read the planner's view through
//! [`deployments`], so every process gives the same soak verdict.

pub mod store;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::pipeline::Pipeline;
use crate::promote::state::{DeployState, Deployment, SoakRestart};
use crate::reconcile::Report;
use crate::reconcile::context::Remembered;
use crate::reconcile::health::HealthStatus;
use crate::reconcile::verify::VerifyReport;
use crate::server::view::{OpenPromotion, ReconcileSummary};

/// The version of the document; a newer one than this build knows is not overwritten.
pub const FORMAT: u32 = 1;
/// The ConfigMap data key holding the document.
pub const KEY: &str = "state.json";
/// The key of the gzipped document, in `binaryData`, when the plain one is over [`PLAIN_BYTES`].
pub const KEY_GZ: &str = "state.json.gz";
/// Up to this size the document is kept as plain JSON, readable with `kubectl get`.
pub const PLAIN_BYTES: usize = 256 * 1024;
/// Soak clocks kept per app: the digest it runs and the newest others (a rollback target may
/// come back; older ones are dropped).
pub const CLOCKS_PER_APP: usize = 4;
/// A ConfigMap holds at most 1 MiB; the document stays well under it.
pub const MAX_BYTES: usize = 512 * 1024;

/// One environment's remembered state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvState {
    #[serde(default)]
    pub format: u32,
    #[serde(default)]
    pub apps: BTreeMap<String, AppState>,
    /// The reconciler's rollout marks (pod template and since when it has been healthy).
    #[serde(default, skip_serializing_if = "Remembered::is_empty")]
    pub rollouts: Remembered,
    /// Notifications of this environment: pending and done ([`crate::notify::log`]).
    #[serde(default, skip_serializing_if = "crate::notify::log::Log::is_empty")]
    pub notify: crate::notify::log::Log,
    /// The last rollout the reconciler saw, written by the replica that reconciles the
    /// environment's cluster and reported on GitHub by the one that leads the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::engine::Rollout>,
    /// The commit whose deletions the prune guard holds back (`None`: nothing held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_held: Option<String>,
    /// The commit an approver's `/prune` let go ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_approved: Option<String>,
    /// For the status pages of the replicas that do not see it themselves, kept only when it
    /// changes: the open promotion PRs into this environment with their gates, as the
    /// engine's leader saw them in its last pass, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenPromotion>,
    /// ... and the last reconcile that told something new (a new commit, health or error, or
    /// a write), by the replica that reconciles the environment's cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<ReconcileSummary>,
}

/// One app in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppState {
    /// What the last reconcile found running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Running>,
    /// Soak clocks by digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clocks: BTreeMap<String, SoakClock>,
    /// The latest verification (acceptance tests) of this app here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyRecord>,
    /// The verification attempt to run per digest (1 when absent; `/retry` bumps it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempts: BTreeMap<String, u32>,
    /// A `/retry` asked for and not started yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// What the environment runs for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub digest: String,
    pub state: DeployState,
}

/// How long a digest has been healthy without interruption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakClock {
    /// When this digest was first seen here (older clocks are dropped first).
    pub first_seen: DateTime<Utc>,
    /// Since when it has been healthy without interruption; `None` while it is not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<DateTime<Utc>>,
    /// The last interruption; the clock started over after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted: Option<SoakRestart>,
}

/// A verification's outcome, as much as the planner and a restart need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRecord {
    pub digest: String,
    pub attempt: u32,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// `verification passed: smoke (12s)`.
    pub summary: String,
}

impl From<&VerifyReport> for VerifyRecord {
    fn from(r: &VerifyReport) -> Self {
        Self {
            digest: r.digest.clone(),
            attempt: r.attempt,
            passed: r.passed(),
            passed_at: r.passed_at(),
            finished_at: r.finished_at,
            summary: r.summary(),
        }
    }
}

/// What one reconcile saw of one app: the digest, its health, since when the reconciler has
/// seen it healthy, and why it is not healthy (or was interrupted within the reconcile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub app: String,
    pub digest: String,
    pub state: DeployState,
    pub healthy_since: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// The observations of a reconcile report, one per app it runs.
pub fn observations(report: &Report, pipeline: &Pipeline) -> Vec<Observation> {
    report
        .deployments(pipeline)
        .into_iter()
        .map(|d| {
            let digest = d.digest.to_string();
            let runs = |images: &[String]| images.iter().any(|i| i.ends_with(&digest));
            let objects = || report.objects.iter().filter(|o| runs(&o.images));
            let reason = objects()
                .find(|o| o.health.status != HealthStatus::Healthy)
                .map(|o| format!("{}/{}: {}", o.object.kind, o.object.name, o.health.reason))
                .or_else(|| objects().find_map(|o| o.interrupted.clone()));
            Observation {
                app: d.app,
                digest,
                state: d.state,
                healthy_since: d.healthy_since,
                reason,
            }
        })
        .collect()
}

impl EnvState {
    /// Keep `rollout` as the last one seen, unless it says what the kept one says (a healthy
    /// rollout timed anew by each resync is the same rollout). Returns whether it changed.
    pub fn record_rollout(&mut self, rollout: &crate::engine::Rollout) -> bool {
        if self.rollout.as_ref().is_some_and(|r| r.same_as(rollout)) {
            return false;
        }
        self.rollout = Some(rollout.clone());
        true
    }

    /// Keep the open promotion PRs into this environment. Returns whether they changed.
    pub fn show_open(&mut self, open: Vec<OpenPromotion>) -> bool {
        if self.open == open {
            return false;
        }
        self.open = open;
        true
    }

    /// Keep `summary` as the last reconcile, unless it only repeats the kept one (an idle
    /// resync). Returns whether it changed.
    pub fn show_reconcile(&mut self, summary: &ReconcileSummary) -> bool {
        if self.reconciled.as_ref().is_some_and(|r| summary.repeats(r)) {
            return false;
        }
        self.reconciled = Some(summary.clone());
        true
    }

    /// Take in a reconcile's observations (every app the environment runs now) at `now`.
    ///
    /// A clock keeps its start while the digest stays healthy; a report of it not healthy
    /// stops it and records why, and it starts again when the digest is healthy again. When
    /// the reconciler itself saw it healthy only later than the clock says (an interruption
    /// inside one reconcile), the clock starts over at the reconciler's time.
    pub fn observe(&mut self, observations: &[Observation], now: DateTime<Utc>) {
        self.format = FORMAT;
        for app in self.apps.values_mut() {
            app.running = None;
        }
        for o in observations {
            let app = self.apps.entry(o.app.clone()).or_default();
            app.running = Some(Running {
                digest: o.digest.clone(),
                state: o.state,
            });
            let clock = app
                .clocks
                .entry(o.digest.clone())
                .or_insert_with(|| SoakClock {
                    first_seen: now,
                    healthy_since: None,
                    restarted: None,
                });
            match o.state {
                DeployState::Healthy => {
                    let seen = o.healthy_since.unwrap_or(now).min(now);
                    clock.healthy_since = match clock.healthy_since {
                        // Healthy without a break: the clock keeps its start, unless the
                        // reconciler saw a break we did not.
                        Some(since) if seen <= since => Some(since),
                        Some(_) => {
                            clock.restarted = Some(SoakRestart {
                                at: seen,
                                reason: o
                                    .reason
                                    .clone()
                                    .unwrap_or_else(|| "the rollout restarted".to_string()),
                            });
                            Some(seen)
                        }
                        None => Some(seen),
                    };
                }
                DeployState::Progressing | DeployState::Failed => {
                    if clock.healthy_since.take().is_some() {
                        clock.restarted = Some(SoakRestart {
                            at: now,
                            reason: o
                                .reason
                                .clone()
                                .unwrap_or_else(|| format!("{:?}", o.state).to_lowercase()),
                        });
                    }
                }
            }
        }
        self.prune();
    }

    /// Record a finished verification.
    pub fn record_verification(&mut self, app: &str, record: VerifyRecord) {
        self.format = FORMAT;
        self.apps.entry(app.to_string()).or_default().verification = Some(record);
    }

    /// Record a `/retry` of `app`'s verification.
    pub fn request_retry(&mut self, app: &str) {
        self.format = FORMAT;
        self.apps.entry(app.to_string()).or_default().retry = true;
    }

    /// Whether a `/retry` of `app` is waiting.
    pub fn retry_pending(&self, app: &str) -> bool {
        self.apps.get(app).is_some_and(|a| a.retry)
    }

    /// The verification to run now for `app` at `digest`: `Some(attempt)` unless that
    /// attempt already has a result (a pending `/retry` then moves to the next attempt and is
    /// used up).
    pub fn next_verification(&mut self, app: &str, digest: &str) -> Option<u32> {
        self.format = FORMAT;
        let a = self.apps.entry(app.to_string()).or_default();
        let attempt = *a.attempts.entry(digest.to_string()).or_insert(1);
        let done = a
            .verification
            .as_ref()
            .is_some_and(|v| v.digest == digest && v.attempt == attempt);
        if !done {
            return Some(attempt);
        }
        if std::mem::take(&mut a.retry) {
            a.attempts.insert(digest.to_string(), attempt + 1);
            return Some(attempt + 1);
        }
        None
    }

    /// Keep the document small: per app the clock of the digest it runs and the newest
    /// others, attempts of the newest digests only.
    fn prune(&mut self) {
        for app in self.apps.values_mut() {
            let running = app.running.as_ref().map(|r| r.digest.clone());
            keep_newest(&mut app.clocks, CLOCKS_PER_APP, running.as_deref(), |c| {
                c.first_seen
            });
            // Attempts live as long as their digest's clock.
            let clocks = &app.clocks;
            app.attempts.retain(|d, _| clocks.contains_key(d));
        }
        self.apps.retain(|_, a| a != &AppState::default());
    }

    /// The document as written to the ConfigMap (compact: a pretty one is half whitespace).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain data always serializes")
    }

    /// The document to write: the whole state, then, for when that does not fit, smaller
    /// ones. What only the status page and history need goes first: the open PRs and the last
    /// reconcile kept for other replicas, and per app the clocks (and attempts) of digests it
    /// no longer runs; then the marks of healthy non-workload objects (their soak restarts
    /// from the next reconcile). What decides a gate now (each running digest's clock and
    /// verification, the workloads' rollout marks) stays in every one.
    pub fn encodings(&self) -> impl Iterator<Item = String> + '_ {
        let mut trimmed: Option<EnvState> = None;
        (0..3).map(move |step| {
            if step == 0 {
                return self.encode();
            }
            let t = trimmed.get_or_insert_with(|| self.clone());
            if step == 1 {
                // What only the other replicas' status pages show goes first.
                t.open.clear();
                t.reconciled = None;
                for app in t.apps.values_mut() {
                    let running = app.running.as_ref().map(|r| r.digest.clone());
                    app.clocks.retain(|d, _| Some(d) == running.as_ref());
                    app.attempts.retain(|d, _| Some(d) == running.as_ref());
                }
            } else {
                t.rollouts.healthy.clear();
            }
            t.encode()
        })
    }

    /// Read a document back. An empty text is an empty state.
    pub fn decode(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let state: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if state.format > FORMAT {
            return Err(format!(
                "written by a newer baton (format {}; this one reads {FORMAT})",
                state.format
            ));
        }
        Ok(state)
    }

    /// What the planner reads for this environment: per app, the digest it runs, its state,
    /// and since when it has been healthy without interruption. In an environment with
    /// `verify:` steps, a digest counts as healthy only from the time its verification
    /// passed; until then it is not healthy yet, and a failed verification is a failure.
    pub fn deployments(&self, env: &str, verified: bool) -> Vec<Deployment> {
        let mut out = Vec::new();
        for (name, app) in &self.apps {
            let Some(running) = &app.running else {
                continue;
            };
            let Ok(digest) = running.digest.parse() else {
                continue;
            };
            let clock = app.clocks.get(&running.digest);
            let mut d = Deployment {
                env: env.to_string(),
                app: name.clone(),
                digest,
                state: running.state,
                healthy_since: clock
                    .and_then(|c| c.healthy_since)
                    .filter(|_| running.state == DeployState::Healthy),
                restarted: clock.and_then(|c| c.restarted.clone()),
            };
            if verified {
                match app
                    .verification
                    .as_ref()
                    .filter(|v| v.digest == running.digest)
                {
                    Some(v) if v.passed => {
                        d.healthy_since = d.healthy_since.and_then(|h| Some(h.max(v.passed_at?)))
                    }
                    Some(_) => {
                        d.state = DeployState::Failed;
                        d.healthy_since = None;
                    }
                    None => d.healthy_since = None,
                }
            }
            out.push(d);
        }
        out
    }
}

/// Drop the oldest entries beyond `keep`, never `pinned`.
fn keep_newest<V>(
    map: &mut BTreeMap<String, V>,
    keep: usize,
    pinned: Option<&str>,
    age: impl Fn(&V) -> DateTime<Utc>,
) {
    while map.len() > keep {
        let oldest = map
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != pinned)
            .min_by_key(|(k, v)| (age(v), (*k).clone()))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                map.remove(&k);
            }
            None => break,
        }
    }
}

/// Every environment's deployments for the planner, from the states of the pipeline's
/// environments.
pub fn deployments(
    states: &BTreeMap<String, EnvState>,
    pipeline: &Pipeline,
) -> BTreeMap<(String, String), Deployment> {
    let mut out = BTreeMap::new();
    for env in &pipeline.environments {
        let Some(state) = states.get(&env.name) else {
            continue;
        };
        for d in state.deployments(&env.name, !env.verify.is_empty()) {
            out.insert((d.env.clone(), d.app.clone()), d);
        }
    }
    out
}

#[cfg(test)]
mod tests;
