//! The promotion engine: the I/O around the pure planner. One pass ([`Engine::run_once`])
//! fetches the config repo, reads open promotion PRs with their reviews, checks and comments
//! from the forge, handles new slash-commands, asks `promote::plan` what to do, and does it.
//!
//! Every pass rebuilds its view from Git and the forge; nothing is remembered between passes
//! except caches. The only bookkeeping lives on GitHub itself: each answer to a command names
//! the command it answers (a hidden marker), and the ids of command comments that are fully
//! answered are then recorded in the PR's status comment. A command's effects (a label, a
//! rollback PR) are idempotent, so a bot killed between a command's effect and its answer
//! applies it again and answers it once; one killed after the answer finds the answer. Nothing
//! is opened, merged, answered or commented twice (`tests/crash_safety.rs`).
//!
//! After the merge, [`rollout`] reports each rollout ([`Engine::report_rollout`]: commit
//! status `baton/<env>` and the PR's timeline) and rolls back ([`Engine::roll_back_now`],
//! `/rollback`, `onFailure: rollback`). Commands on PRs that are no longer open are answered by
//! [`Engine::answer_pr`].
//!
//! One file per part of a pass: `observe` reads the config repo and the open PRs, `commands`
//! answers slash-commands, `act` does what the planner decided (and lands a merge, directly or
//! through GitHub's merge queue), `releases` reads the registries' newest releases, `group` is
//! the I/O of release trains. This file holds the types, the engine's construction and
//! [`Engine::run_once`].

mod act;
mod commands;
pub mod copy;
pub mod deployments;
mod group;
mod observe;
pub mod queue;
pub mod refusal;
mod releases;
pub mod rollback;
pub mod rollout;
pub mod text;
pub mod verification;
mod verified;

pub use rollback::{RollbackRequest, Rolled};
pub use rollout::{AppRollout, Rollout, RolloutState};

use act::{Landing, QueueRules};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::pipeline::Pipeline;
use crate::forge::{CommentInfo, Forge, ForgeError, PullRequestInfo};
use crate::gitrepo::history::Entry;
use crate::gitrepo::repo::{ConfigRepo, GitError};
use crate::image::{Digest, Pinned};
use crate::promote::Evaluation;
use crate::promote::plan::{self, Action, Release};
use crate::promote::policy::PolicySource;
use crate::promote::state::{Deployment, PullRequest};

/// Why a pass failed. Each variant knows whether the next pass may succeed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
    /// The pipeline at the branch tip does not load; nothing is promoted until it is fixed.
    #[error("policies/pipeline.yaml at {commit}: {message}")]
    Pipeline { commit: String, message: String },
}

impl EngineError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git(e) => e.is_transient(),
            Self::Forge(e) => e.is_transient(),
            Self::Pipeline { .. } => false,
        }
    }
}

/// What a pass did, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Outcome {
    Opened {
        pr: u64,
        env: String,
        app: String,
    },
    Updated {
        pr: u64,
        env: String,
        app: String,
    },
    Closed {
        pr: u64,
        env: String,
        app: String,
    },
    Merged {
        pr: u64,
        env: String,
        app: String,
        sha: String,
    },
    Waiting {
        pr: u64,
        env: String,
        app: String,
        blocking: String,
        /// Every gate's verdict as evaluated in this pass (for the status page).
        gates: Vec<crate::promote::gates::GateResult>,
    },
    Answered {
        pr: u64,
        comment: u64,
        command: String,
    },
    /// A rollout was reported on a promotion (`pr` when the merge names one).
    Reported {
        pr: Option<u64>,
        env: String,
        app: String,
        state: String,
    },
    /// A rollback PR was opened.
    RollbackOpened {
        pr: u64,
        env: String,
        app: String,
    },
    /// `/retry` asked to run `env`'s verification of `app` again.
    RetryRequested {
        pr: u64,
        env: String,
        app: String,
    },
    /// `/prune` let the deletions held back in `env` go ahead.
    PruneApproved {
        pr: u64,
        env: String,
        by: String,
    },
    /// An action failed; the next pass retries it.
    Failed {
        env: String,
        app: String,
        error: String,
    },
}

/// An image's `org.opencontainers.image.revision` and `.source`, when its registry says.
type RevisionAndSource = (Option<String>, Option<String>);

/// What a pass saw, kept for the status page.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `(env, app)` → what the config branch tip pins.
    pub pinned: BTreeMap<(String, String), Pinned>,
    /// Open promotion PRs with their URLs.
    pub open: Vec<(PullRequest, String)>,
}

