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

pub(crate) struct NewPull<'a> {
    pub title: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub body: Option<&'a str>,
    pub draft: bool,
}

pub(crate) fn create_pull(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    new: NewPull<'_>,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    repo_ref(&st, owner, repo)?;
    let path = inner.repo_path(owner, repo);
    let head = head_branch(new.head, owner)?;
    let head_sha = gitops::branch_sha(&path, head)
        .ok_or_else(|| Error::validation("PullRequest", Some("head"), "invalid", None))?;
    let base_sha = gitops::branch_sha(&path, new.base)
        .ok_or_else(|| Error::validation("PullRequest", Some("base"), "invalid", None))?;
    if gitops::is_ancestor(&path, &head_sha, &base_sha) {
        let msg = format!("No commits between {} and {head}", new.base);
        return Err(Error::validation("PullRequest", None, "custom", Some(&msg)));
    }
    let r = repo_ref(&st, owner, repo)?;
    if r.issues.values().any(|i| {
        i.open
            && i.pull
                .as_ref()
                .is_some_and(|p| p.head_ref == head && p.base_ref == new.base)
    }) {
        let msg = format!("A pull request already exists for {owner}:{head}.");
        return Err(Error::validation("PullRequest", None, "custom", Some(&msg)));
    }
    let (issue_id, pull_id) = (st.id(), st.id());
    let now = Utc::now();
    let r = st.repo_mut(owner, repo).expect("checked above");
    let number = r.next_number;
    r.next_number += 1;
    r.issues.insert(
        number,
        Issue {
            id: issue_id,
            number,
            title: new.title.to_owned(),
            body: new.body.map(str::to_owned),
            author: login.to_owned(),
            open: true,
            labels: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            reactions: Vec::new(),
            pull: Some(Pull {
                id: pull_id,
                head_ref: head.to_owned(),
                base_ref: new.base.to_owned(),
                head_sha,
                draft: new.draft,
                merged: false,
                merged_at: None,
                merged_by: None,
                merge_commit_sha: None,
                requested_reviewers: Vec::new(),
                requested_teams: Vec::new(),
                reviews: Vec::new(),
                mergeable_for: None,
            }),
        },
    );
    let r = repo_ref(&st, owner, repo)?;
    let head_sha = r.issues[&number]
        .pull
        .as_ref()
        .map(|p| p.head_sha.clone())
        .unwrap_or_default();
    gitops::set_pull_head(&path, number, &head_sha).map_err(git_err)?;
    let pr = shapes(inner, &st).pull(r, &r.issues[&number]);
    emit(
        inner,
        &st,
        "pull_request",
        r,
        login,
        json!({"action": "opened", "number": number, "pull_request": pr}),
    );
    Ok(pr)
}

pub(crate) struct PullUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    pub state: Option<String>,
    pub base: Option<String>,
}

