//! The forge's operations, shared by the REST handlers and the control surface: each one
//! checks GitHub's rules, changes the state (and the bare repo), and queues the webhooks GitHub
//! would send.

use std::sync::atomic::Ordering;

use chrono::Utc;
use serde_json::{Value, json};

use super::gitops::{self, Method};
use super::hooks::Outgoing;
use super::json::{Shapes, ts};
use super::state::{
    AppRef, CheckRun, CheckSuite, Comment, Issue, LabelDef, Pull, Reaction, Repo, Review,
    ReviewState, State, StatusRec,
};
use super::{Error, Inner, PullView};
use crate::git::PushNotice;

mod checks;
mod comments;
mod pulls;
mod reviews;

pub(crate) use checks::*;
pub(crate) use comments::*;
pub(crate) use pulls::*;
pub(crate) use reviews::*;

pub(crate) fn shapes<'a>(inner: &'a Inner, st: &'a State) -> Shapes<'a> {
    Shapes {
        base: inner.base(),
        root: &inner.root,
        st,
    }
}

/// Queue `event` for every hook, adding GitHub's common fields.
pub(crate) fn emit(
    inner: &Inner,
    st: &State,
    event: &'static str,
    repo: &Repo,
    sender: &str,
    mut payload: Value,
) {
    if st.hooks.is_empty() {
        return;
    }
    let sh = shapes(inner, st);
    payload["repository"] = sh.repo(repo);
    payload["sender"] = sh.user(sender);
    payload["installation"] =
        json!({"id": st.installation_id, "node_id": format!("MDIz_sim{}", st.installation_id)});
    for hook in &st.hooks {
        inner.pending.fetch_add(1, Ordering::SeqCst);
        let out = Outgoing {
            event,
            payload: payload.clone(),
            url: hook.url.clone(),
            secret: hook.secret.clone(),
        };
        if inner.outgoing.send(out).is_err() {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn repo_ref<'s>(st: &'s State, owner: &str, repo: &str) -> Result<&'s Repo, Error> {
    st.repo(owner, repo).ok_or_else(Error::not_found)
}

fn issue_mut<'s>(
    st: &'s mut State,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<&'s mut Issue, Error> {
    st.repo_mut(owner, repo)
        .ok_or_else(Error::not_found)?
        .issues
        .get_mut(&number)
        .ok_or_else(Error::not_found)
}

fn pull_mut<'s>(
    st: &'s mut State,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<&'s mut Issue, Error> {
    let issue = issue_mut(st, owner, repo, number)?;
    if issue.pull.is_none() {
        return Err(Error::not_found());
    }
    Ok(issue)
}

fn git_err(e: impl std::fmt::Display) -> Error {
    Error::new(500, format!("git: {e}"))
}

pub(crate) fn create_repo(
    inner: &Inner,
    owner: &str,
    repo: &str,
    default_branch: &str,
) -> Result<(), Error> {
    let mut st = inner.lock();
    if st.repo(owner, repo).is_some() {
        return Err(Error::validation(
            "Repository",
            Some("name"),
            "custom",
            Some("name already exists on this account"),
        ));
    }
    crate::git::init_bare(&inner.root, owner, repo, default_branch).map_err(git_err)?;
    let id = st.id();
    st.repos.insert(
        (owner.to_owned(), repo.to_owned()),
        Repo {
            id,
            owner: owner.to_owned(),
            name: repo.to_owned(),
            default_branch: default_branch.to_owned(),
            created_at: Utc::now(),
            labels: Vec::new(),
            issues: Default::default(),
            next_number: 1,
            statuses: Vec::new(),
            check_runs: Vec::new(),
            check_suites: Vec::new(),
            protection: Default::default(),
            activity: Vec::new(),
            queue: Vec::new(),
            verified: Default::default(),
            deployments: Vec::new(),
        },
    );
    Ok(())
}

pub(crate) fn commit_files(
    inner: &Inner,
    owner: &str,
    repo: &str,
    branch: &str,
    files: &[(&str, &str)],
    message: &str,
    notify: Option<&str>,
) -> Result<String, Error> {
    if inner.lock().repo(owner, repo).is_none() {
        return Err(Error::not_found());
    }
    let path = inner.repo_path(owner, repo);
    let old = gitops::branch_sha(&path, branch);
    let sha = gitops::commit_files(&path, branch, files, message).map_err(git_err)?;
    if notify.is_some() {
        let pusher = inner.lock().bot_login.clone();
        on_push(
            inner,
            PushNotice {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                pusher,
                changes: vec![crate::git::RefChange {
                    name: format!("refs/heads/{branch}"),
                    old,
                    new: Some(sha.clone()),
                }],
            },
        );
    }
    Ok(sha)
}

const ZERO: &str = "0000000000000000000000000000000000000000";

/// After refs changed (smart-HTTP push, merge, ref deletion): `push` events, `synchronize` for
/// pulls whose head moved, pulls closed whose head branch vanished, and a requested check suite.
pub(crate) fn on_push(inner: &Inner, notice: PushNotice) {
    let mut st = inner.lock();
    let Some(repo) = st.repo(&notice.owner, &notice.repo) else {
        return;
    };
    let path = inner.repo_path(&notice.owner, &notice.repo);
    let base = inner.base().to_owned();
    let mut payloads = Vec::new();
    for change in &notice.changes {
        let commits = match &change.new {
            Some(new) => gitops::pushed_commits(&path, change.old.as_deref(), new),
            None => Vec::new(),
        };
        let forced = match (&change.old, &change.new) {
            (Some(old), Some(new)) => !gitops::is_ancestor(&path, old, new),
            _ => false,
        };
        let url = |id: &str| format!("{base}/{}/{}/commit/{id}", repo.owner, repo.name);
        let person = |(name, email): &(String, String)| json!({"name": name, "email": email, "username": null});
        let commit_json = |c: &gitops::PushedCommit| {
            json!({
                "id": c.id, "tree_id": c.tree_id, "distinct": true, "message": c.message,
                "timestamp": ts(c.timestamp), "url": url(&c.id),
                "author": person(&c.author), "committer": person(&c.committer),
                "added": c.added, "removed": c.removed, "modified": c.modified,
            })
        };
        let before = change.old.clone().unwrap_or_else(|| ZERO.to_owned());
        let after = change.new.clone().unwrap_or_else(|| ZERO.to_owned());
        payloads.push(json!({
            "ref": change.name,
            "before": before,
            "after": after,
            "created": change.old.is_none(),
            "deleted": change.new.is_none(),
            "forced": forced,
            "base_ref": null,
            "compare": format!("{base}/{}/{}/compare/{}...{}", repo.owner, repo.name, &before[..12], &after[..12]),
            "commits": commits.iter().map(commit_json).collect::<Vec<_>>(),
            "head_commit": commits.last().map(commit_json),
            "pusher": {"name": notice.pusher, "email": null},
        }));
    }
    for p in &payloads {
        emit(inner, &st, "push", repo, &notice.pusher, p.clone());
    }
    // Pulls follow their head branch.
    let mut synced = Vec::new();
    let mut closed = Vec::new();
    let now = Utc::now();
    // GitHub's own record of the push, with its time.
    for (change, p) in notice.changes.iter().zip(&payloads) {
        let kind = match (&change.old, &change.new) {
            (None, _) => "branch_creation",
            (_, None) => "branch_deletion",
            _ if p["forced"] == true => "force_push",
            _ => "push",
        };
        let id = st.id();
        let activity = super::state::Activity {
            id,
            before: change.old.clone().unwrap_or_else(|| ZERO.to_owned()),
            after: change.new.clone().unwrap_or_else(|| ZERO.to_owned()),
            ref_: change.name.clone(),
            timestamp: now,
            kind,
            actor: notice.pusher.clone(),
        };
        st.repo_mut(&notice.owner, &notice.repo)
            .expect("checked above")
            .activity
            .push(activity);
    }
    {
        let repo = st
            .repo_mut(&notice.owner, &notice.repo)
            .expect("checked above");
        for change in &notice.changes {
            let Some(branch) = change.name.strip_prefix("refs/heads/") else {
                continue;
            };
            for issue in repo.issues.values_mut().filter(|i| i.open) {
                let Some(pull) = issue.pull.as_mut() else {
                    continue;
                };
                if pull.head_ref != branch {
                    continue;
                }
                match &change.new {
                    Some(new) => {
                        let before = std::mem::replace(&mut pull.head_sha, new.clone());
                        issue.updated_at = now;
                        synced.push((issue.number, before, new.clone()));
                    }
                    None => {
                        issue.open = false;
                        issue.closed_at = Some(now);
                        issue.updated_at = now;
                        closed.push(issue.number);
                    }
                }
            }
        }
    }
    let repo = st.repo(&notice.owner, &notice.repo).expect("checked above");
    let sh = shapes(inner, &st);
    for (number, before, after) in synced {
        let _ = gitops::set_pull_head(&path, number, &after);
        let issue = &repo.issues[&number];
        emit(
            inner,
            &st,
            "pull_request",
            repo,
            &notice.pusher,
            json!({"action": "synchronize", "number": number, "before": before, "after": after, "pull_request": sh.pull(repo, issue)}),
        );
    }
    for number in closed {
        let issue = &repo.issues[&number];
        emit(
            inner,
            &st,
            "pull_request",
            repo,
            &notice.pusher,
            json!({"action": "closed", "number": number, "pull_request": sh.pull(repo, issue)}),
        );
    }
    // GitHub asks apps for a check suite on every pushed head commit.
    let requested: Vec<(String, String)> = notice
        .changes
        .iter()
        .filter_map(|c| {
            Some((
                c.name.strip_prefix("refs/heads/")?.to_owned(),
                c.new.clone()?,
            ))
        })
        .collect();
    for (branch, sha) in requested {
        let suite = ensure_suite(
            &mut st,
            &notice.owner,
            &notice.repo,
            &sha,
            Some(&branch),
            AppRef::Bot,
        );
        let repo = st.repo(&notice.owner, &notice.repo).expect("checked above");
        let body = json!({"action": "requested", "check_suite": shapes(inner, &st).check_suite(repo, suite)});
        emit(inner, &st, "check_suite", repo, &notice.pusher, body);
    }
}

fn ensure_suite(
    st: &mut State,
    owner: &str,
    repo: &str,
    sha: &str,
    branch: Option<&str>,
    app: AppRef,
) -> u64 {
    let id = st.id();
    let r = st.repo_mut(owner, repo).expect("caller checked the repo");
    if let Some(s) = r.check_suites.iter().find(|s| s.sha == sha && s.app == app) {
        return s.id;
    }
    let now = Utc::now();
    r.check_suites.push(CheckSuite {
        id,
        sha: sha.to_owned(),
        head_branch: branch.map(str::to_owned),
        app,
        created_at: now,
        updated_at: now,
    });
    id
}

/// Split `owner:branch` (or a bare branch) from a pull's `head` parameter.
fn head_branch<'h>(head: &'h str, owner: &str) -> Result<&'h str, Error> {
    match head.split_once(':') {
        Some((o, b)) if o == owner => Ok(b),
        Some(_) => Err(Error::validation(
            "PullRequest",
            Some("head"),
            "invalid",
            None,
        )),
        None => Ok(head),
    }
}

