//! Answering slash-commands: on open PRs in every pass ([`Engine::answer_commands`]), and on
//! merged or closed promotion PRs ([`Engine::answer_pr`]). Each command is applied, answered
//! once (the answer names the comment it answers) and recorded as handled in the PR's status
//! comment.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{
    Engine, EngineError, Observed, Outcome, RepoView, RollbackRequest, Rolled, group, rollback,
    text,
};
use crate::commands::{self, Actor, Command, Permission};
use crate::forge::{self, CommentInfo, Forge};
use crate::image::Pinned;
use crate::promote::gates::HOLD_LABEL;
use crate::promote::state::PullRequest;

/// The answer to a command in an edited comment.
const EDITED_REPLY: &str = "This comment was edited after it was posted, and edited comments are not taken as commands (what was approved or pushed in between may have relied on the original). Post the command again as a new comment.";

impl<F: Forge> Engine<F> {
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

    /// Handle the commands of comments not yet recorded as handled: apply and answer each
    /// command that has no answer yet, then record the comments as handled in the status
    /// comment. Returns whether a command changed the set of PRs (a `/rollback`).
    pub(super) async fn answer_commands(
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
                        rollback::describe(&to),
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
            Command::Retry { .. } if o.info.state == forge::PrState::Open => {
                let apps = group::retried(view, &o.state, &o.state.env);
                format!(
                    "Verification runs after this PR merges and {} {} healthy in {}; `/retry` then runs it again.",
                    group::retried_text(&apps, &o.state),
                    if apps.len() > 1 { "are" } else { "is" },
                    o.state.env
                )
            }
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