pub(crate) fn update_pull(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    up: PullUpdate,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let path = inner.repo_path(owner, repo);
    if let Some(base) = &up.base
        && gitops::branch_sha(&path, base).is_none()
    {
        return Err(Error::validation(
            "PullRequest",
            Some("base"),
            "invalid",
            None,
        ));
    }
    let reopening = up.state.as_deref() == Some("open");
    if let Some(s) = up.state.as_deref()
        && s != "open"
        && s != "closed"
    {
        return Err(Error::validation(
            "PullRequest",
            Some("state"),
            "invalid",
            None,
        ));
    }
    {
        let r = repo_ref(&st, owner, repo)?;
        let issue = r
            .issues
            .get(&number)
            .filter(|i| i.pull.is_some())
            .ok_or_else(Error::not_found)?;
        let p = issue.pull.as_ref().expect("filtered");
        if reopening && !issue.open {
            if p.merged {
                return Err(Error::validation(
                    "PullRequest",
                    Some("state"),
                    "custom",
                    Some("Cannot reopen a merged pull request"),
                ));
            }
            if r.issues.values().any(|i| {
                i.open
                    && i.pull
                        .as_ref()
                        .is_some_and(|q| q.head_ref == p.head_ref && q.base_ref == p.base_ref)
            }) {
                let msg = format!("A pull request already exists for {owner}:{}.", p.head_ref);
                return Err(Error::validation("PullRequest", None, "custom", Some(&msg)));
            }
        }
    }
    let now = Utc::now();
    let issue = pull_mut(&mut st, owner, repo, number)?;
    let mut changes = serde_json::Map::new();
    let mut action = None;
    if let Some(t) = up.title.filter(|t| *t != issue.title) {
        changes.insert(
            "title".into(),
            json!({"from": std::mem::replace(&mut issue.title, t)}),
        );
    }
    if let Some(b) = up.body.filter(|b| Some(b) != issue.body.as_ref()) {
        changes.insert("body".into(), json!({"from": issue.body.replace(b)}));
    }
    if let Some(b) = up.base {
        let p = issue.pull.as_mut().expect("a pull");
        if b != p.base_ref {
            changes.insert("base".into(), json!({"ref": {"from": std::mem::replace(&mut p.base_ref, b)}, "sha": {"from": ""}}));
        }
    }
    match up.state.as_deref() {
        Some("closed") if issue.open => {
            issue.open = false;
            issue.closed_at = Some(now);
            action = Some("closed");
        }
        Some("open") if !issue.open => {
            issue.open = true;
            issue.closed_at = None;
            action = Some("reopened");
        }
        _ => {}
    }
    issue.updated_at = now;
    if !issue.open && action == Some("closed") {
        let head = gitops::branch_sha(&path, &issue.pull.as_ref().expect("a pull").head_ref);
        if let Some(h) = head {
            issue.pull.as_mut().expect("a pull").head_sha = h;
        }
    }
    let r = repo_ref(&st, owner, repo)?;
    let pr = shapes(inner, &st).pull(r, &r.issues[&number]);
    if !changes.is_empty() {
        emit(
            inner,
            &st,
            "pull_request",
            r,
            login,
            json!({"action": "edited", "number": number, "changes": changes, "pull_request": pr}),
        );
    }
    if let Some(action) = action {
        emit(
            inner,
            &st,
            "pull_request",
            r,
            login,
            json!({"action": action, "number": number, "pull_request": pr}),
        );
    }
    Ok(pr)
}

pub(crate) struct MergeRequest {
    pub sha: Option<String>,
    pub method: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
}

