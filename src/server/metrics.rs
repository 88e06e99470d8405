//! Prometheus metrics (prometheus-client, no globals): one [`Metrics`] per process, shared
//! by the server and the loops, rendered at `/metrics`. The loops record through the small
//! methods here (`promotion_pass`, `reconciled`, `forge_calls`, …); docs/status-page.md lists
//! every metric with its labels.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::Outcome;
use crate::forge::github::{CallStats, RateLimitStatus};
use crate::registry::metrics::RequestStats;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromotionLabels {
    pub app: String,
    pub env: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabels {
    pub env: String,
    pub gate: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvLabels {
    pub env: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvResultLabels {
    pub env: String,
    pub result: String,
}

/// `kind` is `forge`, `registry` or `cluster`; `target` names which one (`github`, a
/// registry host, a cluster/environment name).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub kind: String,
    pub target: String,
    pub operation: String,
}

/// `app` is `*` for all apps of the environment together.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoraLabels {
    pub env: String,
    pub app: String,
}

/// The band of one metric: `metric` is `deployment_frequency`, `lead_time`,
/// `change_failure_rate` or `time_to_restore`; `band` is `elite`, `high`, `medium` or `low`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoraBandLabels {
    pub env: String,
    pub app: String,
    pub metric: String,
    pub band: String,
}

/// A `notify:` entry and how one delivery attempt ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
    pub result: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub kind: String,
    pub target: String,
}

