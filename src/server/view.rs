//! The status page's model: apps × environments as one plain value, built by a pure function
//! ([`StatusView::build`]) from what the service already has (pipeline, pinned digests,
//! deployments, open promotion PRs, history, reconcile outcomes). The page (`/`) and
//! `/api/v1/state` only read it; the service replaces it after each pass.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::pipeline::Pipeline;
use crate::gitrepo::history::Entry;
use crate::image::{Digest, Pinned};
use crate::promote::Evaluation;
use crate::promote::gates::HOLD_LABEL;
use crate::promote::state::{DeployState, Deployment, PullRequest};
use crate::reconcile::report::Report;

/// Everything the status page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub repo: RepoInfo,
    /// In promotion order (`after:` chains), the columns of the page.
    pub environments: Vec<EnvironmentView>,
    /// In pipeline file order, the rows of the page.
    pub apps: Vec<AppView>,
    /// When the service last rebuilt the view; `None` until it has.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The config repository the view was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoInfo {
    /// A name for people, e.g. `shop/config`.
    pub name: String,
    pub branch: String,
    /// The config branch tip the view was built from.
    pub commit: Option<String>,
    /// The repository's web page (`https://github.com/shop/config`); PR links fall back to
    /// `<url>/pull/<number>` when a PR carries no URL of its own.
    pub url: Option<String>,
}

/// One environment (a column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    pub name: String,
    pub after: Option<String>,
    pub last_reconcile: Option<ReconcileSummary>,
    /// The newest [`RECENT`] promotions and rollbacks of this environment, newest first.
    pub recent: Vec<RecentEntry>,
}

/// How many history entries each environment shows.
pub const RECENT: usize = 20;

/// One history entry of an environment, with links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentEntry {
    pub at: DateTime<Utc>,
    pub app: String,
    pub tag: Option<String>,
    pub digest: Digest,
    pub commit: String,
    /// The commit's page, when the repository has a web URL.
    pub commit_url: Option<String>,
    pub pull_request: Option<u64>,
    pub pull_request_url: Option<String>,
    pub promoted_by: Option<String>,
    /// This entry rolled back another digest.
    pub rollback: bool,
}

/// The last reconcile of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileSummary {
    /// The commit reconciled, when the input could be produced.
    pub commit: Option<String>,
    pub finished_at: DateTime<Utc>,
    /// The environment's health after it; `unknown` when the reconcile failed.
    pub health: Health,
    /// Objects written, and objects re-applied because they had drifted.
    pub writes: usize,
    pub drift: usize,
    pub duration_ms: u64,
    /// The one-line summary (`dev at 1a2b3c4: healthy; 2 created, …`).
    pub summary: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl ReconcileSummary {
    pub fn from_report(report: &Report) -> Self {
        Self {
            commit: Some(report.commit.clone()),
            finished_at: report.finished_at,
            health: report.health.state.into(),
            writes: report.writes(),
            drift: report.drift,
            duration_ms: u64::try_from(report.durations.total.as_millis()).unwrap_or(u64::MAX),
            summary: report.summary(),
            error: None,
        }
    }

    /// A reconcile that ended in an error (`error` is shown as is: no secrets in it).
    pub fn failed(commit: Option<String>, finished_at: DateTime<Utc>, error: &str) -> Self {
        Self {
            commit,
            finished_at,
            health: Health::Unknown,
            writes: 0,
            drift: 0,
            duration_ms: 0,
            summary: format!("failed: {error}"),
            error: Some(error.to_string()),
        }
    }

    /// Whether this reconcile tells nothing `before` did not: the same commit, health and
    /// error, and nothing written (an idle resync).
    pub fn repeats(&self, before: &Self) -> bool {
        self.commit == before.commit
            && self.health == before.health
            && self.error == before.error
            && self.writes == 0
            && self.drift == 0
    }

    /// From what the reconcile loop reports after each run.
    pub fn from_outcome(outcome: &crate::reconcile::runner::Outcome, now: DateTime<Utc>) -> Self {
        match &outcome.result {
            Ok(report) => Self::from_report(report),
            Err(e) => Self::failed(outcome.commit.clone(), now, &e.to_string()),
        }
    }
}

/// One app (a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    pub name: String,
    pub image: String,
    /// One per environment, in the order of [`StatusView::environments`].
    pub cells: Vec<Cell>,
}