pub(crate) fn merge_pull(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    req: MergeRequest,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let path = inner.repo_path(owner, repo);
    let method = match req.method.as_deref().unwrap_or("merge") {
        "merge" => Method::Merge,
        "squash" => Method::Squash,
        "rebase" => {
            return Err(Error::new(
                405,
                "Rebase merges are not allowed on this repository.",
            ));
        }
        _ => {
            return Err(Error::validation(
                "PullRequest",
                Some("merge_method"),
                "invalid",
                None,
            ));
        }
    };
    let (title, head_ref, base_ref, head_sha) = {
        let r = repo_ref(&st, owner, repo)?;
        let issue = r
            .issues
            .get(&number)
            .filter(|i| i.pull.is_some())
            .ok_or_else(Error::not_found)?;
        let p = issue.pull.as_ref().expect("filtered");
        if !issue.open || p.merged {
            return Err(Error::new(405, "Pull Request is not mergeable"));
        }
        if p.draft {
            return Err(Error::new(405, "Pull Request is still a draft"));
        }
        let head_sha = shapes(inner, &st).pull_head_sha(r, issue);
        (
            issue.title.clone(),
            p.head_ref.clone(),
            p.base_ref.clone(),
            head_sha,
        )
    };
    if let Some(sha) = &req.sha
        && *sha != head_sha
    {
        return Err(Error::new(
            409,
            "Head branch was modified. Review and try the merge again.",
        ));
    }
    let base_sha = gitops::branch_sha(&path, &base_ref)
        .ok_or_else(|| Error::new(405, "Pull Request is not mergeable"))?;
    {
        let r = repo_ref(&st, owner, repo)?;
        let method = req.method.as_deref().unwrap_or("merge");
        if let Some(refused) = super::protect::refusal(
            &st,
            &path,
            r,
            &r.issues[&number],
            &head_sha,
            &base_sha,
            method,
        ) {
            return Err(refused);
        }
    }
    let (default_title, default_message) = match method {
        Method::Merge => (
            format!("Merge pull request #{number} from {owner}/{head_ref}"),
            title.clone(),
        ),
        Method::Squash => (format!("{title} (#{number})"), String::new()),
    };
    let commit_title = req.title.unwrap_or(default_title);
    let commit_message = req.message.unwrap_or(default_message);
    let message = if commit_message.is_empty() {
        format!("{commit_title}\n")
    } else {
        format!("{commit_title}\n\n{commit_message}\n")
    };
    let uid = st.user_id(login);
    let author = git2::Signature::now(login, &format!("{uid}+{login}@users.noreply.github.com"))
        .map_err(git_err)?;
    let committer = git2::Signature::now("GitHub", "noreply@github.com").map_err(git_err)?;
    let merged = gitops::merge(
        &path, &base_ref, &base_sha, &head_sha, method, &message, &author, &committer,
    )
    .map_err(|e| match e {
        gitops::MergeError::Conflict => Error::new(405, "Pull Request is not mergeable"),
        gitops::MergeError::BaseMoved => Error::new(
            405,
            "Base branch was modified. Review and try the merge again.",
        ),
        gitops::MergeError::Git(e) => git_err(e),
    })?;
    let now = Utc::now();
    let issue = pull_mut(&mut st, owner, repo, number)?;
    issue.open = false;
    issue.closed_at = Some(now);
    issue.updated_at = now;
    let p = issue.pull.as_mut().expect("a pull");
    p.merged = true;
    p.merged_at = Some(now);
    p.merged_by = Some(login.to_owned());
    p.merge_commit_sha = Some(merged.clone());
    p.head_sha = head_sha;
    let r = repo_ref(&st, owner, repo)?;
    let pr = shapes(inner, &st).pull(r, &r.issues[&number]);
    emit(
        inner,
        &st,
        "pull_request",
        r,
        login,
        json!({"action": "closed", "number": number, "pull_request": pr}),
    );
    drop(st);
    on_push(
        inner,
        PushNotice {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            pusher: login.to_owned(),
            changes: vec![crate::git::RefChange {
                name: format!("refs/heads/{base_ref}"),
                old: Some(base_sha),
                new: Some(merged.clone()),
            }],
        },
    );
    Ok(json!({"sha": merged, "merged": true, "message": "Pull Request successfully merged"}))
}

pub(crate) fn create_comment(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    body: &str,
) -> Result<(u64, Value), Error> {
    let mut st = inner.lock();
    let id = st.id();
    let now = Utc::now();
    let issue = issue_mut(&mut st, owner, repo, number)?;
    issue.updated_at = now;
    st.comments.insert(
        id,
        Comment {
            id,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            issue: number,
            author: login.to_owned(),
            body: body.to_owned(),
            created_at: now,
            updated_at: now,
            reactions: Vec::new(),
        },
    );
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let comment = sh.comment(&st.comments[&id]);
    let payload =
        json!({"action": "created", "issue": sh.issue(r, &r.issues[&number]), "comment": comment});
    emit(inner, &st, "issue_comment", r, login, payload);
    Ok((id, comment))
}

/// `control`: the control surface acts as the author; over REST only the author or a writer may edit.
pub(crate) fn update_comment(
    inner: &Inner,
    login: &str,
    id: u64,
    body: &str,
    control: bool,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let may_edit_any = st.permission(login) >= super::Permission::Write;
    let c = st.comments.get_mut(&id).ok_or_else(Error::not_found)?;
    if !control && c.author != login && !may_edit_any {
        return Err(Error::new(403, "Resource not accessible by integration"));
    }
    if control && c.author != login {
        return Err(Error::new(
            403,
            format!("{login} did not write comment {id}"),
        ));
    }
    let old = std::mem::replace(&mut c.body, body.to_owned());
    c.updated_at = Utc::now();
    let (owner, repo, number) = (c.owner.clone(), c.repo.clone(), c.issue);
    let r = repo_ref(&st, &owner, &repo)?;
    let sh = shapes(inner, &st);
    let comment = sh.comment(&st.comments[&id]);
    if old != body {
        let payload = json!({
            "action": "edited",
            "changes": {"body": {"from": old}},
            "issue": sh.issue(r, &r.issues[&number]),
            "comment": comment,
        });
        emit(inner, &st, "issue_comment", r, login, payload);
    }
    Ok(comment)
}

