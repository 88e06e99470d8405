//! Who is asking and the repository itself: `/rate_limit`, `/user`, `/app`, installation
//! tokens, the repository's installation and `GET /repos/{owner}/{repo}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::{Me, R, REPO, S, ok, repo_route};
use crate::forge::mw::{Principal, PrincipalKind};
use crate::forge::ops::shapes;
use crate::forge::state::AppRef;
use crate::forge::{Error, Inner};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/rate_limit", get(rate_limit))
        .route("/user", get(current_user))
        .route("/app", get(app))
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(access_token),
        )
        .route(&repo_route("/installation"), get(repo_installation))
        .route(REPO, get(repository))
}

async fn rate_limit(State(inner): S) -> R {
    let st = inner.lock();
    let core = json!({
        "limit": st.rate.limit,
        "remaining": st.rate.remaining,
        "reset": st.rate.reset_epoch,
        "used": st.rate.limit - st.rate.remaining,
        "resource": "core",
    });
    ok(
        StatusCode::OK,
        json!({"resources": {"core": core}, "rate": core}),
    )
}

async fn current_user(State(inner): S, Extension(me): Me) -> R {
    if me.kind != PrincipalKind::Personal {
        return Err(Error::new(403, "Resource not accessible by integration"));
    }
    let st = inner.lock();
    // The public profile GitHub answers `/user` with (the simple user plus these).
    let mut user = shapes(&inner, &st).user(&me.login);
    for (k, v) in [
        ("name", Value::Null),
        ("company", Value::Null),
        ("blog", json!("")),
        ("location", Value::Null),
        ("email", Value::Null),
        ("hireable", Value::Null),
        ("bio", Value::Null),
        ("public_repos", json!(0)),
        ("public_gists", json!(0)),
        ("followers", json!(0)),
        ("following", json!(0)),
        ("created_at", json!("2024-01-01T00:00:00Z")),
        ("updated_at", json!("2024-01-01T00:00:00Z")),
    ] {
        user[k] = v;
    }
    ok(StatusCode::OK, user)
}

fn require_app(me: &Principal) -> Result<(), Error> {
    if me.kind == PrincipalKind::App {
        Ok(())
    } else {
        Err(Error::new(401, "A JSON web token could not be decoded"))
    }
}

async fn app(State(inner): S, Extension(me): Me) -> R {
    require_app(&me)?;
    let st = inner.lock();
    ok(StatusCode::OK, shapes(&inner, &st).app(AppRef::Bot))
}

fn installation(inner: &Inner) -> Value {
    let st = inner.lock();
    let sh = shapes(inner, &st);
    let id = st.installation_id;
    json!({
        "id": id,
        "account": sh.user(&st.bot_login),
        "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", inner.base()),
        "repositories_url": format!("{}/installation/repositories", inner.base()),
        "html_url": format!("{}/settings/installations/{id}", inner.base()),
        "app_id": st.app_id,
        "target_id": 1,
        "target_type": "Organization",
        "permissions": {"checks": "write", "contents": "write", "pull_requests": "write", "statuses": "write", "issues": "write", "members": "read"},
        "events": ["check_run", "check_suite", "issue_comment", "pull_request", "pull_request_review", "push", "status"],
        "repository_selection": "all",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "single_file_name": null,
    })
}

async fn repo_installation(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
) -> R {
    require_app(&me)?;
    if inner.lock().repo(&owner, &repo).is_none() {
        return Err(Error::not_found());
    }
    ok(StatusCode::OK, installation(&inner))
}

/// Mint a fresh installation token acting as the bot, valid for the installation token lifetime
/// (an hour, as on GitHub, unless a test shortened it).
async fn access_token(State(inner): S, Extension(me): Me, Path(id): Path<u64>) -> R {
    require_app(&me)?;
    let mut st = inner.lock();
    if id != st.installation_id {
        return Err(Error::not_found());
    }
    let n = st.id();
    let token = format!("ghs_sim{n:032}");
    let login = st.bot_login.clone();
    let ttl = st.installation_token_ttl;
    st.tokens.insert(
        token.clone(),
        crate::forge::state::Token {
            login,
            kind: crate::forge::state::TokenKind::Installation,
            expires: Some(std::time::Instant::now() + ttl),
        },
    );
    let expires = crate::forge::json::ts(
        Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
    );
    ok(
        StatusCode::CREATED,
        json!({"token": token, "expires_at": expires, "permissions": {"checks": "write", "contents": "write", "pull_requests": "write", "statuses": "write"}, "repository_selection": "all"}),
    )
}

async fn repository(State(inner): S, Path((owner, repo)): Path<(String, String)>) -> R {
    let st = inner.lock();
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).repo(r))
}