/// An app in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    pub env: String,
    /// What the config branch tip pins.
    pub pinned: Option<ImageRef>,
    pub health: Health,
    /// Since when `health` has held (for `healthy`, since the rollout became healthy).
    pub since: Option<DateTime<Utc>>,
    /// The digest the environment runs, when the reconciler has seen it (it differs from
    /// `pinned` while a rollout is on its way).
    pub running: Option<Digest>,
    pub last_deploy: Option<LastDeploy>,
    pub pending: Option<PendingPromotion>,
}

/// An image pinned by digest, with the tag it was published under when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    pub tag: Option<String>,
    pub digest: Digest,
}

impl From<&Pinned> for ImageRef {
    fn from(p: &Pinned) -> Self {
        Self {
            tag: p.tag.clone(),
            digest: p.digest.clone(),
        }
    }
}

/// Deploy health of an app in an environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    Healthy,
    Progressing,
    Failed,
    /// The reconciler has not reported this app here (yet).
    #[default]
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Progressing => "progressing",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

impl From<DeployState> for Health {
    fn from(s: DeployState) -> Self {
        match s {
            DeployState::Healthy => Self::Healthy,
            DeployState::Progressing => Self::Progressing,
            DeployState::Failed => Self::Failed,
        }
    }
}

/// The newest promotion recorded in Git for the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDeploy {
    pub at: DateTime<Utc>,
    pub commit: String,
    pub tag: Option<String>,
    pub digest: Digest,
    pub pull_request: Option<u64>,
    pub promoted_by: Option<String>,
}

/// The open promotion PR of the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPromotion {
    pub number: u64,
    pub url: Option<String>,
    pub to: ImageRef,
    /// The first gate not passed, as `gate: reason`; `None` when none blocks (about to merge)
    /// or not evaluated yet.
    pub blocking: Option<String>,
    pub held: bool,
    pub hold_reason: Option<String>,
    /// Every gate's verdict from the last pass (empty until evaluated).
    pub gates: Vec<GateVerdict>,
}

/// One gate of a pending promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateVerdict {
    pub gate: String,
    /// `passed`, `waiting` or `blocked`.
    pub verdict: String,
    pub reason: String,
}

impl GateVerdict {
    pub fn from_result(r: &crate::promote::gates::GateResult) -> Self {
        use crate::promote::gates::Verdict;
        Self {
            gate: r.gate.title().to_string(),
            verdict: match r.verdict {
                Verdict::Passed => "passed",
                Verdict::Waiting => "waiting",
                Verdict::Blocked => "blocked",
            }
            .to_string(),
            reason: r.reason.clone(),
        }
    }
}

/// An open promotion PR as the service knows it, the input for a [`PendingPromotion`]. The
/// engine's leader also keeps it in the environment's persisted state, for the status pages
/// of the other replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPromotion {
    pub number: u64,
    pub url: Option<String>,
    pub env: String,
    pub app: String,
    pub to: Pinned,
    pub blocking: Option<String>,
    pub held: bool,
    pub hold_reason: Option<String>,
    pub gates: Vec<GateVerdict>,
}

impl OpenPromotion {
    /// From the planner's view of a PR (held when it carries the `baton:hold` label).
    pub fn from_pull_request(pr: &PullRequest, url: Option<String>) -> Self {
        Self {
            number: pr.number,
            url,
            env: pr.env.clone(),
            app: pr.app.clone(),
            to: Pinned {
                tag: pr.tag.clone(),
                digest: pr.digest.clone(),
            },
            blocking: None,
            held: pr.labels.iter().any(|l| l == HOLD_LABEL),
            hold_reason: pr.hold_reason.clone(),
            gates: Vec::new(),
        }
    }

    /// The gates of an evaluation, the blocking one worded as the engine words it on the PR.
    pub fn with_evaluation(mut self, evaluation: &Evaluation) -> Self {
        self.blocking = blocking_text(evaluation);
        self.gates = evaluation
            .results
            .iter()
            .map(GateVerdict::from_result)
            .collect();
        self
    }
}

/// `gate: reason` of the first gate not passed, the text of `engine::Outcome::Waiting`.
pub fn blocking_text(evaluation: &Evaluation) -> Option<String> {
    evaluation
        .blocking()
        .map(|g| format!("{}: {}", g.gate.title(), g.reason))
}