pub(crate) fn delete_comment(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    id: u64,
) -> Result<(), Error> {
    let mut st = inner.lock();
    let c = st
        .comments
        .get(&id)
        .filter(|c| c.owner == owner && c.repo == repo)
        .ok_or_else(Error::not_found)?;
    if c.author != login && st.permission(login) < super::Permission::Write {
        return Err(Error::new(403, "Resource not accessible by integration"));
    }
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let payload = json!({"action": "deleted", "issue": sh.issue(r, &r.issues[&c.issue]), "comment": sh.comment(c)});
    emit(inner, &st, "issue_comment", r, login, payload);
    st.comments.remove(&id);
    Ok(())
}

const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

pub(crate) enum ReactionTarget {
    Comment(u64),
    Issue(u64),
}

/// Returns the reaction and whether it is new (201) or already existed (200).
pub(crate) fn add_reaction(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    target: ReactionTarget,
    content: &str,
) -> Result<(Value, bool), Error> {
    if !REACTIONS.contains(&content) {
        return Err(Error::validation(
            "Reaction",
            Some("content"),
            "invalid",
            None,
        ));
    }
    let mut st = inner.lock();
    let id = st.id();
    let list = match target {
        ReactionTarget::Comment(cid) => {
            &mut st
                .comments
                .get_mut(&cid)
                .filter(|c| c.owner == owner && c.repo == repo)
                .ok_or_else(Error::not_found)?
                .reactions
        }
        ReactionTarget::Issue(n) => &mut issue_mut(&mut st, owner, repo, n)?.reactions,
    };
    if let Some(existing) = list
        .iter()
        .find(|r| r.user == login && r.content == content)
        .cloned()
    {
        return Ok((shapes(inner, &st).reaction(&existing), false));
    }
    let reaction = Reaction {
        id,
        user: login.to_owned(),
        content: content.to_owned(),
        created_at: Utc::now(),
    };
    list.push(reaction.clone());
    Ok((shapes(inner, &st).reaction(&reaction), true))
}

pub(crate) fn list_reactions(
    inner: &Inner,
    owner: &str,
    repo: &str,
    target: ReactionTarget,
    content: Option<&str>,
) -> Result<Vec<Value>, Error> {
    let st = inner.lock();
    let list = match target {
        ReactionTarget::Comment(cid) => {
            &st.comments
                .get(&cid)
                .filter(|c| c.owner == owner && c.repo == repo)
                .ok_or_else(Error::not_found)?
                .reactions
        }
        ReactionTarget::Issue(n) => {
            &repo_ref(&st, owner, repo)?
                .issues
                .get(&n)
                .ok_or_else(Error::not_found)?
                .reactions
        }
    };
    let sh = shapes(inner, &st);
    Ok(list
        .iter()
        .filter(|r| content.is_none_or(|c| r.content == c))
        .map(|r| sh.reaction(r))
        .collect())
}

pub(crate) fn ensure_label(st: &mut State, owner: &str, repo: &str, name: &str) {
    let id = st.id();
    let r = st.repo_mut(owner, repo).expect("caller checked the repo");
    if !r.labels.iter().any(|l| l.name == name) {
        r.labels.push(LabelDef {
            id,
            name: name.to_owned(),
            color: "ededed".to_owned(),
            description: None,
        });
    }
}

pub(crate) fn create_label(
    inner: &Inner,
    owner: &str,
    repo: &str,
    name: &str,
    color: Option<&str>,
    description: Option<&str>,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let id = st.id();
    let r = st.repo_mut(owner, repo).ok_or_else(Error::not_found)?;
    if r.labels.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
        return Err(Error::validation(
            "Label",
            Some("name"),
            "already_exists",
            None,
        ));
    }
    let label = LabelDef {
        id,
        name: name.to_owned(),
        color: color.unwrap_or("ededed").trim_start_matches('#').to_owned(),
        description: description.map(str::to_owned),
    };
    r.labels.push(label.clone());
    let r = repo_ref(&st, owner, repo)?;
    Ok(shapes(inner, &st).label(r, &label))
}