pub(crate) fn pull_view(inner: &Inner, owner: &str, repo: &str, number: u64) -> Option<PullView> {
    let st = inner.lock();
    let r = st.repo(owner, repo)?;
    let issue = r.issues.get(&number)?;
    let p = issue.pull.as_ref()?;
    Some(PullView {
        number,
        title: issue.title.clone(),
        body: issue.body.clone(),
        open: issue.open,
        merged: p.merged,
        head_ref: p.head_ref.clone(),
        base_ref: p.base_ref.clone(),
        head_sha: shapes(inner, &st).pull_head_sha(r, issue),
        labels: issue.labels.clone(),
        merge_commit_sha: p.merge_commit_sha.clone(),
        requested_reviewers: p.requested_reviewers.clone(),
        requested_teams: p.requested_teams.clone(),
    })
}

/// Delete a branch or tag through the API; delivers `push` (deleted) and closes pulls from it.
pub(crate) fn delete_ref(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    refname: &str,
) -> Result<(), Error> {
    repo_ref(&inner.lock(), owner, repo)?;
    let full = format!("refs/{refname}");
    let old = gitops::delete_ref(&inner.repo_path(owner, repo), &full)
        .ok_or_else(|| Error::new(422, "Reference does not exist"))?;
    on_push(
        inner,
        PushNotice {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            pusher: login.to_owned(),
            changes: vec![crate::git::RefChange {
                name: full,
                old: Some(old),
                new: None,
            }],
        },
    );
    Ok(())
}
