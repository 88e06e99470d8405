//! Who may do what: collaborators, their permission, and organization teams.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use serde_json::{Value, json};

use super::{Me, Q, R, S, ok, paged, repo_route};
use crate::forge::mw::{PrincipalKind, no_content};
use crate::forge::ops::shapes;
use crate::forge::{Error, Inner, Permission};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(
            &repo_route("/collaborators/{username}"),
            get(is_collaborator),
        )
        .route(
            &repo_route("/collaborators/{username}/permission"),
            get(collaborator_permission),
        )
        .route("/orgs/{org}/teams/{team_slug}", get(get_team))
        .route("/orgs/{org}/teams/{team_slug}/members", get(team_members))
        .route(
            "/orgs/{org}/teams/{team_slug}/memberships/{username}",
            get(team_membership),
        )
}

async fn is_collaborator(
    State(inner): S,
    Path((_owner, _repo, user)): Path<(String, String, String)>,
) -> R {
    if inner.lock().permission(&user) >= Permission::Read {
        Ok(no_content())
    } else {
        Err(Error::not_found())
    }
}

async fn collaborator_permission(
    State(inner): S,
    Path((_owner, _repo, user)): Path<(String, String, String)>,
) -> R {
    let st = inner.lock();
    if !st.users.contains_key(&user) {
        return Err(Error::not_found());
    }
    let p = st.permission(&user);
    let sh = shapes(&inner, &st);
    ok(
        StatusCode::OK,
        json!({"permission": p.legacy(), "role_name": p.role_name(), "user": sh.collaborator(&user)}),
    )
}

async fn get_team(State(inner): S, Path((org, slug)): Path<(String, String)>) -> R {
    let st = inner.lock();
    let t = st.teams.get(&(org, slug)).ok_or_else(Error::not_found)?;
    let mut v = shapes(&inner, &st).team(t);
    v["members_count"] = json!(t.members.len());
    ok(StatusCode::OK, v)
}

async fn team_members(
    State(inner): S,
    Extension(me): Me,
    Path((org, slug)): Path<(String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items: Vec<Value> = {
        let st = inner.lock();
        if st.members_unreadable && me.kind == PrincipalKind::Installation {
            return Err(Error::new(403, "Resource not accessible by integration"));
        }
        let t = st.teams.get(&(org, slug)).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        let role = q.get("role").map(String::as_str).unwrap_or("all");
        t.members
            .iter()
            .filter(|(_, r)| role == "all" || r.as_str() == role)
            .map(|(m, _)| sh.user(m))
            .collect()
    };
    paged(&inner, &uri, &q, &items)
}

async fn team_membership(
    State(inner): S,
    Path((org, slug, user)): Path<(String, String, String)>,
) -> R {
    let st = inner.lock();
    let t = st
        .teams
        .get(&(org.clone(), slug.clone()))
        .ok_or_else(Error::not_found)?;
    let role = t.members.get(&user).ok_or_else(Error::not_found)?;
    ok(
        StatusCode::OK,
        json!({"url": format!("{}/orgs/{org}/teams/{slug}/memberships/{user}", inner.base()), "role": role, "state": "active"}),
    )
}
