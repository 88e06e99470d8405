//! Doing what the planner decided ([`Engine::act`]): open or update a PR (its branch pushed
//! first), close one, write "Waiting" with the gate table, and land a PR whose gates all passed
//! ([`Engine::land`]: merged, or queued where the config branch uses GitHub's merge queue).

use chrono::{DateTime, Utc};

use super::{
    Engine, EngineError, Observed, Outcome, RepoView, now_text, pinned_of, queue, refusal,
    rollback, text,
};
use crate::commands::{self, Command};
use crate::forge::{self, Forge, ForgeError, NewPullRequest};
use crate::gitrepo::bump;
use crate::gitrepo::repo::Pushed;
use crate::gitrepo::trailers::Promotion;
use crate::image::Pinned;
use crate::promote::Evaluation;
use crate::promote::plan::Action;

/// What a merge lands: the app or group it is named for, the audit record its merge commit
/// (or, in a merge queue, its PR body) carries, and the merge commit's subject.
pub(super) struct Landing<'a> {
    pub(super) name: &'a str,
    pub(super) record: queue::Record<'a>,
    pub(super) subject: String,
}

/// What the config branch's rules say about GitHub's merge queue.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct QueueRules {
    /// Merges go through the queue.
    pub(super) merge_queue: bool,
    /// The queue lands a PR by rebasing its commits (so the record goes into a commit).
    pub(super) rebases: bool,
}

impl<F: Forge> Engine<F> {
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
        let message = view
            .pending_promotion(env, app, to)
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
    pub(super) fn rendered_change(
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

    pub(super) async fn act(
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
                    .then(|| rollback::parse_rollback_marker(&o.info.body))
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
                    format!("{} (#{pr})", rollback::rollback_title(&app, &env, &to))
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
    pub(super) fn merge_held_off(&self, o: &Observed, now: DateTime<Utc>) -> Option<String> {
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
    pub(super) async fn land(
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
