//! A group's PR (pipeline `groups:`, a release train): one branch `baton/<env>/<group>` whose
//! one commit pins every member with a new digest, one PR per group and environment, merged
//! with one `Baton-*` trailer block per member so that `baton history` lists one entry per app
//! (`Promotion::group_message`). The planner decides (`promote::group`); this is the I/O.
//!
//! Which members a group's PR changes is read from Git alone: the pins its branch tip has that
//! differ from the commit it was built on (the merge base with the config branch). Nothing is
//! kept elsewhere, so a restart reads the same PR back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};

use super::rollback::{self, RollbackRequest, Rolled};
use super::{
    Engine, EngineError, Landing, Observed, Outcome, QueueRules, RepoView, pinned_of, queue, text,
};
use crate::commands::{self, Command};
use crate::config::pipeline::Pipeline;
use crate::forge::{self, Forge, NewPullRequest, PullRequestInfo};
use crate::gitrepo::bump;
use crate::gitrepo::repo::{ConfigRepo, GitError};
use crate::gitrepo::trailers::Promotion;
use crate::image::{Digest, Pinned};
use crate::promote::Evaluation;
use crate::promote::gates::is_rollback;
use crate::promote::plan::MemberChange;
use crate::promote::state::PullRequest;

/// A group branch's changed members: (app, what the branch pins for it).
pub(super) type Members = Vec<(String, Pinned)>;

/// A row of a group PR's body: app, what the environment pins now, what the PR pins.
type Row = (String, Option<Pinned>, Pinned);

impl Observed {
    /// What the planner is given for this PR: one state per member for a group's PR, each
    /// with the PR's current labels, reviews, checks and commands (kept in `state`, which a
    /// `/hold` answered in this pass has changed).
    pub(super) fn states(&self) -> Vec<PullRequest> {
        if self.members.is_empty() {
            return vec![self.state.clone()];
        }
        self.members
            .iter()
            .map(|m| PullRequest {
                app: m.app.clone(),
                digest: m.digest.clone(),
                tag: m.tag.clone(),
                group: m.group.clone(),
                ..self.state.clone()
            })
            .collect()
    }
}

/// The states of a group's PR, one per member its branch changes (empty for an app's PR).
pub(super) fn member_states(
    pipeline: &Pipeline,
    group_members: &BTreeMap<String, Members>,
    info: &PullRequestInfo,
    state: &PullRequest,
) -> Vec<PullRequest> {
    let Some((_, name)) = forge::parse_promotion_branch(&info.head_ref) else {
        return Vec::new();
    };
    if !pipeline.groups.contains_key(name) {
        return Vec::new();
    }
    let members: Vec<PullRequest> = group_members
        .get(&info.head_ref)
        .into_iter()
        .flatten()
        .map(|(app, pin)| PullRequest {
            app: app.clone(),
            digest: pin.digest.clone(),
            tag: pin.tag.clone(),
            group: Some(name.to_string()),
            ..state.clone()
        })
        .collect();
    if members.is_empty() {
        // A group branch that changes no member: the planner closes its PR as empty.
        return vec![PullRequest {
            app: name.to_string(),
            group: Some(name.to_string()),
            ..state.clone()
        }];
    }
    members
}

/// The apps a `/retry` of `env`'s verification on `pr` runs again: for a group's PR every
/// member `env` runs (a release train is verified as a whole, and `/retry` runs an app's
/// verification again whatever its last result was), else the PR's app.
pub(super) fn retried(view: &RepoView, pr: &PullRequest, env: &str) -> Vec<String> {
    let Some(group) = pr.group.as_ref().and_then(|g| view.pipeline.groups.get(g)) else {
        return vec![pr.app.clone()];
    };
    let members: Vec<String> = group
        .apps
        .iter()
        .filter(|app| {
            view.pinned
                .contains_key(&(env.to_string(), app.to_string()))
        })
        .cloned()
        .collect();
    if members.is_empty() {
        return vec![pr.app.clone()];
    }
    members
}

