//! What every REST call goes through, in GitHub's order: count it, authenticate the token, serve
//! an injected fault, take one call from the primary rate limit, check repository access, answer
//! conditional reads (`ETag` / `If-None-Match` → `304`, not charged), and stamp the
//! `x-ratelimit-*` headers on the answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::state::{FaultKind, TokenKind};
use super::{Error, Inner, Permission};

/// Who is calling, put into request extensions for the handlers.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub login: String,
    pub kind: PrincipalKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalKind {
    Installation,
    Personal,
    /// A GitHub App JWT (only for `/app/...` endpoints).
    App,
}

const DOCS: &str = "https://docs.github.com/rest";

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({
            "message": self.message,
            "documentation_url": DOCS,
            "status": self.status.to_string(),
        });
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        (status, axum::Json(body)).into_response()
    }
}

fn route_key(request: &Request) -> String {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    // Refs may hold slashes, so `/commits/{ref}/...` is one wildcard route; name the real one.
    let path = match path.strip_suffix("/commits/{*rest}") {
        Some(prefix) => {
            let what = request.uri().path().rsplit('/').next().unwrap_or("");
            format!("{prefix}/commits/{{ref}}/{what}")
        }
        None => path,
    };
    format!("{} {path}", request.method())
}

/// Counts every call (REST and Git) by method and route template.
pub(crate) async fn count(
    State(inner): State<Arc<Inner>>,
    request: Request,
    next: Next,
) -> Response {
    let key = route_key(&request);
    *inner.lock().calls.entry(key).or_default() += 1;
    next.run(request).await
}

/// Unknown paths answer like GitHub.
pub(crate) async fn not_found() -> Response {
    Error::not_found().into_response()
}

fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "token")
        .then(|| token.trim().to_owned())
}

/// The `iss` claim of an (unverified) JWT.
fn jwt_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, claims, _) = (parts.next()?, parts.next()?, parts.next()?);
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    match &v["iss"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn unauthorized(message: &str) -> Response {
    Error::new(401, message).into_response()
}

/// The GitHub layer for REST routes; while recording, the exchange is kept for contract checks.
pub(crate) async fn github(
    State(inner): State<Arc<Inner>>,
    request: Request,
    next: Next,
) -> Response {
    if !inner.lock().recording {
        return serve(inner, request, next).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Error::new(400, "Problems parsing JSON").into_response();
    };
    let mut exchange = crate::contract::Exchange {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        request: serde_json::from_slice(&bytes).ok(),
        status: 0,
        response: None,
    };
    let response = serve(
        inner.clone(),
        Request::from_parts(parts, Body::from(bytes)),
        next,
    )
    .await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    exchange.status = parts.status.as_u16();
    exchange.response = serde_json::from_slice(&bytes).ok();
    inner.lock().exchanges.push(exchange);
    Response::from_parts(parts, Body::from(bytes))
}

async fn serve(inner: Arc<Inner>, mut request: Request, next: Next) -> Response {
    let key = route_key(&request);
    let template = key
        .split_once(' ')
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    let wants_jwt =
        template.starts_with("/app") || template == "/repos/{owner}/{repo}/installation";
    let is_rate_limit = template == "/rate_limit";

    // Authenticate.
    let token = bearer(&request);
    let principal = {
        let st = inner.lock();
        match &token {
            Some(t) if wants_jwt => match jwt_issuer(t) {
                Some(iss) if iss == st.app_id.to_string() => Some(Principal {
                    login: st.bot_login.clone(),
                    kind: PrincipalKind::App,
                }),
                _ => return unauthorized("A JSON web token could not be decoded"),
            },
            Some(t) => match st.token(t) {
                Some(tok) => Some(Principal {
                    login: tok.login.clone(),
                    kind: match tok.kind {
                        TokenKind::Installation => PrincipalKind::Installation,
                        TokenKind::Personal => PrincipalKind::Personal,
                    },
                }),
                None => return unauthorized("Bad credentials"),
            },
            None if is_rate_limit => None,
            None => return unauthorized("Requires authentication"),
        }
    };

    // Faults.
    let fault = inner.lock().take_fault(&key, false);
    let mut lost = None;
    match fault {
        Some(FaultKind::ServerError(status)) => {
            let mut r = Error::new(status, "Server Error").into_response();
            stamp(&inner, &mut r);
            return r;
        }
        Some(FaultKind::SecondaryRateLimit {
            status,
            retry_after_secs,
        }) => {
            let mut r = Error::new(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:SIM.",
            )
            .into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            stamp(&inner, &mut r);
            return r;
        }
        Some(FaultKind::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(FaultKind::LostResponse(status)) => lost = Some(status),
        None => {}
    }

    // Secondary limit on content creation.
    let over_limit = match &principal {
        Some(p) if request.method() != Method::GET && !wants_jwt => {
            inner.lock().take_write(&p.login)
        }
        _ => None,
    };
    if let Some(wait) = over_limit {
        let mut r = Error::new(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:SIM.",
        )
        .into_response();
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs.max(1)));
        stamp(&inner, &mut r);
        return r;
    }

    // Primary rate limit.
    if !is_rate_limit && !inner.lock().rate.take() {
        let who = match principal.as_ref().map(|p| p.kind) {
            Some(PrincipalKind::Installation) => {
                format!("installation ID {}", inner.lock().installation_id)
            }
            _ => format!(
                "user ID {}",
                principal
                    .as_ref()
                    .map(|p| inner.lock().user_id(&p.login))
                    .unwrap_or(0)
            ),
        };
        let mut r = Error::new(403, format!("API rate limit exceeded for {who}.")).into_response();
        stamp(&inner, &mut r);
        return r;
    }

    // Repository access: private repositories are invisible without read access.
    if let (Some(p), Some(rest)) = (&principal, request.uri().path().strip_prefix("/repos/"))
        && !wants_jwt
    {
        let mut segs = rest.split('/');
        let (owner, repo) = (segs.next().unwrap_or(""), segs.next().unwrap_or(""));
        let st = inner.lock();
        let perm = st.permission(&p.login);
        if st.repo(owner, repo).is_none() || perm < Permission::Read {
            drop(st);
            let mut r = Error::not_found().into_response();
            stamp(&inner, &mut r);
            return r;
        }
        // Anyone who can read a repository may converse in it, and open issues there.
        let conversational = ["/comments", "/reactions", "/reviews"]
            .iter()
            .any(|s| template.contains(s))
            || (request.method() == Method::POST && template == "/repos/{owner}/{repo}/issues");
        if request.method() != Method::GET && !conversational && perm < Permission::Write {
            drop(st);
            let mut r = Error::new(403, "Resource not accessible by integration").into_response();
            stamp(&inner, &mut r);
            return r;
        }
    }

    if let Some(p) = principal {
        request.extensions_mut().insert(p);
    }
    let conditional = (request.method() == Method::GET)
        .then(|| request.headers().get(header::IF_NONE_MATCH).cloned())
        .flatten();
    let is_get = request.method() == Method::GET;
    let mut response = next.run(request).await;
    if let Some(status) = lost {
        // The handler ran and its write stands; the client never sees the answer.
        response = Error::new(status, "Server Error").into_response();
    }
    if is_get && response.status() == StatusCode::OK {
        response = with_etag(&inner, response, conditional).await;
    }
    stamp(&inner, &mut response);
    response
}

