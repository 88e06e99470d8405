//! GitHub's merge queue on a base branch whose rules require one (`Protection::merge_queue`).
//!
//! `enqueuePullRequest` (GraphQL) checks the pull as GitHub does before queueing it (open, not a
//! draft, the expected head, required reviews, required checks and signatures on its head),
//! then builds a *merge group*: the pull landed on the base tip with the queue's merge method
//! (`Protection::queue_merge_method`: merge, squash or rebase), at
//! `refs/heads/gh-readonly-queue/<base>/pr-<n>-<head sha>`, and emits `merge_group`
//! (`checks_requested`). Once every required check passed on the group's head, the base branch is
//! fast-forwarded to it and the pull is merged (`pull_request` `closed`, `push`); a failing
//! required check takes the pull out of the queue (`merge_group` `destroyed`, reason
//! `dequeued`), and a base that moved meanwhile gets a fresh group (`invalidated`, then
//! `checks_requested` again). Entries are merged one at a time, first queued first.
//!
//! The commit messages are those of a repository whose default commit messages are "pull
//! request title and description": merge → `Merge pull request #N from owner/branch` and the
//! pull's body; squash → `Title (#N)` and the body; rebase keeps each commit's own message.

use chrono::Utc;
use serde_json::{Value, json};

use super::json::{latest_check_runs, latest_statuses, ts};
use super::ops::{emit, on_push, shapes};
use super::state::{Issue, Repo, State};
use super::{Error, Inner, Permission, gitops, protect};
use crate::git::PushNotice;

/// A pull waiting in a base branch's merge queue.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub id: u64,
    pub number: u64,
    /// The pull's head when it was queued.
    pub head_sha: String,
    pub base_ref: String,
    /// The base tip the group was built on.
    pub base_sha: String,
    pub group_sha: String,
    /// `gh-readonly-queue/<base>/pr-<n>-<head sha>` (without `refs/heads/`).
    pub group_ref: String,
    pub enqueued_by: String,
    pub enqueued_at: chrono::DateTime<Utc>,
}

/// A GraphQL error as GitHub returns it (`200` with `errors`).
pub(crate) struct GraphError {
    pub kind: &'static str,
    pub message: String,
}

impl GraphError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

fn method_of(rules: &protect::Protection) -> gitops::QueueMethod {
    match rules.queue_merge_method.to_ascii_lowercase().as_str() {
        "squash" => gitops::QueueMethod::Squash,
        "rebase" => gitops::QueueMethod::Rebase,
        _ => gitops::QueueMethod::Merge,
    }
}

