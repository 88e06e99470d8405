//! `server.auth`: who may read the status page and the JSON API. A request is let in when it
//! carries the configured bearer token, or when it comes from a trusted proxy's address with
//! the proxy's user header set (oauth2-proxy and SSO ingresses work this way). Everything
//! else gets 401 and learns nothing: not which of the two failed, nor any of the page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::config::runtime::{Cidr, ServerAuth};
use crate::config::{Secret, secret::SecretError};

/// Resolved `server.auth`.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Option<Secret>,
    proxy: Option<(HeaderName, Vec<Cidr>)>,
}

/// Why `server.auth` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("server.auth.token: {0}")]
    Token(#[from] SecretError),
    #[error("server.auth.trustedProxy: {0}")]
    Proxy(String),
}

impl Guard {
    /// Read the token (from its env var or file) and parse the proxy's ranges.
    pub fn resolve(auth: &ServerAuth) -> Result<Self, GuardError> {
        let token = auth.token.as_ref().map(|t| t.resolve()).transpose()?;
        let proxy = match &auth.trusted_proxy {
            None => None,
            Some(p) => {
                let header = HeaderName::try_from(p.header.as_str()).map_err(|_| {
                    GuardError::Proxy(format!("{:?} is not a header name", p.header))
                })?;
                let ranges = p
                    .from
                    .iter()
                    .map(|r| Cidr::parse(r))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(GuardError::Proxy)?;
                Some((header, ranges))
            }
        };
        Ok(Self { token, proxy })
    }

    /// Who the request is, when it may in: `Some("token")` for the bearer token, the proxy's
    /// user otherwise. `peer` is the connection's address (absent when none is known, which
    /// trusts no proxy).
    pub fn admit(
        &self,
        headers: &axum::http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Option<String> {
        if let Some(token) = &self.token {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split_once(' ')
                        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                        .map(|(_, t)| t.trim())
                });
            if let Some(p) = presented
                && bool::from(p.as_bytes().ct_eq(token.expose().as_bytes()))
            {
                return Some("token".into());
            }
        }
        if let (Some((name, ranges)), Some(peer)) = (&self.proxy, peer)
            && ranges.iter().any(|r| r.contains(peer.ip()))
        {
            let user = headers.get(name).and_then(|v| v.to_str().ok())?.trim();
            if !user.is_empty() {
                return Some(user.to_string());
            }
        }
        None
    }
}

/// The middleware in front of the status page and the API.
pub async fn require(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(guard) = &state.auth else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match guard.admit(req.headers(), peer) {
        Some(who) => {
            tracing::debug!(user = %who, path = %req.uri().path(), "status request admitted");
            next.run(req).await
        }
        None => {
            tracing::debug!(peer = ?peer, path = %req.uri().path(), "status request refused: no valid token or trusted proxy user");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"baton\"")],
                "401 Unauthorized: this baton's status page needs a bearer token (Authorization: Bearer …) or a login through its proxy (server.auth in baton.yaml)\n",
            )
                .into_response()
        }
    }
}