/// Every metric baton exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub promotions: Family<PromotionLabels, Counter>,
    pub plan_passes: Counter,
    pub plan_failures: Counter,
    /// How long the last promotion pass took (the plan and its writes; the registry scan apart).
    pub plan_pass_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Registry scans (every `intervals.registry`, and on registry hints).
    pub registry_scans: Counter,
    pub ready: Gauge,
    /// Open promotion PRs held back, by environment and the first gate not passed.
    pub gate_waiting: Family<GateLabels, Gauge>,
    pub reconcile_duration: Family<EnvLabels, Histogram>,
    pub reconciles: Family<EnvResultLabels, Counter>,
    pub drift_corrections: Family<EnvLabels, Counter>,
    pub api_calls: Family<ApiLabels, Counter>,
    pub api_retries: Family<TargetLabels, Counter>,
    pub rate_limit_remaining: Family<TargetLabels, Gauge>,
    /// DORA metrics over the last 30 days (`crate::dora`), per environment and app.
    pub dora_deployments_per_day: Family<DoraLabels, FloatGauge>,
    pub dora_lead_time: Family<DoraLabels, FloatGauge>,
    pub dora_change_failure_rate: Family<DoraLabels, FloatGauge>,
    pub dora_time_to_restore: Family<DoraLabels, FloatGauge>,
    pub dora_band: Family<DoraBandLabels, Gauge>,
    /// Notification delivery attempts by receiver and result.
    pub notifications: Family<ReceiverLabels, Counter>,
    /// 1 while this replica acts (holds the promotion lease, or runs without election).
    pub leader: Gauge,
    /// 1 while the environment's latest rollout failed, 0 once one is healthy again.
    pub rollout_failed: Family<EnvLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("baton");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by source and result",
            webhooks.clone(),
        );
        let promotions = Family::<PromotionLabels, Counter>::default();
        registry.register(
            "promotions",
            "Promotion steps by app, environment and result",
            promotions.clone(),
        );
        let plan_passes = Counter::default();
        registry.register(
            "plan_passes",
            "Promotion engine passes",
            plan_passes.clone(),
        );
        let plan_failures = Counter::default();
        registry.register(
            "plan_failures",
            "Promotion engine passes that failed",
            plan_failures.clone(),
        );
        let plan_pass_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "plan_pass",
            "Duration of the last promotion pass (the registry scan apart)",
            prometheus_client::registry::Unit::Seconds,
            plan_pass_seconds.clone(),
        );
        let registry_scans = Counter::default();
        registry.register(
            "registry_scans",
            "Registry scans of every app's repository",
            registry_scans.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when this replica is ready (leader, caches synced)",
            ready.clone(),
        );
        let gate_waiting = Family::<GateLabels, Gauge>::default();
        registry.register(
            "gate_waiting",
            "Open promotion PRs held back, by environment and the first gate not passed",
            gate_waiting.clone(),
        );
        let reconcile_duration = Family::<EnvLabels, Histogram>::new_with_constructor(
            reconcile_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one reconcile of an environment (render excluded)",
            prometheus_client::registry::Unit::Seconds,
            reconcile_duration.clone(),
        );
        let reconciles = Family::<EnvResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by environment and result (ok, error)",
            reconciles.clone(),
        );
        let drift_corrections = Family::<EnvLabels, Counter>::default();
        registry.register(
            "drift_corrections",
            "Objects re-applied because their live state had drifted from Git",
            drift_corrections.clone(),
        );
        let api_calls = Family::<ApiLabels, Counter>::default();
        registry.register(
            "api_calls",
            "Calls to the forge, registries and clusters, by target and operation (retries included)",
            api_calls.clone(),
        );
        let api_retries = Family::<TargetLabels, Counter>::default();
        registry.register(
            "api_retries",
            "Calls repeated after a transient failure or a rate limit",
            api_retries.clone(),
        );
        let rate_limit_remaining = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "rate_limit_remaining",
            "Requests left in the current rate-limit window, as last reported by the target",
            rate_limit_remaining.clone(),
        );
        let dora_deployments_per_day = Family::<DoraLabels, FloatGauge>::default();
        registry.register(
            "dora_deployments_per_day",
            "DORA deployment frequency: promotions merged per day over the last 30 days",
            dora_deployments_per_day.clone(),
        );
        let dora_lead_time = Family::<DoraLabels, FloatGauge>::default();
        registry.register_with_unit(
            "dora_lead_time",
            "DORA lead time for changes: median from the change's start to its merge (last 30 days)",
            prometheus_client::registry::Unit::Seconds,
            dora_lead_time.clone(),
        );
        let dora_change_failure_rate = Family::<DoraLabels, FloatGauge>::default();
        registry.register(
            "dora_change_failure_rate",
            "DORA change failure rate: failed promotions out of all (0 to 1, last 30 days)",
            dora_change_failure_rate.clone(),
        );
        let dora_time_to_restore = Family::<DoraLabels, FloatGauge>::default();
        registry.register_with_unit(
            "dora_time_to_restore",
            "DORA time to restore: median from a failed promotion to the merge that restored (last 30 days)",
            prometheus_client::registry::Unit::Seconds,
            dora_time_to_restore.clone(),
        );
        let dora_band = Family::<DoraBandLabels, Gauge>::default();
        registry.register(
            "dora_band",
            "1 for the DORA performance band of each metric, per environment and app",
            dora_band.clone(),
        );
        let notifications = Family::<ReceiverLabels, Counter>::default();
        registry.register(
            "notification_deliveries",
            "Notification delivery attempts by receiver and result (delivered, retrying, failed, dropped)",
            notifications.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica acts: it holds the promotion lease (or runs without leader election)",
            leader.clone(),
        );
        let rollout_failed = Family::<EnvLabels, Gauge>::default();
        registry.register(
            "rollout_failed",
            "1 while the environment's latest rollout failed; 0 once it is healthy again",
            rollout_failed.clone(),
        );
        Self {
            registry,
            webhooks,
            promotions,
            plan_passes,
            plan_failures,
            plan_pass_seconds,
            registry_scans,
            ready,
            gate_waiting,
            reconcile_duration,
            reconciles,
            drift_corrections,
            api_calls,
            api_retries,
            rate_limit_remaining,
            dora_deployments_per_day,
            dora_lead_time,
            dora_change_failure_rate,
            dora_time_to_restore,
            dora_band,
            notifications,
            leader,
            rollout_failed,
        }
    }

    /// One notification delivery attempt to `receiver` (`result`: `delivered`, `retrying`,
    /// `failed`, `dropped`).
    pub fn notification(&self, receiver: &str, result: &str) {
        self.notifications
            .get_or_create(&ReceiverLabels {
                receiver: receiver.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Set the DORA gauges to a report: every series of an earlier report is dropped first, so
    /// an unknown figure (no lead time yet) is absent rather than stale.
    pub fn dora(&self, report: &crate::dora::Report) {
        self.dora_deployments_per_day.clear();
        self.dora_lead_time.clear();
        self.dora_change_failure_rate.clear();
        self.dora_time_to_restore.clear();
        self.dora_band.clear();
        for env in &report.environments {
            let rows = std::iter::once(("*", &env.metrics))
                .chain(env.apps.iter().map(|a| (a.app.as_str(), &a.metrics)));
            for (app, m) in rows {
                let labels = DoraLabels {
                    env: env.env.clone(),
                    app: app.to_string(),
                };
                let band = |metric: &str, band: Option<crate::dora::Band>| {
                    if let Some(b) = band {
                        self.dora_band
                            .get_or_create(&DoraBandLabels {
                                env: env.env.clone(),
                                app: app.to_string(),
                                metric: metric.into(),
                                band: b.as_str().into(),
                            })
                            .set(1);
                    }
                };
                let f = &m.deployment_frequency;
                self.dora_deployments_per_day
                    .get_or_create(&labels)
                    .set(f.per_day);
                band("deployment_frequency", f.band);
                if let Some(s) = m.lead_time.median_seconds {
                    self.dora_lead_time.get_or_create(&labels).set(s as f64);
                }
                band("lead_time", m.lead_time.band);
                if let Some(r) = m.change_failure_rate.rate {
                    self.dora_change_failure_rate.get_or_create(&labels).set(r);
                }
                band("change_failure_rate", m.change_failure_rate.band);
                if let Some(s) = m.time_to_restore.median_seconds {
                    self.dora_time_to_restore
                        .get_or_create(&labels)
                        .set(s as f64);
                }
                band("time_to_restore", m.time_to_restore.band);
            }
        }
    }

    /// One promotion engine pass (what `Engine::run_once` returned): `Ok(outcomes)` counts
    /// each promotion step by result (`opened`, `updated`, `merged`, `closed`, `failed`) and
    /// sets the gate-waiting gauges to the PRs now waiting; `Err` counts a failed pass and
    /// keeps the gauges as they were.
    pub fn promotion_pass<E>(&self, result: &Result<Vec<Outcome>, E>) {
        self.plan_passes.inc();
        let outcomes = match result {
            Ok(o) => o,
            Err(_) => {
                self.plan_failures.inc();
                return;
            }
        };
        self.gate_waiting.clear();
        for o in outcomes {
            let (env, app, result) = match o {
                Outcome::Opened { env, app, .. } => (env, app, "opened"),
                Outcome::Updated { env, app, .. } => (env, app, "updated"),
                Outcome::Merged { env, app, .. } => (env, app, "merged"),
                Outcome::Closed { env, app, .. } => (env, app, "closed"),
                Outcome::Failed { env, app, .. } => (env, app, "failed"),
                Outcome::RollbackOpened { env, app, .. } => (env, app, "rollback_opened"),
                Outcome::Reported { .. }
                | Outcome::RetryRequested { .. }
                | Outcome::PruneApproved { .. } => continue,
                Outcome::Waiting { env, blocking, .. } => {
                    // `gate: reason`, as the engine words it.
                    let gate = blocking
                        .split_once(':')
                        .map_or("unknown", |(g, _)| g.trim());
                    self.gate_waiting
                        .get_or_create(&GateLabels {
                            env: env.clone(),
                            gate: gate.to_string(),
                        })
                        .inc();
                    continue;
                }
                Outcome::Answered { .. } => continue,
            };
            self.promotion(app, env, result);
        }
    }

    /// One promotion step (`result`: `opened`, `updated`, `merged`, `closed`, `failed`,
    /// `rolled_back`, …).
    pub fn promotion(&self, app: &str, env: &str, result: &str) {
        self.promotions
            .get_or_create(&PromotionLabels {
                app: app.into(),
                env: env.into(),
                result: result.into(),
            })
            .inc();
    }

    /// One reconcile of `env`: how long it took, how many objects had drifted, and
    /// whether it succeeded.
    pub fn reconciled(&self, env: &str, duration: Duration, drift: usize, ok: bool) {
        let labels = EnvLabels { env: env.into() };
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        if drift > 0 {
            self.drift_corrections
                .get_or_create(&labels)
                .inc_by(drift as u64);
        }
        self.reconciles
            .get_or_create(&EnvResultLabels {
                env: env.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// From what the reconcile loop reports: the report's total duration, drift and object
    /// writes (as `cluster` API calls of operation `apply`); a failed reconcile counts as an
    /// error with `elapsed` as its duration.
    pub fn reconcile_outcome(
        &self,
        outcome: &crate::reconcile::runner::Outcome,
        elapsed: Duration,
    ) {
        let failed = self.rollout_failed.get_or_create(&EnvLabels {
            env: outcome.env.clone(),
        });
        match &outcome.result {
            Ok(report) => {
                self.reconciled(&outcome.env, report.durations.total, report.drift, true);
                self.api_calls("cluster", &outcome.env, "apply", report.writes() as u64);
                use crate::promote::state::DeployState;
                match report.health.state {
                    DeployState::Failed => failed.set(1),
                    DeployState::Healthy => failed.set(0),
                    // Still rolling out: the last verdict stands until this one is known.
                    DeployState::Progressing => failed.get(),
                };
            }
            Err(e) => {
                self.reconciled(&outcome.env, elapsed, 0, false);
                // A transient error (API server away) says nothing about the rollout.
                if !e.is_transient() {
                    failed.set(1);
                }
            }
        }
    }

    /// `n` more calls to `target` (`kind`: `forge`, `registry` or `cluster`).
    pub fn api_calls(&self, kind: &str, target: &str, operation: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.api_calls
            .get_or_create(&ApiLabels {
                kind: kind.into(),
                target: target.into(),
                operation: operation.into(),
            })
            .inc_by(n);
    }

    /// Raise a counter to a client's own running total (the clients count their calls
    /// themselves; a total lower than the counter, after a client reset, is ignored).
    fn catch_up(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// The GitHub client's call counts and rate limit (`forge` names it, e.g. `github`).
    /// Call after each pass with `GitHubForge::calls()` and `GitHubForge::rate_limit()`.
    pub fn forge_calls(&self, forge: &str, calls: &CallStats, rate: Option<RateLimitStatus>) {
        for (route, total) in &calls.by_route {
            let counter = self.api_calls.get_or_create(&ApiLabels {
                kind: "forge".into(),
                target: forge.into(),
                operation: route.clone(),
            });
            Self::catch_up(&counter, *total);
        }
        let target = TargetLabels {
            kind: "forge".into(),
            target: forge.into(),
        };
        Self::catch_up(&self.api_retries.get_or_create(&target), calls.retries);
        if let Some(rate) = rate {
            self.rate_limit(&target.kind, forge, rate.remaining);
        }
    }

    /// The registry client's request counts (`registry::client::Client::stats()`), by
    /// registry host and request kind.
    pub fn registry_calls(&self, stats: &RequestStats) {
        for c in &stats.requests {
            let counter = self.api_calls.get_or_create(&ApiLabels {
                kind: "registry".into(),
                target: c.registry.clone(),
                operation: c.kind.as_str().into(),
            });
            Self::catch_up(&counter, c.count);
        }
        for (registry, total) in &stats.retries {
            let counter = self.api_retries.get_or_create(&TargetLabels {
                kind: "registry".into(),
                target: registry.clone(),
            });
            Self::catch_up(&counter, *total);
        }
    }

    /// Requests left in `target`'s rate-limit window.
    pub fn rate_limit(&self, kind: &str, target: &str, remaining: u64) {
        self.rate_limit_remaining
            .get_or_create(&TargetLabels {
                kind: kind.into(),
                target: target.into(),
            })
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    pub fn webhook(&self, source: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                source: source.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Reconcile durations: buckets from 50 ms doubling to ~100 s.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn a_pass_counts_steps_by_result_and_gauges_waits_by_gate() {
        let m = Metrics::new();
        let waiting = |pr, env: &str, blocking: &str| Outcome::Waiting {
            pr,
            env: env.into(),
            app: "web".into(),
            blocking: blocking.into(),
            gates: vec![],
        };
        let pass: Result<Vec<Outcome>, ()> = Ok(vec![
            Outcome::Merged {
                pr: 1,
                env: "dev".into(),
                app: "web".into(),
                sha: "s".into(),
            },
            waiting(2, "prod", "approvals: 0 of 2 approvals"),
            waiting(3, "prod", "approvals: 1 of 2 approvals"),
            waiting(4, "staging", "soak: 5m of 10m"),
        ]);
        m.promotion_pass(&pass);
        let text = m.render();
        assert!(
            text.contains("baton_promotions_total{app=\"web\",env=\"dev\",result=\"merged\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("baton_gate_waiting{env=\"prod\",gate=\"approvals\"} 2"),
            "{text}"
        );
        assert!(text.contains("baton_gate_waiting{env=\"staging\",gate=\"soak\"} 1"));
        // The next pass finds nothing waiting: the gauges drop.
        m.promotion_pass(&Ok::<_, ()>(vec![]));
        m.promotion_pass(&Err::<Vec<Outcome>, _>("outage"));
        let text = m.render();
        assert!(!text.contains("baton_gate_waiting{"), "{text}");
        assert!(text.contains("baton_plan_passes_total 3"));
        assert!(text.contains("baton_plan_failures_total 1"));
    }

    #[test]
    fn dora_gauges_follow_the_latest_report_per_environment_and_app() {
        use crate::gitrepo::history::Entry;
        use crate::gitrepo::trailers::Promotion;
        use chrono::TimeZone;
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 10, 12, 0, 0)
            .unwrap();
        let promo = |to: &[u8], rollback_of: Option<&[u8]>, mins| Entry {
            time: at + chrono::Duration::minutes(mins),
            commit: format!("c{mins}"),
            promotion: Promotion {
                app: "web".into(),
                environment: "dev".into(),
                from: None,
                to: crate::image::Digest::of(to),
                tag: None,
                approved_by: vec![],
                promoted_by: None,
                pull_request: None,
                rollback_of: rollback_of.map(crate::image::Digest::of),
            },
        };
        // Newest first: a promotion of b, rolled back to a 10 minutes later.
        let entries = vec![promo(b"a", Some(b"b"), 10), promo(b"b", None, 0)];
        let w = crate::dora::Window::last_days(10, at + chrono::Duration::hours(1));
        let report = crate::dora::compute(&entries, &["dev".into()], &Default::default(), &w);
        let m = Metrics::new();
        m.dora(&report);
        let text = m.render();
        assert!(
            text.contains("baton_dora_deployments_per_day{env=\"dev\",app=\"web\"} 0.1"),
            "{text}"
        );
        assert!(
            text.contains("baton_dora_change_failure_rate{env=\"dev\",app=\"*\"} 1.0"),
            "{text}"
        );
        assert!(
            text.contains("baton_dora_time_to_restore_seconds{env=\"dev\",app=\"web\"} 600.0"),
            "{text}"
        );
        assert!(
            text.contains(
                "baton_dora_band{env=\"dev\",app=\"web\",metric=\"time_to_restore\",band=\"elite\"} 1"
            ),
            "{text}"
        );
        // No lead time is known: no series rather than a made-up zero.
        assert!(!text.contains("baton_dora_lead_time_seconds{"), "{text}");
        // A later report without the environment drops its series.
        m.dora(&crate::dora::compute(&[], &[], &Default::default(), &w));
        assert!(!m.render().contains("baton_dora_deployments_per_day{"));
    }

    #[test]
    fn reconciles_record_duration_drift_and_result_by_environment() {
        let m = Metrics::new();
        m.reconciled("prod", Duration::from_millis(300), 2, true);
        m.reconciled("prod", Duration::from_secs(1), 0, false);
        let text = m.render();
        assert!(
            text.contains("baton_reconcile_duration_seconds_count{env=\"prod\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("baton_reconcile_duration_seconds_bucket{le=\"0.4\",env=\"prod\"} 1"),
            "{text}"
        );
        assert!(text.contains("baton_drift_corrections_total{env=\"prod\"} 2"));
        assert!(text.contains("baton_reconciles_total{env=\"prod\",result=\"ok\"} 1"));
        assert!(text.contains("baton_reconciles_total{env=\"prod\",result=\"error\"} 1"));
    }

    #[test]
    fn a_failed_rollout_raises_its_gauge_until_the_environment_is_healthy_again() {
        use crate::promote::state::DeployState;
        use crate::reconcile::{ReconcileError, Report, runner};
        let m = Metrics::new();
        let report = |state| Report {
            env: "dev".into(),
            commit: "c".into(),
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            objects: vec![],
            pruned: vec![],
            prune_held: None,
            health: crate::reconcile::health::EnvHealth {
                state,
                unhealthy: vec![],
            },
            drift: 0,
            durations: Default::default(),
        };
        let outcome = |result| runner::Outcome {
            env: "dev".into(),
            commit: Some("c".into()),
            result,
            failures: 0,
            next_in: Duration::from_secs(30),
        };
        let gauge = |m: &Metrics| {
            line(&m.render(), "baton_rollout_failed{env=\"dev\"}")
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        let source = |transient| ReconcileError::Source {
            env: "dev".into(),
            message: "x".into(),
            transient,
        };
        m.reconcile_outcome(&outcome(Ok(report(DeployState::Failed))), Duration::ZERO);
        assert_eq!(gauge(&m).as_deref(), Some("1"));
        m.reconcile_outcome(
            &outcome(Ok(report(DeployState::Progressing))),
            Duration::ZERO,
        );
        assert_eq!(
            gauge(&m).as_deref(),
            Some("1"),
            "still rolling out: unchanged"
        );
        m.reconcile_outcome(&outcome(Err(source(true))), Duration::ZERO);
        assert_eq!(
            gauge(&m).as_deref(),
            Some("1"),
            "the API server away says nothing"
        );
        m.reconcile_outcome(&outcome(Ok(report(DeployState::Healthy))), Duration::ZERO);
        assert_eq!(gauge(&m).as_deref(), Some("0"));
        m.reconcile_outcome(&outcome(Err(source(false))), Duration::ZERO);
        assert_eq!(
            gauge(&m).as_deref(),
            Some("1"),
            "a commit that cannot be applied failed"
        );
    }

    #[test]
    fn client_call_totals_and_rate_limits_become_counters_and_gauges() {
        let m = Metrics::new();
        let mut calls = CallStats::default();
        calls
            .by_route
            .insert("GET /repos/{owner}/{repo}/pulls".into(), 3);
        calls.retries = 1;
        let rate = RateLimitStatus {
            limit: Some(5000),
            remaining: 4990,
            reset: None,
        };
        m.forge_calls("github", &calls, Some(rate));
        calls
            .by_route
            .insert("GET /repos/{owner}/{repo}/pulls".into(), 5);
        m.forge_calls("github", &calls, None);
        m.api_calls("cluster", "prod", "apply", 4);
        let text = m.render();
        let pulls = "baton_api_calls_total{kind=\"forge\",target=\"github\",operation=\"GET /repos/{owner}/{repo}/pulls\"}";
        assert_eq!(
            line(&text, pulls),
            Some(format!("{pulls} 5").as_str()),
            "{text}"
        );
        assert!(text.contains(
            "baton_api_calls_total{kind=\"cluster\",target=\"prod\",operation=\"apply\"} 4"
        ));
        assert!(text.contains("baton_api_retries_total{kind=\"forge\",target=\"github\"} 1"));
        assert!(text.contains("baton_rate_limit_remaining{kind=\"forge\",target=\"github\"} 4990"));
    }
}
