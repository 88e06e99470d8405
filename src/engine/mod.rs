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

pub mod copy;
pub mod deployments;
mod group;
pub mod queue;
pub mod refusal;
pub mod rollout;
pub mod text;
pub mod verification;
mod verified;

pub use rollout::{AppRollout, RollbackRequest, Rolled, Rollout, RolloutState};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::commands::{self, Actor, Command, Permission};
use crate::config::pipeline::Pipeline;
use crate::forge::{self, CommentInfo, Forge, ForgeError, NewPullRequest, PullRequestInfo};
use crate::gitrepo::bump;
use crate::gitrepo::files::Files;
use crate::gitrepo::history::{self, Entry};
use crate::gitrepo::repo::{ConfigRepo, GitError, Pushed};
use crate::gitrepo::trailers::Promotion;
use crate::image::{Digest, Pinned};
use crate::promote::Evaluation;
use crate::promote::gates::{HOLD_LABEL, ROLLBACK_LABEL};
use crate::promote::plan::{self, Action, Release};
use crate::promote::policy::PolicySource;
use crate::promote::state::{CommandEvent, Deployment, PullRequest};
use crate::registry::verify::{AttestationResult, Requirements};

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
    /// Promotions recorded on the config branch, newest first (the last [`HISTORY_DEPTH`]).
    history: std::sync::Arc<Vec<Entry>>,
    /// Digests held back from (env, app) by rollbacks.
    held: BTreeMap<(String, String), BTreeSet<Digest>>,
}

/// What a config branch tip says, read once per tip.
struct TipFacts {
    pipeline: Pipeline,
    policies: Vec<PolicySource>,
    pinned: BTreeMap<(String, String), Pinned>,
}

/// How many promotions back the engine reads history (rollback targets and holds).
const HISTORY_DEPTH: usize = 1000;

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

