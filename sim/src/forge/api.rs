//! The REST routes: thin handlers that parse GitHub's parameters, call [`super::ops`], and answer
//! with GitHub's status codes, bodies and `Link` pagination.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::latest_check_runs;
use super::mw::{Principal, PrincipalKind, no_content};
use super::ops::{self, ReactionTarget, shapes};
use super::state::{AppRef, ReviewState};
use super::{Error, Inner, Permission, gitops};

type S = State<Arc<Inner>>;
type Me = Extension<Principal>;
type Q = Query<HashMap<String, String>>;
type R = Result<Response, Error>;

/// GitHub accepts POST wherever it documents PATCH (octocrab's `update_comment` relies on it),
/// so PATCH routes take both.
pub(crate) fn routes() -> Router<Arc<Inner>> {
    let r = "/repos/{owner}/{repo}";
    Router::new()
        .route("/rate_limit", get(rate_limit))
        .route("/user", get(current_user))
        .route("/app", get(app))
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(access_token),
        )
        .route(&format!("{r}/installation"), get(repo_installation))
        .route(r, get(repository))
        .route(&format!("{r}/pulls"), get(list_pulls).post(create_pull))
        .route(
            &format!("{r}/pulls/{{pull_number}}"),
            get(get_pull).patch(update_pull).post(update_pull),
        )
        .route(
            &format!("{r}/pulls/{{pull_number}}/merge"),
            get(is_merged).put(merge_pull),
        )
        .route(
            &format!("{r}/pulls/{{pull_number}}/reviews"),
            get(list_reviews).post(create_review),
        )
        .route(
            &format!("{r}/pulls/{{pull_number}}/requested_reviewers"),
            get(get_requested)
                .post(add_requested)
                .delete(remove_requested),
        )
        .route(&format!("{r}/issues/{{issue_number}}"), get(get_issue))
        .route(
            &format!("{r}/issues/{{issue_number}}/comments"),
            get(list_comments).post(create_comment),
        )
        .route(
            &format!("{r}/issues/comments/{{comment_id}}"),
            get(get_comment)
                .patch(update_comment)
                .post(update_comment)
                .delete(delete_comment),
        )
        .route(
            &format!("{r}/issues/comments/{{comment_id}}/reactions"),
            get(list_comment_reactions).post(create_comment_reaction),
        )
        .route(
            &format!("{r}/issues/{{issue_number}}/reactions"),
            get(list_issue_reactions).post(create_issue_reaction),
        )
        .route(
            &format!("{r}/issues/{{issue_number}}/labels"),
            get(list_issue_labels)
                .post(add_labels)
                .put(replace_labels)
                .delete(remove_all_labels),
        )
        .route(
            &format!("{r}/issues/{{issue_number}}/labels/{{name}}"),
            delete(remove_label),
        )
        .route(&format!("{r}/labels"), get(list_labels).post(create_label))
        .route(&format!("{r}/labels/{{name}}"), get(get_label))
        .route(&format!("{r}/statuses/{{sha}}"), post(create_status))
        .route(&format!("{r}/commits/{{*rest}}"), get(commit_subresource))
        .route(&format!("{r}/check-runs"), post(create_check_run))
        .route(
            &format!("{r}/check-runs/{{check_run_id}}"),
            get(get_check_run)
                .patch(update_check_run)
                .post(update_check_run),
        )
        .route(
            &format!("{r}/collaborators/{{username}}"),
            get(is_collaborator),
        )
        .route(
            &format!("{r}/collaborators/{{username}}/permission"),
            get(collaborator_permission),
        )
        .route(&format!("{r}/git/ref/{{*ref}}"), get(get_ref))
        .route(&format!("{r}/git/refs/{{*ref}}"), delete(delete_ref))
        .route(&format!("{r}/activity"), get(list_activity))
        .route(&format!("{r}/rules/branches/{{branch}}"), get(branch_rules))
        .route(
            &format!("{r}/branches/{{branch}}/protection"),
            get(branch_protection),
        )
        .route("/orgs/{org}/teams/{team_slug}", get(get_team))
        .route("/orgs/{org}/teams/{team_slug}/members", get(team_members))
        .route(
            "/orgs/{org}/teams/{team_slug}/memberships/{username}",
            get(team_membership),
        )
}

fn ok(status: StatusCode, body: Value) -> R {
    Ok((status, axum::Json(body)).into_response())
}

