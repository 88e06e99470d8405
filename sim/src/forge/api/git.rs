//! Refs and what GitHub recorded about them (the activity log).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get};
use serde_json::{Value, json};

use super::{Me, Q, R, S, ok, paged, repo_route};
use crate::forge::mw::no_content;
use crate::forge::ops::{self, shapes};
use crate::forge::{Error, Inner};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(&repo_route("/git/ref/{*ref}"), get(get_ref))
        .route(
            &repo_route("/git/refs/{*ref}"),
            delete(delete_ref)
                .patch(super::gitdata::update_ref)
                .post(super::gitdata::update_ref),
        )
        .route(&repo_route("/activity"), get(list_activity))
}

async fn get_ref(
    State(inner): S,
    Path((owner, repo, reference)): Path<(String, String, String)>,
) -> R {
    let full = format!("refs/{reference}");
    let sha = crate::git::read_refs(&inner.repo_path(&owner, &repo))
        .remove(&full)
        .ok_or_else(Error::not_found)?;
    let u = format!("{}/repos/{owner}/{repo}", inner.base());
    ok(
        StatusCode::OK,
        json!({"ref": full, "node_id": "REF_sim", "url": format!("{u}/git/{full}"), "object": {"sha": sha, "type": "commit", "url": format!("{u}/git/commits/{sha}")}}),
    )
}

async fn delete_ref(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, reference)): Path<(String, String, String)>,
) -> R {
    ops::delete_ref(&inner, &me.login, &owner, &repo, &reference)?;
    Ok(no_content())
}

/// Ref changes as GitHub recorded them: `ref` (`refs/heads/x` or `x`), `activity_type`,
/// `direction` (`desc` default), paginated.
async fn list_activity(
    State(inner): S,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let wanted_ref = q.get("ref").map(|r| {
        if r.starts_with("refs/") {
            r.clone()
        } else {
            format!("refs/heads/{r}")
        }
    });
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        let mut items: Vec<Value> = r
            .activity
            .iter()
            .filter(|a| wanted_ref.as_ref().is_none_or(|w| &a.ref_ == w))
            .filter(|a| q.get("activity_type").is_none_or(|t| t == a.kind))
            .map(|a| {
                json!({
                    "id": a.id, "node_id": format!("PA_sim{}", a.id),
                    "before": a.before, "after": a.after, "ref": a.ref_,
                    "timestamp": crate::forge::json::ts(a.timestamp),
                    "activity_type": a.kind, "actor": sh.user(&a.actor),
                })
            })
            .collect();
        if q.get("direction").map(String::as_str) != Some("asc") {
            items.reverse();
        }
        items
    };
    paged(&inner, &uri, &q, &items)
}
