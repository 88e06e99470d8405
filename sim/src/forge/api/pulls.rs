//! Pull requests: list, open, read, edit, merge, reviews and requested reviewers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Me, Q, R, S, body, missing, ok, paged, repo_route};
use crate::forge::mw::no_content;
use crate::forge::ops::{self, shapes};
use crate::forge::state::ReviewState;
use crate::forge::{Error, Inner};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(&repo_route("/pulls"), get(list_pulls).post(create_pull))
        .route(
            &repo_route("/pulls/{pull_number}"),
            get(get_pull).patch(update_pull).post(update_pull),
        )
        .route(
            &repo_route("/pulls/{pull_number}/merge"),
            get(is_merged).put(merge_pull),
        )
        .route(
            &repo_route("/pulls/{pull_number}/reviews"),
            get(list_reviews).post(create_review),
        )
        .route(
            &repo_route("/pulls/{pull_number}/requested_reviewers"),
            get(get_requested)
                .post(add_requested)
                .delete(remove_requested),
        )
}

async fn list_pulls(
    State(inner): S,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let state = q.get("state").map(String::as_str).unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Err(Error::validation(
            "PullRequest",
            Some("state"),
            "invalid",
            None,
        ));
    }
    // GitHub ignores a `head` filter without the `owner:` prefix.
    let head = q.get("head").and_then(|h| h.split_once(':'));
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        let mut pulls: Vec<_> = r
            .issues
            .values()
            .filter(|i| {
                let Some(p) = &i.pull else { return false };
                let state_ok = match state {
                    "open" => i.open,
                    "closed" => !i.open,
                    _ => true,
                };
                let head_ok = head.is_none_or(|(o, b)| o == owner && p.head_ref == b);
                let base_ok = q.get("base").is_none_or(|b| &p.base_ref == b);
                state_ok && head_ok && base_ok
            })
            .collect();
        let asc = q.get("direction").map(String::as_str) == Some("asc");
        match q.get("sort").map(String::as_str).unwrap_or("created") {
            "updated" => pulls.sort_by_key(|i| (i.updated_at, i.number)),
            _ => pulls.sort_by_key(|i| i.number),
        }
        // GitHub's default direction is descending (newest first).
        if !asc {
            pulls.reverse();
        }
        pulls.into_iter().map(|i| sh.pull(r, i)).collect()
    };
    paged(&inner, &uri, &q, &items)
}

#[derive(Deserialize)]
struct CreatePull {
    title: Option<String>,
    head: Option<String>,
    base: Option<String>,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
}

async fn create_pull(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    let req: CreatePull = body(&b)?;
    let title = req.title.ok_or_else(|| missing("PullRequest", "title"))?;
    let head = req.head.ok_or_else(|| missing("PullRequest", "head"))?;
    let base = req.base.ok_or_else(|| missing("PullRequest", "base"))?;
    let pr = ops::create_pull(
        &inner,
        &me.login,
        &owner,
        &repo,
        ops::NewPull {
            title: &title,
            head: &head,
            base: &base,
            body: req.body.as_deref(),
            draft: req.draft,
        },
    )?;
    ok(StatusCode::CREATED, pr)
}

/// One pull. The first read after its head moved answers `mergeable: null` (state `unknown`),
/// as GitHub does while it computes mergeability in the background; later reads have it.
async fn get_pull(State(inner): S, Path((owner, repo, n)): Path<(String, String, u64)>) -> R {
    let mut st = inner.lock();
    let (mut pull, head, computed) = {
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let i = r
            .issues
            .get(&n)
            .filter(|i| i.pull.is_some())
            .ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        let head = sh.pull_head_sha(r, i);
        let computed = i.pull.as_ref().and_then(|p| p.mergeable_for.as_deref()) == Some(&head);
        (sh.pull(r, i), head, computed)
    };
    if !computed && pull["state"] == "open" {
        pull["mergeable"] = Value::Null;
        pull["mergeable_state"] = json!("unknown");
        if let Some(p) = st
            .repo_mut(&owner, &repo)
            .and_then(|r| r.issues.get_mut(&n))
            .and_then(|i| i.pull.as_mut())
        {
            p.mergeable_for = Some(head);
        }
    }
    ok(StatusCode::OK, pull)
}

#[derive(Deserialize)]
struct UpdatePull {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    base: Option<String>,
}

async fn update_pull(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: UpdatePull = body(&b)?;
    let up = ops::PullUpdate {
        title: req.title,
        body: req.body,
        state: req.state,
        base: req.base,
    };
    ok(
        StatusCode::OK,
        ops::update_pull(&inner, &me.login, &owner, &repo, n, up)?,
    )
}

async fn is_merged(State(inner): S, Path((owner, repo, n)): Path<(String, String, u64)>) -> R {
    let merged = ops::pull_view(&inner, &owner, &repo, n)
        .ok_or_else(Error::not_found)?
        .merged;
    if merged {
        Ok(no_content())
    } else {
        Err(Error::not_found())
    }
}

#[derive(Deserialize)]
struct MergeBody {
    commit_title: Option<String>,
    commit_message: Option<String>,
    sha: Option<String>,
    merge_method: Option<String>,
}

async fn merge_pull(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: MergeBody = body(&b)?;
    let result = ops::merge_pull(
        &inner,
        &me.login,
        &owner,
        &repo,
        n,
        ops::MergeRequest {
            sha: req.sha,
            method: req.merge_method,
            title: req.commit_title,
            message: req.commit_message,
        },
    )?;
    ok(StatusCode::OK, result)
}

async fn list_reviews(
    State(inner): S,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items = ops::list_reviews(&inner, &owner, &repo, n)?;
    paged(&inner, &uri, &q, &items)
}

#[derive(Deserialize)]
struct CreateReview {
    event: Option<String>,
    body: Option<String>,
}

async fn create_review(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: CreateReview = body(&b)?;
    let event = req
        .event
        .ok_or_else(|| missing("PullRequestReview", "event"))?;
    let state = ReviewState::from_event(&event)
        .ok_or_else(|| Error::validation("PullRequestReview", Some("event"), "invalid", None))?;
    let (_, review) = ops::submit_review(
        &inner,
        &me.login,
        &owner,
        &repo,
        n,
        state,
        req.body.as_deref().unwrap_or(""),
    )?;
    ok(StatusCode::OK, review)
}

#[derive(Deserialize, Default)]
struct Reviewers {
    #[serde(default)]
    reviewers: Vec<String>,
    #[serde(default)]
    team_reviewers: Vec<String>,
}

async fn get_requested(State(inner): S, Path((owner, repo, n)): Path<(String, String, u64)>) -> R {
    ok(
        StatusCode::OK,
        ops::requested_reviewers(&inner, &owner, &repo, n)?,
    )
}

async fn add_requested(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: Reviewers = body(&b)?;
    let pr = ops::request_reviewers(
        &inner,
        &me.login,
        &owner,
        &repo,
        n,
        &req.reviewers,
        &req.team_reviewers,
        false,
    )?;
    ok(StatusCode::CREATED, pr)
}

async fn remove_requested(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: Reviewers = body(&b)?;
    let pr = ops::request_reviewers(
        &inner,
        &me.login,
        &owner,
        &repo,
        n,
        &req.reviewers,
        &req.team_reviewers,
        true,
    )?;
    ok(StatusCode::OK, pr)
}