/// Fill in `blocking` and the gates from a pass's outcomes (`Waiting` names them by PR).
pub fn apply_outcomes(open: &mut [OpenPromotion], outcomes: &[crate::engine::Outcome]) {
    for outcome in outcomes {
        if let crate::engine::Outcome::Waiting {
            pr,
            blocking,
            gates,
            ..
        } = outcome
            && let Some(o) = open.iter_mut().find(|o| o.number == *pr)
        {
            o.blocking = Some(blocking.clone()).filter(|b| !b.is_empty());
            o.gates = gates.iter().map(GateVerdict::from_result).collect();
        }
    }
}

/// A promotion waiting on its soak, worded as of now (`soak: staging: healthy for 7m of 10m
/// (restarted at 14:02 after …)`), where the engine's text has absolute times.
fn live_soak(
    inputs: &Inputs<'_>,
    env: &crate::config::Environment,
    app: &str,
    o: &OpenPromotion,
) -> Option<String> {
    if !o.blocking.as_deref()?.starts_with("soak:") {
        return None;
    }
    let after = env.after.as_deref()?;
    let dep = inputs
        .deployments
        .get(&(after.to_string(), app.to_string()))
        .filter(|d| d.digest == o.to.digest)?;
    let progress = crate::promote::gates::SoakProgress {
        healthy_since: dep.healthy_since?,
        need: env.soak?.0,
        restarted: dep.restarted.clone(),
    };
    Some(format!("soak: {after}: {}", progress.text(inputs.now)))
}

/// What [`StatusView::build`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub repo: &'a RepoInfo,
    pub pipeline: &'a Pipeline,
    /// What the config branch tip pins, by (env, app).
    pub pinned: &'a BTreeMap<(String, String), Pinned>,
    /// What each environment runs, by (env, app).
    pub deployments: &'a BTreeMap<(String, String), Deployment>,
    pub open: &'a [OpenPromotion],
    /// Promotions from Git, newest first (`gitrepo::history::read`); the newest per cell is
    /// its last deploy.
    pub history: &'a [Entry],
    /// The last reconcile per environment.
    pub reconciles: &'a BTreeMap<String, ReconcileSummary>,
    pub now: DateTime<Utc>,
}

/// The newest [`RECENT`] history entries of `env`, with links into the repository.
fn recent(inputs: &Inputs<'_>, env: &str) -> Vec<RecentEntry> {
    let base = inputs.repo.url.as_deref().map(|u| u.trim_end_matches('/'));
    let mut entries: Vec<&Entry> = inputs
        .history
        .iter()
        .filter(|e| e.promotion.environment == env)
        .collect();
    // Newest first; stable, so equal times keep the history's (commit) order.
    entries.sort_by_key(|e| std::cmp::Reverse(e.time));
    entries
        .into_iter()
        .take(RECENT)
        .map(|e| RecentEntry {
            at: e.time,
            app: e.promotion.app.clone(),
            tag: e.promotion.tag.clone(),
            digest: e.promotion.to.clone(),
            commit: e.commit.clone(),
            commit_url: base.map(|b| format!("{b}/commit/{}", e.commit)),
            pull_request: e.promotion.pull_request,
            pull_request_url: base
                .zip(e.promotion.pull_request)
                .map(|(b, n)| format!("{b}/pull/{n}")),
            promoted_by: e.promotion.promoted_by.clone(),
            rollback: e.promotion.is_rollback(),
        })
        .collect()
}