/// `enqueuePullRequest(input: {pullRequestId, expectedHeadOid})`: the queue entry as GitHub's
/// `MergeQueueEntry` (`id`, `position`, `state`). Queueing a pull that is already queued at
/// that head answers its entry.
pub(crate) fn enqueue(
    inner: &Inner,
    login: &str,
    node_id: &str,
    expected_head: Option<&str>,
) -> Result<Value, GraphError> {
    let unresolved = || {
        GraphError::new(
            "NOT_FOUND",
            format!("Could not resolve to a node with the global id of '{node_id}'."),
        )
    };
    let pull_id: u64 = node_id
        .strip_prefix("PR_sim")
        .and_then(|n| n.parse().ok())
        .ok_or_else(unresolved)?;
    let mut st = inner.lock();
    let (owner, repo, number) = st
        .repos
        .values()
        .find_map(|r| {
            r.issues
                .values()
                .find(|i| i.pull.as_ref().is_some_and(|p| p.id == pull_id))
                .map(|i| (r.owner.clone(), r.name.clone(), i.number))
        })
        .ok_or_else(unresolved)?;
    if st.permission(login) < Permission::Write {
        return Err(GraphError::new(
            "FORBIDDEN",
            format!("{login} does not have permission to enqueue pull requests."),
        ));
    }
    let path = inner.repo_path(&owner, &repo);
    let r = st.repo(&owner, &repo).expect("found above");
    let issue = &r.issues[&number];
    let p = issue.pull.as_ref().expect("a pull");
    let head = shapes(inner, &st).pull_head_sha(r, issue);
    if let Some(e) = r.queue.iter().find(|e| e.number == number)
        && e.head_sha == head
    {
        return Ok(entry_json(r, e));
    }
    let rules = r
        .protection
        .get(&p.base_ref)
        .filter(|p| p.merge_queue)
        .cloned()
        .ok_or_else(|| {
            GraphError::new(
                "UNPROCESSABLE",
                "Merge queue is not enabled for the base branch of this pull request.",
            )
        })?;
    if !issue.open || p.merged {
        return Err(GraphError::new(
            "UNPROCESSABLE",
            "Pull request is not open.",
        ));
    }
    if p.draft {
        return Err(GraphError::new(
            "UNPROCESSABLE",
            "Pull request is still a draft.",
        ));
    }
    if let Some(want) = expected_head
        && want != head
    {
        return Err(GraphError::new(
            "UNPROCESSABLE",
            "Head ref has been modified since the expected head OID was computed.",
        ));
    }
    let base_ref = p.base_ref.clone();
    let base_sha = gitops::branch_sha(&path, &base_ref)
        .ok_or_else(|| GraphError::new("UNPROCESSABLE", "Base branch does not exist."))?;
    if let Some(refused) = protect::refusal(&st, &path, r, issue, &head, &base_sha, "queue") {
        return Err(GraphError::new(
            "UNPROCESSABLE",
            first_reason(&refused.message),
        ));
    }
    let (group_sha, group_ref) = build(inner, &st, r, issue, &rules, &head, &base_sha)
        .map_err(|e| GraphError::new("UNPROCESSABLE", e.message))?;
    let id = st.id();
    let entry = Entry {
        id,
        number,
        head_sha: head,
        base_ref,
        base_sha,
        group_sha,
        group_ref,
        enqueued_by: login.to_owned(),
        enqueued_at: Utc::now(),
    };
    let r = st.repo_mut(&owner, &repo).expect("found above");
    r.queue.retain(|e| e.number != number);
    r.queue.push(entry.clone());
    let r = st.repo(&owner, &repo).expect("found above");
    let answer = entry_json(r, &entry);
    emit_group(inner, &st, r, &entry, "checks_requested", None);
    drop(st);
    advance(inner, &owner, &repo);
    Ok(answer)
}

/// The refusal's reason without a ruleset's "Repository rule violations found" preamble.
fn first_reason(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(message)
        .to_owned()
}

fn entry_json(r: &Repo, e: &Entry) -> Value {
    let position = r.queue.iter().position(|x| x.id == e.id).unwrap_or(0) + 1;
    json!({
        "id": format!("MQE_sim{}", e.id),
        "position": position,
        "state": if position == 1 { "AWAITING_CHECKS" } else { "QUEUED" },
        "enqueuedAt": ts(e.enqueued_at),
        "headCommit": {"oid": e.group_sha},
    })
}