/// GitHub's conditional reads: a `200` to a `GET` carries an `ETag` (a hash of the body); a
/// request whose `If-None-Match` names it gets `304 Not Modified` with no body, and, as on
/// GitHub, that call is not charged to the rate limit.
async fn with_etag(
    inner: &Inner,
    response: Response,
    if_none_match: Option<HeaderValue>,
) -> Response {
    use sha2::Digest;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Error::new(500, "Server Error").into_response();
    };
    let etag = format!("W/\"{}\"", hex::encode(sha2::Sha256::digest(&bytes)));
    let matches = if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/"))
        });
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, v);
    }
    if matches {
        let mut st = inner.lock();
        st.rate.remaining = (st.rate.remaining + 1).min(st.rate.limit);
        drop(st);
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_TYPE);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn stamp(inner: &Inner, response: &mut Response) {
    let st = inner.lock();
    let h = response.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(st.rate.limit));
    h.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(st.rate.remaining),
    );
    h.insert("x-ratelimit-reset", HeaderValue::from(st.rate.reset_epoch));
    h.insert(
        "x-ratelimit-used",
        HeaderValue::from(st.rate.limit - st.rate.remaining),
    );
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    h.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    let id = st.calls.values().sum::<u64>();
    if let Ok(v) = HeaderValue::from_str(&format!("SIM:{id:08X}")) {
        h.insert("x-github-request-id", v);
    }
}

/// Injected faults for Git smart HTTP (only faults that name a route reach it). A lost response
/// lets the push land, then answers `500` as if the connection dropped before the reply.
pub(crate) async fn git_faults(
    State(inner): State<Arc<Inner>>,
    request: Request,
    next: Next,
) -> Response {
    let key = route_key(&request);
    let fault = inner.lock().take_fault(&key, true);
    let status = match fault {
        None => return next.run(request).await,
        Some(FaultKind::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            return next.run(request).await;
        }
        Some(FaultKind::LostResponse(status)) => {
            drop(next.run(request).await);
            status
        }
        Some(FaultKind::ServerError(status) | FaultKind::SecondaryRateLimit { status, .. }) => {
            status
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        "Server Error",
    )
        .into_response()
}

/// A body-less response with GitHub headers, for 204s.
pub(crate) fn no_content() -> Response {
    (StatusCode::NO_CONTENT, Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_of_an_app_jwt_is_read_without_verifying_it() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"iat":1,"exp":2,"iss":"4242"}"#);
        assert_eq!(
            jwt_issuer(&format!("h.{claims}.sig")).as_deref(),
            Some("4242")
        );
        let numeric = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iss":4242}"#);
        assert_eq!(
            jwt_issuer(&format!("h.{numeric}.sig")).as_deref(),
            Some("4242")
        );
        assert_eq!(jwt_issuer("ghs_plain"), None);
    }
}