impl StatusView {
    /// Build the view. `previous` (the view this one replaces) keeps the `since` of a cell
    /// whose health and digest did not change; without it, a cell that is not healthy is
    /// `since` now.
    pub fn build(inputs: &Inputs<'_>, previous: Option<&StatusView>) -> Self {
        let envs = inputs.pipeline.promotion_order();
        let environments = envs
            .iter()
            .map(|e| EnvironmentView {
                name: e.name.clone(),
                after: e.after.clone(),
                last_reconcile: inputs.reconciles.get(&e.name).cloned(),
                recent: recent(inputs, &e.name),
            })
            .collect();
        let mut last: BTreeMap<(&str, &str), &Entry> = BTreeMap::new();
        for entry in inputs.history {
            let p = &entry.promotion;
            let slot = last
                .entry((p.environment.as_str(), p.app.as_str()))
                .or_insert(entry);
            if entry.time > slot.time {
                *slot = entry;
            }
        }
        let apps = inputs
            .pipeline
            .apps
            .iter()
            .map(|(name, app)| AppView {
                name: name.clone(),
                image: app.image.clone(),
                cells: envs
                    .iter()
                    .map(|env| {
                        let key = (env.name.clone(), name.clone());
                        let dep = inputs.deployments.get(&key);
                        let health = dep.map_or(Health::Unknown, |d| d.state.into());
                        let running = dep.map(|d| d.digest.clone());
                        let before = previous.and_then(|p| p.cell(name, &env.name));
                        let since = match dep {
                            None => None,
                            Some(d)
                                if d.state == DeployState::Healthy && d.healthy_since.is_some() =>
                            {
                                d.healthy_since
                            }
                            Some(_) => before
                                .filter(|b| b.health == health && b.running == running)
                                .and_then(|b| b.since)
                                .or(Some(inputs.now)),
                        };
                        Cell {
                            env: env.name.clone(),
                            pinned: inputs.pinned.get(&key).map(ImageRef::from),
                            health,
                            since,
                            running,
                            last_deploy: last.get(&(env.name.as_str(), name.as_str())).map(|e| {
                                LastDeploy {
                                    at: e.time,
                                    commit: e.commit.clone(),
                                    tag: e.promotion.tag.clone(),
                                    digest: e.promotion.to.clone(),
                                    pull_request: e.promotion.pull_request,
                                    promoted_by: e.promotion.promoted_by.clone(),
                                }
                            }),
                            pending: inputs
                                .open
                                .iter()
                                .filter(|o| o.env == env.name && o.app == *name)
                                .min_by_key(|o| o.number)
                                .map(|o| PendingPromotion {
                                    number: o.number,
                                    url: o.url.clone().or_else(|| {
                                        inputs.repo.url.as_ref().map(|u| {
                                            format!("{}/pull/{}", u.trim_end_matches('/'), o.number)
                                        })
                                    }),
                                    to: ImageRef::from(&o.to),
                                    blocking: live_soak(inputs, env, name, o)
                                        .or_else(|| o.blocking.clone()),
                                    held: o.held,
                                    hold_reason: o.hold_reason.clone(),
                                    gates: o.gates.clone(),
                                }),
                        }
                    })
                    .collect(),
            })
            .collect();
        Self {
            repo: inputs.repo.clone(),
            environments,
            apps,
            updated_at: Some(inputs.now),
        }
    }