/// Land `issue` at `head` on `base_sha` as a group and point its queue ref at it.
fn build(
    inner: &Inner,
    st: &State,
    r: &Repo,
    issue: &Issue,
    rules: &protect::Protection,
    head: &str,
    base_sha: &str,
) -> Result<(String, String), Error> {
    let path = inner.repo_path(&r.owner, &r.name);
    let p = issue.pull.as_ref().expect("a pull");
    let method = method_of(rules);
    let body = issue.body.as_deref().unwrap_or("").trim_end();
    let title = match method {
        gitops::QueueMethod::Merge => format!(
            "Merge pull request #{} from {}/{}",
            issue.number, r.owner, p.head_ref
        ),
        _ => format!("{} (#{})", issue.title, issue.number),
    };
    let message = if body.is_empty() {
        format!("{title}\n")
    } else {
        format!("{title}\n\n{body}\n")
    };
    let sig = |name: &str, email: &str| {
        git2::Signature::now(name, email).map_err(|e| Error::new(500, e.to_string()))
    };
    let uid = st.user_id(&issue.author);
    let author = sig(
        &issue.author,
        &format!("{uid}+{}@users.noreply.github.com", issue.author),
    )?;
    let committer = sig("GitHub", "noreply@github.com")?;
    let group = gitops::build_group(&path, base_sha, head, method, &message, &author, &committer)
        .map_err(|e| match e {
        gitops::MergeError::Conflict => Error::new(422, "Pull request has merge conflicts."),
        other => Error::new(500, other.to_string()),
    })?;
    let group_ref = format!(
        "gh-readonly-queue/{}/pr-{}-{head}",
        p.base_ref, issue.number
    );
    gitops::set_ref(
        &path,
        &format!("refs/heads/{group_ref}"),
        &group,
        "merge queue",
    )
    .map_err(|e| Error::new(500, e.to_string()))?;
    Ok((group, group_ref))
}

fn emit_group(inner: &Inner, st: &State, r: &Repo, e: &Entry, action: &str, reason: Option<&str>) {
    let path = inner.repo_path(&r.owner, &r.name);
    let message = gitops::open(&path)
        .ok()
        .and_then(|repo| {
            let c = repo
                .find_commit(git2::Oid::from_str(&e.group_sha).ok()?)
                .ok()?;
            Some(String::from_utf8_lossy(c.message_bytes()).into_owned())
        })
        .unwrap_or_default();
    let mut payload = json!({
        "action": action,
        "merge_group": {
            "head_sha": e.group_sha,
            "head_ref": format!("refs/heads/{}", e.group_ref),
            "base_sha": e.base_sha,
            "base_ref": format!("refs/heads/{}", e.base_ref),
            "head_commit": {
                "id": e.group_sha,
                "tree_id": e.group_sha,
                "message": message,
                "timestamp": ts(Utc::now()),
                "author": {"name": "GitHub", "email": "noreply@github.com"},
                "committer": {"name": "GitHub", "email": "noreply@github.com"},
            },
        },
    });
    if let Some(reason) = reason {
        payload["reason"] = json!(reason);
    }
    emit(
        inner,
        st,
        "merge_group",
        r,
        "github-merge-queue[bot]",
        payload,
    );
}

/// What the required checks say on a group's head.
enum Verdict {
    Pass,
    Fail,
    Pending,
}

fn verdict(r: &Repo, rules: &protect::Protection, sha: &str) -> Verdict {
    let mut pending = false;
    for context in &rules.required_status_checks {
        let status = latest_statuses(r, sha)
            .into_iter()
            .find(|s| &s.context == context)
            .map(|s| s.state.clone());
        let run = latest_check_runs(r, sha)
            .into_iter()
            .find(|c| &c.name == context)
            .map(|c| match (&*c.status, c.conclusion.as_deref()) {
                ("completed", Some("success" | "neutral" | "skipped")) => "success".to_owned(),
                ("completed", _) => "failure".to_owned(),
                _ => "pending".to_owned(),
            });
        match status.or(run).as_deref() {
            Some("success") => {}
            Some("pending") | None => pending = true,
            Some(_) => return Verdict::Fail,
        }
    }
    if pending {
        Verdict::Pending
    } else {
        Verdict::Pass
    }
}

