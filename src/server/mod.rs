//! The HTTP surface (axum): webhooks in; health, metrics, the status page and its JSON API
//! out. [`app`] builds the router from shared state, so tests drive it with `oneshot` and no
//! socket. The service fills the status view ([`AppState::set_view`]) and installs where
//! history comes from ([`AppState::set_history`]); the handlers only read.

pub mod auth;
pub mod dora;
pub mod github;
pub mod history;
pub mod metrics;
pub mod page;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::config::Secret;
use history::HistorySource;
use view::StatusView;

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
    /// Registry webhooks: a bearer token senders must present (CNCF distribution, Docker
    /// Hub, Harbor, GitHub packages); without one they are accepted unauthenticated, which is
    /// safe only because a hint makes the bot re-read the registry, never trust the body.
    pub registry_token: Option<Secret>,
    /// Registry webhooks: the HMAC secret of the generic `{image, tag, digest}` form.
    pub registry_hmac: Option<Secret>,
    /// Registry push hints received and not yet consumed by the registry watcher.
    pub registry_hints: std::sync::Mutex<Vec<crate::registry::webhook::PushHint>>,
    /// Pull requests commented on since the engine last looked (a command typed on a merged
    /// or closed PR, e.g. `/rollback prod`, is answered only when asked for by number).
    pub commented: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// Merge groups whose checks a merge queue asked for (head sha, head ref), not yet checked.
    pub merge_groups: std::sync::Mutex<Vec<(String, String)>>,
    /// What the status page and `/api/v1/state` show; replaced whole by the service.
    view: std::sync::RwLock<Arc<StatusView>>,
    /// The DORA report of the last 30 days (`/api/v1/dora`, the page's tiles); `None` until
    /// the service computed one.
    dora: std::sync::RwLock<Option<Arc<crate::dora::Report>>>,
    /// Where `/api/v1/history` reads from; until set, it answers 503.
    history: std::sync::RwLock<Option<Arc<dyn HistorySource>>>,
    /// Who may read the status page and the JSON API (`server.auth`); `None` lets anyone.
    pub auth: Option<auth::Guard>,
}

impl std::fmt::Debug for dyn HistorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistorySource")
    }
}

/// At most this many unconsumed registry hints are kept (older ones are dropped: the
/// periodic scan catches up anyway).
pub const MAX_PENDING_HINTS: usize = 1024;

impl AppState {
    pub fn new(webhook_secret: Option<Secret>, bot_login: impl Into<String>) -> Self {
        Self {
            webhook_secret,
            deliveries: github::Deliveries::new(4096),
            nudge: Arc::new(Notify::new()),
            ready: AtomicBool::new(false),
            metrics: metrics::Metrics::new(),
            bot_login: bot_login.into(),
            registry_token: None,
            registry_hmac: None,
            registry_hints: std::sync::Mutex::new(Vec::new()),
            commented: std::sync::Mutex::default(),
            merge_groups: std::sync::Mutex::default(),
            view: std::sync::RwLock::new(Arc::new(StatusView::default())),
            dora: std::sync::RwLock::new(None),
            history: std::sync::RwLock::new(None),
            auth: None,
        }
    }

    /// Replace the status view (build it with [`StatusView::build`], passing
    /// [`AppState::view`] as the previous one).
    pub fn set_view(&self, view: StatusView) {
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }

