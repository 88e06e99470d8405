//! The HTTP surface (axum): webhooks in, health and metrics out. [`app`] builds the router
//! from shared state, so tests drive it with `oneshot` and no socket.

pub mod github;
pub mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::config::Secret;

/// Largest webhook body accepted (GitHub caps payloads at 25 MB; promotion events are small).
pub const MAX_BODY: usize = 5 * 1024 * 1024;

/// What the handlers share with the loops.
#[derive(Debug)]
pub struct AppState {
    /// The GitHub webhook secret; without one, GitHub webhooks are refused.
    pub webhook_secret: Option<Secret>,
    pub deliveries: github::Deliveries,
    /// Wakes the promotion engine early (webhooks are hints; the loop re-plans anyway).
    pub nudge: Arc<Notify>,
    pub ready: AtomicBool,
    pub metrics: metrics::Metrics,
    /// The bot's login: its own comments do not wake the engine.
    pub bot_login: String,
}

impl AppState {
    pub fn new(webhook_secret: Option<Secret>, bot_login: impl Into<String>) -> Self {
        Self {
            webhook_secret,
            deliveries: github::Deliveries::new(4096),
            nudge: Arc::new(Notify::new()),
            ready: AtomicBool::new(false),
            metrics: metrics::Metrics::new(),
            bot_login: bot_login.into(),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.metrics.ready.set(i64::from(ready));
    }
}

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/webhooks/github", post(github_webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(
    State(state): State<Arc<AppState>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn github_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(secret) = &state.webhook_secret else {
        state.metrics.webhook("github", "no_secret");
        return (StatusCode::UNAUTHORIZED, "webhook secret not configured\n");
    };
    if !github::verify_signature(secret, &body, header("x-hub-signature-256")) {
        state.metrics.webhook("github", "bad_signature");
        tracing::warn!("GitHub webhook with a bad or missing signature refused");
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let event = header("x-github-event").unwrap_or("").to_string();
    if let Some(id) = header("x-github-delivery")
        && !state.deliveries.first_time(id)
    {
        state.metrics.webhook("github", "duplicate");
        return (StatusCode::OK, "duplicate delivery\n");
    }
    match github::parse(&event, &body) {
        Err(github::EventError::Unhandled(name)) => {
            tracing::debug!(event = %name, "ignoring GitHub event");
            state.metrics.webhook("github", "ignored");
            (StatusCode::NO_CONTENT, "")
        }
        Err(e) => {
            tracing::warn!(error = %e, "malformed GitHub webhook");
            state.metrics.webhook("github", "malformed");
            (StatusCode::BAD_REQUEST, "malformed payload\n")
        }
        Ok(github::Event::IssueComment {
            author,
            author_is_bot,
            ..
        }) if author_is_bot || author == state.bot_login => {
            state.metrics.webhook("github", "ignored");
            (StatusCode::NO_CONTENT, "")
        }
        Ok(ev) => {
            tracing::debug!(?ev, "GitHub webhook");
            state.metrics.webhook("github", "accepted");
            state.nudge.notify_one();
            (StatusCode::ACCEPTED, "accepted\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::future::Future;
    use tower::ServiceExt;

    fn state() -> Arc<AppState> {
        Arc::new(AppState::new(
            Some(Secret::new("hook-secret")),
            "baton[bot]",
        ))
    }

    fn delivery(body: &str, event: &str, id: &str, signature: Option<String>) -> Request<Body> {
        let mut b = Request::post("/webhooks/github")
            .header("x-github-event", event)
            .header("x-github-delivery", id);
        if let Some(s) = signature {
            b = b.header("x-hub-signature-256", s);
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    fn signed(body: &str) -> Option<String> {
        Some(github::sign(&Secret::new("hook-secret"), body.as_bytes()))
    }

    const COMMENT: &str = r#"{"action":"created","issue":{"number":5,"pull_request":{}},"comment":{"id":9,"user":{"login":"alice","type":"User"}}}"#;

    /// Whether a wake-up is pending, checked by polling once: a stored permit completes
    /// the first poll, so no waiting is involved.
    async fn nudged(state: &AppState) -> bool {
        let fut = std::pin::pin!(state.nudge.notified());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        fut.poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn a_signed_comment_wakes_the_engine_once_per_delivery() {
        let s = state();
        let res = app(s.clone())
            .oneshot(delivery(COMMENT, "issue_comment", "d1", signed(COMMENT)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert!(nudged(&s).await);
        let again = app(s.clone())
            .oneshot(delivery(COMMENT, "issue_comment", "d1", signed(COMMENT)))
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        assert!(
            !nudged(&s).await,
            "a redelivery must not wake the engine again"
        );
    }

    #[tokio::test]
    async fn a_bad_or_missing_signature_is_401_and_nothing_happens() {
        let s = state();
        for sig in [
            None,
            Some("sha256=00".to_string()),
            Some(github::sign(&Secret::new("wrong"), COMMENT.as_bytes())),
        ] {
            let res = app(s.clone())
                .oneshot(delivery(COMMENT, "issue_comment", "x", sig))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert!(!nudged(&s).await);
        assert!(
            s.metrics.render().contains(
                "baton_webhook_deliveries_total{source=\"github\",result=\"bad_signature\"} 3"
            ),
            "{}",
            s.metrics.render()
        );
    }

    #[tokio::test]
    async fn unknown_events_get_204_and_oversized_bodies_413() {
        let s = state();
        let res = app(s.clone())
            .oneshot(delivery("{}", "fork", "f", signed("{}")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let big = "x".repeat(MAX_BODY + 1);
        let res = app(s.clone())
            .oneshot(delivery(&big, "push", "b", signed(&big)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!nudged(&s).await);
    }

    #[tokio::test]
    async fn the_bots_own_comments_do_not_wake_it() {
        let s = state();
        let body = COMMENT
            .replace("alice", "baton[bot]")
            .replace("\"User\"", "\"Bot\"");
        let res = app(s.clone())
            .oneshot(delivery(&body, "issue_comment", "o", signed(&body)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(!nudged(&s).await);
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_healthz_is_always_ok() {
        let s = state();
        let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
        assert_eq!(
            app(s.clone())
                .oneshot(get("/healthz"))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            app(s.clone())
                .oneshot(get("/readyz"))
                .await
                .unwrap()
                .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.set_ready(true);
        assert_eq!(
            app(s.clone())
                .oneshot(get("/readyz"))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        let m = app(s.clone()).oneshot(get("/metrics")).await.unwrap();
        assert_eq!(m.status(), StatusCode::OK);
    }
}
