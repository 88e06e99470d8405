//! After the merge: report each rollout on the forge (rolling back is [`super::rollback`]).
//!
//! [`Engine::report_rollout`] takes a [`Rollout`] (what the reconciler found at a commit of
//! the config branch, built with [`Rollout::from_result`]) and
//! - sets the commit status `baton/<env>` on that commit and on the merge commits of the
//!   promotions it brought to the environment (pending while applying, success when healthy,
//!   failure with the failing objects and reasons);
//! - adds one line per state to the timeline in each of those promotion PRs' status comment
//!   (merged → applying → healthy in 42s: … on sha256:…), each kind of line once;
//! - when the rollout failed and the environment says `onFailure: rollback`, opens a rollback
//!   PR ([`Engine::roll_back`]) and says so on the failed PR.
//!
//! Reports are idempotent without any memory: the commit status on the reported commit is the
//! cursor. It is written last, so when it already has the reported state everything before it
//! was done, and the report costs one read and no write. Timeline lines are added only when
//! their kind is missing; a rollback is not opened twice because the open rollback PR (or the
//! environment no longer pinning the failed digest) is found first.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::rollback::{RollbackRequest, Rolled};
use super::{Engine, EngineError, Outcome, text};
use crate::config::pipeline::{OnFailure, Pipeline};
use crate::forge::{Forge, StatusState, StatusUpdate};
use crate::gitrepo::history::{self, Entry};
use crate::gitrepo::repo::GitError;
use crate::image::Digest;
use crate::promote::state::{CheckState, DeployState};
use crate::reconcile::{HealthStatus, ReconcileError, Report};

/// GitHub cuts commit status descriptions at 140 characters.
pub const STATUS_DESCRIPTION_LIMIT: usize = 140;

/// How many promotions back a report looks for PRs not yet reported terminal.
const REPORT_DEPTH: usize = 20;
/// Where a rollout of an environment stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum RolloutState {
    /// Applied (or being applied) and not yet healthy; also a transient error being retried.
    Applying,
    /// Every object healthy. `summary` is short: `Deployment/web: 3/3 replicas available`.
    Healthy { took: Duration, summary: String },
    /// Objects failed (their health, or the apply itself): one reason per object.
    Failed { reasons: Vec<String> },
    /// The commit could not be applied at all (render, invalid objects, unknown kinds);
    /// nothing changed in the cluster, so nothing is rolled back.
    Invalid { reason: String },
}

/// What an environment runs of one app after a rollout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppRollout {
    pub app: String,
    pub digest: Digest,
    pub state: DeployState,
}

/// One rollout of an environment at a commit of the config branch. Persisted in the
/// environment's state by the replica that reconciles it, and reported on GitHub from there by
/// the one that leads the engine (docs/service.md, "Replicas").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rollout {
    pub env: String,
    /// The config branch commit that was reconciled.
    pub commit: String,
    pub state: RolloutState,
    /// The pipeline's apps the environment runs, with their state (empty when unknown).
    pub apps: Vec<AppRollout>,
}

impl Rollout {
    /// Whether `other` says the same as this one, but for how long the apply took (each
    /// resync of a healthy environment times it anew).
    pub fn same_as(&self, other: &Rollout) -> bool {
        let timeless = |r: &Rollout| match &r.state {
            RolloutState::Healthy { summary, .. } => RolloutState::Healthy {
                took: Duration::ZERO,
                summary: summary.clone(),
            },
            s => s.clone(),
        };
        self.env == other.env
            && self.commit == other.commit
            && self.apps == other.apps
            && timeless(self) == timeless(other)
    }

    /// The rollout a reconcile result describes. Transient errors read as still applying
    /// (the reconciler retries); permanent errors before anything changed are `Invalid`.
    pub fn from_result(
        env: &str,
        commit: &str,
        result: &Result<Report, ReconcileError>,
        pipeline: &Pipeline,
    ) -> Self {
        let (state, apps) = match result {
            Err(e) if e.is_transient() => (RolloutState::Applying, vec![]),
            Err(ReconcileError::Apply { failures, .. }) => (
                RolloutState::Failed {
                    reasons: failures.iter().map(|f| f.to_string()).collect(),
                },
                vec![],
            ),
            Err(e) => (
                RolloutState::Invalid {
                    reason: e.to_string(),
                },
                vec![],
            ),
            Ok(report) => {
                let apps = report
                    .deployments(pipeline)
                    .into_iter()
                    .map(|d| AppRollout {
                        app: d.app,
                        digest: d.digest,
                        state: d.state,
                    })
                    .collect();
                let state = match report.health.state {
                    DeployState::Healthy => RolloutState::Healthy {
                        took: (report.finished_at - report.started_at)
                            .to_std()
                            .unwrap_or_default(),
                        summary: healthy_summary(report),
                    },
                    DeployState::Progressing => RolloutState::Applying,
                    DeployState::Failed => RolloutState::Failed {
                        reasons: report
                            .health
                            .unhealthy
                            .iter()
                            .filter(|o| o.health.status == HealthStatus::Failed)
                            .map(|o| {
                                format!("{}: {}: {}", o.object, o.health.reason, o.health.message)
                            })
                            .collect(),
                    },
                };
                (state, apps)
            }
        };
        Self {
            env: env.to_string(),
            commit: commit.to_string(),
            state,
            apps,
        }
    }