/// The state of the config repo a pass works from.
struct RepoView {
    pipeline: Pipeline,
    policies: Vec<PolicySource>,
    pinned: BTreeMap<(String, String), Pinned>,
    /// Per promotion branch: what its tip pins and when it was committed (for a group's
    /// branch, its first changed member).
    branches: BTreeMap<String, (Option<Pinned>, DateTime<Utc>)>,
    /// Per group branch (`baton/<env>/<group>`): the members it changes, with their pins.
    group_members: BTreeMap<String, Vec<(String, Pinned)>>,
    /// Promotions recorded on the config branch, newest first (the last [`observe::HISTORY_DEPTH`]).
    history: std::sync::Arc<Vec<Entry>>,
    /// Digests held back from (env, app) by rollbacks.
    held: BTreeMap<(String, String), BTreeSet<Digest>>,
}

impl RepoView {
    /// The record of promoting `app` in `env` to `to`, as far as it is known before its PR
    /// exists (from what the tip pins; no approvers, no PR number yet).
    fn pending_promotion(
        &self,
        env: &str,
        app: &str,
        to: &Pinned,
    ) -> crate::gitrepo::trailers::Promotion {
        crate::gitrepo::trailers::Promotion {
            app: app.to_string(),
            environment: env.to_string(),
            from: self
                .pinned
                .get(&(env.to_string(), app.to_string()))
                .map(|p| p.digest.clone()),
            to: to.digest.clone(),
            tag: to.tag.clone(),
            approved_by: Vec::new(),
            promoted_by: None,
            pull_request: None,
            rollback_of: None,
        }
    }
}

/// What a config branch tip says, read once per tip.
struct TipFacts {
    pipeline: Pipeline,
    policies: Vec<PolicySource>,
    pinned: BTreeMap<(String, String), Pinned>,
}

/// An open promotion PR with everything read about it.
#[derive(Clone)]
struct Observed {
    info: PullRequestInfo,
    state: PullRequest,
    status: Option<CommentInfo>,
    comments: Vec<CommentInfo>,
    /// A group's PR: one state per member it pins (`state` is the first). Empty otherwise.
    members: Vec<PullRequest>,
}

/// What GitHub says beyond the PRs, read once per pass while promotion PRs are open: the
/// members of the teams the pipeline names (and the teams it would not list, with why), and
/// the config branch's own rules.
#[derive(Default)]
struct Facts {
    teams: BTreeMap<String, BTreeSet<String>>,
    team_errors: BTreeMap<String, String>,
    base_rules: Option<crate::promote::BaseRules>,
}

/// The engine for one config repo on one forge.
pub struct Engine<F> {
    forge: F,
    /// The config branch (fixed: read without the clone's lock).
    branch: String,
    repo: Mutex<ConfigRepo>,
    /// What the last pass saw, for the status page.
    snapshot: Mutex<Snapshot>,
    /// How many times a push to the config branch may race before the pass gives up.
    pub push_attempts: usize,
    /// The promotions read from history at a config branch tip, to read them once per tip.
    history: Mutex<Option<(git2::Oid, std::sync::Arc<Vec<Entry>>)>>,
    /// What a config branch tip says (pipeline, policies, pins), parsed once per tip: an idle
    /// pass would otherwise parse every overlay once per app.
    at_tip: Mutex<Option<(git2::Oid, std::sync::Arc<TipFacts>)>>,
    /// What each promotion branch commit pins, by commit (a branch is read again only when
    /// it moves).
    branch_pins: Mutex<BTreeMap<git2::Oid, Option<Pinned>>>,
    /// What each group branch commit changes, by commit.
    group_pins: Mutex<BTreeMap<git2::Oid, Vec<(String, Pinned)>>>,
    /// What the registry said about digests it blessed (OCI annotations/labels), for PR
    /// bodies: `digest` → (revision, source).
    provenance: Mutex<BTreeMap<String, RevisionAndSource>>,
    /// Verified attestations by digest, as the scans found them (the policy input's).
    attestations: Mutex<BTreeMap<String, BTreeMap<String, serde_json::Value>>>,
    /// Copies images to environments' `copyTo` registries before their PRs merge. Without
    /// one, such PRs wait at the `copy` gate.
    copier: Option<std::sync::Arc<copy::Copier>>,
    /// Where GitHub Deployments link to; `None`: no Deployments ([`Engine::with_deployments`]).
    deployment_links: Option<deployments::DeploymentLinks>,
}