    /// The current status view.
    pub fn view(&self) -> Arc<StatusView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the DORA report (and the `baton_dora_*` gauges).
    pub fn set_dora(&self, report: crate::dora::Report) {
        self.metrics.dora(&report);
        *self.dora.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(report));
    }

    /// The current DORA report, if computed.
    pub fn dora(&self) -> Option<Arc<crate::dora::Report>> {
        self.dora.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where `/api/v1/history` reads promotions from (e.g. [`history::GitHistory`]).
    pub fn set_history(&self, source: Arc<dyn HistorySource>) {
        *self.history.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// Take the pending registry hints.
    pub fn take_registry_hints(&self) -> Vec<crate::registry::webhook::PushHint> {
        std::mem::take(
            &mut *self
                .registry_hints
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Take the merge groups whose checks were requested since the last call.
    pub fn take_merge_groups(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.merge_groups.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Take the pull requests commented on since the last call.
    pub fn take_commented(&self) -> Vec<u64> {
        std::mem::take(&mut *self.commented.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.metrics.ready.set(i64::from(ready));
    }
}

/// The router. The status page and the JSON API sit behind `server.auth` ([`auth::require`]);
/// webhooks check their own signatures, and health and metrics stay open for probes and
/// scrapers. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so a trusted
/// proxy can be told from anyone else.
pub fn app(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/", get(status_page))
        .route("/api/v1/state", get(api_state))
        .route("/api/v1/history", get(api_history))
        .route("/api/v1/dora", get(dora::api_dora))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ));
    Router::new()
        .route("/webhooks/github", post(github_webhook))
        .route("/webhooks/registry", post(registry_webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(protected)
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

async fn status_page(State(state): State<Arc<AppState>>) -> Html<String> {
    Html(page::render(&state.view(), state.dora().as_deref()))
}

async fn api_state(State(state): State<Arc<AppState>>) -> Json<Arc<StatusView>> {
    Json(state.view())
}

/// Default and largest `limit` of `/api/v1/history`.
pub const HISTORY_DEFAULT_LIMIT: usize = 100;
pub const HISTORY_MAX_LIMIT: usize = 1000;

/// `/api/v1/history` query parameters.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    pub env: Option<String>,
    pub app: Option<String>,
    pub limit: Option<usize>,
    /// RFC 3339; only promotions at or after it.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn api_history(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; parameters: env, app, limit (1-{HISTORY_MAX_LIMIT}), since (RFC 3339)",
                    e.body_text()
                ),
            );
        }
    };
    let limit = q.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("limit {limit}: ask for 1 to {HISTORY_MAX_LIMIT} entries"),
        );
    }
    // A typo in env/app should not look like "no promotions yet".
    let view = state.view();
    if !view.environments.is_empty() {
        if let Some(env) = q
            .env
            .as_deref()
            .filter(|e| !view.environments.iter().any(|x| x.name == *e))
        {
            return api_error(
                StatusCode::NOT_FOUND,
                format!("unknown environment {env:?}"),
            );
        }
        if let Some(app) = q
            .app
            .as_deref()
            .filter(|a| !view.apps.iter().any(|x| x.name == *a))
        {
            return api_error(StatusCode::NOT_FOUND, format!("unknown app {app:?}"));
        }
    }
    let Some(source) = state
        .history
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "history is not available yet",
        );
    };
    let filter = crate::gitrepo::history::Filter {
        app: q.app,
        environment: q.env,
        since: q.since,
        limit: Some(limit),
    };
    match tokio::task::spawn_blocking(move || source.read(&filter)).await {
        Ok(Ok(entries)) => Json(serde_json::json!({ "entries": entries })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading history for /api/v1/history");
            let status = if e.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            api_error(status, e.to_string())
        }
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history reader failed: {e}"),
        ),
    }
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
            if let github::Event::MergeGroup { head_sha, head_ref } = &ev {
                state
                    .merge_groups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((head_sha.clone(), head_ref.clone()));
            }
            if let github::Event::IssueComment { pr: Some(n), .. } = &ev {
                state
                    .commented
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*n);
            }
            state.metrics.webhook("github", "accepted");
            state.nudge.notify_one();
            (StatusCode::ACCEPTED, "accepted\n")
        }
    }
}