/// Set an issue's labels to `labels` (`replace`) or add them; delivers `labeled`/`unlabeled`
/// for pulls. Returns the issue's labels afterwards.
pub(crate) fn set_labels(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    labels: &[String],
    replace: bool,
) -> Result<Vec<Value>, Error> {
    let mut st = inner.lock();
    issue_mut(&mut st, owner, repo, number)?;
    for l in labels {
        ensure_label(&mut st, owner, repo, l);
    }
    let issue = issue_mut(&mut st, owner, repo, number)?;
    let before = issue.labels.clone();
    if replace {
        issue.labels.clear();
    }
    for l in labels {
        if !issue.labels.contains(l) {
            issue.labels.push(l.clone());
        }
    }
    issue.updated_at = Utc::now();
    let after = issue.labels.clone();
    label_events(inner, &st, login, owner, repo, number, &before, &after)
}

pub(crate) fn remove_label(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    name: &str,
) -> Result<Vec<Value>, Error> {
    let mut st = inner.lock();
    let issue = issue_mut(&mut st, owner, repo, number)?;
    let before = issue.labels.clone();
    let Some(pos) = issue.labels.iter().position(|l| l == name) else {
        return Err(Error::new(404, "Label does not exist"));
    };
    issue.labels.remove(pos);
    issue.updated_at = Utc::now();
    let after = issue.labels.clone();
    label_events(inner, &st, login, owner, repo, number, &before, &after)
}

