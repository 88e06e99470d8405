//! CI results: commit statuses, the combined status, and check runs.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Me, Q, R, S, body, missing, ok, page, paged, repo_route};
use crate::forge::json::latest_check_runs;
use crate::forge::mw::PrincipalKind;
use crate::forge::ops::{self, shapes};
use crate::forge::state::AppRef;
use crate::forge::{Error, Inner, gitops};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(&repo_route("/statuses/{sha}"), post(create_status))
        .route(&repo_route("/commits/{*rest}"), get(commit_subresource))
        .route(&repo_route("/check-runs"), post(create_check_run))
        .route(
            &repo_route("/check-runs/{check_run_id}"),
            get(get_check_run)
                .patch(update_check_run)
                .post(update_check_run),
        )
}

#[derive(Deserialize)]
struct StatusBody {
    state: Option<String>,
    target_url: Option<String>,
    description: Option<String>,
    context: Option<String>,
}

async fn create_status(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    b: Bytes,
) -> R {
    let req: StatusBody = body(&b)?;
    let state = req.state.ok_or_else(|| missing("Status", "state"))?;
    let context = req.context.unwrap_or_else(|| "default".to_owned());
    let (_, status) = ops::create_status(
        &inner,
        &me.login,
        &owner,
        &repo,
        &sha,
        &state,
        &context,
        req.description.as_deref(),
        req.target_url.as_deref(),
    )?;
    ok(StatusCode::CREATED, status)
}

/// `/commits/{ref}` (one commit), `/commits/{ref}/status`, `/commits/{ref}/statuses` and
/// `/commits/{ref}/check-runs`, where the
/// ref may itself hold slashes (`heads/baton/prod/web`).
async fn commit_subresource(
    State(inner): S,
    Path((owner, repo, rest)): Path<(String, String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let path = inner.repo_path(&owner, &repo);
    let Some((reference, what)) = rest.rsplit_once('/') else {
        // `GET /repos/{owner}/{repo}/commits/{ref}`: one commit.
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let sha = gitops::resolve_commit(&path, &rest)
            .ok_or_else(|| Error::new(422, format!("No commit found for SHA: {rest}")))?;
        let info = gitops::commit_info(&path, &sha).ok_or_else(Error::not_found)?;
        return ok(StatusCode::OK, shapes(&inner, &st).commit(r, &info));
    };
    let sha = gitops::resolve_commit(&path, reference)
        .ok_or_else(|| Error::new(422, format!("No commit found for SHA: {reference}")))?;
    match what {
        "status" => {
            let st = inner.lock();
            let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
            ok(StatusCode::OK, shapes(&inner, &st).combined_status(r, &sha))
        }
        "statuses" => {
            let items: Vec<Value> = {
                let st = inner.lock();
                let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
                let sh = shapes(&inner, &st);
                r.statuses
                    .iter()
                    .rev()
                    .filter(|s| s.sha == sha)
                    .map(|s| sh.status(r, s))
                    .collect()
            };
            paged(&inner, &uri, &q, &items)
        }
        "check-runs" => {
            let (items, total) = {
                let st = inner.lock();
                let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
                let sh = shapes(&inner, &st);
                let runs: Vec<_> = if q.get("filter").map(String::as_str) == Some("all") {
                    r.check_runs.iter().rev().filter(|c| c.sha == sha).collect()
                } else {
                    latest_check_runs(r, &sha)
                };
                let items: Vec<Value> = runs
                    .into_iter()
                    .filter(|c| q.get("check_name").is_none_or(|n| &c.name == n))
                    .filter(|c| {
                        let id = match c.app {
                            AppRef::Bot => st.app_id,
                            AppRef::Ci => crate::forge::state::CI_APP_ID,
                        };
                        q.get("app_id").is_none_or(|want| *want == id.to_string())
                    })
                    .filter(|c| q.get("status").is_none_or(|s| &c.status == s))
                    .map(|c| sh.check_run(r, c))
                    .collect();
                let total = items.len();
                (items, total)
            };
            let (slice, link) = page(&inner, &uri, &q, &items);
            let mut r = (
                StatusCode::OK,
                axum::Json(json!({"total_count": total, "check_runs": slice})),
            )
                .into_response();
            if let Some(link) = link {
                r.headers_mut().insert("link", link);
            }
            Ok(r)
        }
        _ => Err(Error::not_found()),
    }
}

async fn create_check_run(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    if me.kind != PrincipalKind::Installation {
        return Err(Error::new(403, "You must authenticate via a GitHub App."));
    }
    let fields: ops::CheckRunFields = body(&b)?;
    let (_, run) =
        ops::upsert_check_run(&inner, &me.login, &owner, &repo, None, AppRef::Bot, fields)?;
    ok(StatusCode::CREATED, run)
}

async fn update_check_run(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    if me.kind != PrincipalKind::Installation {
        return Err(Error::new(403, "You must authenticate via a GitHub App."));
    }
    let mut fields: ops::CheckRunFields = body(&b)?;
    fields.head_sha = None;
    let (_, run) = ops::upsert_check_run(
        &inner,
        &me.login,
        &owner,
        &repo,
        Some(id),
        AppRef::Bot,
        fields,
    )?;
    ok(StatusCode::OK, run)
}

async fn get_check_run(State(inner): S, Path((owner, repo, id)): Path<(String, String, u64)>) -> R {
    let st = inner.lock();
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let c = r
        .check_runs
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).check_run(r, c))
}
