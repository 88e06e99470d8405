//! Rolling back: a rollback PR restores an earlier release of an app in an environment
//! ([`Engine::roll_back`]: on a failed rollout with `onFailure: rollback`, or `/rollback`), and
//! the pure parts it is made of (which earlier release, the PR's title, body and marker).
//!
//! A rollback PR is a promotion PR on the usual branch `baton/<env>/<app>` labelled
//! `baton:rollback`; its body carries a marker naming the digest it rolls back, which the merge
//! writes as the `Baton-Rollback-Of` trailer. The planner then holds that digest back from the
//! environment (`promote::plan::held_digests`), from Git alone.

use super::rollout::{state_of, status_context};
use std::collections::BTreeSet;

use super::{Engine, EngineError, RepoView, text};
use crate::forge::{self, Forge, NewPullRequest, PullRequestInfo};
use crate::gitrepo::bump;
use crate::gitrepo::history::Entry;
use crate::image::{Digest, Pinned};
use crate::promote::gates::ROLLBACK_LABEL;
use crate::promote::state::CheckState;

/// How many earlier releases a rollback checks for a success status.
const ROLLBACK_CANDIDATES: usize = 10;

const ROLLBACK_MARKER: &str = "<!-- baton:rollback ";

/// The rollback marker in a rollback PR's body: the digest rolled back and who asked.
pub fn rollback_marker(bad: &Digest, by: Option<&str>) -> String {
    match by {
        Some(login) => format!("{ROLLBACK_MARKER}of={bad} by={login} -->"),
        None => format!("{ROLLBACK_MARKER}of={bad} -->"),
    }
}

/// The digest a rollback PR rolls back and who asked for it, from its body.
pub fn parse_rollback_marker(body: &str) -> Option<(Digest, Option<String>)> {
    let line = body
        .lines()
        .find_map(|l| l.trim().strip_prefix(ROLLBACK_MARKER))?;
    let mut bad = None;
    let mut by = None;
    for word in line.trim_end_matches("-->").split_whitespace() {
        if let Some(d) = word.strip_prefix("of=") {
            bad = d.parse().ok();
        } else if let Some(l) = word.strip_prefix("by=") {
            by = Some(l.to_string());
        }
    }
    Some((bad?, by))
}

/// `rollback web in prod to 1.3.0 (sha256:0123456789ab)`.
pub fn rollback_title(app: &str, env: &str, to: &Pinned) -> String {
    match &to.tag {
        Some(tag) => format!("rollback {app} in {env} to {tag} ({})", to.digest.short()),
        None => format!("rollback {app} in {env} to {}", to.digest.short()),
    }
}

/// `` `1.3.0` (`sha256:0123456789ab`) ``.
pub(super) fn describe(p: &Pinned) -> String {
    match &p.tag {
        Some(t) => format!("`{t}` (`{}`)", p.digest.short()),
        None => format!("`{}`", p.digest.short()),
    }
}

/// What to roll back, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRequest {
    pub env: String,
    pub app: String,
    /// A tag or digest to restore; `None`: the previous healthy release from history.
    pub to: Option<String>,
    /// The digest being rolled back; `None`: whatever the environment pins now.
    pub bad: Option<Digest>,
    /// Who asked (`None`: the bot, by `onFailure: rollback`).
    pub by: Option<String>,
    /// One sentence for the PR body: `` `/rollback prod` by @dana on #12 ``.
    pub why: String,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rolled {
    /// A rollback PR was opened.
    Opened { pr: u64, to: Pinned, bad: Digest },
    /// One is already open for this app and environment.
    AlreadyOpen { pr: u64 },
    /// Nothing to do, and why (posted to the PR).
    Nothing(String),
}

/// One candidate release for a rollback, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub pinned: Pinned,
    /// The merge commit that promoted it to the environment, when history has one.
    pub commit: Option<String>,
}

/// The releases `env` ran for `app` before `bad`, newest first, from its promotions in
/// history (newest first): each promotion's `Baton-To` and `Baton-From`, without `bad` and
/// without digests held back by earlier rollbacks. Pure.
pub fn rollback_candidates(
    history: &[Entry],
    env: &str,
    app: &str,
    bad: &Digest,
    held: Option<&BTreeSet<Digest>>,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let tag_of = |d: &Digest| {
        history
            .iter()
            .find(|e| e.promotion.app == app && e.promotion.to == *d)
            .and_then(|e| e.promotion.tag.clone())
    };
    let mut push = |digest: &Digest, commit: Option<&str>| {
        if digest == bad || held.is_some_and(|h| h.contains(digest)) {
            return;
        }
        match out.iter_mut().find(|c| c.pinned.digest == *digest) {
            Some(c) => {
                if c.commit.is_none() {
                    c.commit = commit.map(String::from);
                }
            }
            None => out.push(Candidate {
                pinned: Pinned {
                    tag: tag_of(digest),
                    digest: digest.clone(),
                },
                commit: commit.map(String::from),
            }),
        }
    };
    for e in history
        .iter()
        .filter(|e| e.promotion.environment == env && e.promotion.app == app)
    {
        push(&e.promotion.to, Some(&e.commit));
        if let Some(from) = &e.promotion.from {
            push(from, None);
        }
    }
    out
}