#[allow(clippy::too_many_arguments)]
fn label_events(
    inner: &Inner,
    st: &State,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    before: &[String],
    after: &[String],
) -> Result<Vec<Value>, Error> {
    let r = repo_ref(st, owner, repo)?;
    let issue = &r.issues[&number];
    let sh = shapes(inner, st);
    if issue.pull.is_some() && !st.hooks.is_empty() {
        let pr = sh.pull(r, issue);
        let label = |n: &String| {
            r.labels
                .iter()
                .find(|l| &l.name == n)
                .map(|l| sh.label(r, l))
        };
        for added in after.iter().filter(|l| !before.contains(l)) {
            emit(
                inner,
                st,
                "pull_request",
                r,
                login,
                json!({"action": "labeled", "number": number, "label": label(added), "pull_request": pr}),
            );
        }
        for removed in before.iter().filter(|l| !after.contains(l)) {
            emit(
                inner,
                st,
                "pull_request",
                r,
                login,
                json!({"action": "unlabeled", "number": number, "label": label(removed), "pull_request": pr}),
            );
        }
    }
    Ok(sh.issue_labels(r, issue))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn request_reviewers(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    users: &[String],
    teams: &[String],
    remove: bool,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let not_collaborator = || {
        Error::validation(
            "PullRequest",
            None,
            "custom",
            Some(&format!(
                "Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the {owner}/{repo} repository."
            )),
        )
    };
    if !remove {
        for u in users {
            if st.permission(u) < super::Permission::Read {
                return Err(not_collaborator());
            }
        }
        for t in teams {
            if !st.teams.contains_key(&(owner.to_owned(), t.clone())) {
                return Err(not_collaborator());
            }
        }
    }
    let issue = pull_mut(&mut st, owner, repo, number)?;
    if !remove && users.contains(&issue.author) {
        return Err(Error::validation(
            "PullRequest",
            None,
            "custom",
            Some("Review cannot be requested from pull request author."),
        ));
    }
    let p = issue.pull.as_mut().expect("a pull");
    let (mut users_changed, mut teams_changed) = (Vec::new(), Vec::new());
    for u in users {
        let present = p.requested_reviewers.contains(u);
        if remove && present {
            p.requested_reviewers.retain(|x| x != u);
            users_changed.push(u.clone());
        } else if !remove && !present {
            p.requested_reviewers.push(u.clone());
            users_changed.push(u.clone());
        }
    }
    for t in teams {
        let present = p.requested_teams.contains(t);
        if remove && present {
            p.requested_teams.retain(|x| x != t);
            teams_changed.push(t.clone());
        } else if !remove && !present {
            p.requested_teams.push(t.clone());
            teams_changed.push(t.clone());
        }
    }
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let pr = sh.pull(r, &r.issues[&number]);
    let action = if remove {
        "review_request_removed"
    } else {
        "review_requested"
    };
    for u in users_changed {
        emit(
            inner,
            &st,
            "pull_request",
            r,
            login,
            json!({"action": action, "number": number, "requested_reviewer": sh.user(&u), "pull_request": pr}),
        );
    }
    for t in teams_changed {
        if let Some(team) = st.teams.get(&(owner.to_owned(), t)) {
            emit(
                inner,
                &st,
                "pull_request",
                r,
                login,
                json!({"action": action, "number": number, "requested_team": sh.team(team), "pull_request": pr}),
            );
        }
    }
    Ok(pr)
}

pub(crate) fn requested_reviewers(
    inner: &Inner,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<Value, Error> {
    let st = inner.lock();
    let r = repo_ref(&st, owner, repo)?;
    let p = r
        .issues
        .get(&number)
        .and_then(|i| i.pull.as_ref())
        .ok_or_else(Error::not_found)?;
    let sh = shapes(inner, &st);
    Ok(json!({
        "users": p.requested_reviewers.iter().map(|u| sh.user(u)).collect::<Vec<_>>(),
        "teams": p.requested_teams.iter().filter_map(|t| st.teams.get(&(owner.to_owned(), t.clone()))).map(|t| sh.team(t)).collect::<Vec<_>>(),
    }))
}

pub(crate) fn submit_review(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    state: ReviewState,
    body: &str,
) -> Result<(u64, Value), Error> {
    let mut st = inner.lock();
    let id = st.id();
    let commit_id = {
        let r = repo_ref(&st, owner, repo)?;
        let issue = r
            .issues
            .get(&number)
            .filter(|i| i.pull.is_some())
            .ok_or_else(Error::not_found)?;
        shapes(inner, &st).pull_head_sha(r, issue)
    };
    let issue = pull_mut(&mut st, owner, repo, number)?;
    if issue.author == login {
        match state {
            ReviewState::Approved => {
                return Err(Error::new(422, "Can not approve your own pull request"));
            }
            ReviewState::ChangesRequested => {
                return Err(Error::new(
                    422,
                    "Can not request changes on your own pull request",
                ));
            }
            ReviewState::Commented => {}
        }
    }
    if state != ReviewState::Approved && body.is_empty() {
        return Err(Error::validation(
            "PullRequestReview",
            Some("body"),
            "missing_field",
            None,
        ));
    }
    let p = issue.pull.as_mut().expect("a pull");
    p.requested_reviewers.retain(|u| u != login);
    let review = Review {
        id,
        user: login.to_owned(),
        state,
        body: body.to_owned(),
        commit_id,
        submitted_at: Utc::now(),
    };
    p.reviews.push(review.clone());
    let r = repo_ref(&st, owner, repo)?;
    let issue = &r.issues[&number];
    let sh = shapes(inner, &st);
    let rv = sh.review(r, issue, &review);
    let mut hook_review = rv.clone();
    // Webhook payloads spell review states in lower case.
    hook_review["state"] = json!(state.as_str().to_ascii_lowercase());
    emit(
        inner,
        &st,
        "pull_request_review",
        r,
        login,
        json!({"action": "submitted", "review": hook_review, "pull_request": sh.pull(r, issue)}),
    );
    Ok((id, rv))
}

pub(crate) fn list_reviews(
    inner: &Inner,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<Vec<Value>, Error> {
    let st = inner.lock();
    let r = repo_ref(&st, owner, repo)?;
    let issue = r
        .issues
        .get(&number)
        .filter(|i| i.pull.is_some())
        .ok_or_else(Error::not_found)?;
    let sh = shapes(inner, &st);
    Ok(issue
        .pull
        .as_ref()
        .expect("filtered")
        .reviews
        .iter()
        .map(|rv| sh.review(r, issue, rv))
        .collect())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn create_status(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    sha: &str,
    state: &str,
    context: &str,
    description: Option<&str>,
    target_url: Option<&str>,
) -> Result<(u64, Value), Error> {
    if !matches!(state, "error" | "failure" | "pending" | "success") {
        return Err(Error::validation(
            "Status",
            Some("state"),
            "custom",
            Some("state is not included in the list"),
        ));
    }
    let path = inner.repo_path(owner, repo);
    let mut st = inner.lock();
    repo_ref(&st, owner, repo)?;
    if !gitops::commit_exists(&path, sha) {
        return Err(Error::new(422, format!("No commit found for SHA: {sha}")));
    }
    let id = st.id();
    let rec = StatusRec {
        id,
        sha: sha.to_owned(),
        state: state.to_owned(),
        context: context.to_owned(),
        description: description.map(str::to_owned),
        target_url: target_url.map(str::to_owned),
        creator: login.to_owned(),
        created_at: Utc::now(),
    };
    st.repo_mut(owner, repo)
        .expect("checked above")
        .statuses
        .push(rec.clone());
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let status = sh.status(r, &rec);
    let branches: Vec<Value> = crate::git::read_refs(&path)
        .into_iter()
        .filter(|(name, target)| name.starts_with("refs/heads/") && target == sha)
        .map(|(name, _)| json!({"name": name.trim_start_matches("refs/heads/"), "commit": {"sha": sha, "url": format!("{}/repos/{owner}/{repo}/commits/{sha}", inner.base())}, "protected": false}))
        .collect();
    let payload = json!({
        "id": id,
        "sha": sha,
        "name": format!("{owner}/{repo}"),
        "target_url": target_url,
        "avatar_url": null,
        "context": context,
        "description": description,
        "state": state,
        "commit": {"sha": sha, "url": format!("{}/repos/{owner}/{repo}/commits/{sha}", inner.base())},
        "branches": branches,
        "created_at": ts(rec.created_at),
        "updated_at": ts(rec.created_at),
    });
    emit(inner, &st, "status", r, login, payload);
    drop(st);
    super::queue::advance(inner, owner, repo);
    Ok((id, status))
}

/// Fields of a check-run create or update request.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CheckRunFields {
    pub name: Option<String>,
    pub head_sha: Option<String>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub started_at: Option<chrono::DateTime<Utc>>,
    pub completed_at: Option<chrono::DateTime<Utc>>,
    pub output: Option<CheckOutput>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CheckOutput {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

const CONCLUSIONS: [&str; 8] = [
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];

fn validate_check(f: &CheckRunFields) -> Result<(), Error> {
    if let Some(s) = &f.status
        && !matches!(
            s.as_str(),
            "queued" | "in_progress" | "completed" | "waiting" | "requested" | "pending"
        )
    {
        return Err(Error::validation(
            "CheckRun",
            Some("status"),
            "invalid",
            None,
        ));
    }
    if let Some(c) = &f.conclusion
        && !CONCLUSIONS.contains(&c.as_str())
    {
        return Err(Error::validation(
            "CheckRun",
            Some("conclusion"),
            "invalid",
            None,
        ));
    }
    if (f.status.as_deref() == Some("completed") || f.completed_at.is_some())
        && f.conclusion.is_none()
    {
        return Err(Error::validation(
            "CheckRun",
            Some("conclusion"),
            "missing_field",
            None,
        ));
    }
    Ok(())
}

/// Create (`id == None`) or update a check run as `app`; delivers `check_run` and, when the
/// suite completes, `check_suite` `completed`.
pub(crate) fn upsert_check_run(
    inner: &Inner,
    sender: &str,
    owner: &str,
    repo: &str,
    id: Option<u64>,
    app: AppRef,
    f: CheckRunFields,
) -> Result<(u64, Value), Error> {
    validate_check(&f)?;
    let path = inner.repo_path(owner, repo);
    let mut st = inner.lock();
    repo_ref(&st, owner, repo)?;
    let now = Utc::now();
    let (run_id, created, was_completed) = match id {
        None => {
            let name = f.name.clone().ok_or_else(|| {
                Error::validation("CheckRun", Some("name"), "missing_field", None)
            })?;
            let sha = f.head_sha.clone().ok_or_else(|| {
                Error::validation("CheckRun", Some("head_sha"), "missing_field", None)
            })?;
            if !gitops::commit_exists(&path, &sha) {
                return Err(Error::validation(
                    "CheckRun",
                    Some("head_sha"),
                    "invalid",
                    Some("No commit found for SHA"),
                ));
            }
            let suite_id = ensure_suite(&mut st, owner, repo, &sha, None, app);
            let run_id = st.id();
            st.repo_mut(owner, repo)
                .expect("checked")
                .check_runs
                .push(CheckRun {
                    id: run_id,
                    sha,
                    name,
                    status: "queued".into(),
                    conclusion: None,
                    details_url: None,
                    external_id: None,
                    started_at: Some(now),
                    completed_at: None,
                    title: None,
                    summary: None,
                    text: None,
                    app,
                    suite_id,
                });
            (run_id, true, false)
        }
        Some(id) => {
            let r = st.repo(owner, repo).expect("checked");
            let run = r
                .check_runs
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(Error::not_found)?;
            if run.app != app {
                return Err(Error::new(
                    403,
                    "Invalid app_id `4242` - check run can only be modified by the GitHub App that created it.",
                ));
            }
            (id, false, run.status == "completed")
        }
    };
    let r = st.repo_mut(owner, repo).expect("checked");
    let run = r
        .check_runs
        .iter_mut()
        .find(|c| c.id == run_id)
        .expect("just found or made");
    if let Some(n) = f.name {
        run.name = n;
    }
    if let Some(s) = f.status {
        run.status = s;
    }
    if let Some(c) = f.conclusion {
        run.conclusion = Some(c);
        run.status = "completed".into();
    }
    if f.details_url.is_some() {
        run.details_url = f.details_url;
    }
    if f.external_id.is_some() {
        run.external_id = f.external_id;
    }
    if let Some(t) = f.started_at {
        run.started_at = Some(t);
    }
    if run.status == "completed" {
        run.completed_at = Some(f.completed_at.or(run.completed_at).unwrap_or(now));
    }
    if let Some(o) = f.output {
        run.title = o.title.or(run.title.take());
        run.summary = o.summary.or(run.summary.take());
        run.text = o.text.or(run.text.take());
    }
    let completed_now = run.status == "completed" && !was_completed;
    let suite_id = run.suite_id;
    if let Some(s) = r.check_suites.iter_mut().find(|s| s.id == suite_id) {
        s.updated_at = now;
    }
    let suite_done = r
        .check_runs
        .iter()
        .filter(|c| c.suite_id == suite_id)
        .all(|c| c.status == "completed");
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let run = r
        .check_runs
        .iter()
        .find(|c| c.id == run_id)
        .expect("exists");
    let json = sh.check_run(r, run);
    if created {
        emit(
            inner,
            &st,
            "check_run",
            r,
            sender,
            json!({"action": "created", "check_run": json}),
        );
    }
    if completed_now {
        emit(
            inner,
            &st,
            "check_run",
            r,
            sender,
            json!({"action": "completed", "check_run": json}),
        );
        if suite_done {
            emit(
                inner,
                &st,
                "check_suite",
                r,
                sender,
                json!({"action": "completed", "check_suite": sh.check_suite(r, suite_id)}),
            );
        }
    }
    drop(st);
    super::queue::advance(inner, owner, repo);
    Ok((run_id, json))
}

pub(crate) fn set_ci_check(
    inner: &Inner,
    owner: &str,
    repo: &str,
    sha: &str,
    name: &str,
    conclusion: Option<&str>,
) -> Result<u64, Error> {
    let existing = {
        let st = inner.lock();
        let r = repo_ref(&st, owner, repo)?;
        r.check_runs
            .iter()
            .rev()
            .find(|c| c.app == AppRef::Ci && c.sha == sha && c.name == name)
            .map(|c| c.id)
    };
    let fields = CheckRunFields {
        name: Some(name.to_owned()),
        head_sha: Some(sha.to_owned()),
        status: Some(
            if conclusion.is_some() {
                "completed"
            } else {
                "in_progress"
            }
            .to_owned(),
        ),
        conclusion: conclusion.map(str::to_owned),
        ..Default::default()
    };
    let sender = "github-actions[bot]";
    upsert_check_run(inner, sender, owner, repo, existing, AppRef::Ci, fields).map(|(id, _)| id)
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