impl<F: Forge> Engine<F> {
    pub fn new(forge: F, repo: ConfigRepo) -> Self {
        Self {
            forge,
            branch: repo.branch().to_string(),
            repo: Mutex::new(repo),
            push_attempts: 3,
            snapshot: Mutex::default(),
            history: Mutex::new(None),
            at_tip: Mutex::new(None),
            branch_pins: Mutex::default(),
            group_pins: Mutex::default(),
            provenance: Mutex::default(),
            attestations: Mutex::default(),
            copier: None,
            deployment_links: None,
        }
    }

    /// Record each rollout as a GitHub Deployment (see [`deployments`]), linking to `links`.
    pub fn with_deployments(mut self, links: deployments::DeploymentLinks) -> Self {
        self.deployment_links = Some(links);
        self
    }

    /// Copy images for environments with `copyTo` with `copier` (see [`copy`]).
    pub fn with_copier(mut self, copier: std::sync::Arc<copy::Copier>) -> Self {
        self.copier = Some(copier);
        self
    }

    pub fn forge(&self) -> &F {
        &self.forge
    }

    /// What the last pass saw: the pins at the tip and the open promotion PRs.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where a release came from, for its PR body: the source repository (the image's
    /// `org.opencontainers.image.source`, else the pipeline's `source:`) and the revisions of
    /// the two digests when the registry told them.
    fn provenance_of(
        &self,
        configured: Option<&str>,
        from: Option<&crate::image::Digest>,
        to: &Pinned,
    ) -> text::Provenance {
        let known = self.provenance.lock().unwrap_or_else(|e| e.into_inner());
        let of = |d: &crate::image::Digest| known.get(&d.to_string()).cloned();
        let (to_revision, to_source) = of(&to.digest).unwrap_or_default();
        let from_revision = from.and_then(of).and_then(|(r, _)| r);
        text::Provenance {
            source: to_source.or_else(|| configured.map(String::from)),
            from_revision,
            to_revision,
        }
    }

    /// The config branch tip as of the last pass (`None` before the first fetch).
    pub fn config_tip(&self) -> Option<String> {
        self.repo().tip().ok().map(|o| o.to_string())
    }

    /// The pipeline at the config branch tip, as last read (`None` before the first read).
    pub fn pipeline(&self) -> Option<Pipeline> {
        let at_tip = self.at_tip.lock().unwrap_or_else(|e| e.into_inner());
        at_tip.as_ref().map(|(_, facts)| facts.pipeline.clone())
    }

    fn repo(&self) -> std::sync::MutexGuard<'_, ConfigRepo> {
        self.repo.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass: observe, answer new commands, plan, act. `releases` are the registry's newest
    /// blessed digests per app; `deployments` what each environment runs (from the
    /// reconciler).
    pub async fn run_once(
        &self,
        releases: &BTreeMap<String, Release>,
        deployments: &BTreeMap<(String, String), Deployment>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, EngineError> {
        // git2 blocks; keep the runtime's other tasks (the webhook server) running.
        let mut view = tokio::task::block_in_place(|| self.read_repo())?;
        let (mut observed, mut facts) = self.observe(&view).await?;
        let mut outcomes = Vec::new();
        let mut changed = false;
        for o in &mut observed {
            changed |= self.answer_commands(&view, o, &mut outcomes).await?;
        }
        if changed {
            // A `/rollback` opened a PR and may have closed one: plan from what is there now.
            view = tokio::task::block_in_place(|| self.read_repo())?;
            (observed, facts) = self.observe(&view).await?;
        }
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Snapshot {
            pinned: view.pinned.clone(),
            open: observed
                .iter()
                .flat_map(|o| o.states().into_iter().map(|s| (s, o.info.html_url.clone())))
                .collect(),
        };
        let actions = self.plan_from(&view, &observed, &facts, releases, deployments, now);
        let queue_rules = QueueRules {
            merge_queue: facts.base_rules.as_ref().is_some_and(|r| r.merge_queue),
            rebases: facts.base_rules.as_ref().is_some_and(|r| {
                r.merge_queue && r.queue_merge_method.as_deref() == Some("rebase")
            }),
        };
        for action in actions {
            let (env, app) = (action.key().0.to_string(), action.key().1.to_string());
            match self.act(&view, &observed, action, now, queue_rules).await {
                Ok(Some(o)) => outcomes.push(o),
                Ok(None) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(%env, %app, error = %e, "promotion step failed");
                    outcomes.push(Outcome::Failed {
                        env,
                        app,
                        error: e.to_string(),
                    });
                }
            }
        }
        Ok(outcomes)
    }