/// The release `/rollback <env> to <target>` names: a digest, or a tag some promotion of the
/// app recorded (in any environment). Pure.
pub fn named_target(history: &[Entry], app: &str, target: &str) -> Result<Pinned, String> {
    if let Ok(digest) = target.parse::<Digest>() {
        let tag = history
            .iter()
            .find(|e| e.promotion.app == app && e.promotion.to == digest)
            .and_then(|e| e.promotion.tag.clone());
        return Ok(Pinned { tag, digest });
    }
    history
        .iter()
        .find(|e| e.promotion.app == app && e.promotion.tag.as_deref() == Some(target))
        .map(|e| Pinned {
            tag: e.promotion.tag.clone(),
            digest: e.promotion.to.clone(),
        })
        .ok_or_else(|| {
            format!(
                "no promotion of {app} tagged `{target}` is in the config repo's history; name its digest instead (`sha256:…`)"
            )
        })
}

impl<F: Forge> Engine<F> {
    /// Open a PR restoring an earlier release of an app in an environment, unless one is
    /// open already or there is nothing to restore. An open promotion PR for the same app and
    /// environment is closed first (one open PR per pair: the rollback takes the branch).
    pub async fn roll_back_now(&self, request: &RollbackRequest) -> Result<Rolled, EngineError> {
        let view = tokio::task::block_in_place(|| self.read_repo())?;
        self.roll_back(&view, request).await
    }

    pub(super) async fn roll_back(
        &self,
        view: &RepoView,
        req: &RollbackRequest,
    ) -> Result<Rolled, EngineError> {
        let (env, app) = (req.env.as_str(), req.app.as_str());
        if view.pipeline.environment(env).is_none() {
            return Ok(Rolled::Nothing(format!(
                "policies/pipeline.yaml has no environment `{env}`"
            )));
        }
        let Some(app_cfg) = view.pipeline.app(app) else {
            return Ok(Rolled::Nothing(format!(
                "policies/pipeline.yaml has no app `{app}`"
            )));
        };
        // A member of a release train is rolled back with the group it was promoted with.
        if let Some(group) = view.pipeline.group_of(app) {
            return self.roll_back_group(view, req, group).await;
        }
        let Some(current) = view.pinned.get(&(env.to_string(), app.to_string())) else {
            return Ok(Rolled::Nothing(format!("{env} pins no digest for {app}")));
        };
        let bad = req.bad.clone().unwrap_or_else(|| current.digest.clone());
        if current.digest != bad {
            return Ok(Rolled::Nothing(format!(
                "{env} no longer runs `{}`: it pins {}",
                bad.short(),
                describe(current)
            )));
        }
        let branch = forge::promotion_branch(env, app);
        let open: Vec<PullRequestInfo> = self
            .forge
            .open_promotion_prs()
            .await?
            .into_iter()
            .filter(|p| p.head_ref == branch)
            .collect();
        if let Some(p) = open.iter().find(|p| is_rollback_pr(p)) {
            return Ok(Rolled::AlreadyOpen { pr: p.number });
        }
        let held = view.held.get(&(env.to_string(), app.to_string()));
        let target = match &req.to {
            Some(named) => match named_target(&view.history, app, named) {
                Ok(t) => t,
                Err(why) => return Ok(Rolled::Nothing(why)),
            },
            None => match self
                .previous_healthy(
                    rollback_candidates(&view.history, env, app, &bad, held),
                    env,
                )
                .await?
            {
                Some(t) => t,
                None => {
                    return Ok(Rolled::Nothing(format!(
                        "the config repo's history has no earlier release of {app} in {env}; name one with `/rollback {env} to <tag|digest>`"
                    )));
                }
            },
        };
        let target = match target {
            Pinned { tag: None, digest } => {
                let tag =
                    tokio::task::block_in_place(|| self.tag_before(view, env, app, &bad, &digest));
                Pinned { tag, digest }
            }
            t => t,
        };
        if target.digest == current.digest {
            return Ok(Rolled::Nothing(format!(
                "{env} already runs {}",
                describe(&target)
            )));
        }
        let failed_pr = view
            .history
            .iter()
            .find(|e| {
                e.promotion.environment == env && e.promotion.app == app && e.promotion.to == bad
            })
            .and_then(|e| e.promotion.pull_request);
        let note = format!(
            "Closed: {app} in {env} is being rolled back to {} ({}), and the rollback takes this PR's branch (one open PR per app and environment). A newer release gets a new PR once the rollback has merged.",
            describe(&target),
            req.why
        );
        self.close_with_note(&open, &note).await?;
        let title = rollback_title(app, env, &target);
        let mut diff = String::new();
        self.publish_branch(&branch, &title, &mut |files| {
            let change = bump::plan(files, &view.pipeline, env, app, &target)?;
            diff = change.unified_diff();
            Ok(vec![change])
        })
        .await?;
        let body = rollback_body(
            app,
            env,
            &app_cfg.image,
            current,
            &target,
            req,
            failed_pr,
            &diff,
        );
        let opened = self
            .open_rollback_pr(view, env, branch, title, body)
            .await?;
        tracing::info!(pr = opened.number, %env, %app, to = %target.digest, bad = %bad, "opened rollback PR");
        if let Some(failed) = failed_pr {
            self.add_timeline(
                failed,
                app,
                env,
                &format!(
                    "Rolled back: #{} restores {} in {env}.",
                    opened.number,
                    describe(&target)
                ),
                &[format!(
                    "rolling back: #{} restores {}; `{}` is held back from {env}",
                    opened.number,
                    describe(&target),
                    bad.short()
                )],
            )
            .await?;
        }
        Ok(Rolled::Opened {
            pr: opened.number,
            to: target,
            bad,
        })
    }

