//! The REST routes: thin handlers that parse GitHub's parameters, call [`super::ops`], and answer
//! with GitHub's status codes, bodies and `Link` pagination. One file per concern, each with its
//! own `routes()`; [`routes`] merges them, so a new concern is a new file and one line here.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::mw::Principal;
use super::{Error, Inner};

mod access;
mod app;
mod checks;
mod deployments;
mod git;
mod gitdata;
mod graphql;
mod issues;
mod pulls;
mod rules;

pub(super) type S = State<Arc<Inner>>;
pub(super) type Me = Extension<Principal>;
pub(super) type Q = Query<HashMap<String, String>>;
pub(super) type R = Result<Response, Error>;

/// The path prefix of repository routes.
const REPO: &str = "/repos/{owner}/{repo}";

/// Every REST route. GitHub accepts POST wherever it documents PATCH (octocrab's
/// `update_comment` relies on it), so PATCH routes take both.
pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .merge(app::routes())
        .merge(pulls::routes())
        .merge(issues::routes())
        .merge(checks::routes())
        .merge(deployments::routes())
        .merge(access::routes())
        .merge(git::routes())
        .merge(rules::routes())
        .merge(graphql::routes())
        .merge(gitdata::routes())
}

/// `/repos/{owner}/{repo}` followed by `tail`.
fn repo_route(tail: &str) -> String {
    format!("{REPO}{tail}")
}

pub(super) fn ok(status: StatusCode, body: Value) -> R {
    Ok((status, axum::Json(body)).into_response())
}

/// Parse a JSON body; GitHub answers 400 "Problems parsing JSON" to malformed ones.
pub(super) fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Error> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|_| Error::new(400, "Problems parsing JSON"))
}

pub(super) fn missing(resource: &str, field: &str) -> Error {
    Error::validation(resource, Some(field), "missing_field", None)
}

/// One page of `items` (`per_page` default 30, max 100; `page` from 1) and its `Link` header.
pub(super) fn page<T: Clone>(
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

pub(super) fn paged(inner: &Inner, uri: &Uri, q: &HashMap<String, String>, items: &[Value]) -> R {
    let (slice, link) = page(inner, uri, q, items);
    let mut r = (StatusCode::OK, axum::Json(Value::Array(slice))).into_response();
    if let Some(link) = link {
        r.headers_mut().insert("link", link);
    }
    Ok(r)
}
