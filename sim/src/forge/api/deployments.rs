//! Deployments and their statuses (`super::super::deployments` holds GitHub's rules).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use serde_json::Value;

use super::{Me, Q, R, S, body, ok, paged, repo_route};
use crate::forge::deployments::{self, NewDeployment, NewStatus};
use crate::forge::mw::PrincipalKind;
use crate::forge::ops::shapes;
use crate::forge::{Error, Inner};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(
            &repo_route("/deployments"),
            get(list_deployments).post(create_deployment),
        )
        .route(
            &repo_route("/deployments/{deployment_id}"),
            get(get_deployment),
        )
        .route(
            &repo_route("/deployments/{deployment_id}/statuses"),
            get(list_statuses).post(create_status),
        )
}

/// Newest first, filtered by `sha`, `ref`, `task` and `environment` as GitHub does.
async fn list_deployments(
    State(inner): S,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        let matches = |key: &str, have: &str| q.get(key).is_none_or(|want| want == have);
        r.deployments
            .iter()
            .rev()
            .filter(|d| {
                matches("sha", &d.sha)
                    && matches("ref", &d.ref_)
                    && matches("task", &d.task)
                    && matches("environment", &d.environment)
            })
            .map(|d| sh.deployment(r, d))
            .collect()
    };
    paged(&inner, &uri, &q, &items)
}

async fn create_deployment(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    let new: NewDeployment = body(&b)?;
    let via_app = me.kind == PrincipalKind::Installation;
    let d = deployments::create(&inner, &me.login, via_app, &owner, &repo, new)?;
    ok(StatusCode::CREATED, d)
}

async fn get_deployment(
    State(inner): S,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> R {
    let st = inner.lock();
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let d = r
        .deployments
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).deployment(r, d))
}

/// Newest first.
async fn list_statuses(
    State(inner): S,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let d = r
            .deployments
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        d.statuses
            .iter()
            .rev()
            .map(|s| sh.deployment_status(r, d, s))
            .collect()
    };
    paged(&inner, &uri, &q, &items)
}

async fn create_status(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let new: NewStatus = body(&b)?;
    let via_app = me.kind == PrincipalKind::Installation;
    let s = deployments::create_status(&inner, &me.login, via_app, &owner, &repo, id, new)?;
    ok(StatusCode::CREATED, s)
}
