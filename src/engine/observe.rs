//! Reading what a pass works from: the config repo at the branch tip (pipeline, policies, pins,
//! promotion and group branches, history; each parsed once per commit), the open promotion PRs
//! with their comments, reviews and checks, the commands in people's comments, and the members
//! of the teams the pipeline names.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeZone, Utc};

use super::{Engine, EngineError, Facts, Observed, RepoView, TipFacts, group, rollback, text};
use crate::commands::{self, Actor, Command, Permission};
use crate::config::pipeline::Pipeline;
use crate::forge::{self, CommentInfo, Forge, ForgeError, PullRequestInfo};
use crate::gitrepo::bump;
use crate::gitrepo::files::Files;
use crate::gitrepo::history::{self, Entry};
use crate::gitrepo::repo::{ConfigRepo, GitError};
use crate::promote::gates::ROLLBACK_LABEL;
use crate::promote::plan;
use crate::promote::state::{CommandEvent, PullRequest};

/// How many promotions back the engine reads history (rollback targets and holds).
pub(super) const HISTORY_DEPTH: usize = 1000;

impl<F: Forge> Engine<F> {
    pub(super) fn read_repo(&self) -> Result<RepoView, EngineError> {
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
    pub(super) async fn teams(
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
    pub(super) async fn observe(
        &self,
        view: &RepoView,
    ) -> Result<(Vec<Observed>, Facts), EngineError> {
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
            if rollback::is_rollback_pr(&info) {
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
    pub(super) async fn command_events(
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
}

/// `policies/pipeline.yaml` of a commit.
pub(super) fn load_pipeline(files: &dyn Files, commit: git2::Oid) -> Result<Pipeline, EngineError> {
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