    /// Open a rollback PR from `branch` (labelled `baton:rollback`) and ask `env`'s approvers
    /// to review it.
    pub(super) async fn open_rollback_pr(
        &self,
        view: &RepoView,
        env: &str,
        branch: String,
        title: String,
        body: String,
    ) -> Result<PullRequestInfo, EngineError> {
        let opened = self
            .forge
            .open_pull_request(&NewPullRequest {
                head: branch,
                base: self.branch.clone(),
                title,
                body,
                labels: vec![
                    forge::PROMOTION_LABEL.to_string(),
                    forge::env_label(env),
                    ROLLBACK_LABEL.to_string(),
                ],
            })
            .await?;
        self.request_approvers(&view.pipeline, env, opened.number)
            .await;
        Ok(opened)
    }

    /// Close `open` (the PRs on the branch a rollback takes), each with `note`, said once
    /// even by a bot killed between the comment and the close.
    pub(super) async fn close_with_note(
        &self,
        open: &[PullRequestInfo],
        note: &str,
    ) -> Result<(), EngineError> {
        for p in open {
            let said = self
                .forge
                .comments(p.number)
                .await?
                .iter()
                .any(|c| c.author == self.forge.bot_login() && c.body == note);
            if !said {
                self.forge.create_comment(p.number, note).await?;
            }
            self.forge.close_pull_request(p.number).await?;
        }
        Ok(())
    }

    /// The tag Git recorded next to `digest` in `env` just before `bad` was promoted (a
    /// digest pinned before baton's first promotion has no trailer to name its tag).
    pub(super) fn tag_before(
        &self,
        view: &RepoView,
        env: &str,
        app: &str,
        bad: &Digest,
        digest: &Digest,
    ) -> Option<String> {
        let entry = view.history.iter().find(|e| {
            e.promotion.environment == env && e.promotion.app == app && e.promotion.to == *bad
        })?;
        let repo = self.repo();
        let oid = git2::Oid::from_str(&entry.commit).ok()?;
        let parent = repo.git().find_commit(oid).ok()?.parent_id(0).ok()?;
        let files = repo.files_at(parent).ok()?;
        bump::current(&files, &view.pipeline, env, app)
            .ok()
            .flatten()
            .filter(|p| p.digest == *digest)
            .and_then(|p| p.tag)
    }

    /// The newest candidate whose promotion has a success status for `env`; else the newest
    /// that never failed there.
    pub(super) async fn previous_healthy(
        &self,
        candidates: Vec<Candidate>,
        env: &str,
    ) -> Result<Option<Pinned>, EngineError> {
        let context = status_context(env);
        let mut fallback = None;
        for c in candidates.into_iter().take(ROLLBACK_CANDIDATES) {
            let state = match &c.commit {
                Some(commit) => state_of(&self.forge.checks(commit).await?, &context),
                None => None,
            };
            match state {
                Some(CheckState::Success) => return Ok(Some(c.pinned)),
                Some(CheckState::Failure) => {}
                _ => {
                    if fallback.is_none() {
                        fallback = Some(c.pinned);
                    }
                }
            }
        }
        Ok(fallback)
    }
}