    /// The commit status this rollout sets.
    pub fn status(&self) -> StatusUpdate {
        let (state, description) = match &self.state {
            RolloutState::Applying => (
                StatusState::Pending,
                format!("applying {}", short_sha(&self.commit)),
            ),
            RolloutState::Healthy { took, summary } => (
                StatusState::Success,
                format!("healthy in {}: {summary}", seconds(*took)),
            ),
            RolloutState::Failed { reasons } => (
                StatusState::Failure,
                format!("failed: {}", reasons.join("; ")),
            ),
            RolloutState::Invalid { reason } => (
                StatusState::Failure,
                format!("not applied: {}", reason.lines().next().unwrap_or("")),
            ),
        };
        StatusUpdate {
            context: status_context(&self.env),
            state,
            description: clip(&description, STATUS_DESCRIPTION_LIMIT),
            target_url: None,
        }
    }

    fn check_state(&self) -> CheckState {
        match self.state {
            RolloutState::Applying => CheckState::Pending,
            RolloutState::Healthy { .. } => CheckState::Success,
            RolloutState::Failed { .. } | RolloutState::Invalid { .. } => CheckState::Failure,
        }
    }

    /// Whether the promotion of `app` to `to` is what this rollout runs (unknown: yes).
    pub(super) fn runs(&self, app: &str, to: &Digest) -> bool {
        if self.apps.is_empty() {
            return true;
        }
        self.apps.iter().any(|a| a.app == app && a.digest == *to)
    }

    /// Whether `app` failed in this rollout (unknown per app: the whole rollout failed).
    fn failed(&self, app: &str) -> bool {
        matches!(self.state, RolloutState::Failed { .. })
            && (self.apps.is_empty()
                || self
                    .apps
                    .iter()
                    .any(|a| a.app == app && a.state == DeployState::Failed))
    }

    /// The timeline line for a promotion of `to` in this rollout.
    fn timeline_line(&self, to: &Digest) -> String {
        match &self.state {
            RolloutState::Applying => format!("applying {}", short_sha(&self.commit)),
            RolloutState::Healthy { took, summary } => format!(
                "healthy in {}: {summary} on `{}`",
                seconds(*took),
                to.short()
            ),
            RolloutState::Failed { reasons } => format!("failed: {}", reasons.join("; ")),
            RolloutState::Invalid { reason } => {
                format!("not applied: {}", reason.lines().next().unwrap_or(""))
            }
        }
    }

    fn headline(&self) -> String {
        match &self.state {
            RolloutState::Applying => format!("Merged; applying to {}.", self.env),
            RolloutState::Healthy { .. } => format!("Healthy in {}.", self.env),
            RolloutState::Failed { .. } => format!("The rollout to {} failed.", self.env),
            RolloutState::Invalid { .. } => format!(
                "{} could not be applied; the cluster was left as it was. Fix the config repo.",
                self.env
            ),
        }
    }
}

pub(super) fn status_context(env: &str) -> String {
    format!("baton/{env}")
}

/// `Deployment/web: 3/3 replicas available` for the objects that run images, at most three.
/// What a healthy rollout runs; deletions the prune guard held back come first, so that the
/// commit status (cut at 140 characters) shows them too.
fn healthy_summary(report: &Report) -> String {
    let workloads: Vec<String> = report
        .objects
        .iter()
        .filter(|o| !o.images.is_empty())
        .map(|o| format!("{}/{}: {}", o.object.kind, o.object.name, o.health.message))
        .collect();
    let running = match workloads.len() {
        0 => format!("{} object(s)", report.objects.len()),
        n if n <= 3 => workloads.join("; "),
        n => format!("{}; and {} more", workloads[..3].join("; "), n - 3),
    };
    match &report.prune_held {
        Some(hold) => format!("{}; {running}", hold.describe(&report.env)),
        None => running,
    }
}