/// Move the queue of every base branch in `owner/repo` as far as its checks allow: merge
/// groups whose required checks passed (in queue order), drop those whose checks failed,
/// rebuild groups whose base moved. Called after every status and check run and after
/// queueing.
pub(crate) fn advance(inner: &Inner, owner: &str, repo: &str) {
    let path = inner.repo_path(owner, repo);
    // Bounded: each round merges, drops or rebuilds the front entry, or stops.
    for _ in 0..64 {
        let mut st = inner.lock();
        let Some(r) = st.repo(owner, repo) else {
            return;
        };
        let Some(front) = r.queue.first().cloned() else {
            return;
        };
        let Some(rules) = r.protection.get(&front.base_ref).cloned() else {
            return;
        };
        let tip = gitops::branch_sha(&path, &front.base_ref).unwrap_or_default();
        let issue_open = r
            .issues
            .get(&front.number)
            .is_some_and(|i| i.open && i.pull.as_ref().is_some_and(|p| !p.merged));
        if !issue_open {
            drop_front(inner, &mut st, owner, repo, &path, "dequeued");
            continue;
        }
        if tip != front.base_sha {
            // The base moved under the group: build it again on the new tip.
            let r = st.repo(owner, repo).expect("checked");
            emit_group(inner, &st, r, &front, "destroyed", Some("invalidated"));
            let issue = &r.issues[&front.number];
            match build(inner, &st, r, issue, &rules, &front.head_sha, &tip) {
                Ok((group_sha, group_ref)) => {
                    let r = st.repo_mut(owner, repo).expect("checked");
                    let e = &mut r.queue[0];
                    e.base_sha = tip;
                    e.group_sha = group_sha;
                    e.group_ref = group_ref;
                    let e = e.clone();
                    let r = st.repo(owner, repo).expect("checked");
                    emit_group(inner, &st, r, &e, "checks_requested", None);
                    continue;
                }
                Err(_) => {
                    drop_front(inner, &mut st, owner, repo, &path, "dequeued");
                    continue;
                }
            }
        }
        let r = st.repo(owner, repo).expect("checked");
        match verdict(r, &rules, &front.group_sha) {
            Verdict::Pending => return,
            Verdict::Fail => {
                drop_front(inner, &mut st, owner, repo, &path, "dequeued");
                continue;
            }
            Verdict::Pass => {}
        }
        match gitops::fast_forward(&path, &front.base_ref, &front.base_sha, &front.group_sha) {
            Ok(()) => {}
            Err(gitops::MergeError::BaseMoved) => continue,
            Err(_) => {
                drop_front(inner, &mut st, owner, repo, &path, "dequeued");
                continue;
            }
        }
        let now = Utc::now();
        let r = st.repo_mut(owner, repo).expect("checked");
        r.queue.remove(0);
        let issue = r.issues.get_mut(&front.number).expect("checked");
        issue.open = false;
        issue.closed_at = Some(now);
        issue.updated_at = now;
        let p = issue.pull.as_mut().expect("a pull");
        p.merged = true;
        p.merged_at = Some(now);
        p.merged_by = Some(front.enqueued_by.clone());
        p.merge_commit_sha = Some(front.group_sha.clone());
        p.head_sha = front.head_sha.clone();
        let _ = gitops::delete_ref(&path, &format!("refs/heads/{}", front.group_ref));
        let r = st.repo(owner, repo).expect("checked");
        let pr = shapes(inner, &st).pull(r, &r.issues[&front.number]);
        emit_group(inner, &st, r, &front, "destroyed", Some("merged"));
        emit(
            inner,
            &st,
            "pull_request",
            r,
            &front.enqueued_by,
            json!({"action": "closed", "number": front.number, "pull_request": pr}),
        );
        drop(st);
        on_push(
            inner,
            PushNotice {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                pusher: "github-merge-queue[bot]".to_owned(),
                changes: vec![crate::git::RefChange {
                    name: format!("refs/heads/{}", front.base_ref),
                    old: Some(front.base_sha.clone()),
                    new: Some(front.group_sha.clone()),
                }],
            },
        );
    }
}

fn drop_front(
    inner: &Inner,
    st: &mut State,
    owner: &str,
    repo: &str,
    path: &std::path::Path,
    reason: &str,
) {
    let r = st.repo_mut(owner, repo).expect("checked");
    let e = r.queue.remove(0);
    let _ = gitops::delete_ref(path, &format!("refs/heads/{}", e.group_ref));
    let r = st.repo(owner, repo).expect("checked");
    emit_group(inner, st, r, &e, "destroyed", Some(reason));
}