/// `web` or `web and worker (group shop)`, for a reply to `/retry`.
pub(super) fn retried_text(apps: &[String], pr: &PullRequest) -> String {
    match (apps, &pr.group) {
        ([one], None) => one.clone(),
        (all, group) => {
            let list = match all {
                [] => String::new(),
                [one] => one.clone(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
            };
            match group {
                Some(g) => format!("{list} (group {g})"),
                None => list,
            }
        }
    }
}

/// `promote group shop to dev: web 1.5.0, worker release-2.2.0`.
pub fn title(group: &str, env: &str, pins: &[(String, Pinned)]) -> String {
    let list: Vec<String> = pins
        .iter()
        .map(|(app, p)| match &p.tag {
            Some(t) => format!("{app} {t}"),
            None => format!("{app} {}", p.digest.short()),
        })
        .collect();
    format!("promote group {group} to {env}: {}", list.join(", "))
}

fn describe(p: Option<&Pinned>) -> String {
    match p {
        None => "(nothing pinned yet)".into(),
        Some(Pinned {
            tag: Some(t),
            digest,
        }) => format!("`{t}` (`{}`)", digest.short()),
        Some(Pinned { tag: None, digest }) => format!("`{}`", digest.short()),
    }
}

/// The body of a group's PR: the members' moves, the config change, the rendered diff.
fn body(group: &str, env: &str, rows: &[Row], diff: &str, rendered: Result<&str, &str>) -> String {
    let mut out = format!(
        "Promotes group **{group}** to **{env}**: its apps travel together, their gates cover them all, and a failed rollout of one rolls back all of them.\n\n| app | from | to |\n|---|---|---|\n"
    );
    for (app, from, to) in rows {
        out.push_str(&format!(
            "| {app} | {} | {} |\n",
            describe(from.as_ref()),
            describe(Some(to))
        ));
    }
    out.push('\n');
    out.push_str(&text::changes(env, diff, rendered));
    text::truncate(
        out,
        "\n\n…(truncated; run `baton render` for the full output)\n",
    )
}

impl<F: Forge> Engine<F> {
    /// The group branches of the pipeline at `tip`: per branch the members it changes, also
    /// entered in `branches` (with the first member's pin) so the PR is observed like others.
    pub(super) fn group_branches(
        &self,
        repo: &ConfigRepo,
        pipeline: &Pipeline,
        tip: git2::Oid,
        branches: &mut BTreeMap<String, (Option<Pinned>, DateTime<Utc>)>,
    ) -> Result<BTreeMap<String, Members>, EngineError> {
        let mut cache = self.group_pins.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = BTreeSet::new();
        let mut out = BTreeMap::new();
        let read = |e: git2::Error| GitError::Git {
            op: "read",
            message: e.message().into(),
            transient: false,
        };
        for env in &pipeline.environments {
            for (group, g) in &pipeline.groups {
                let branch = forge::promotion_branch(&env.name, group);
                let Some(oid) = repo.remote_branch(&branch)? else {
                    continue;
                };
                seen.insert(oid);
                let members = match cache.get(&oid) {
                    Some(m) => m.clone(),
                    None => {
                        let base = repo.merge_base(oid, tip)?.unwrap_or(tip);
                        let (after, before) = (repo.files_at(oid)?, repo.files_at(base)?);
                        let members: Members = g
                            .apps
                            .iter()
                            .filter_map(|app| {
                                let now = bump::current(&after, pipeline, &env.name, app)
                                    .ok()
                                    .flatten()?;
                                let was = bump::current(&before, pipeline, &env.name, app)
                                    .ok()
                                    .flatten();
                                (was.map(|w| w.digest) != Some(now.digest.clone()))
                                    .then(|| (app.clone(), now))
                            })
                            .collect();
                        cache.insert(oid, members.clone());
                        members
                    }
                };
                let commit = repo.git().find_commit(oid).map_err(read)?;
                let at = Utc
                    .timestamp_opt(commit.time().seconds(), 0)
                    .single()
                    .unwrap_or_default();
                branches.insert(
                    branch.clone(),
                    (members.first().map(|(_, p)| p.clone()), at),
                );
                out.insert(branch, members);
            }
        }
        cache.retain(|oid, _| seen.contains(oid));
        Ok(out)
    }

    /// Build the group's branch on the config branch tip: one commit pinning every member,
    /// carrying their records. The PR's title and body.
    async fn publish_group(
        &self,
        view: &RepoView,
        env: &str,
        group: &str,
        members: &[MemberChange],
    ) -> Result<(Members, String, String), EngineError> {
        let pins: Members = members
            .iter()
            .map(|m| (m.app.clone(), pinned_of(&m.to)))
            .collect();
        let subject = title(group, env, &pins);
        let records: Vec<Promotion> = pins
            .iter()
            .map(|(app, to)| view.pending_promotion(env, app, to))
            .collect();
        let message = Promotion::group_message(&subject, "", group, &records);
        let mut diff = String::new();
        let pushed = self
            .publish_branch(
                &forge::promotion_branch(env, group),
                &message,
                &mut |files| {
                    let changes = bump::plan_all(files, &view.pipeline, env, &pins)?;
                    diff = changes.iter().map(|c| c.unified_diff()).collect();
                    Ok(changes)
                },
            )
            .await?;
        let rendered = self.rendered_change(view, env, &pushed)?;
        let rows: Vec<Row> = pins
            .iter()
            .map(|(app, to)| {
                let from = view.pinned.get(&(env.to_string(), app.clone())).cloned();
                (app.clone(), from, to.clone())
            })
            .collect();
        let body = body(
            group,
            env,
            &rows,
            &diff,
            rendered.as_deref().map_err(String::as_str),
        );
        Ok((pins, subject, body))
    }

    /// Open the group's PR for `env` (its branch first, so a re-run finds it and only opens).
    pub(super) async fn open_group(
        &self,
        view: &RepoView,
        env: &str,
        group: &str,
        members: &[MemberChange],
    ) -> Result<Outcome, EngineError> {
        let (_, title, body) = self.publish_group(view, env, group, members).await?;
        let pr = self
            .forge
            .open_pull_request(&NewPullRequest {
                head: forge::promotion_branch(env, group),
                base: self.branch.clone(),
                title,
                body,
                labels: vec![forge::PROMOTION_LABEL.to_string(), forge::env_label(env)],
            })
            .await?;
        tracing::info!(pr = pr.number, %env, %group, "opened group promotion PR");
        self.request_approvers(&view.pipeline, env, pr.number).await;
        Ok(Outcome::Opened {
            pr: pr.number,
            env: env.to_string(),
            app: group.to_string(),
        })
    }

    /// Rebuild the group's branch on `members` and say on the PR what it superseded.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn update_group(
        &self,
        view: &RepoView,
        observed: Option<Observed>,
        pr: u64,
        env: &str,
        group: &str,
        members: &[MemberChange],
        superseded: &[MemberChange],
    ) -> Result<Outcome, EngineError> {
        let (pins, title, body) = self.publish_group(view, env, group, members).await?;
        self.forge.update_pull_request(pr, &title, &body).await?;
        if let Some(mut o) = observed {
            let status = o.status.as_ref().map(|s| s.body.as_str()).unwrap_or("");
            let mut events = text::timeline(status);
            let handled = text::handled_ids(status);
            let old: Vec<(String, Pinned)> = superseded
                .iter()
                .map(|m| (m.app.clone(), pinned_of(&m.to)))
                .collect();
            events.push(format!(
                "superseded {} by {}",
                title_list(&old),
                title_list(&pins)
            ));
            self.write_status(&mut o, "Updated to newer releases; gates are re-evaluated (approvals of the old head no longer count).", None, &events, &handled).await?;
        }
        Ok(Outcome::Updated {
            pr,
            env: env.to_string(),
            app: group.to_string(),
        })
    }

    /// Merge a group's PR whose gates all passed: copy each member where the environment says
    /// `copyTo`, then land it (merged, or queued where the config branch uses GitHub's merge
    /// queue) with one record per member.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn merge_group(
        &self,
        view: &RepoView,
        mut o: Observed,
        env: &str,
        group: &str,
        mut evaluation: Evaluation,
        queue_rules: QueueRules,
        now: DateTime<Utc>,
    ) -> Result<Outcome, EngineError> {
        let pr = o.info.number;
        let env_cfg = view
            .pipeline
            .environment(env)
            .expect("planned environments exist");
        let waiting = |blocking: String, evaluation: &Evaluation| Outcome::Waiting {
            pr,
            env: env.to_string(),
            app: group.to_string(),
            blocking,
            gates: evaluation.results.clone(),
        };
        if let Some(blocking) = self.merge_held_off(&o, now) {
            return Ok(waiting(blocking, &evaluation));
        }
        let promoted_by = o
            .state
            .commands
            .iter()
            .rev()
            .find(|c| {
                matches!(&c.command, Command::Promote { env: e } if e == env)
                    && commands::authorize(&c.command, &c.actor, Some(env_cfg)).is_ok()
            })
            .map(|c| c.actor.login.clone())
            .unwrap_or_else(|| self.forge.bot_login().to_string());
        let copied = match self.copy_for_merge(view, &mut o, &mut evaluation).await? {
            Ok(lines) => lines,
            Err(blocking) => return Ok(waiting(blocking, &evaluation)),
        };
        // A group's rollback holds back what each member ran before it (its `from`).
        let rollback = is_rollback(&o.state);
        let promoted_by = match rollback::parse_rollback_marker(&o.info.body) {
            Some((_, Some(by))) if rollback => by,
            _ => promoted_by,
        };
        let records: Vec<Promotion> = o
            .members
            .iter()
            .map(|m| {
                let from = view
                    .pinned
                    .get(&(env.to_string(), m.app.clone()))
                    .map(|p| p.digest.clone());
                Promotion {
                    app: m.app.clone(),
                    environment: env.to_string(),
                    rollback_of: from.clone().filter(|_| rollback),
                    from,
                    to: m.digest.clone(),
                    tag: m.tag.clone(),
                    approved_by: evaluation.approvers.clone(),
                    promoted_by: Some(promoted_by.clone()),
                    pull_request: Some(pr),
                }
            })
            .collect();
        let pins: Vec<(String, Pinned)> = o
            .members
            .iter()
            .map(|m| {
                (
                    m.app.clone(),
                    Pinned {
                        tag: m.tag.clone(),
                        digest: m.digest.clone(),
                    },
                )
            })
            .collect();
        let subject = if rollback {
            format!(
                "rollback group {group} in {env} to {} (#{pr})",
                title_list(&pins)
            )
        } else {
            format!("{} (#{pr})", title(group, env, &pins))
        };
        let landing = Landing {
            name: group,
            record: queue::Record {
                group: Some(group),
                promotions: &records,
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
    }
}

impl<F: Forge> Engine<F> {
    /// Roll back a release train in one PR on the group's branch: every member the failed (or
    /// named) promotion brought to `req.env` and the environment still pins goes back to its
    /// previous healthy release, and each bad digest is then held back (`Baton-Rollback-Of`
    /// per member). Like an app's rollback it is idempotent: an open rollback PR on the branch
    /// is found, not repeated.
    pub(super) async fn roll_back_group(
        &self,
        view: &RepoView,
        req: &RollbackRequest,
        group: &str,
    ) -> Result<Rolled, EngineError> {
        let env = req.env.as_str();
        let pinned = |app: &str| view.pinned.get(&(env.to_string(), app.to_string()));
        let Some(current) = pinned(&req.app) else {
            return Ok(Rolled::Nothing(format!(
                "{env} pins no digest for {}",
                req.app
            )));
        };
        let bad = req.bad.clone().unwrap_or_else(|| current.digest.clone());
        // The members that travelled with the failed digest: its promotion commit names them.
        let promoted = view.history.iter().find(|e| {
            e.promotion.environment == env && e.promotion.app == req.app && e.promotion.to == bad
        });
        let mut members: Vec<(String, Digest)> = match promoted {
            Some(p) => view
                .history
                .iter()
                .filter(|e| e.commit == p.commit && e.promotion.environment == env)
                .map(|e| (e.promotion.app.clone(), e.promotion.to.clone()))
                .collect(),
            None => vec![(req.app.clone(), bad.clone())],
        };
        members.retain(|(app, d)| pinned(app).is_some_and(|p| p.digest == *d));
        if members.is_empty() {
            return Ok(Rolled::Nothing(format!(
                "{env} no longer runs `{}` of {}: it pins {}",
                bad.short(),
                req.app,
                rollback::describe(current)
            )));
        }
        let branch = forge::promotion_branch(env, group);
        let open: Vec<PullRequestInfo> = self
            .forge
            .open_promotion_prs()
            .await?
            .into_iter()
            .filter(|p| p.head_ref == branch)
            .collect();
        if let Some(p) = open.iter().find(|p| rollback::is_rollback_pr(p)) {
            return Ok(Rolled::AlreadyOpen { pr: p.number });
        }
        let mut targets: Vec<(String, Pinned)> = Vec::new();
        let mut rows = Vec::new();
        let mut skipped = Vec::new();
        for (app, bad) in &members {
            let held = view.held.get(&(env.to_string(), app.clone()));
            let named = req
                .to
                .as_deref()
                .filter(|_| *app == req.app)
                .map(|named| rollback::named_target(&view.history, app, named));
            let target = match named {
                Some(Err(why)) => return Ok(Rolled::Nothing(why)),
                Some(Ok(t)) => Some(t),
                None => {
                    let candidates =
                        rollback::rollback_candidates(&view.history, env, app, bad, held);
                    self.previous_healthy(candidates, env).await?
                }
            };
            let Some(target) = target else {
                skipped.push(format!(
                    "the config repo's history has no earlier release of {app} in {env}"
                ));
                continue;
            };
            let target = match target {
                Pinned { tag: None, digest } => {
                    let tag = tokio::task::block_in_place(|| {
                        self.tag_before(view, env, app, bad, &digest)
                    });
                    Pinned { tag, digest }
                }
                t => t,
            };
            if target.digest == *bad {
                continue;
            }
            rows.push((app.clone(), pinned(app).cloned(), target.clone()));
            targets.push((app.clone(), target));
        }
        let Some((first_app, first_target)) = targets.first().cloned() else {
            return Ok(Rolled::Nothing(skipped.join("; ")));
        };
        let first_bad = members
            .iter()
            .find(|(a, _)| *a == first_app)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| bad.clone());
        let failed_pr = promoted.and_then(|p| p.promotion.pull_request);
        let listed = title_list(&targets);
        let note = format!(
            "Closed: group {group} in {env} is being rolled back to {listed} ({}), and the rollback takes this PR's branch (one open PR per group and environment). Newer releases get a new PR once the rollback has merged.",
            req.why
        );
        self.close_with_note(&open, &note).await?;
        let title = format!("rollback group {group} in {env} to {listed}");
        let mut diff = String::new();
        self.publish_branch(&branch, &title, &mut |files| {
            let changes = bump::plan_all(files, &view.pipeline, env, &targets)?;
            diff = changes.iter().map(|c| c.unified_diff()).collect();
            Ok(changes)
        })
        .await?;
        let mut body = format!(
            "Rolls group **{group}** in **{env}** back: its apps were promoted together, so they go back together.\n\nWhy: {}.{}\n\n| app | from | to |\n|---|---|---|\n",
            req.why,
            failed_pr
                .map(|pr| format!(" It rolls back #{pr}."))
                .unwrap_or_default()
        );
        for (app, from, to) in &rows {
            body.push_str(&format!(
                "| {app} | {} | {} |\n",
                describe(from.as_ref()),
                describe(Some(to))
            ));
        }
        body.push_str(&format!(
            "\nOnce merged, each rolled-back digest is held back from {env}, while newer releases flow as usual. A rollback skips soak, promotion windows, freezes and the `/promote` command; a hold, required checks, approvals and policies still apply.\n\n"
        ));
        if !skipped.is_empty() {
            body.push_str(&format!("Not rolled back: {}.\n\n", skipped.join("; ")));
        }
        if diff.len() < text::RENDERED_LIMIT {
            body.push_str(&text::config_diff(&diff));
        }
        body.push_str(&rollback::rollback_marker(&first_bad, req.by.as_deref()));
        body.push('\n');
        let opened = self
            .open_rollback_pr(view, env, branch, title, body)
            .await?;
        tracing::info!(pr = opened.number, %env, %group, "opened group rollback PR");
        if let Some(failed) = failed_pr {
            self.add_timeline(
                failed,
                group,
                env,
                &format!("Rolled back: #{} restores {listed} in {env}.", opened.number),
                &[format!(
                    "rolling back: #{} restores {listed}; the failed digests are held back from {env}",
                    opened.number
                )],
            )
            .await?;
        }
        Ok(Rolled::Opened {
            pr: opened.number,
            to: first_target,
            bad: first_bad,
        })
    }
}

/// `web 1.5.0, worker release-2.2.0`.
fn title_list(pins: &[(String, Pinned)]) -> String {
    pins.iter()
        .map(|(app, p)| match &p.tag {
            Some(t) => format!("{app} {t} ({})", p.digest.short()),
            None => format!("{app} {}", p.digest.short()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