/// Parse a JSON body; GitHub answers 400 "Problems parsing JSON" to malformed ones.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Error> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|_| Error::new(400, "Problems parsing JSON"))
}

fn missing(resource: &str, field: &str) -> Error {
    Error::validation(resource, Some(field), "missing_field", None)
}

/// One page of `items` (`per_page` default 30, max 100; `page` from 1) and its `Link` header.
fn page<T: Clone>(
    inner: &Inner,
    uri: &Uri,
    q: &HashMap<String, String>,
    items: &[T],
) -> (Vec<T>, Option<HeaderValue>) {
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let others: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
        .collect();
    let link_to = |p: usize| {
        let mut q = others.clone();
        let page_kv = format!("page={p}");
        q.push(&page_kv);
        format!("<{}{}?{}>", inner.base(), uri.path(), q.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    let header = (!links.is_empty())
        .then(|| HeaderValue::from_str(&links.join(", ")).ok())
        .flatten();
    (slice, header)
}

fn paged(inner: &Inner, uri: &Uri, q: &HashMap<String, String>, items: &[Value]) -> R {
    let (slice, link) = page(inner, uri, q, items);
    let mut r = (StatusCode::OK, axum::Json(Value::Array(slice))).into_response();
    if let Some(link) = link {
        r.headers_mut().insert("link", link);
    }
    Ok(r)
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
        super::state::Token {
            login,
            kind: super::state::TokenKind::Installation,
            expires: Some(std::time::Instant::now() + ttl),
        },
    );
    let expires = super::json::ts(
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

async fn get_issue(State(inner): S, Path((owner, repo, n)): Path<(String, String, u64)>) -> R {
    let st = inner.lock();
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let i = r.issues.get(&n).ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).issue(r, i))
}

async fn list_comments(
    State(inner): S,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let since = q
        .get("since")
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        r.issues.get(&n).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        st.comments
            .values()
            .filter(|c| c.owner == owner && c.repo == repo && c.issue == n)
            .filter(|c| since.is_none_or(|s| c.updated_at >= s))
            .map(|c| sh.comment(c))
            .collect()
    };
    paged(&inner, &uri, &q, &items)
}

#[derive(Deserialize)]
struct CommentBody {
    body: Option<String>,
}

async fn create_comment(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: CommentBody = body(&b)?;
    let text = req.body.ok_or_else(|| missing("IssueComment", "body"))?;
    let (_, comment) = ops::create_comment(&inner, &me.login, &owner, &repo, n, &text)?;
    ok(StatusCode::CREATED, comment)
}

async fn get_comment(State(inner): S, Path((owner, repo, id)): Path<(String, String, u64)>) -> R {
    let st = inner.lock();
    let c = st
        .comments
        .get(&id)
        .filter(|c| c.owner == owner && c.repo == repo)
        .ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).comment(c))
}

async fn update_comment(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: CommentBody = body(&b)?;
    let text = req.body.ok_or_else(|| missing("IssueComment", "body"))?;
    let belongs = inner
        .lock()
        .comments
        .get(&id)
        .is_some_and(|c| c.owner == owner && c.repo == repo);
    if !belongs {
        return Err(Error::not_found());
    }
    ok(
        StatusCode::OK,
        ops::update_comment(&inner, &me.login, id, &text, false)?,
    )
}

async fn delete_comment(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, id)): Path<(String, String, u64)>,
) -> R {
    ops::delete_comment(&inner, &me.login, &owner, &repo, id)?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct ReactionBody {
    content: Option<String>,
}

fn reaction_answer(result: (Value, bool)) -> R {
    let (reaction, created) = result;
    ok(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        reaction,
    )
}

async fn create_comment_reaction(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: ReactionBody = body(&b)?;
    let content = req.content.ok_or_else(|| missing("Reaction", "content"))?;
    reaction_answer(ops::add_reaction(
        &inner,
        &me.login,
        &owner,
        &repo,
        ReactionTarget::Comment(id),
        &content,
    )?)
}

async fn create_issue_reaction(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let req: ReactionBody = body(&b)?;
    let content = req.content.ok_or_else(|| missing("Reaction", "content"))?;
    reaction_answer(ops::add_reaction(
        &inner,
        &me.login,
        &owner,
        &repo,
        ReactionTarget::Issue(n),
        &content,
    )?)
}

async fn list_comment_reactions(
    State(inner): S,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items = ops::list_reactions(
        &inner,
        &owner,
        &repo,
        ReactionTarget::Comment(id),
        q.get("content").map(String::as_str),
    )?;
    paged(&inner, &uri, &q, &items)
}

async fn list_issue_reactions(
    State(inner): S,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items = ops::list_reactions(
        &inner,
        &owner,
        &repo,
        ReactionTarget::Issue(n),
        q.get("content").map(String::as_str),
    )?;
    paged(&inner, &uri, &q, &items)
}

/// `{"labels": [...]}` or a bare array, both accepted by GitHub.
fn label_names(b: &Bytes) -> Result<Vec<String>, Error> {
    let v: Value = body(b)?;
    let list = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o
            .get("labels")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => return Err(Error::new(400, "Problems parsing JSON")),
    };
    list.iter()
        .map(|l| match l {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => o
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| missing("Label", "name")),
            _ => Err(Error::validation("Label", Some("name"), "invalid", None)),
        })
        .collect()
}

