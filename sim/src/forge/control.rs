//! The control surface over HTTP, under `/_sim/`, for the sandbox and for tools outside the
//! process. Each route mirrors a [`super::ForgeHandle`] method; none is counted, rate-limited or
//! faulted, and none needs a token.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Error, Fault, FaultKind, ForgeHandle, Inner, Permission, ReviewState};

type S = State<Arc<Inner>>;
type R = Result<Response, Error>;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/_sim/users", post(add_user))
        .route("/_sim/teams", post(add_team))
        .route("/_sim/repos", post(create_repo))
        .route(
            "/_sim/repos/{owner}/{repo}/issues/{number}/comments",
            post(comment),
        )
        .route(
            "/_sim/repos/{owner}/{repo}/issues/comments/{id}",
            patch(edit_comment),
        )
        .route(
            "/_sim/repos/{owner}/{repo}/pulls/{number}/reviews",
            post(review),
        )
        .route("/_sim/repos/{owner}/{repo}/check-runs", post(check))
        .route("/_sim/repos/{owner}/{repo}/statuses/{sha}", post(status))
        .route("/_sim/hooks", post(add_hook))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/rate-limit", post(rate_limit))
        .route("/_sim/calls", get(calls).delete(reset_calls))
        .route("/_sim/deliveries", get(deliveries))
}

fn handle(inner: Arc<Inner>) -> ForgeHandle {
    ForgeHandle { inner }
}

fn parse<T: for<'de> Deserialize<'de>>(b: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(b).map_err(|e| Error::new(400, format!("Problems parsing JSON: {e}")))
}

fn ok(status: StatusCode, v: Value) -> R {
    Ok((status, axum::Json(v)).into_response())
}

#[derive(Deserialize)]
struct NewUser {
    login: String,
    #[serde(default = "write")]
    permission: String,
}

fn write() -> String {
    "write".into()
}

async fn add_user(State(inner): S, b: Bytes) -> R {
    let u: NewUser = parse(&b)?;
    let p = Permission::parse(&u.permission).ok_or_else(|| {
        Error::new(
            422,
            "permission must be none, read, triage, write, maintain or admin",
        )
    })?;
    let token = handle(inner).add_user(&u.login, p);
    ok(
        StatusCode::CREATED,
        json!({"login": u.login, "token": token, "permission": p.legacy()}),
    )
}

#[derive(Deserialize)]
struct NewTeam {
    org: String,
    slug: String,
    #[serde(default)]
    members: Vec<String>,
}

async fn add_team(State(inner): S, b: Bytes) -> R {
    let t: NewTeam = parse(&b)?;
    let members: Vec<&str> = t.members.iter().map(String::as_str).collect();
    handle(inner).add_team(&t.org, &t.slug, &members);
    ok(
        StatusCode::CREATED,
        json!({"org": t.org, "slug": t.slug, "members": t.members}),
    )
}

#[derive(Deserialize)]
struct NewRepo {
    owner: String,
    name: String,
    #[serde(default)]
    default_branch: Option<String>,
    /// path -> content, committed as the first commit.
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
}

async fn create_repo(State(inner): S, b: Bytes) -> R {
    let r: NewRepo = parse(&b)?;
    let branch = r.default_branch.unwrap_or_else(|| "main".into());
    let h = handle(inner);
    let sha = if r.files.is_empty() {
        super::ops::create_repo(&h.inner, &r.owner, &r.name, &branch)?;
        None
    } else {
        let files: Vec<(&str, &str)> = r
            .files
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Some(h.create_repo_with_files(&r.owner, &r.name, &branch, &files)?)
    };
    ok(
        StatusCode::CREATED,
        json!({"full_name": format!("{}/{}", r.owner, r.name), "clone_url": h.git_url(&r.owner, &r.name), "default_branch": branch, "head": sha}),
    )
}

#[derive(Deserialize)]
struct AsUser {
    user: String,
    #[serde(default)]
    body: String,
}

async fn comment(
    State(inner): S,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let c: AsUser = parse(&b)?;
    let id = handle(inner).comment_as(&c.user, &owner, &repo, number, &c.body)?;
    ok(StatusCode::CREATED, json!({"id": id}))
}