    /// What a pass would do, without doing anything (no command answers, no writes): for
    /// `baton plan`. Commands not yet answered are not applied (a pending `/hold` shows once
    /// the bot has answered it).
    pub async fn plan_only(
        &self,
        releases: &BTreeMap<String, Release>,
        deployments: &BTreeMap<(String, String), Deployment>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Action>, EngineError> {
        let view = tokio::task::block_in_place(|| self.read_repo())?;
        let (observed, facts) = self.observe(&view).await?;
        Ok(self.plan_from(&view, &observed, &facts, releases, deployments, now))
    }

    fn plan_from(
        &self,
        view: &RepoView,
        observed: &[Observed],
        facts: &Facts,
        releases: &BTreeMap<String, Release>,
        deployments: &BTreeMap<(String, String), Deployment>,
        now: DateTime<Utc>,
    ) -> Vec<Action> {
        let prs: Vec<PullRequest> = observed.iter().flat_map(Observed::states).collect();
        plan::plan(&plan::Inputs {
            pipeline: &view.pipeline,
            now,
            releases,
            pinned: &view.pinned,
            deployments,
            open: &prs,
            teams: &facts.teams,
            team_errors: &facts.team_errors,
            base_rules: facts.base_rules.as_ref(),
            bot_login: self.forge.bot_login(),
            policies: &view.policies,
            held: &view.held,
            attestations: &self
                .attestations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        })
    }

    /// Write "Waiting — `blocking`" with the gate table into `o`'s status comment, keeping its
    /// timeline and the comment ids it already handled.
    async fn write_waiting(
        &self,
        o: &mut Observed,
        blocking: &str,
        evaluation: &Evaluation,
    ) -> Result<(), EngineError> {
        let body = o.status.as_ref().map(|s| s.body.as_str()).unwrap_or("");
        let events = text::timeline(body);
        let handled = text::handled_ids(body);
        self.write_status(
            o,
            &format!("Waiting — {blocking}"),
            Some(evaluation),
            &events,
            &handled,
        )
        .await
    }

    async fn write_status(
        &self,
        o: &mut Observed,
        headline: &str,
        evaluation: Option<&Evaluation>,
        events: &[String],
        handled: &BTreeSet<u64>,
    ) -> Result<(), EngineError> {
        let body = text::status_comment(
            o.state.group.as_ref().unwrap_or(&o.state.app),
            &o.state.env,
            headline,
            evaluation,
            events,
            handled,
        );
        match &mut o.status {
            Some(s) if s.body == body => {}
            Some(s) => {
                self.forge.update_comment(s.id, &body).await?;
                s.body = body;
            }
            None => {
                let id = self.forge.create_comment(o.info.number, &body).await?;
                o.status = Some(CommentInfo {
                    id,
                    author: self.forge.bot_login().to_string(),
                    author_is_bot: true,
                    body,
                    created_at: Utc::now(),
                    updated_at: Utc::now(),
                });
            }
        }
        Ok(())
    }

    /// Ask the environment's approvers (`approvals.from`) to review the PR just opened. Done
    /// on opening only, so an idle pass costs nothing: a bot killed between opening and asking
    /// leaves the PR without requested reviewers (their approvals count all the same). A
    /// refusal (someone named is not a collaborator) is logged, not a failed step: the PR is
    /// open either way.
    async fn request_approvers(&self, pipeline: &Pipeline, env: &str, pr: u64) {
        let Some(approvals) = pipeline.environment(env).and_then(|e| e.approvals.as_ref()) else {
            return;
        };
        if approvals.from.is_empty() {
            return;
        }
        if let Err(e) = self.forge.request_reviewers(pr, &approvals.from).await {
            tracing::warn!(pr, %env, approvers = ?approvals.from, error = %e, "could not request reviews from the approvers; are they collaborators of the config repo?");
        }
    }
}

fn now_text() -> String {
    Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

fn pinned_of(p: &plan::PinnedOut) -> Pinned {
    Pinned {
        tag: p.tag.clone(),
        digest: p.digest.parse().expect("planner digests are valid"),
    }
}