async fn list_issue_labels(
    State(inner): S,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let i = r.issues.get(&n).ok_or_else(Error::not_found)?;
        shapes(&inner, &st).issue_labels(r, i)
    };
    paged(&inner, &uri, &q, &items)
}

async fn add_labels(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let names = label_names(&b)?;
    ok(
        StatusCode::OK,
        Value::Array(ops::set_labels(
            &inner, &me.login, &owner, &repo, n, &names, false,
        )?),
    )
}

async fn replace_labels(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let names = label_names(&b)?;
    ok(
        StatusCode::OK,
        Value::Array(ops::set_labels(
            &inner, &me.login, &owner, &repo, n, &names, true,
        )?),
    )
}

async fn remove_all_labels(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n)): Path<(String, String, u64)>,
) -> R {
    ops::set_labels(&inner, &me.login, &owner, &repo, n, &[], true)?;
    Ok(no_content())
}

async fn remove_label(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, n, name)): Path<(String, String, u64, String)>,
) -> R {
    ok(
        StatusCode::OK,
        Value::Array(ops::remove_label(
            &inner, &me.login, &owner, &repo, n, &name,
        )?),
    )
}

async fn list_labels(
    State(inner): S,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        r.labels.iter().map(|l| sh.label(r, l)).collect()
    };
    paged(&inner, &uri, &q, &items)
}

#[derive(Deserialize)]
struct LabelBody {
    name: Option<String>,
    color: Option<String>,
    description: Option<String>,
}

async fn create_label(State(inner): S, Path((owner, repo)): Path<(String, String)>, b: Bytes) -> R {
    let req: LabelBody = body(&b)?;
    let name = req.name.ok_or_else(|| missing("Label", "name"))?;
    let label = ops::create_label(
        &inner,
        &owner,
        &repo,
        &name,
        req.color.as_deref(),
        req.description.as_deref(),
    )?;
    ok(StatusCode::CREATED, label)
}

async fn get_label(
    State(inner): S,
    Path((owner, repo, name)): Path<(String, String, String)>,
) -> R {
    let st = inner.lock();
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let l = r
        .labels
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(&name))
        .ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).label(r, l))
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

/// `/commits/{ref}/status`, `/commits/{ref}/statuses` and `/commits/{ref}/check-runs`, where the
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
                            AppRef::Ci => super::state::CI_APP_ID,
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

/// The rules of the rulesets that apply to a branch; anyone who can read the repository may.
async fn branch_rules(
    State(inner): S,
    Path((owner, repo, branch)): Path<(String, String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        super::protect::rules_json(&format!("{owner}/{repo}"), r.protection.get(&branch))
    };
    paged(&inner, &uri, &q, &items)
}

/// A branch's classic protection: admins only (an App needs *Administration: read*).
async fn branch_protection(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> R {
    let st = inner.lock();
    if st.permission(&me.login) < Permission::Admin {
        return Err(match me.kind {
            PrincipalKind::Installation => {
                Error::new(403, "Resource not accessible by integration")
            }
            _ => Error::new(403, "Must have admin rights to Repository."),
        });
    }
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let url = format!(
        "{}/repos/{owner}/{repo}/branches/{branch}/protection",
        inner.base()
    );
    match super::protect::protection_json(&url, r.protection.get(&branch)) {
        Some(v) => ok(StatusCode::OK, v),
        None => Err(Error::new(404, "Branch not protected")),
    }
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
                    "timestamp": super::json::ts(a.timestamp),
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