/// Whether an open PR is a rollback (by label, or by the body marker should the labels not
/// have been added yet).
pub fn is_rollback_pr(pr: &PullRequestInfo) -> bool {
    pr.labels.iter().any(|l| l == ROLLBACK_LABEL) || parse_rollback_marker(&pr.body).is_some()
}

#[allow(clippy::too_many_arguments)]
fn rollback_body(
    app: &str,
    env: &str,
    image: &str,
    from: &Pinned,
    to: &Pinned,
    req: &RollbackRequest,
    failed_pr: Option<u64>,
    diff: &str,
) -> String {
    let mut out = format!(
        "Rolls **{app}** in **{env}** back.\n\n| | tag and digest |\n|---|---|\n| from | {} |\n| to | {} |\n\n",
        describe(from),
        describe(to)
    );
    out.push_str(&format!("Image: `{image}@{}`\n\n", to.digest));
    out.push_str(&format!("Why: {}.", req.why));
    if let Some(pr) = failed_pr {
        out.push_str(&format!(" It rolls back #{pr}."));
    }
    out.push_str(&format!(
        "\n\nOnce merged, `{}` is held back from {env}: baton will not propose it there again, while a newer release flows as usual (`/rollback {env} to {}` restores it on purpose).\n\n",
        from.digest.short(),
        from.digest
    ));
    out.push_str("A rollback skips soak, promotion windows, freezes and the `/promote` command; a hold, required checks, approvals and policies still apply. Its gates are in baton's status comment below.\n\n");
    out.push_str(&text::config_diff(diff));
    out.push_str(&rollback_marker(&from.digest, req.by.as_deref()));
    out.push('\n');
    // The marker is at the end; truncating would drop it, so cut the diff instead.
    if out.len() > text::BODY_LIMIT {
        let without_diff = rollback_body(app, env, image, from, to, req, failed_pr, "");
        return without_diff;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitrepo::trailers::Promotion;
    use chrono::Utc;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn entry(env: &str, to: &str, from: Option<&str>, commit: &str) -> Entry {
        Entry {
            time: Utc::now(),
            commit: commit.into(),
            promotion: Promotion {
                app: "web".into(),
                environment: env.into(),
                from: from.map(d),
                to: d(to),
                tag: Some(to.into()),
                approved_by: vec![],
                promoted_by: None,
                pull_request: Some(1),
                rollback_of: None,
            },
        }
    }

    #[test]
    fn the_rollback_marker_round_trips() {
        let body = format!("text\n\n{}\n", rollback_marker(&d("bad"), Some("dana")));
        assert_eq!(
            parse_rollback_marker(&body),
            Some((d("bad"), Some("dana".into())))
        );
        let body = rollback_marker(&d("bad"), None);
        assert_eq!(parse_rollback_marker(&body), Some((d("bad"), None)));
        assert_eq!(parse_rollback_marker("no marker"), None);
    }

    #[test]
    fn rollback_candidates_are_earlier_releases_newest_first_without_held_ones() {
        // Newest first: 1.2.0 (bad), 1.1.0, 1.0.0 in prod; 1.3.0 in dev only.
        let history = [
            entry("dev", "1.3.0", Some("1.2.0"), "c4"),
            entry("prod", "1.2.0", Some("1.1.0"), "c3"),
            entry("prod", "1.1.0", Some("1.0.0"), "c2"),
            entry("prod", "1.0.0", Some("0.9.0"), "c1"),
        ];
        let c = rollback_candidates(&history, "prod", "web", &d("1.2.0"), None);
        let tags: Vec<_> = c.iter().map(|c| c.pinned.tag.as_deref()).collect();
        assert_eq!(tags, vec![Some("1.1.0"), Some("1.0.0"), None]);
        assert_eq!(c[0].commit.as_deref(), Some("c2"));
        assert_eq!(c[2].pinned.digest, d("0.9.0"));
        assert_eq!(c[2].commit, None);

        let held = BTreeSet::from([d("1.1.0")]);
        let c = rollback_candidates(&history, "prod", "web", &d("1.2.0"), Some(&held));
        assert_eq!(c[0].pinned.tag.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn a_named_target_is_a_digest_or_a_recorded_tag() {
        let history = [entry("dev", "1.3.0", None, "c1")];
        assert_eq!(
            named_target(&history, "web", "1.3.0").unwrap().digest,
            d("1.3.0")
        );
        let by_digest = named_target(&history, "web", d("1.3.0").as_str()).unwrap();
        assert_eq!(by_digest.tag.as_deref(), Some("1.3.0"));
        let err = named_target(&history, "web", "9.9.9").unwrap_err();
        assert!(err.contains("tagged `9.9.9`"), "{err}");
    }
}