async fn edit_comment(
    State(inner): S,
    Path((_owner, _repo, id)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let c: AsUser = parse(&b)?;
    handle(inner).edit_comment_as(&c.user, id, &c.body)?;
    ok(StatusCode::OK, json!({"id": id}))
}

#[derive(Deserialize)]
struct AsReviewer {
    user: String,
    /// `APPROVE`, `REQUEST_CHANGES` or `COMMENT`.
    event: String,
    #[serde(default)]
    body: String,
}

async fn review(
    State(inner): S,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let r: AsReviewer = parse(&b)?;
    let state = ReviewState::from_event(&r.event)
        .ok_or_else(|| Error::new(422, "event must be APPROVE, REQUEST_CHANGES or COMMENT"))?;
    let id = handle(inner).review_as(&r.user, &owner, &repo, number, state, &r.body)?;
    ok(StatusCode::CREATED, json!({"id": id}))
}

#[derive(Deserialize)]
struct CiCheck {
    sha: String,
    name: String,
    /// Absent or null: in progress.
    conclusion: Option<String>,
}

async fn check(State(inner): S, Path((owner, repo)): Path<(String, String)>, b: Bytes) -> R {
    let c: CiCheck = parse(&b)?;
    let id = handle(inner).set_check_conclusion(
        &owner,
        &repo,
        &c.sha,
        &c.name,
        c.conclusion.as_deref(),
    )?;
    ok(StatusCode::OK, json!({"id": id}))
}

#[derive(Deserialize)]
struct CiStatus {
    user: String,
    context: String,
    state: String,
}

async fn status(
    State(inner): S,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    b: Bytes,
) -> R {
    let s: CiStatus = parse(&b)?;
    let id = handle(inner).set_status_as(&s.user, &owner, &repo, &sha, &s.context, &s.state)?;
    ok(StatusCode::CREATED, json!({"id": id}))
}

#[derive(Deserialize)]
struct NewHook {
    url: String,
    secret: String,
}

async fn add_hook(State(inner): S, b: Bytes) -> R {
    let h: NewHook = parse(&b)?;
    handle(inner).add_webhook(&h.url, &h.secret);
    ok(StatusCode::CREATED, json!({"url": h.url}))
}

#[derive(Deserialize)]
struct NewFault {
    /// `server_error`, `secondary_rate_limit`, `slow` or `lost_response`.
    kind: String,
    status: Option<u16>,
    retry_after: Option<u64>,
    delay_ms: Option<u64>,
    #[serde(default = "one")]
    times: u32,
    route: Option<String>,
    #[serde(default)]
    after: u32,
}

fn one() -> u32 {
    1
}

async fn add_fault(State(inner): S, b: Bytes) -> R {
    let f: NewFault = parse(&b)?;
    let kind = match f.kind.as_str() {
        "server_error" => FaultKind::ServerError(f.status.unwrap_or(502)),
        "secondary_rate_limit" => FaultKind::SecondaryRateLimit {
            status: f.status.unwrap_or(403),
            retry_after_secs: f.retry_after.unwrap_or(60),
        },
        "slow" => FaultKind::Slow(Duration::from_millis(f.delay_ms.unwrap_or(1000))),
        "lost_response" => FaultKind::LostResponse(f.status.unwrap_or(502)),
        _ => {
            return Err(Error::new(
                422,
                "kind must be server_error, secondary_rate_limit, slow or lost_response",
            ));
        }
    };
    handle(inner).inject(Fault {
        kind,
        times: f.times,
        route: f.route,
        after: f.after,
    });
    ok(StatusCode::CREATED, json!({"queued": true}))
}

async fn clear_faults(State(inner): S) -> R {
    handle(inner).clear_faults();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RateLimitBody {
    limit: Option<u64>,
    /// Exhaust the limit until this many seconds from now.
    exhaust_for_secs: Option<u64>,
}

async fn rate_limit(State(inner): S, b: Bytes) -> R {
    let r: RateLimitBody = parse(&b)?;
    let h = handle(inner);
    if let Some(limit) = r.limit {
        h.set_rate_limit(limit);
    }
    if let Some(secs) = r.exhaust_for_secs {
        h.exhaust_rate_limit(Duration::from_secs(secs));
    }
    ok(StatusCode::OK, json!({"ok": true}))
}

async fn calls(State(inner): S) -> R {
    let calls = handle(inner).calls();
    ok(
        StatusCode::OK,
        json!({"total": calls.values().sum::<u64>(), "calls": calls}),
    )
}

async fn reset_calls(State(inner): S) -> R {
    handle(inner).reset_calls();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deliveries(State(inner): S) -> R {
    let list: Vec<Value> = handle(inner)
        .deliveries()
        .into_iter()
        .map(|d| json!({"id": d.id, "event": d.event, "action": d.action, "url": d.url, "status": d.status}))
        .collect();
    ok(StatusCode::OK, Value::Array(list))
}