    /// The cell of `app` in `env`.
    pub fn cell(&self, app: &str, env: &str) -> Option<&Cell> {
        self.apps
            .iter()
            .find(|a| a.name == app)?
            .cells
            .iter()
            .find(|c| c.env == env)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gitrepo::trailers::Promotion;
    use chrono::TimeZone;

    pub(crate) fn digest(n: u8) -> Digest {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap()
    }

    pub(crate) fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, 0).unwrap()
    }

    pub(crate) fn pipeline() -> Pipeline {
        Pipeline::parse(
            "policies/pipeline.yaml",
            r#"apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web:
    image: registry.example.com/shop/web
    bless: { semver: ">=1.0.0" }
  api:
    image: registry.example.com/shop/api
    bless: { semver: ">=1.0.0" }
environments:
  - name: prod
    after: staging
    approvals: { count: 1 }
  - name: staging
    after: dev
    soak: 2h
  - name: dev
    autoMerge: true
"#,
        )
        .unwrap()
        .pipeline
    }

    pub(crate) struct Fixture {
        pub repo: RepoInfo,
        pub pipeline: Pipeline,
        pub pinned: BTreeMap<(String, String), Pinned>,
        pub deployments: BTreeMap<(String, String), Deployment>,
        pub open: Vec<OpenPromotion>,
        pub history: Vec<Entry>,
        pub reconciles: BTreeMap<String, ReconcileSummary>,
    }

    fn key(env: &str, app: &str) -> (String, String) {
        (env.to_string(), app.to_string())
    }

    pub(crate) fn fixture() -> Fixture {
        let mut pinned = BTreeMap::new();
        for (env, tag, n) in [
            ("dev", "1.5.0", 2),
            ("staging", "1.4.0", 1),
            ("prod", "1.4.0", 1),
        ] {
            pinned.insert(
                key(env, "web"),
                Pinned {
                    tag: Some(tag.into()),
                    digest: digest(n),
                },
            );
        }
        let mut deployments = BTreeMap::new();
        deployments.insert(
            key("dev", "web"),
            Deployment {
                env: "dev".into(),
                app: "web".into(),
                digest: digest(2),
                state: DeployState::Healthy,
                healthy_since: Some(at(9, 0)),
                restarted: None,
            },
        );
        deployments.insert(
            key("staging", "web"),
            Deployment {
                env: "staging".into(),
                app: "web".into(),
                digest: digest(1),
                state: DeployState::Failed,
                healthy_since: None,
                restarted: None,
            },
        );
        let open = vec![OpenPromotion {
            number: 7,
            url: None,
            env: "staging".into(),
            app: "web".into(),
            to: Pinned {
                tag: Some("1.5.0".into()),
                digest: digest(2),
            },
            blocking: Some("soak: dev has been healthy for 5m of 10m".into()),
            held: false,
            hold_reason: None,
            gates: vec![
                GateVerdict {
                    gate: "checks".into(),
                    verdict: "passed".into(),
                    reason: "baton/validate passed".into(),
                },
                GateVerdict {
                    gate: "soak".into(),
                    verdict: "waiting".into(),
                    reason: "dev has been healthy for 5m of 10m".into(),
                },
            ],
        }];
        let promo = |env: &str, tag: &str, n: u8, pr: u64| Promotion {
            app: "web".into(),
            environment: env.into(),
            from: None,
            to: digest(n),
            tag: Some(tag.into()),
            approved_by: vec![],
            promoted_by: Some("alice".into()),
            pull_request: Some(pr),
            rollback_of: None,
        };
        let history = vec![
            Entry {
                time: at(8, 55),
                commit: "c2".repeat(20),
                promotion: promo("dev", "1.5.0", 2, 6),
            },
            Entry {
                time: at(8, 0),
                commit: "c1".repeat(20),
                promotion: promo("dev", "1.4.0", 1, 4),
            },
        ];
        Fixture {
            repo: RepoInfo {
                name: "shop/config".into(),
                branch: "main".into(),
                commit: Some("c2".repeat(20)),
                url: Some("https://github.com/shop/config".into()),
            },
            pipeline: pipeline(),
            pinned,
            deployments,
            open,
            history,
            reconciles: BTreeMap::new(),
        }
    }

    impl Fixture {
        pub(crate) fn inputs(&self, now: DateTime<Utc>) -> Inputs<'_> {
            Inputs {
                repo: &self.repo,
                pipeline: &self.pipeline,
                pinned: &self.pinned,
                deployments: &self.deployments,
                open: &self.open,
                history: &self.history,
                reconciles: &self.reconciles,
                now,
            }
        }
    }

    #[test]
    fn columns_follow_promotion_order_and_rows_the_pipeline_file() {
        let f = fixture();
        let v = StatusView::build(&f.inputs(at(10, 0)), None);
        let envs: Vec<_> = v.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(envs, ["dev", "staging", "prod"]);
        let apps: Vec<_> = v.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(apps, ["web", "api"]);
        assert!(v.apps.iter().all(|a| a.cells.len() == 3));
        assert_eq!(v.updated_at, Some(at(10, 0)));
    }

    #[test]
    fn a_cell_shows_pin_health_last_deploy_and_pending_pr() {
        let f = fixture();
        let v = StatusView::build(&f.inputs(at(10, 0)), None);
        let dev = v.cell("web", "dev").unwrap();
        assert_eq!(dev.pinned.as_ref().unwrap().tag.as_deref(), Some("1.5.0"));
        assert_eq!(dev.health, Health::Healthy);
        assert_eq!(dev.since, Some(at(9, 0)));
        let last = dev.last_deploy.as_ref().unwrap();
        assert_eq!((last.at, last.pull_request), (at(8, 55), Some(6)));
        assert!(dev.pending.is_none());

        let staging = v.cell("web", "staging").unwrap();
        assert_eq!(staging.health, Health::Failed);
        let pending = staging.pending.as_ref().unwrap();
        assert_eq!(pending.number, 7);
        assert_eq!(
            pending.url.as_deref(),
            Some("https://github.com/shop/config/pull/7"),
            "without a URL of its own, the PR link comes from the repo's web URL"
        );
        assert_eq!(pending.to.digest, digest(2));
        assert_eq!(
            pending.blocking.as_deref(),
            Some("soak: dev: healthy for 1h of 2h"),
            "a soak in progress is shown as of the view's time"
        );

        let api = v.cell("api", "prod").unwrap();
        assert_eq!(api.health, Health::Unknown);
        assert_eq!((api.since, &api.pinned, &api.pending), (None, &None, &None));
    }

    #[test]
    fn since_is_kept_while_health_and_digest_stay_the_same() {
        let f = fixture();
        let first = StatusView::build(&f.inputs(at(10, 0)), None);
        assert_eq!(first.cell("web", "staging").unwrap().since, Some(at(10, 0)));
        let second = StatusView::build(&f.inputs(at(10, 5)), Some(&first));
        assert_eq!(
            second.cell("web", "staging").unwrap().since,
            Some(at(10, 0)),
            "still failed on the same digest: since when it first failed"
        );
        let mut g = fixture();
        g.deployments.get_mut(&key("staging", "web")).unwrap().state = DeployState::Progressing;
        let third = StatusView::build(&g.inputs(at(10, 9)), Some(&second));
        let cell = third.cell("web", "staging").unwrap();
        assert_eq!(
            (cell.health, cell.since),
            (Health::Progressing, Some(at(10, 9)))
        );
    }

    #[test]
    fn holds_and_blocking_gates_come_from_the_pr_and_the_passs_outcomes() {
        let pr = PullRequest {
            number: 9,
            app: "web".into(),
            env: "prod".into(),
            digest: digest(1),
            tag: Some("1.4.0".into()),
            head_sha: "h".into(),
            head_pushed_at: at(9, 0),
            labels: vec![HOLD_LABEL.into(), "env:prod".into()],
            hold_reason: Some("incident 42".into()),
            reviews: vec![],
            checks: vec![],
            commands: vec![],
            group: None,
        };
        let mut open = vec![OpenPromotion::from_pull_request(
            &pr,
            Some("https://github.com/shop/config/pull/9".into()),
        )];
        assert!(open[0].held);
        assert_eq!(open[0].blocking, None);
        apply_outcomes(
            &mut open,
            &[crate::engine::Outcome::Waiting {
                pr: 9,
                env: "prod".into(),
                app: "web".into(),
                blocking: "hold: held by alice: incident 42".into(),
                gates: vec![crate::promote::gates::GateResult {
                    gate: crate::promote::gates::Gate::Hold,
                    verdict: crate::promote::gates::Verdict::Blocked,
                    reason: "held by alice: incident 42".into(),
                    recheck_at: None,
                    soak: None,
                }],
            }],
        );
        assert_eq!(
            open[0].blocking.as_deref(),
            Some("hold: held by alice: incident 42")
        );
        assert_eq!(open[0].gates.len(), 1);
        assert_eq!(open[0].gates[0].verdict, "blocked");
    }

    #[test]
    fn each_environment_lists_its_newest_history_entries_with_links() {
        let mut f = fixture();
        let first = f.history[1].clone();
        for i in 0..30 {
            let mut e = first.clone();
            e.time = at(7, 0) - chrono::Duration::minutes(i);
            f.history.push(e);
        }
        let v = StatusView::build(&f.inputs(at(10, 0)), None);
        let dev = v.environments.iter().find(|e| e.name == "dev").unwrap();
        assert_eq!(dev.recent.len(), RECENT);
        assert_eq!(dev.recent[0].at, at(8, 55));
        assert_eq!(dev.recent[1].at, at(8, 0));
        assert!(dev.recent.windows(2).all(|w| w[0].at >= w[1].at));
        assert_eq!(
            dev.recent[0].pull_request_url.as_deref(),
            Some("https://github.com/shop/config/pull/6")
        );
        assert_eq!(
            dev.recent[0].commit_url.as_deref(),
            Some(format!("https://github.com/shop/config/commit/{}", "c2".repeat(20)).as_str())
        );
        let prod = v.environments.iter().find(|e| e.name == "prod").unwrap();
        assert!(prod.recent.is_empty());
    }

    #[test]
    fn a_reconcile_summary_says_why_a_reconcile_failed() {
        let s = ReconcileSummary::failed(Some("abc".into()), at(10, 0), "render: boom");
        assert_eq!(s.health, Health::Unknown);
        assert_eq!(s.error.as_deref(), Some("render: boom"));
    }
}
