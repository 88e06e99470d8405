//! Pull requests: open, edit, merge.

use super::*;

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
        if let Some(refused) = crate::forge::protect::refusal(
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