/// The answer to a command in an edited comment.
const EDITED_REPLY: &str = "This comment was edited after it was posted, and edited comments are not taken as commands (what was approved or pushed in between may have relied on the original). Post the command again as a new comment.";

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

    fn read_repo(&self) -> Result<RepoView, EngineError> {
        let repo = self.repo();
        let tip = repo.fetch()?;
        let facts = self.tip_facts(&repo, tip)?;
        let pipeline = facts.pipeline.clone();
        let policies = facts.policies.clone();
        let pinned = facts.pinned.clone();
        let mut branch_pins = self.branch_pins.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = BTreeSet::new();
        let mut branches = BTreeMap::new();
        for env in &pipeline.environments {
            for app in pipeline.apps.keys() {
                let branch = forge::promotion_branch(&env.name, app);
                if let Some(oid) = repo.remote_branch(&branch)? {
                    let commit = repo.git().find_commit(oid).map_err(|e| GitError::Git {
                        op: "read",
                        message: e.message().into(),
                        transient: false,
                    })?;
                    let at = Utc
                        .timestamp_opt(commit.time().seconds(), 0)
                        .single()
                        .unwrap_or_default();
                    seen.insert(oid);
                    let pin = match branch_pins.get(&oid) {
                        Some(pin) => pin.clone(),
                        None => {
                            let pin =
                                bump::current(&repo.files_at(oid)?, &pipeline, &env.name, app)
                                    .ok()
                                    .flatten();
                            branch_pins.insert(oid, pin.clone());
                            pin
                        }
                    };
                    branches.insert(branch, (pin, at));
                }
            }
        }
        // Forget branch commits no branch points at any more.
        branch_pins.retain(|oid, _| seen.contains(oid));
        drop(branch_pins);
        let group_members = self.group_branches(&repo, &pipeline, tip, &mut branches)?;
        let history = self.history_at(&repo, tip)?;
        let held = plan::held_digests(history.iter().map(|e| &e.promotion));
        Ok(RepoView {
            pipeline,
            policies,
            pinned,
            branches,
            group_members,
            history,
            held,
        })
    }

    /// The pipeline, policies and pins at `tip`, parsed once per tip.
    fn tip_facts(
        &self,
        repo: &ConfigRepo,
        tip: git2::Oid,
    ) -> Result<std::sync::Arc<TipFacts>, EngineError> {
        let mut cache = self.at_tip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, facts)) = cache.as_ref()
            && *at == tip
        {
            return Ok(facts.clone());
        }
        // Where a branch pins depends on the pipeline: read them again under the new one.
        self.branch_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.group_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let files = repo.files_at(tip)?;
        let pipeline = load_pipeline(&files, tip)?;
        let policies = crate::config::policy::read_policies(&files).map_err(|message| {
            EngineError::Pipeline {
                commit: tip.to_string(),
                message,
            }
        })?;
        let mut pinned = BTreeMap::new();
        for env in &pipeline.environments {
            for app in pipeline.apps.keys() {
                if let Ok(Some(p)) = bump::current(&files, &pipeline, &env.name, app) {
                    pinned.insert((env.name.clone(), app.clone()), p);
                }
            }
        }
        let facts = std::sync::Arc::new(TipFacts {
            pipeline,
            policies,
            pinned,
        });
        *cache = Some((tip, facts.clone()));
        Ok(facts)
    }

    fn history_at(
        &self,
        repo: &ConfigRepo,
        tip: git2::Oid,
    ) -> Result<std::sync::Arc<Vec<Entry>>, EngineError> {
        let mut cache = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, entries)) = cache.as_ref()
            && *at == tip
        {
            return Ok(entries.clone());
        }
        let filter = history::Filter {
            limit: Some(HISTORY_DEPTH),
            ..Default::default()
        };
        let entries =
            std::sync::Arc::new(history::read(repo.git(), tip, &filter).map_err(|e| {
                GitError::Git {
                    op: "history",
                    message: e.message().into(),
                    transient: false,
                }
            })?);
        *cache = Some((tip, entries.clone()));
        Ok(entries)
    }

    /// Members of the teams the pipeline names, and the teams GitHub would not list (`403`:
    /// the App lacks *Members: read*), with why.
    async fn teams(
        &self,
        pipeline: &Pipeline,
    ) -> Result<(BTreeMap<String, BTreeSet<String>>, BTreeMap<String, String>), EngineError> {
        let mut out = BTreeMap::new();
        let mut refused = BTreeMap::new();
        let named: BTreeSet<&String> = pipeline
            .environments
            .iter()
            .filter_map(|e| e.approvals.as_ref())
            .flat_map(|a| a.from.iter())
            .filter(|w| w.starts_with('@'))
            .collect();
        for team in named {
            if let Some((org, slug)) = team.trim_start_matches('@').split_once('/') {
                // A team that does not exist (or that the bot cannot see) has no members: its
                // approvals gate stays blocked and says who is needed, instead of the whole
                // pass failing.
                let members = match self.forge.team_members(org, slug).await {
                    Ok(m) => m,
                    Err(ForgeError::NotFound(what)) => {
                        tracing::warn!(%team, %what, "team not found; counting no members");
                        Vec::new()
                    }
                    Err(ForgeError::Forbidden { message, .. }) => {
                        tracing::warn!(%team, %message, "GitHub refused to list the team; counting no members");
                        refused.insert(
                            team.clone(),
                            format!("GitHub refused to list its members ({message}); a GitHub App needs the Organization permission Members: read"),
                        );
                        Vec::new()
                    }
                    Err(e) => return Err(e.into()),
                };
                out.insert(team.clone(), members.into_iter().collect());
            }
        }
        Ok((out, refused))
    }

    async fn actor(
        &self,
        login: &str,
        teams: &BTreeMap<String, BTreeSet<String>>,
        cache: &mut BTreeMap<String, Permission>,
    ) -> Result<Actor, EngineError> {
        let permission = match cache.get(login) {
            Some(p) => *p,
            None => {
                let p = self.forge.permission(login).await?;
                cache.insert(login.to_string(), p);
                p
            }
        };
        let member_of = teams
            .iter()
            .filter(|(_, m)| m.iter().any(|u| u.eq_ignore_ascii_case(login)))
            .map(|(t, _)| t.clone())
            .collect();
        Ok(Actor {
            login: login.to_string(),
            permission,
            teams: member_of,
        })
    }

    /// Read every open promotion PR, and the members of the teams the pipeline names (only
    /// when some PR is open: teams matter only for approvals and commands on open PRs).
    async fn observe(&self, view: &RepoView) -> Result<(Vec<Observed>, Facts), EngineError> {
        let prs = self.forge.open_promotion_prs().await?;
        if prs.is_empty() {
            return Ok((Vec::new(), Facts::default()));
        }
        let (teams, team_errors) = self.teams(&view.pipeline).await?;
        let branch = self.branch.clone();
        let base_rules = Some(self.forge.base_rules(&branch).await?);
        let observed = self.observe_prs(view, prs, &teams).await?;
        let facts = Facts {
            teams,
            team_errors,
            base_rules,
        };
        Ok((observed, facts))
    }

    /// `head` and the commits whose content it has unchanged (`ConfigRepo::same_content`), as
    /// hex ids; just `head` when the clone does not have it.
    fn same_content(&self, head: &str) -> Vec<String> {
        match git2::Oid::from_str(head) {
            Ok(oid) => tokio::task::block_in_place(|| self.repo().same_content(oid))
                .into_iter()
                .map(|o| o.to_string())
                .collect(),
            Err(_) => vec![head.to_string()],
        }
    }

    async fn observe_prs(
        &self,
        view: &RepoView,
        prs: Vec<PullRequestInfo>,
        teams: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Vec<Observed>, EngineError> {
        let mut permissions = BTreeMap::new();
        let mut out = Vec::new();
        for info in prs {
            let Some((env, app)) = forge::parse_promotion_branch(&info.head_ref) else {
                continue;
            };
            let Some((Some(pin), committed_at)) = view.branches.get(&info.head_ref).cloned() else {
                tracing::warn!(pr = info.number, branch = %info.head_ref, "promotion PR whose branch pins nothing baton can read; skipping");
                continue;
            };
            // When GitHub saw the push, not the committer date the pusher chose; only when
            // GitHub kept no record (old pushes age out of its activity) the commit's date.
            let pushed_at = match self
                .forge
                .head_pushed_at(&info.head_ref, &info.head_sha)
                .await?
            {
                Some(at) => at,
                None => {
                    tracing::warn!(pr = info.number, branch = %info.head_ref, "GitHub has no record of the head's push; using its committer date");
                    committed_at
                }
            };
            let comments = self.forge.comments(info.number).await?;
            let status = comments
                .iter()
                .find(|c| {
                    c.author == self.forge.bot_login() && c.body.starts_with(text::STATUS_MARKER)
                })
                .cloned();
            let (events, hold_reason) = self
                .command_events(&comments, teams, &mut permissions)
                .await?;
            let mut reviews = self.forge.reviews(info.number).await?;
            // A record commit (no file changed) on an approved head keeps its approvals, and
            // "after the latest push" starts at the push that changed the content.
            let same = self.same_content(&info.head_sha);
            for r in &mut reviews {
                if same.contains(&r.commit_id) {
                    r.commit_id = info.head_sha.clone();
                }
            }
            let pushed_at = match same.last().filter(|s| **s != info.head_sha) {
                Some(content_head) => self
                    .forge
                    .head_pushed_at(&info.head_ref, content_head)
                    .await?
                    .unwrap_or(pushed_at),
                None => pushed_at,
            };
            let checks = self.forge.checks(&info.head_sha).await?;
            let mut labels = info.labels.clone();
            let mut wanted = vec![forge::PROMOTION_LABEL.to_string(), forge::env_label(env)];
            if rollout::is_rollback_pr(&info) {
                wanted.push(ROLLBACK_LABEL.to_string());
            }
            let missing: Vec<String> = wanted.into_iter().filter(|w| !labels.contains(w)).collect();
            if !missing.is_empty() {
                // Opened, but killed before its labels were added: add them now.
                self.forge.add_labels(info.number, &missing).await?;
                labels.extend(missing);
            }
            let state = PullRequest {
                number: info.number,
                app: app.to_string(),
                env: env.to_string(),
                digest: pin.digest.clone(),
                tag: pin.tag.clone(),
                head_sha: info.head_sha.clone(),
                head_pushed_at: pushed_at,
                labels,
                hold_reason,
                reviews,
                checks,
                commands: events,
                group: None,
            };
            let members = group::member_states(&view.pipeline, &view.group_members, &info, &state);
            let state = members.first().cloned().unwrap_or(state);
            out.push(Observed {
                info,
                state,
                status,
                comments,
                members,
            });
        }
        Ok(out)
    }

    /// The commands in people's comments, with their authors, and the latest `/hold` reason.
    async fn command_events(
        &self,
        comments: &[CommentInfo],
        teams: &BTreeMap<String, BTreeSet<String>>,
        permissions: &mut BTreeMap<String, Permission>,
    ) -> Result<(Vec<CommandEvent>, Option<String>), EngineError> {
        let mut events = Vec::new();
        let mut hold_reason = None;
        for c in comments
            .iter()
            .filter(|c| !c.author_is_bot && c.author != self.forge.bot_login() && !c.is_edited())
        {
            for parsed in commands::parse_comment(&c.body) {
                let Ok(command) = parsed else { continue };
                if let Command::Hold { reason } = &command {
                    hold_reason = Some(format!(
                        "@{}{}",
                        c.author,
                        reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ));
                }
                let actor = self.actor(&c.author, teams, permissions).await?;
                events.push(CommandEvent {
                    comment_id: c.id,
                    command,
                    actor,
                    at: c.created_at,
                });
            }
        }
        Ok((events, hold_reason))
    }

    /// Answer new commands on a promotion PR that is no longer open (merged or closed):
    /// where people comment `/rollback <env>` after a bad rollout. Open PRs are answered by
    /// [`Engine::run_once`]; call this for `issue_comment` events on other PRs. Commands are
    /// recorded as handled in the PR's status comment, as on open PRs, so each is answered
    /// once.
    pub async fn answer_pr(&self, number: u64) -> Result<Vec<Outcome>, EngineError> {
        let info = self.forge.pull_request(number).await?;
        if info.state == forge::PrState::Open {
            return Ok(Vec::new());
        }
        let Some((env, app)) = forge::parse_promotion_branch(&info.head_ref)
            .map(|(e, a)| (e.to_string(), a.to_string()))
        else {
            return Ok(Vec::new());
        };
        let comments = self.forge.comments(number).await?;
        let bot = self.forge.bot_login();
        let handled = comments
            .iter()
            .find(|c| c.author == bot && c.body.starts_with(text::STATUS_MARKER))
            .map(|s| text::handled_ids(&s.body))
            .unwrap_or_default();
        let fresh = comments.iter().any(|c| {
            !c.author_is_bot
                && c.author != bot
                && !handled.contains(&c.id)
                && !commands::parse_comment(&c.body).is_empty()
        });
        if !fresh {
            return Ok(Vec::new());
        }
        let view = tokio::task::block_in_place(|| self.read_repo())?;
        let recorded = view
            .history
            .iter()
            .find(|e| e.promotion.pull_request == Some(number) && e.promotion.environment == env);
        // A group's PR is answered as one of its members, which stands for the group: the
        // first its merge recorded, else the first its branch changes (a PR closed unmerged,
        // e.g. by a `/rollback` typed on it), else the group's first.
        let group = view.pipeline.groups.contains_key(&app).then(|| app.clone());
        let app = match (&group, recorded) {
            (Some(_), Some(e)) => e.promotion.app.clone(),
            (Some(g), None) => view
                .group_members
                .get(&info.head_ref)
                .and_then(|m| m.first())
                .map(|(a, _)| a.clone())
                .or_else(|| view.pipeline.groups.get(g)?.apps.first().cloned())
                .unwrap_or(app),
            _ => app,
        };
        let Some(pin) = recorded
            .map(|e| Pinned {
                tag: e.promotion.tag.clone(),
                digest: e.promotion.to.clone(),
            })
            .or_else(|| view.pinned.get(&(env.clone(), app.clone())).cloned())
        else {
            return Ok(Vec::new());
        };
        let (teams, _) = self.teams(&view.pipeline).await?;
        let (events, _) = self
            .command_events(&comments, &teams, &mut BTreeMap::new())
            .await?;
        let status = comments
            .iter()
            .find(|c| c.author == bot && c.body.starts_with(text::STATUS_MARKER))
            .cloned();
        let mut o = Observed {
            state: PullRequest {
                number,
                app,
                env,
                digest: pin.digest,
                tag: pin.tag,
                head_sha: info.head_sha.clone(),
                head_pushed_at: DateTime::<Utc>::MIN_UTC,
                labels: info.labels.clone(),
                hold_reason: None,
                reviews: vec![],
                checks: vec![],
                commands: events,
                group,
            },
            info,
            status,
            comments,
            members: Vec::new(),
        };
        let mut outcomes = Vec::new();
        self.answer_commands(&view, &mut o, &mut outcomes).await?;
        Ok(outcomes)
    }

    /// Answer commands left unanswered on the `limit` most recently closed or merged
    /// promotion PRs. Call it once when the bot starts: a bot killed while it handled a command
    /// there (a `/rollback` closes the PR it was typed on before it opens the rollback) finishes
    /// it, since the webhook that named the PR is not delivered again.
    pub async fn answer_recently_closed(&self, limit: u8) -> Result<Vec<Outcome>, EngineError> {
        let mut outcomes = Vec::new();
        for pr in self.forge.recently_closed_promotion_prs(limit).await? {
            outcomes.extend(self.answer_pr(pr.number).await?);
        }
        Ok(outcomes)
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

    /// The newest blessed release of every app of the pipeline at the config branch tip,
    /// verified with the cosign keys of that same tip. Apps whose scan failed are reported
    /// by name and reason and left out (their PRs stay as they are).
    pub async fn releases(
        &self,
        scanner: &crate::registry::scan::Scanner,
    ) -> Result<(BTreeMap<String, Release>, Vec<String>), EngineError> {
        let (pipeline, keys) = tokio::task::block_in_place(|| -> Result<_, EngineError> {
            let view = self.read_repo()?;
            let repo = self.repo();
            let files = repo.files_at(repo.tip()?)?;
            let mut keys = BTreeMap::new();
            for (name, app) in &view.pipeline.apps {
                if let Some(v) = &app.verify {
                    let read = |path: &str| {
                        files
                            .read(path)
                            .ok()
                            .flatten()
                            .map(String::into_bytes)
                            .ok_or_else(|| format!("{path} is not in the config repo"))
                    };
                    keys.insert(name.clone(), Requirements::from_config(v, &read));
                }
            }
            Ok((view.pipeline, keys))
        })?;
        let mut releases = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, app) in &pipeline.apps {
            let key = match keys.get(name) {
                Some(Err(e)) => {
                    problems.push(format!("{name}: verify: {e}"));
                    continue;
                }
                Some(Ok(k)) => Some(k),
                None => None,
            };
            match scanner.scan_app(name, app, key).await {
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(scan) => {
                    if let Some(c) = scan.newest
                        && let Some(digest) = c.digest.as_deref().and_then(|d| d.parse().ok())
                    {
                        let verified = verified_predicates(&c.attestations);
                        if !verified.is_empty() {
                            self.attestations
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(c.digest.clone().unwrap_or_default(), verified);
                        }
                        if let Some(meta) = &c.meta
                            && (meta.revision.is_some() || meta.source.is_some())
                        {
                            self.provenance
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(
                                    c.digest.clone().unwrap_or_default(),
                                    (meta.revision.clone(), meta.source.clone()),
                                );
                        }
                        releases.insert(
                            name.clone(),
                            Release {
                                tag: Some(c.tag),
                                digest,
                            },
                        );
                    }
                }
            }
        }
        // Open PRs may pin older digests than the newest (or the process restarted): their
        // attestations are read too, so the policy gate sees them (cached by the scanner).
        let open: Vec<(String, String)> = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .iter()
            .map(|(pr, _)| (pr.app.clone(), pr.digest.to_string()))
            .collect();
        for (app, digest) in open {
            let known = self
                .attestations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&digest);
            let (Some(Ok(req)), Some(cfg)) = (keys.get(&app), pipeline.app(&app)) else {
                continue;
            };
            if known || req.attestations.is_empty() {
                continue;
            }
            let Ok(repo) = crate::registry::Repo::parse(&cfg.image) else {
                continue;
            };
            match scanner.check(&repo, &digest, req).await {
                Ok(outcome) => {
                    let verified = verified_predicates(&outcome.attestations);
                    if !verified.is_empty() {
                        self.attestations
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(digest, verified);
                    }
                }
                Err(e) => problems.push(format!("{app}: attestations of {digest}: {e}")),
            }
        }
        Ok((releases, problems))
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

    /// Handle the commands of comments not yet recorded as handled: apply and answer each
    /// command that has no answer yet, then record the comments as handled in the status
    /// comment. Returns whether a command changed the set of PRs (a `/rollback`).
    async fn answer_commands(
        &self,
        view: &RepoView,
        o: &mut Observed,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<bool, EngineError> {
        let handled = o
            .status
            .as_ref()
            .map(|s| text::handled_ids(&s.body))
            .unwrap_or_default();
        let fresh: Vec<CommentInfo> = o
            .comments
            .iter()
            .filter(|c| {
                !c.author_is_bot && c.author != self.forge.bot_login() && !handled.contains(&c.id)
            })
            .filter(|c| !commands::parse_comment(&c.body).is_empty())
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(false);
        }
        // Answers posted by a bot killed before it recorded them as handled.
        let answered: BTreeSet<(u64, usize)> = o
            .comments
            .iter()
            .filter(|c| c.author == self.forge.bot_login())
            .filter_map(|c| text::answered(&c.body))
            .collect();
        let mut changed = false;
        let mut now_handled = handled.clone();
        now_handled.extend(fresh.iter().map(|c| c.id));
        let env_cfg = view.pipeline.environment(&o.state.env);
        for c in fresh {
            let _ = self.forge.react(c.id, "eyes").await;
            if c.is_edited() {
                if !answered.contains(&(c.id, 0)) {
                    self.forge
                        .create_comment(o.info.number, &text::answer(EDITED_REPLY, c.id, 0))
                        .await?;
                    outcomes.push(Outcome::Answered {
                        pr: o.info.number,
                        comment: c.id,
                        command: first_line(&c.body),
                    });
                }
                continue;
            }
            for (index, parsed) in commands::parse_comment(&c.body).into_iter().enumerate() {
                if answered.contains(&(c.id, index)) {
                    continue;
                }
                let reply = match parsed {
                    Err(e) => format!("{e}\n\n{}", commands::HELP),
                    Ok(command) => {
                        let actor = o
                            .state
                            .commands
                            .iter()
                            .find(|e| e.comment_id == c.id)
                            .map(|e| e.actor.clone());
                        let actor = actor.unwrap_or(Actor {
                            login: c.author.clone(),
                            permission: Permission::None,
                            teams: vec![],
                        });
                        // A rollback (or a prune) is authorized by the environment it names.
                        let env_cfg = match &command {
                            Command::Rollback { env, .. } | Command::Prune { env } => {
                                view.pipeline.environment(env)
                            }
                            _ => env_cfg,
                        };
                        match commands::authorize(&command, &actor, env_cfg) {
                            Err(refusal) => refusal.to_string(),
                            Ok(()) => {
                                let (reply, did) =
                                    self.apply_command(view, o, &command, &actor).await?;
                                changed |= did;
                                if let Command::Retry { env } = &command
                                    && o.info.state != forge::PrState::Open
                                {
                                    let env = env.clone().unwrap_or_else(|| o.state.env.clone());
                                    for app in group::retried(view, &o.state, &env) {
                                        outcomes.push(Outcome::RetryRequested {
                                            pr: o.info.number,
                                            env: env.clone(),
                                            app,
                                        });
                                    }
                                }
                                if let Command::Prune { env } = &command
                                    && view.pipeline.environment(env).is_some()
                                {
                                    outcomes.push(Outcome::PruneApproved {
                                        pr: o.info.number,
                                        env: env.clone(),
                                        by: actor.login.clone(),
                                    });
                                }
                                reply
                            }
                        }
                    }
                };
                self.forge
                    .create_comment(o.info.number, &text::answer(&reply, c.id, index))
                    .await?;
                outcomes.push(Outcome::Answered {
                    pr: o.info.number,
                    comment: c.id,
                    command: first_line(&c.body),
                });
            }
        }
        if changed {
            // A rollback wrote its line into this PR's status comment: keep it.
            let bot = self.forge.bot_login().to_string();
            if let Some(s) = self
                .forge
                .comments(o.info.number)
                .await?
                .into_iter()
                .find(|c| c.author == bot && c.body.starts_with(text::STATUS_MARKER))
            {
                o.status = Some(s);
            }
        }
        let events = o
            .status
            .as_ref()
            .map(|s| text::timeline(&s.body))
            .unwrap_or_default();
        let headline = o
            .status
            .as_ref()
            .map(|s| headline_of(&s.body))
            .unwrap_or_else(|| "Planning…".into());
        self.write_status(o, &headline, None, &events, &now_handled)
            .await?;
        Ok(changed)
    }

    /// Apply an authorized command; the reply, and whether it changed the set of PRs.
    async fn apply_command(
        &self,
        view: &RepoView,
        o: &mut Observed,
        command: &Command,
        actor: &Actor,
    ) -> Result<(String, bool), EngineError> {
        if let Command::Rollback { env, to } = command {
            let request = RollbackRequest {
                env: env.clone(),
                app: o.state.app.clone(),
                to: to.clone(),
                bad: None,
                by: Some(actor.login.clone()),
                why: format!("`{command}` by @{} on #{}", actor.login, o.info.number),
            };
            let what = match &o.state.group {
                Some(group) => format!("group {group}"),
                None => o.state.app.clone(),
            };
            return Ok(match self.roll_back(view, &request).await? {
                Rolled::Opened { pr, to, bad } => (
                    format!(
                        "Rolling back {what} in {env}: #{pr} restores {}. It merges once its gates pass (a rollback skips soak, windows, freezes and `/promote`; approvals and required checks still apply). `{}` is then held back from {env}; a newer release flows as usual.",
                        rollout::describe(&to),
                        bad.short()
                    ),
                    true,
                ),
                Rolled::AlreadyOpen { pr } => (
                    format!("A rollback of {what} in {env} is already open: #{pr}."),
                    false,
                ),
                Rolled::Nothing(why) => (format!("Nothing to roll back: {why}."), false),
            });
        }
        if o.info.state != forge::PrState::Open
            && matches!(
                command,
                Command::Promote { .. } | Command::Hold { .. } | Command::Unhold
            )
        {
            return Ok((
                format!(
                    "#{} is no longer open; `{command}` applies to open promotion PRs. To undo this promotion, comment `/rollback {}`.",
                    o.info.number, o.state.env
                ),
                false,
            ));
        }
        let reply = match command {
            Command::Hold { reason } => {
                self.forge.add_labels(o.info.number, &[HOLD_LABEL.to_string()]).await?;
                if !o.state.labels.iter().any(|l| l == HOLD_LABEL) {
                    o.state.labels.push(HOLD_LABEL.to_string());
                }
                let why = reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
                format!("Held by @{}{why}. This promotion will not merge until someone with write access comments `/unhold`.", actor.login)
            }
            Command::Unhold => {
                self.forge.remove_label(o.info.number, HOLD_LABEL).await?;
                o.state.labels.retain(|l| l != HOLD_LABEL);
                o.state.hold_reason = None;
                format!("Hold released by @{}.", actor.login)
            }
            Command::Promote { env } if *env != o.state.env => {
                format!("This PR promotes to {}, not {env}; comment `/promote {}` here or `/promote {env}` on the {env} PR.", o.state.env, o.state.env)
            }
            Command::Promote { env } => format!("`/promote {env}` by @{} recorded: it merges as soon as every other gate passes.", actor.login),
            Command::Rollback { .. } => unreachable!("handled above"),
            Command::Retry { .. } if o.info.state == forge::PrState::Open => format!(
                "Verification runs after this PR merges and {} is healthy in {}; `/retry` then runs it again.",
                group::retried_text(&group::retried(view, &o.state, &o.state.env), &o.state),
                o.state.env
            ),
            Command::Retry { env } => {
                let env = env.as_deref().unwrap_or(&o.state.env);
                format!(
                    "`/retry` by @{}: running the verification of {} in {env} again; the result follows here.",
                    actor.login,
                    group::retried_text(&group::retried(view, &o.state, env), &o.state),
                )
            }
            Command::Prune { env } if view.pipeline.environment(env).is_none() => format!(
                "There is no environment {env} in policies/pipeline.yaml."
            ),
            Command::Prune { env } => format!(
                "`/prune {env}` by @{}: the deletions held back in {env} at the config branch's current tip go ahead on its next reconcile (a later commit that deletes as much is held again).",
                actor.login
            ),
            Command::Status => "The gate table is in baton's status comment above; it is refreshed on every change.".to_string(),
            Command::Help => commands::HELP.to_string(),
        };
        Ok((reply, false))
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

    async fn publish(
        &self,
        view: &RepoView,
        env: &str,
        app: &str,
        to: &Pinned,
        message: &str,
    ) -> Result<(Pushed, String, Result<String, String>), EngineError> {
        let mut diff = String::new();
        // The promotion commit carries what is known before the PR exists, so that a merge
        // queue that keeps commits as they are (rebase) still leaves an audit record.
        let message = Promotion {
            app: app.to_string(),
            environment: env.to_string(),
            from: view
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
        .commit_message(message, "");
        let pushed = self
            .publish_branch(&forge::promotion_branch(env, app), &message, &mut |files| {
                let change = bump::plan(files, &view.pipeline, env, app, to)?;
                diff = change.unified_diff();
                Ok(vec![change])
            })
            .await?;
        let rendered = self.rendered_change(view, env, &pushed)?;
        if let Err(e) = &rendered {
            tracing::warn!(%env, %app, error = %e, "rendered manifest diff unavailable");
        }
        Ok((pushed, diff, rendered))
    }

    /// The diff of `env`'s rendered manifests from the config branch tip to the pushed
    /// promotion branch (cut at [`text::RENDERED_LIMIT`]), or why it could not be made.
    fn rendered_change(
        &self,
        view: &RepoView,
        env: &str,
        pushed: &Pushed,
    ) -> Result<Result<String, String>, EngineError> {
        let head = match pushed {
            Pushed::Committed { commit, .. } => *commit,
            Pushed::Unchanged { tip } => *tip,
        };
        // The clone's lock is taken off the async worker: another task may hold it through a
        // fetch, and a worker blocked on it starves the tasks queued behind it.
        tokio::task::block_in_place(|| {
            let repo = self.repo();
            let tip = repo.tip()?;
            Ok(match view.pipeline.environment(env) {
                Some(e) => crate::prcheck::rendered_diff(
                    &repo,
                    env,
                    &e.path(),
                    tip,
                    head,
                    text::RENDERED_LIMIT,
                ),
                None => Err(format!("environment {env} is not in the pipeline")),
            })
        })
    }

    async fn act(
        &self,
        view: &RepoView,
        observed: &[Observed],
        action: Action,
        now: DateTime<Utc>,
        queue_rules: QueueRules,
    ) -> Result<Option<Outcome>, EngineError> {
        let find = |pr: u64| observed.iter().find(|o| o.info.number == pr);
        match action {
            Action::Open { env, app, to, from } => {
                let to = pinned_of(&to);
                let from = from.as_ref().map(pinned_of);
                let app_cfg = view.pipeline.app(&app).expect("planned apps exist");
                let title = text::title(&app, &env, &to);
                let (_, diff, rendered) = self.publish(view, &env, &app, &to, &title).await?;
                let body = text::body(
                    &app,
                    &env,
                    &app_cfg.image,
                    from.as_ref(),
                    &to,
                    &self.provenance_of(
                        app_cfg.source.as_deref(),
                        from.as_ref().map(|p| &p.digest),
                        &to,
                    ),
                    &diff,
                    rendered.as_deref().map_err(String::as_str),
                );
                let base = self.branch.clone();
                let pr = self
                    .forge
                    .open_pull_request(&NewPullRequest {
                        head: forge::promotion_branch(&env, &app),
                        base,
                        title,
                        body,
                        labels: vec![forge::PROMOTION_LABEL.to_string(), forge::env_label(&env)],
                    })
                    .await?;
                tracing::info!(pr = pr.number, %env, %app, "opened promotion PR");
                self.request_approvers(&view.pipeline, &env, pr.number)
                    .await;
                Ok(Some(Outcome::Opened {
                    pr: pr.number,
                    env,
                    app,
                }))
            }
            Action::Update {
                pr,
                env,
                app,
                to,
                superseded,
            } => {
                let to = pinned_of(&to);
                let old = pinned_of(&superseded);
                let app_cfg = view.pipeline.app(&app).expect("planned apps exist");
                let title = text::title(&app, &env, &to);
                let (_, diff, rendered) = self.publish(view, &env, &app, &to, &title).await?;
                let from = view.pinned.get(&(env.clone(), app.clone()));
                let body = text::body(
                    &app,
                    &env,
                    &app_cfg.image,
                    from,
                    &to,
                    &self.provenance_of(app_cfg.source.as_deref(), from.map(|p| &p.digest), &to),
                    &diff,
                    rendered.as_deref().map_err(String::as_str),
                );
                self.forge.update_pull_request(pr, &title, &body).await?;
                if let Some(o) = find(pr) {
                    let mut o = o.clone();
                    let mut events = o
                        .status
                        .as_ref()
                        .map(|s| text::timeline(&s.body))
                        .unwrap_or_default();
                    events.push(text::superseded(&old.digest, old.tag.as_deref(), &to));
                    let handled = o
                        .status
                        .as_ref()
                        .map(|s| text::handled_ids(&s.body))
                        .unwrap_or_default();
                    self.write_status(&mut o, "Updated to a newer release; gates are re-evaluated (approvals of the old head no longer count).", None, &events, &handled).await?;
                }
                Ok(Some(Outcome::Updated { pr, env, app }))
            }
            Action::Close {
                pr,
                env,
                app,
                reason,
            } => {
                if let Some(o) = find(pr) {
                    let mut o = o.clone();
                    let mut events = o
                        .status
                        .as_ref()
                        .map(|s| text::timeline(&s.body))
                        .unwrap_or_default();
                    events.push(format!("closed: {reason}"));
                    let handled = o
                        .status
                        .as_ref()
                        .map(|s| text::handled_ids(&s.body))
                        .unwrap_or_default();
                    self.write_status(
                        &mut o,
                        &format!("Closed: {reason}."),
                        None,
                        &events,
                        &handled,
                    )
                    .await?;
                }
                self.forge.close_pull_request(pr).await?;
                Ok(Some(Outcome::Closed { pr, env, app }))
            }
            Action::Wait {
                pr,
                env,
                app,
                evaluation,
            } => {
                let Some(o) = find(pr) else { return Ok(None) };
                let mut o = o.clone();
                let mut evaluation = evaluation;
                if let Some(gate) = self.copy_preflight(view, &mut o).await? {
                    evaluation.results.push(gate);
                }
                let blocking = evaluation
                    .blocking()
                    .map(|g| format!("{}: {}", g.gate.title(), g.reason))
                    .unwrap_or_default();
                self.write_waiting(&mut o, &blocking, &evaluation).await?;
                Ok(Some(Outcome::Waiting {
                    pr,
                    env,
                    app,
                    blocking,
                    gates: evaluation.results.clone(),
                }))
            }
            Action::OpenGroup {
                env,
                group,
                members,
            } => self
                .open_group(view, &env, &group, &members)
                .await
                .map(Some),
            Action::UpdateGroup {
                pr,
                env,
                group,
                members,
                superseded,
            } => {
                let o = find(pr).cloned();
                self.update_group(view, o, pr, &env, &group, &members, &superseded)
                    .await
                    .map(Some)
            }
            Action::Merge {
                pr,
                env,
                app,
                evaluation,
            } if find(pr).is_some_and(|o| !o.members.is_empty()) => {
                let o = find(pr).expect("checked").clone();
                self.merge_group(view, o, &env, &app, evaluation, queue_rules, now)
                    .await
                    .map(Some)
            }
            Action::Merge {
                pr,
                env,
                app,
                evaluation,
            } => {
                let Some(o) = find(pr) else { return Ok(None) };
                let env_cfg = view
                    .pipeline
                    .environment(&env)
                    .expect("planned environments exist");
                let to = Pinned {
                    tag: o.state.tag.clone(),
                    digest: o.state.digest.clone(),
                };
                let promoted_by = o
                    .state
                    .commands
                    .iter()
                    .rev()
                    .find(|c| {
                        matches!(&c.command, Command::Promote { env: e } if *e == env)
                            && commands::authorize(&c.command, &c.actor, Some(env_cfg)).is_ok()
                    })
                    .map(|c| c.actor.login.clone())
                    .unwrap_or_else(|| self.forge.bot_login().to_string());
                let rollback = crate::promote::gates::is_rollback(&o.state)
                    .then(|| rollout::parse_rollback_marker(&o.info.body))
                    .flatten();
                let from = view
                    .pinned
                    .get(&(env.clone(), app.clone()))
                    .map(|p| p.digest.clone());
                let promoted_by = match &rollback {
                    Some((_, Some(by))) => by.clone(),
                    _ => promoted_by,
                };
                let promotion = Promotion {
                    app: app.clone(),
                    environment: env.clone(),
                    // A rollback records what it rolled back even if its marker was lost.
                    rollback_of: rollback.as_ref().map(|(bad, _)| bad.clone()).or_else(|| {
                        crate::promote::gates::is_rollback(&o.state)
                            .then(|| from.clone())
                            .flatten()
                    }),
                    from,
                    to: to.digest.clone(),
                    tag: to.tag.clone(),
                    approved_by: evaluation.approvers.clone(),
                    promoted_by: Some(promoted_by),
                    pull_request: Some(pr),
                };
                let subject = if promotion.is_rollback() {
                    format!("{} (#{pr})", rollout::rollback_title(&app, &env, &to))
                } else {
                    text::merge_subject(&app, &env, &to, pr)
                };
                let mut o = o.clone();
                let mut evaluation = evaluation;
                // GitHub refused this head before, or queued it: wait before doing anything
                // (no copy, no write: the status comment already says why and until when).
                if let Some(blocking) = self.merge_held_off(&o, now) {
                    return Ok(Some(Outcome::Waiting {
                        pr,
                        env,
                        app,
                        blocking,
                        gates: evaluation.results.clone(),
                    }));
                }
                let copied = match self.copy_for_merge(view, &mut o, &mut evaluation).await? {
                    Ok(lines) => lines,
                    Err(blocking) => {
                        return Ok(Some(Outcome::Waiting {
                            pr,
                            env,
                            app,
                            blocking,
                            gates: evaluation.results.clone(),
                        }));
                    }
                };
                let landing = Landing {
                    name: &app,
                    record: queue::Record {
                        group: None,
                        promotions: std::slice::from_ref(&promotion),
                    },
                    subject,
                };
                self.land(
                    &mut o,
                    env_cfg,
                    &landing,
                    &evaluation,
                    copied,
                    queue_rules,
                    now,
                )
                .await
                .map(Some)
            }
        }
    }

    /// Why a PR whose gates passed must not be merged in this pass, when it must not: GitHub
    /// refused its head and the backoff runs, or the head waits in GitHub's merge queue.
    fn merge_held_off(&self, o: &Observed, now: DateTime<Utc>) -> Option<String> {
        let events = o
            .status
            .as_ref()
            .map(|s| text::timeline(&s.body))
            .unwrap_or_default();
        if let Some((_, r)) = refusal::latest(&events, &o.state.head_sha)
            && r.next_try > now
        {
            return Some(refusal::blocking(&r));
        }
        queue::waiting(&events, &o.state.head_sha, now)
            .then(|| "queued in GitHub's merge queue".to_string())
    }

    /// Land a PR whose gates all passed and whose images are copied (an app's or a group's):
    /// into GitHub's merge queue where the config branch uses one (for a queue that rebases,
    /// after a record commit), else merged with the landing's subject and message. The status
    /// comment says which, after `copied` (the copy lines of this pass); a refusal is recorded
    /// once with its backoff.
    #[allow(clippy::too_many_arguments)]
    async fn land(
        &self,
        o: &mut Observed,
        env_cfg: &crate::config::Environment,
        landing: &Landing<'_>,
        evaluation: &Evaluation,
        copied: Vec<String>,
        queue_rules: QueueRules,
        now: DateTime<Utc>,
    ) -> Result<Outcome, EngineError> {
        let (pr, env, name) = (o.info.number, o.state.env.clone(), landing.name);
        let waiting = |blocking: String| Outcome::Waiting {
            pr,
            env: env.clone(),
            app: name.to_string(),
            blocking,
            gates: evaluation.results.clone(),
        };
        let queued = queue_rules.merge_queue || self.queue_required(o);
        let mut events = o
            .status
            .as_ref()
            .map(|s| text::timeline(&s.body))
            .unwrap_or_default();
        events.extend(copied);
        let handled = o
            .status
            .as_ref()
            .map(|s| text::handled_ids(&s.body))
            .unwrap_or_default();
        let head = o.state.head_sha.clone();
        let previous = refusal::latest(&events, &head);
        // (A refusal still backing off returned before the copy: `merge_held_off`.)
        if queued
            && queue_rules.rebases
            && let Some(new_head) = self
                .record_before_rebase_queue(o, &head, &landing.record)
                .await?
        {
            events.push(queue::recorded_line(&head, &new_head, now));
            self.write_status(o, "Recording the audit trail in the branch: the merge queue rebases, so it keeps the commits, not this description. Queued once the checks report on the new head.", Some(evaluation), &events, &handled).await?;
            tracing::info!(pr, %env, %name, %head, %new_head, "added the promotion's record commit before queueing");
            return Ok(waiting(
                "the record commit's checks, then GitHub's merge queue".into(),
            ));
        }
        let attempt = if queued {
            self.enqueue_promotion(o, &head, &landing.record)
                .await
                .map(|()| None)
        } else {
            // The merge commit's message: the gate table, then the record's trailers.
            let message = landing
                .record
                .commit_message("", &format!("Gates:\n{}", evaluation.table()));
            self.forge
                .merge(
                    pr,
                    &head,
                    env_cfg.merge_method,
                    &landing.subject,
                    message.trim_start(),
                )
                .await
                .map(Some)
        };
        let merged = match attempt {
            Ok(Some(merged)) => merged,
            Ok(None) => {
                events.push(queue::line(&head, now));
                self.write_status(o, "Queued: GitHub's merge queue merges it once the required checks pass on the merge group; the environment is applied after that merge.", Some(evaluation), &events, &handled).await?;
                tracing::info!(pr, %env, %name, %head, "queued promotion in GitHub's merge queue");
                return Ok(waiting("queued in GitHub's merge queue".into()));
            }
            Err(ForgeError::MergeRefused { reason, .. }) => {
                let blocking = refusal::record(&mut events, previous.as_ref(), &head, &reason, now);
                tracing::warn!(pr, %env, %name, %reason, %blocking, "GitHub refused the merge");
                self.write_status(
                    o,
                    &format!("Waiting — {blocking}"),
                    Some(evaluation),
                    &events,
                    &handled,
                )
                .await?;
                return Ok(waiting(blocking));
            }
            Err(e) => return Err(e.into()),
        };
        events.push(format!(
            "merged as {} ({})",
            &merged.sha[..merged.sha.len().min(7)],
            now_text()
        ));
        self.write_status(
            o,
            "Merged; the environment is applied next.",
            Some(evaluation),
            &events,
            &handled,
        )
        .await?;
        tracing::info!(pr, %env, %name, sha = %merged.sha, "merged promotion");
        Ok(Outcome::Merged {
            pr,
            env,
            app: name.to_string(),
            sha: merged.sha,
        })
    }
}

/// What a merge lands: the app or group it is named for, the audit record its merge commit
/// (or, in a merge queue, its PR body) carries, and the merge commit's subject.
struct Landing<'a> {
    name: &'a str,
    record: queue::Record<'a>,
    subject: String,
}

/// What the config branch's rules say about GitHub's merge queue.
#[derive(Debug, Clone, Copy, Default)]
struct QueueRules {
    /// Merges go through the queue.
    merge_queue: bool,
    /// The queue lands a PR by rebasing its commits (so the record goes into a commit).
    rebases: bool,
}

/// `policies/pipeline.yaml` of a commit.
fn load_pipeline(files: &dyn Files, commit: git2::Oid) -> Result<Pipeline, EngineError> {
    let bad = |message: String| EngineError::Pipeline {
        commit: commit.to_string(),
        message,
    };
    let text = files
        .read(crate::config::pipeline::PIPELINE_FILE)
        .map_err(bad)?
        .ok_or_else(|| bad("the file does not exist".into()))?;
    let pipeline = Pipeline::parse(crate::config::pipeline::PIPELINE_FILE, &text)
        .map_err(|e| bad(e.to_string()))?
        .pipeline;
    // A group the bot cannot read unambiguously promotes nothing (`baton validate` says where).
    if let Some((field, message)) = pipeline.group_problems().into_iter().next() {
        return Err(bad(format!("{field}: {message}")));
    }
    Ok(pipeline)
}

fn now_text() -> String {
    Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| l.trim_start().starts_with('/'))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn headline_of(status_body: &str) -> String {
    status_body
        .lines()
        .skip(2)
        .find(|l| !l.trim().is_empty() && !l.starts_with('|') && !l.starts_with("<!--"))
        .unwrap_or("")
        .to_string()
}

fn pinned_of(p: &plan::PinnedOut) -> Pinned {
    Pinned {
        tag: p.tag.clone(),
        digest: p.digest.parse().expect("planner digests are valid"),
    }
}

/// Verified attestations as the policy input has them: predicate type → predicate.
fn verified_predicates(
    attestations: &[crate::registry::verify::AttestationStatus],
) -> BTreeMap<String, serde_json::Value> {
    attestations
        .iter()
        .filter_map(|a| match &a.result {
            AttestationResult::Verified { predicate, .. } => {
                Some((a.predicate_type.clone(), predicate.clone()))
            }
            _ => None,
        })
        .collect()
}