async fn registry_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    use crate::registry::webhook::{self, WebhookError};
    if let Some(token) = &state.registry_token
        && !headers.contains_key(webhook::SIGNATURE_HEADER)
    {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            presented.as_bytes(),
            token.expose().as_bytes(),
        )) {
            state.metrics.webhook("registry", "bad_token");
            return (
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token\n".into(),
            );
        }
    }
    match webhook::parse(&headers, &body, state.registry_hmac.as_ref()) {
        Err(e @ (WebhookError::BadSignature | WebhookError::MissingSignature)) => {
            state.metrics.webhook("registry", "bad_signature");
            (StatusCode::UNAUTHORIZED, format!("{e}\n"))
        }
        Err(e) => {
            state.metrics.webhook("registry", "malformed");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
        Ok(hints) if hints.is_empty() => {
            state.metrics.webhook("registry", "ignored");
            (StatusCode::NO_CONTENT, String::new())
        }
        Ok(hints) => {
            let n = hints.len();
            {
                let mut pending = state
                    .registry_hints
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                pending.extend(hints);
                let excess = pending.len().saturating_sub(MAX_PENDING_HINTS);
                pending.drain(..excess);
            }
            state.metrics.webhook("registry", "accepted");
            state.nudge.notify_one();
            (StatusCode::ACCEPTED, format!("{n} hint(s) accepted\n"))
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

    const DISTRIBUTION: &str = r#"{"events":[{"id":"e1","timestamp":"2026-11-21T10:00:00Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","repository":"shop/web","url":"http://127.0.0.1:5000/v2/shop/web/manifests/sha256:0000000000000000000000000000000000000000000000000000000000000001","tag":"1.5.0"},"request":{"host":"127.0.0.1:5000"}}]}"#;

    fn registry_post(body: &str, bearer: Option<&str>) -> Request<Body> {
        let mut b = Request::post("/webhooks/registry").header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        );
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn a_registry_notification_becomes_a_hint_and_wakes_the_engine() {
        let s = state();
        let res = app(s.clone())
            .oneshot(registry_post(DISTRIBUTION, None))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert!(nudged(&s).await);
        let hints = s.take_registry_hints();
        assert_eq!(hints.len(), 1);
        assert_eq!(hints[0].repository, "shop/web");
        assert_eq!(hints[0].tag.as_deref(), Some("1.5.0"));
        assert!(s.take_registry_hints().is_empty());
    }

    #[tokio::test]
    async fn with_a_registry_token_configured_senders_must_present_it() {
        let mut st = AppState::new(None, "baton[bot]");
        st.registry_token = Some(Secret::new("reg-token"));
        let s = Arc::new(st);
        for bearer in [None, Some("nope")] {
            let res = app(s.clone())
                .oneshot(registry_post(DISTRIBUTION, bearer))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        assert!(s.take_registry_hints().is_empty());
        let res = app(s.clone())
            .oneshot(registry_post(DISTRIBUTION, Some("reg-token")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = app(s.clone())
            .oneshot(registry_post("not json", Some("reg-token")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
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

    async fn body_text(res: axum::response::Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    fn seeded() -> Arc<AppState> {
        let s = state();
        let f = view::tests::fixture();
        s.set_view(StatusView::build(&f.inputs(view::tests::at(10, 0)), None));
        s
    }

    #[tokio::test]
    async fn before_the_first_pass_the_page_and_the_api_say_so() {
        let s = state();
        let res = app(s.clone()).oneshot(get("/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = body_text(res).await;
        assert!(html.contains("waiting for the first pass"), "{html}");
        assert!(html.contains("No apps or environments yet."));
        let json: serde_json::Value = serde_json::from_str(
            &body_text(app(s).oneshot(get("/api/v1/state")).await.unwrap()).await,
        )
        .unwrap();
        assert_eq!(json["updatedAt"], serde_json::Value::Null);
        assert_eq!(json["apps"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn the_page_escapes_everything_from_git_and_the_forge() {
        let s = state();
        let mut f = view::tests::fixture();
        f.repo.name = "<script>alert(1)</script>".into();
        f.open[0].blocking = Some("policy: <img src=x onerror=alert(1)> & \"quoted\"".into());
        f.open[0].hold_reason = Some("<b>why</b>".into());
        f.open[0].held = true;
        s.set_view(StatusView::build(&f.inputs(view::tests::at(10, 0)), None));
        let html = body_text(app(s).oneshot(get("/")).await.unwrap()).await;
        // The page's own polling script is the only one.
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>why"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("policy: &lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;")
        );
        assert!(html.contains("on hold: &lt;b&gt;why&lt;/b&gt;"));
    }

    #[tokio::test]
    async fn the_state_api_is_the_view_in_camel_case() {
        let s = seeded();
        let res = app(s).oneshot(get("/api/v1/state")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
        assert_eq!(json["repo"]["name"], "shop/config");
        assert_eq!(json["updatedAt"], "2026-11-21T10:00:00Z");
        assert_eq!(json["environments"][0]["name"], "dev");
        let staging = &json["apps"][0]["cells"][1];
        assert_eq!(staging["env"], "staging");
        assert_eq!(staging["health"], "failed");
        assert_eq!(staging["pinned"]["tag"], "1.4.0");
        assert_eq!(staging["pending"]["number"], 7);
        assert_eq!(
            staging["pending"]["url"],
            "https://github.com/shop/config/pull/7"
        );
        assert_eq!(staging["pending"]["to"]["tag"], "1.5.0");
        assert!(
            staging["pending"]["blocking"]
                .as_str()
                .unwrap()
                .starts_with("soak:")
        );
        assert_eq!(staging["pending"]["held"], false);
        let dev = &json["apps"][0]["cells"][0];
        assert_eq!(dev["lastDeploy"]["pullRequest"], 6);
        assert_eq!(dev["since"], "2026-11-21T09:00:00Z");
    }

    fn entries() -> Vec<crate::gitrepo::history::Entry> {
        view::tests::fixture().history
    }

    #[tokio::test]
    async fn history_is_read_from_the_installed_source_with_the_query_as_filter() {
        let s = seeded();
        let res = app(s.clone())
            .oneshot(get("/api/v1/history"))
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "no source yet"
        );
        let seen = Arc::new(std::sync::Mutex::new(None));
        let seen2 = seen.clone();
        s.set_history(Arc::new(move |f: &crate::gitrepo::history::Filter| {
            *seen2.lock().unwrap() = Some(f.clone());
            Ok(entries()
                .into_iter()
                .take(f.limit.unwrap_or(usize::MAX))
                .collect())
        }));
        let res = app(s.clone())
            .oneshot(get(
                "/api/v1/history?env=dev&app=web&limit=1&since=2026-11-01T00:00:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
        let list = json["entries"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["environment"], "dev");
        assert_eq!(list[0]["tag"], "1.5.0");
        assert_eq!(list[0]["pullRequest"], 6);
        let f = seen.lock().unwrap().clone().unwrap();
        assert_eq!(
            (f.environment.as_deref(), f.app.as_deref(), f.limit),
            (Some("dev"), Some("web"), Some(1))
        );
        assert!(f.since.is_some());
        // Defaults, and the refusals.
        app(s.clone())
            .oneshot(get("/api/v1/history"))
            .await
            .unwrap();
        assert_eq!(
            seen.lock().unwrap().as_ref().unwrap().limit,
            Some(HISTORY_DEFAULT_LIMIT)
        );
        for (q, status) in [
            ("limit=0", StatusCode::BAD_REQUEST),
            ("limit=5000", StatusCode::BAD_REQUEST),
            ("limit=many", StatusCode::BAD_REQUEST),
            ("env=qa", StatusCode::NOT_FOUND),
            ("app=nope", StatusCode::NOT_FOUND),
        ] {
            let res = app(s.clone())
                .oneshot(get(&format!("/api/v1/history?{q}")))
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{q}");
            let json: serde_json::Value = serde_json::from_str(&body_text(res).await).unwrap();
            assert!(json["error"].is_string(), "{q}: {json}");
        }
    }

    #[tokio::test]
    async fn metrics_recorded_by_the_loops_are_served_at_metrics() {
        let s = state();
        s.metrics
            .reconciled("prod", std::time::Duration::from_millis(120), 1, true);
        s.metrics.rate_limit("forge", "github", 4321);
        let res = app(s).oneshot(get("/metrics")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = body_text(res).await;
        for line in [
            "baton_reconcile_duration_seconds_count{env=\"prod\"} 1",
            "baton_drift_corrections_total{env=\"prod\"} 1",
            "baton_rate_limit_remaining{kind=\"forge\",target=\"github\"} 4321",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