fn seconds(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s}s"),
        s => format!("{}m{:02}s", s / 60, s % 60),
    }
}

fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Cut to `limit` characters, ending with `…` when cut.
pub fn clip(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The kinds of timeline lines a report writes; each is written once per PR.
const LINE_KINDS: [&str; 8] = [
    "verified",
    "verification failed",
    "applying",
    "healthy",
    "failed",
    "not applied",
    "rolling back",
    "no automatic rollback",
];

fn kind_of(line: &str) -> Option<&'static str> {
    LINE_KINDS.iter().copied().find(|k| line.starts_with(k))
}

/// A status comment with `headline` as its headline and `lines` appended to its timeline;
/// everything else (the gate table, the handled-command marker) kept as it is.
pub fn with_events(body: &str, headline: &str, lines: &[String]) -> String {
    let mut out: Vec<String> = body.lines().map(String::from).collect();
    // The headline is the first text line after the `### baton` title.
    if let Some(title) = out.iter().position(|l| l.starts_with("### baton"))
        && let Some(h) = out
            .iter()
            .skip(title + 1)
            .position(|l| !l.trim().is_empty())
            .map(|i| i + title + 1)
        && !out[h].starts_with('|')
        && !out[h].starts_with("<!--")
        && out[h] != "**Timeline**"
    {
        out[h] = headline.to_string();
    }
    let new: Vec<String> = lines.iter().map(|l| format!("- {l}")).collect();
    match out.iter().position(|l| l.trim() == "**Timeline**") {
        Some(t) => {
            let mut end = t + 1;
            while end < out.len() && (out[end].trim().is_empty() || out[end].starts_with("- ")) {
                if out[end].starts_with("- ") {
                    end += 1;
                    continue;
                }
                // A blank line: part of the section only if items follow.
                if out.get(end + 1).is_some_and(|l| l.starts_with("- ")) {
                    end += 1;
                } else {
                    break;
                }
            }
            out.splice(end..end, new);
        }
        None => {
            let at = out
                .iter()
                .position(|l| l.starts_with("<!-- baton:handled"))
                .unwrap_or(out.len());
            let mut section = vec!["**Timeline**".to_string(), String::new()];
            section.extend(new);
            section.push(String::new());
            out.splice(at..at, section);
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

impl<F: Forge> Engine<F> {
    /// Report a rollout on the forge (see the module docs). Idempotent: reporting the same
    /// state again makes no forge write. `now` stamps the timeline lines.
    pub async fn report_rollout(
        &self,
        rollout: &Rollout,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, EngineError> {
        let context = status_context(&rollout.env);
        let want = rollout.check_state();
        let on_commit = self.forge.checks(&rollout.commit).await?;
        if state_of(&on_commit, &context) == Some(want) {
            return Ok(Vec::new());
        }
        let view = tokio::task::block_in_place(|| self.read_repo())?;
        let promotions =
            tokio::task::block_in_place(|| self.promotions_at(&rollout.commit, &rollout.env))?;
        // The promotions this state concerns: back from the commit to the first whose merge
        // commit already has a final status for this environment.
        let mut included: Vec<(Entry, Option<CheckState>)> = Vec::new();
        for entry in promotions.iter().take(REPORT_DEPTH).cloned() {
            let current = if entry.commit == rollout.commit {
                state_of(&on_commit, &context)
            } else {
                let s = state_of(&self.forge.checks(&entry.commit).await?, &context);
                if matches!(s, Some(CheckState::Success | CheckState::Failure)) {
                    break;
                }
                s
            };
            included.push((entry, current));
        }
        let on_failure = view
            .pipeline
            .environment(&rollout.env)
            .map(|e| e.on_failure)
            .unwrap_or_default();
        let mut outcomes = Vec::new();
        for (entry, _) in &included {
            let p = &entry.promotion;
            if !rollout.runs(&p.app, &p.to) {
                continue;
            }
            if let Some(pr) = p.pull_request {
                self.add_timeline(
                    pr,
                    &p.app,
                    &rollout.env,
                    &rollout.headline(),
                    &[format!(
                        "{} ({})",
                        rollout.timeline_line(&p.to),
                        now.format("%Y-%m-%d %H:%M UTC")
                    )],
                )
                .await?;
            }
            outcomes.push(Outcome::Reported {
                pr: p.pull_request,
                env: rollout.env.clone(),
                app: p.app.clone(),
                state: rollout.status().description,
            });
            if on_failure == OnFailure::Rollback && rollout.failed(&p.app) {
                let request = RollbackRequest {
                    env: rollout.env.clone(),
                    app: p.app.clone(),
                    to: None,
                    bad: Some(p.to.clone()),
                    by: None,
                    why: match p.pull_request {
                        Some(pr) => format!(
                            "`onFailure: rollback` in {}: the rollout of #{pr} failed",
                            rollout.env
                        ),
                        None => format!(
                            "`onFailure: rollback` in {}: the rollout failed",
                            rollout.env
                        ),
                    },
                };
                match self.roll_back(&view, &request).await? {
                    Rolled::Opened { pr, .. } => outcomes.push(Outcome::RollbackOpened {
                        pr,
                        env: rollout.env.clone(),
                        app: p.app.clone(),
                    }),
                    Rolled::AlreadyOpen { .. } => {}
                    Rolled::Nothing(why) => {
                        tracing::warn!(env = %rollout.env, app = %p.app, %why, "no automatic rollback");
                        if let Some(pr) = p.pull_request {
                            self.add_timeline(
                                pr,
                                &p.app,
                                &rollout.env,
                                &rollout.headline(),
                                &[format!("no automatic rollback: {why}")],
                            )
                            .await?;
                        }
                    }
                }
            }
        }
        // GitHub Deployments, before the status that marks this report done.
        let concerned: Vec<&Entry> = included
            .iter()
            .map(|(e, _)| e)
            .filter(|e| rollout.runs(&e.promotion.app, &e.promotion.to))
            .collect();
        self.record_deployments(rollout, &concerned, &promotions)
            .await?;
        // Statuses last: the one on the reported commit is what marks this report done.
        let status = rollout.status();
        for (entry, current) in &included {
            if entry.commit != rollout.commit && *current != Some(want) {
                self.forge.set_status(&entry.commit, &status).await?;
            }
        }
        self.forge.set_status(&rollout.commit, &status).await?;
        Ok(outcomes)
    }

    /// Report a reconcile of `env` at `commit`: [`Rollout::from_result`] with the pipeline of
    /// that commit, then [`Engine::report_rollout`]. What the service loop calls for each
    /// `reconcile::runner::Outcome` that has a commit.
    pub async fn report_reconcile(
        &self,
        env: &str,
        commit: &str,
        result: &Result<Report, ReconcileError>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, EngineError> {
        let rollout = self.rollout_of(env, commit, result)?;
        self.report_rollout(&rollout, now).await
    }

    /// The rollout a reconcile result describes, read with the pipeline at `commit`.
    pub fn rollout_of(
        &self,
        env: &str,
        commit: &str,
        result: &Result<Report, ReconcileError>,
    ) -> Result<Rollout, EngineError> {
        let pipeline = tokio::task::block_in_place(|| {
            let repo = self.repo();
            let oid = self.local_commit(&repo, commit)?;
            super::observe::load_pipeline(&repo.files_at(oid)?, oid)
        })?;
        Ok(Rollout::from_result(env, commit, result, &pipeline))
    }

    /// `commit` in the local clone, fetching once if it is not there yet.
    fn local_commit(
        &self,
        repo: &crate::gitrepo::repo::ConfigRepo,
        commit: &str,
    ) -> Result<git2::Oid, EngineError> {
        let oid = git2::Oid::from_str(commit).map_err(|e| GitError::Git {
            op: "read",
            message: format!("{commit}: {}", e.message()),
            transient: false,
        })?;
        if repo.git().find_commit(oid).is_err() {
            repo.fetch()?;
        }
        Ok(oid)
    }

    /// The promotions of `env` reachable from `commit`, newest first.
    pub(super) fn promotions_at(&self, commit: &str, env: &str) -> Result<Vec<Entry>, EngineError> {
        let repo = self.repo();
        let oid = self.local_commit(&repo, commit)?;
        let filter = history::Filter {
            environment: Some(env.to_string()),
            limit: Some(REPORT_DEPTH),
            ..Default::default()
        };
        history::read(repo.git(), oid, &filter).map_err(|e| {
            GitError::Git {
                op: "history",
                message: format!("{commit}: {}", e.message()),
                transient: false,
            }
            .into()
        })
    }

    /// Add `lines` to the timeline of a PR's status comment (creating it if the PR has none),
    /// skipping lines whose kind is already there. Returns whether it wrote.
    pub(super) async fn add_timeline(
        &self,
        pr: u64,
        app: &str,
        env: &str,
        headline: &str,
        lines: &[String],
    ) -> Result<bool, EngineError> {
        let comments = self.forge.comments(pr).await?;
        let status = comments.iter().find(|c| {
            c.author == self.forge.bot_login() && c.body.starts_with(text::STATUS_MARKER)
        });
        let existing = status.map(|s| text::timeline(&s.body)).unwrap_or_default();
        let fresh: Vec<String> = lines
            .iter()
            .filter(|l| {
                let kind = kind_of(l);
                !existing
                    .iter()
                    .any(|e| *e == **l || (kind.is_some() && kind_of(e) == kind))
            })
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(false);
        }
        match status {
            Some(s) => {
                let body = with_events(&s.body, headline, &fresh);
                self.forge.update_comment(s.id, &body).await?;
            }
            None => {
                let body = text::status_comment(app, env, headline, None, &fresh, &BTreeSet::new());
                self.forge.create_comment(pr, &body).await?;
            }
        }
        Ok(true)
    }
}

pub(super) fn state_of(
    checks: &[crate::promote::state::Check],
    context: &str,
) -> Option<CheckState> {
    checks
        .iter()
        .find(|c| c.context == context)
        .map(|c| c.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_lines_are_appended_keeping_the_gate_table_and_handled_ids() {
        let body = text::status_comment(
            "web",
            "dev",
            "Merged; the environment is applied next.",
            None,
            &["merged as abc1234".to_string()],
            &BTreeSet::from([5]),
        );
        let next = with_events(&body, "Healthy in dev.", &["healthy in 4s: ok".into()]);
        assert_eq!(
            text::timeline(&next),
            vec!["merged as abc1234", "healthy in 4s: ok"]
        );
        assert_eq!(text::handled_ids(&next), BTreeSet::from([5]));
        assert!(next.contains("\nHealthy in dev.\n"), "{next}");
        assert!(!next.contains("applied next"), "{next}");

        let bare = text::status_comment("web", "dev", "Waiting", None, &[], &BTreeSet::new());
        let next = with_events(&bare, "Applying.", &["applying abc".into()]);
        assert_eq!(text::timeline(&next), vec!["applying abc"]);
    }

    fn pipeline() -> Pipeline {
        Pipeline::parse(
            "p",
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web: { image: reg/web, bless: { semver: \">=1.0.0\" } }\nenvironments: [{ name: dev }]\n",
        )
        .unwrap()
        .pipeline
    }

    #[test]
    fn reconcile_errors_map_to_applying_failed_or_invalid() {
        let p = pipeline();
        let transient: Result<Report, _> = Err(ReconcileError::CrdNotEstablished {
            name: "widgets.example.com".into(),
            waited: Duration::from_secs(5),
        });
        assert_eq!(
            Rollout::from_result("dev", "abc", &transient, &p).state,
            RolloutState::Applying
        );
        let apply: Result<Report, _> = Err(ReconcileError::Apply {
            failures: vec![crate::reconcile::error::ObjectFailure {
                object: "Deployment/shop/web".into(),
                message: "spec.selector: field is immutable".into(),
                transient: false,
            }],
            total: 3,
        });
        let r = Rollout::from_result("dev", "abc", &apply, &p);
        assert_eq!(
            r.state,
            RolloutState::Failed {
                reasons: vec!["Deployment/shop/web: spec.selector: field is immutable".into()]
            }
        );
        assert!(r.failed("web"), "an apply failure fails every app");
        let render: Result<Report, _> = Err(ReconcileError::Render {
            env: "dev".into(),
            commit: "abc".into(),
            source: "environments/dev/kustomization.yaml:3: unknown field `resourcez`".into(),
        });
        let r = Rollout::from_result("dev", "abc", &render, &p);
        assert!(
            matches!(&r.state, RolloutState::Invalid { reason } if reason.contains("kustomization.yaml:3")),
            "{r:?}"
        );
        assert!(
            !r.failed("web"),
            "nothing was applied: nothing to roll back"
        );
        assert_eq!(r.status().state, StatusState::Failure);
    }

    #[test]
    fn status_descriptions_fit_githubs_limit() {
        let rollout = Rollout {
            env: "prod".into(),
            commit: "0123456789abcdef".into(),
            state: RolloutState::Failed {
                reasons: vec!["Deployment/shop/web: ProgressDeadlineExceeded: x".repeat(10)],
            },
            apps: vec![],
        };
        let s = rollout.status();
        assert_eq!(s.state, StatusState::Failure);
        assert_eq!(s.context, "baton/prod");
        assert_eq!(s.description.chars().count(), STATUS_DESCRIPTION_LIMIT);
        assert!(s.description.starts_with("failed: Deployment/shop/web"));
    }
}
