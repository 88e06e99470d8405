//! Issues as conversations: the issue, its comments, reactions and labels, and the
//! repository's labels.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::{Me, Q, R, S, body, missing, ok, paged, repo_route};
use crate::forge::mw::no_content;
use crate::forge::ops::{self, ReactionTarget, shapes};
use crate::forge::{Error, Inner};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(&repo_route("/issues"), get(list_issues).post(create_issue))
        .route(
            &repo_route("/issues/{issue_number}"),
            get(get_issue).patch(update_issue).post(update_issue),
        )
        .route(
            &repo_route("/issues/{issue_number}/comments"),
            get(list_comments).post(create_comment),
        )
        .route(
            &repo_route("/issues/comments/{comment_id}"),
            get(get_comment)
                .patch(update_comment)
                .post(update_comment)
                .delete(delete_comment),
        )
        .route(
            &repo_route("/issues/comments/{comment_id}/reactions"),
            get(list_comment_reactions).post(create_comment_reaction),
        )
        .route(
            &repo_route("/issues/{issue_number}/reactions"),
            get(list_issue_reactions).post(create_issue_reaction),
        )
        .route(
            &repo_route("/issues/{issue_number}/labels"),
            get(list_issue_labels)
                .post(add_labels)
                .put(replace_labels)
                .delete(remove_all_labels),
        )
        .route(
            &repo_route("/issues/{issue_number}/labels/{name}"),
            delete(remove_label),
        )
        .route(&repo_route("/labels"), get(list_labels).post(create_label))
        .route(&repo_route("/labels/{name}"), get(get_label))
}

async fn get_issue(State(inner): S, Path((owner, repo, n)): Path<(String, String, u64)>) -> R {
    let st = inner.lock();
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let i = r.issues.get(&n).ok_or_else(Error::not_found)?;
    ok(StatusCode::OK, shapes(&inner, &st).issue(r, i))
}

/// `state` (`open` by default, `closed`, `all`), `labels` (all of them), `creator`, `sort`
/// (`created` by default, `updated`) and `direction` (`desc` by default). Pull requests are
/// issues too, and listed.
async fn list_issues(
    State(inner): S,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let state = q.get("state").map(String::as_str).unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Err(Error::validation("Issue", Some("state"), "invalid", None));
    }
    let labels: Vec<&str> = q
        .get("labels")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let items: Vec<Value> = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        let sh = shapes(&inner, &st);
        let mut found: Vec<&crate::forge::state::Issue> = r
            .issues
            .values()
            .filter(|i| match state {
                "open" => i.open,
                "closed" => !i.open,
                _ => true,
            })
            .filter(|i| {
                labels
                    .iter()
                    .all(|l| i.labels.iter().any(|have| have.eq_ignore_ascii_case(l)))
            })
            .filter(|i| {
                q.get("creator")
                    .is_none_or(|c| c.eq_ignore_ascii_case(&i.author))
            })
            .collect();
        match q.get("sort").map(String::as_str) {
            Some("updated") => found.sort_by_key(|i| (i.updated_at, i.number)),
            _ => found.sort_by_key(|i| (i.created_at, i.number)),
        }
        if q.get("direction").map(String::as_str) != Some("asc") {
            found.reverse();
        }
        found.into_iter().map(|i| sh.issue(r, i)).collect()
    };
    paged(&inner, &uri, &q, &items)
}

/// GitHub refuses an issue or comment body over 65,536 characters (422, as here).
pub(super) const MAX_BODY_CHARS: usize = 65_536;

fn not_too_long(resource: &str, text: Option<&str>) -> Result<(), crate::forge::Error> {
    match text {
        Some(t) if t.chars().count() > MAX_BODY_CHARS => Err(crate::forge::Error::validation(
            resource,
            Some("body"),
            "custom",
            Some(&format!(
                "body is too long (maximum is {MAX_BODY_CHARS} characters)"
            )),
        )),
        _ => Ok(()),
    }
}

async fn create_issue(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    let fields: crate::forge::issues::IssueFields = body(&b)?;
    not_too_long("Issue", fields.body.as_deref())?;
    ok(
        StatusCode::CREATED,
        crate::forge::issues::create(&inner, &me.login, &owner, &repo, fields)?,
    )
}

async fn update_issue(
    State(inner): S,
    Path((owner, repo, n)): Path<(String, String, u64)>,
    b: Bytes,
) -> R {
    let fields: crate::forge::issues::IssueFields = body(&b)?;
    not_too_long("Issue", fields.body.as_deref())?;
    ok(
        StatusCode::OK,
        crate::forge::issues::update(&inner, &owner, &repo, n, fields)?,
    )
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
    not_too_long("IssueComment", Some(&text))?;
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
    not_too_long("IssueComment", Some(&text))?;
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
