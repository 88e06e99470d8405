//! [`Forge`] on GitHub's REST API through octocrab, for one repository.
//!
//! octocrab supplies the HTTP client, the base URL and authentication (a token, or a GitHub App
//! whose installation token it mints and renews). The calls themselves go through one loop here,
//! [`GitHubForge::send`], because baton needs things octocrab's typed API does not give:
//!
//! - every attempt is counted by `METHOD /route/template` ([`GitHubForge::calls`]), the numbers
//!   the benchmarks report per promotion and per idle re-plan;
//! - rate limits are honoured with bounded waits: the primary limit (`x-ratelimit-remaining: 0`
//!   until `x-ratelimit-reset`) and secondary limits (`403`/`429` with `retry-after`); a wait
//!   longer than [`GitHubOptions::max_rate_limit_wait`] becomes [`ForgeError::RateLimited`] so
//!   the caller can requeue instead of blocking;
//! - `5xx` and transport failures are retried with exponential backoff, a bounded number of
//!   times, then become [`ForgeError::Unavailable`]; writes whose effect is ambiguous after such
//!   a failure (opening a PR, posting a comment, merging, creating a check run) first look
//!   whether the earlier attempt went through, so a retry never duplicates them;
//! - with App credentials, `set_status` writes check runs (one per name and commit, updated in
//!   place) instead of commit statuses, and `statuses` reads them back as statuses;
//! - reads are conditional (`If-None-Match` with the last `ETag`): GitHub answers `304` without
//!   charging the rate limit, so an idle re-plan costs next to nothing;
//! - responses are read as JSON into small local types, which tolerate fields octocrab's models
//!   get wrong (the collaborator permission endpoint's `"permission": "write"`).
//!
//! Secrets (the token, the App key, minted installation tokens) are held by octocrab or in
//! [`Secret`]s and never appear in errors, logs or `Debug` output.

mod credentials;

pub use credentials::GitHubAuth;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::header::{ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LINK};
use http::{Method, StatusCode};
use octocrab::Octocrab;
use octocrab::models::AppId;
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    CommentInfo, CommitStatus, Forge, ForgeError, Merged, NewPullRequest, PrState, PullRequestInfo,
    Result, StatusState, StatusUpdate,
};
use crate::commands::Permission;
use crate::config::pipeline::MergeMethod;
use crate::config::runtime::GitHubConfig;
use crate::config::secret::Secret;
use crate::promote::state::{Check, CheckState, Review, ReviewState};

/// GitHub's limit on a commit status description.
const STATUS_DESCRIPTION_LIMIT: usize = 140;
/// Pages followed at most for one list (100 items each).
const MAX_PAGES: usize = 50;
/// Conditional-request cache entries kept at most; the cache is emptied when it grows past this.
const MAX_CACHED: usize = 4096;

/// Retry and wait bounds. The defaults suit production; tests shrink them.
#[derive(Debug, Clone)]
pub struct GitHubOptions {
    /// Retries after a `5xx` or transport failure (so `max_retries + 1` attempts).
    pub max_retries: u32,
    /// First backoff after a failure; doubled per retry, capped at 30 s.
    pub backoff_base: Duration,
    /// Retries after a rate-limit answer (each after its wait).
    pub max_rate_limit_retries: u32,
    /// The longest baton waits for a rate limit to lift within one call; longer waits return
    /// [`ForgeError::RateLimited`] at once.
    pub max_rate_limit_wait: Duration,
    /// Wait after a secondary limit that names no time (GitHub: "at least one minute").
    pub secondary_default_wait: Duration,
    /// Connect, read and write timeout of one request.
    pub timeout: Duration,
    /// Installation tokens are renewed when they expire within this margin.
    pub token_refresh_margin: Duration,
    /// How long a collaborator's permission is cached.
    pub permission_ttl: Duration,
    /// Send `If-None-Match` on reads.
    pub conditional_requests: bool,
}

impl Default for GitHubOptions {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            max_rate_limit_retries: 3,
            max_rate_limit_wait: Duration::from_secs(60),
            secondary_default_wait: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            token_refresh_margin: Duration::from_secs(300),
            permission_ttl: Duration::from_secs(300),
            conditional_requests: true,
        }
    }
}

/// The GitHub rate limit as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limit: Option<u64>,
    pub remaining: u64,
    pub reset: Option<DateTime<Utc>>,
}

/// Calls made so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Attempts by `"METHOD /route/template"` (retries count; the route templates are GitHub's,
    /// e.g. `GET /repos/{owner}/{repo}/pulls`).
    pub by_route: BTreeMap<String, u64>,
    /// Of those, conditional reads GitHub answered `304 Not Modified` (free of rate limit).
    pub not_modified: u64,
    /// Attempts repeated after a `5xx`, a transport failure or a rate limit.
    pub retries: u64,
}

impl CallStats {
    /// All attempts.
    pub fn total(&self) -> u64 {
        self.by_route.values().sum()
    }

    /// Attempts that are not `GET`.
    pub fn writes(&self) -> u64 {
        self.by_route
            .iter()
            .filter(|(k, _)| !k.starts_with("GET "))
            .map(|(_, v)| v)
            .sum()
    }

    /// Attempts that counted against the rate limit (all but `304`s).
    pub fn charged(&self) -> u64 {
        self.total() - self.not_modified
    }
}

/// The GitHub forge for one repository.
pub struct GitHubForge {
    crab: Arc<Octocrab>,
    api_url: String,
    owner: String,
    repo: String,
    bot_login: String,
    app: Option<Arc<credentials::AppTokens>>,
    /// The token, for Git (`git_auth`), when not an App.
    token: Option<Secret>,
    options: GitHubOptions,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    not_modified: AtomicU64,
    retries: AtomicU64,
    rate: Mutex<Option<RateLimitStatus>>,
    etags: Mutex<HashMap<String, Cached>>,
    permissions: Mutex<HashMap<String, (Permission, Instant)>>,
}

#[derive(Clone)]
struct Cached {
    etag: HeaderValue,
    link: Option<HeaderValue>,
    body: String,
}

impl std::fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubForge")
            .field("api_url", &self.api_url)
            .field("repository", &format_args!("{}/{}", self.owner, self.repo))
            .field("bot_login", &self.bot_login)
            .field(
                "auth",
                &if self.app.is_some() {
                    "app installation"
                } else {
                    "token"
                },
            )
            .finish_non_exhaustive()
    }
}

fn config_error(message: impl Into<String>) -> ForgeError {
    ForgeError::Config(message.into())
}

impl GitHubForge {
    /// The forge described by the runtime config, with the bot's login given rather than asked
    /// of GitHub (production uses [`GitHubForge::connect`]): `repository` is `owner/name` (see
    /// `RuntimeConfig::github_repository`), `bot_login` the login baton's comments appear
    /// under (`<app-slug>[bot]` for an App). Secrets are read now. Needs a Tokio runtime.
    pub fn from_config(
        config: &GitHubConfig,
        repository: &str,
        bot_login: impl Into<String>,
    ) -> Result<Self> {
        Self::from_config_with(config, repository, bot_login, GitHubOptions::default())
    }

    /// [`GitHubForge::from_config`] with explicit retry and wait bounds.
    pub fn from_config_with(
        config: &GitHubConfig,
        repository: &str,
        bot_login: impl Into<String>,
        options: GitHubOptions,
    ) -> Result<Self> {
        let auth = match (&config.token, &config.app) {
            (Some(_), Some(_)) => {
                return Err(config_error("github: set either token: or app:, not both"));
            }
            (Some(token), None) => GitHubAuth::Token(
                token
                    .resolve()
                    .map_err(|e| config_error(format!("github.token: {e}")))?,
            ),
            (None, Some(app)) => GitHubAuth::App {
                app_id: app.app_id,
                installation_id: app.installation_id,
                private_key: app
                    .private_key
                    .resolve()
                    .map_err(|e| config_error(format!("github.app.privateKey: {e}")))?,
            },
            (None, None) => {
                return Err(config_error(
                    "github: no credentials; set token: or app: (appId, installationId, privateKey)",
                ));
            }
        };
        Self::new(&config.api_url, repository, auth, bot_login, options)
    }

    /// A forge for `repository` (`owner/name`) at `api_url` (`https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server). Needs a Tokio runtime.
    pub fn new(
        api_url: &str,
        repository: &str,
        auth: GitHubAuth,
        bot_login: impl Into<String>,
        options: GitHubOptions,
    ) -> Result<Self> {
        let (owner, repo) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| {
                config_error(format!(
                    "github.repository `{repository}` is not of the form owner/name"
                ))
            })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(config_error(
                "the GitHub client must be built inside a Tokio runtime",
            ));
        }
        // octocrab's client needs a process-default rustls provider.
        crate::tls::install_crypto_provider();
        let api_url = api_url.trim_end_matches('/').to_owned();
        let builder = || {
            Ok::<_, ForgeError>(
                Octocrab::builder()
                    .base_uri(api_url.as_str())
                    .map_err(|_| config_error(format!("github.apiUrl `{api_url}` is not a URL")))?
                    // Retries are baton's (counted, with backoff and bounded rate-limit waits).
                    .add_retry_config(RetryConfig::None)
                    .set_connect_timeout(Some(options.timeout))
                    .set_read_timeout(Some(options.timeout))
                    .set_write_timeout(Some(options.timeout)),
            )
        };
        let build_error = |e: octocrab::Error| {
            config_error(format!(
                "cannot build the GitHub client: {}",
                first_line(&e)
            ))
        };
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let token = match &auth {
            GitHubAuth::Token(t) => Some(t.clone()),
            GitHubAuth::App { .. } => None,
        };
        let (crab, app) = match auth {
            GitHubAuth::Token(token) => {
                let crab = builder()?
                    .personal_token(token.expose().to_owned())
                    .build()
                    .map_err(build_error)?;
                (Arc::new(crab), None)
            }
            GitHubAuth::App {
                app_id,
                installation_id,
                private_key,
            } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key.expose().as_bytes())
                    .map_err(|_| {
                        config_error("github.app.privateKey is not an RSA private key in PEM form")
                    })?;
                // The App (JWT) mints installation tokens; the REST client sends the current one
                // itself, so that baton alone decides when to renew it (and counts it).
                let app_crab = builder()?
                    .app(AppId(app_id), key)
                    .build()
                    .map_err(build_error)?;
                let crab = Arc::new(builder()?.build().map_err(build_error)?);
                let tokens = credentials::AppTokens::new(
                    app_id,
                    installation_id,
                    app_crab,
                    chrono::Duration::from_std(options.token_refresh_margin)
                        .unwrap_or(chrono::Duration::minutes(5)),
                    counts.clone(),
                );
                (crab, Some(Arc::new(tokens)))
            }
        };
        Ok(Self {
            crab,
            api_url,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            bot_login: bot_login.into(),
            app,
            token,
            options,
            counts,
            not_modified: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            rate: Mutex::default(),
            etags: Mutex::default(),
            permissions: Mutex::default(),
        })
    }

    /// The forge the runtime config describes, with the bot's login asked of GitHub
    /// ([`GitHubForge::identify`]); `github.botLogin`, when set, must agree with it.
    pub async fn connect(config: &GitHubConfig, repository: &str) -> Result<Self> {
        Self::connect_with(config, repository, GitHubOptions::default()).await
    }

    /// [`GitHubForge::connect`] with explicit retry and wait bounds.
    pub async fn connect_with(
        config: &GitHubConfig,
        repository: &str,
        options: GitHubOptions,
    ) -> Result<Self> {
        let configured = config.bot_login.clone().unwrap_or_default();
        Self::from_config_with(config, repository, configured, options)?
            .identify(config.bot_login.as_deref())
            .await
    }

    /// Who these credentials act as, asked of GitHub: `<app-slug>[bot]` for an App
    /// (`GET /app`), the user's login for a token (`GET /user`). `None` when GitHub does not
    /// say: `GET /user` answers `403` to an installation token used as a plain token.
    pub async fn whoami(&self) -> Result<Option<String>> {
        if let Some(app) = &self.app {
            self.count(&Method::GET, "/app");
            let what = "GET /app";
            let request = app
                .app_crab
                .build_request(
                    http::Request::builder().method(Method::GET).uri("/app"),
                    None::<&()>,
                )
                .map_err(|e| ForgeError::Other {
                    what: what.into(),
                    message: first_line(&e),
                })?;
            let response = app
                .app_crab
                .execute(request)
                .await
                .map_err(|e| map_octocrab_error(what, e))?;
            let status = response.status();
            let body = app
                .app_crab
                .body_to_string(response)
                .await
                .map_err(|e| map_octocrab_error(what, e))?;
            let answer = Answer {
                status,
                headers: HeaderMap::new(),
                body,
            };
            let call = Call::get("/app", "/app".into());
            if !status.is_success() {
                return Err(answer.error(&call));
            }
            let me: GhAppInfo = answer.parse(&call)?;
            return Ok(Some(credentials::app_login(&me.slug)));
        }
        let call = Call::get("/user", "/user".into());
        let answer = self.send(&call).await?;
        match answer.status {
            s if s.is_success() => Ok(Some(answer.parse::<GhUser>(&call)?.login)),
            StatusCode::FORBIDDEN => Ok(None),
            _ => Err(answer.error(&call)),
        }
    }

    /// Learn the bot's login from GitHub ([`GitHubForge::whoami`]) and use it from now on.
    /// `configured` (`github.botLogin`) is an override that must agree with GitHub; it is
    /// needed only where GitHub cannot say (an installation token given as `github.token`).
    pub async fn identify(mut self, configured: Option<&str>) -> Result<Self> {
        let asked = self.whoami().await?;
        self.bot_login = credentials::agreed_login(asked, configured)?;
        tracing::info!(login = %self.bot_login, "GitHub identity");
        Ok(self)
    }

    /// Credentials for Git over https that act as this forge does: the token itself, or, for an
    /// App, the installation token, renewed before it expires (shared with the REST client).
    pub fn git_auth(&self) -> crate::gitrepo::repo::Auth {
        match (&self.app, &self.token) {
            (Some(app), _) => {
                crate::gitrepo::repo::Auth::Source(Arc::new(credentials::GitTokens(app.clone())))
            }
            (None, Some(token)) => crate::gitrepo::repo::Auth::Token(token.clone()),
            (None, None) => crate::gitrepo::repo::Auth::None,
        }
    }

    /// `owner/name`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// Calls made so far, by route.
    pub fn calls(&self) -> CallStats {
        CallStats {
            by_route: lock(&self.counts).clone(),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// Start counting from zero.
    pub fn reset_calls(&self) {
        lock(&self.counts).clear();
        self.not_modified.store(0, Ordering::Relaxed);
        self.retries.store(0, Ordering::Relaxed);
    }

    /// The rate limit from the last answer that carried `x-ratelimit-*` headers.
    pub fn rate_limit(&self) -> Option<RateLimitStatus> {
        *lock(&self.rate)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", seg(&self.owner), seg(&self.repo))
    }

    fn count(&self, method: &Method, route: &str) {
        *lock(&self.counts)
            .entry(format!("{method} {route}"))
            .or_default() += 1;
    }

    /// One call, with rate-limit waits and (when `call.retry`) retries of `5xx` and transport
    /// failures. Answers `2xx` (a `304` is turned into the cached `200`) and the `4xx` that are
    /// not rate limits, for the caller to interpret.
    async fn send(&self, call: &Call) -> Result<Answer> {
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            self.wait_for_primary_reset(call).await?;
            let outcome = match self.installation_token().await {
                Ok(token) => self.attempt(call, token.as_ref()).await,
                Err(e) => Err(e),
            };
            let retry_in = match outcome {
                Ok(answer) => match self.classify(call, &answer) {
                    Verdict::Done => return Ok(answer),
                    Verdict::RateLimited { wait, until } => {
                        if limited >= self.options.max_rate_limit_retries
                            || wait > self.options.max_rate_limit_wait
                        {
                            return Err(ForgeError::RateLimited {
                                retry_after: Some(until),
                            });
                        }
                        limited += 1;
                        tracing::warn!(call = %call.what(), wait_ms = wait.as_millis() as u64, "GitHub rate limit; waiting");
                        wait
                    }
                    Verdict::ServerError => {
                        let e = ForgeError::Unavailable {
                            what: call.what(),
                            message: format!("{} {}", answer.status, answer.message()),
                        };
                        if !call.retry || failures >= self.options.max_retries {
                            return Err(e);
                        }
                        failures += 1;
                        tracing::warn!(call = %call.what(), status = answer.status.as_u16(), attempt = failures, "GitHub server error; retrying");
                        self.backoff(failures)
                    }
                },
                Err(e @ ForgeError::Unavailable { .. }) => {
                    if !call.retry || failures >= self.options.max_retries {
                        return Err(e);
                    }
                    failures += 1;
                    tracing::warn!(call = %call.what(), error = %e, attempt = failures, "GitHub unreachable; retrying");
                    self.backoff(failures)
                }
                Err(e) => return Err(e),
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(retry_in).await;
        }
    }

    /// When the last answer said the primary limit is used up, wait for its reset (bounded)
    /// instead of spending a call on a certain `403`.
    async fn wait_for_primary_reset(&self, call: &Call) -> Result<()> {
        let Some(RateLimitStatus {
            remaining: 0,
            reset: Some(reset),
            ..
        }) = self.rate_limit()
        else {
            return Ok(());
        };
        let until = reset + chrono::Duration::seconds(1);
        let Ok(wait) = (until - Utc::now()).to_std() else {
            return Ok(());
        };
        if wait > self.options.max_rate_limit_wait {
            return Err(ForgeError::RateLimited {
                retry_after: Some(until),
            });
        }
        tracing::warn!(call = %call.what(), wait_ms = wait.as_millis() as u64, "GitHub rate limit used up; waiting for its reset");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// As an App, the installation token, renewed when it expires within the margin (one renewal
    /// at a time, counted as the call it is).
    async fn installation_token(&self) -> Result<Option<Secret>> {
        match &self.app {
            Some(app) => app.current().await.map(Some),
            None => Ok(None),
        }
    }

    async fn attempt(&self, call: &Call, token: Option<&Secret>) -> Result<Answer> {
        let cached = (call.conditional && self.options.conditional_requests)
            .then(|| lock(&self.etags).get(&call.path).cloned())
            .flatten();
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str());
        if let Some(c) = &cached {
            builder = builder.header(IF_NONE_MATCH, c.etag.clone());
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| config_error("the installation token is not a header value"))?;
            value.set_sensitive(true);
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        let request = self
            .crab
            .build_request(builder, call.body.as_ref())
            .map_err(|e| ForgeError::Other {
                what: call.what(),
                message: first_line(&e),
            })?;
        self.count(&call.method, call.route);
        let response = self
            .crab
            .execute(request)
            .await
            .map_err(|e| map_octocrab_error(&call.what(), e))?;
        let status = response.status();
        let headers = response.headers().clone();
        self.note_rate_limit(&headers);
        let body =
            self.crab
                .body_to_string(response)
                .await
                .map_err(|e| ForgeError::Unavailable {
                    what: call.what(),
                    message: format!("reading the answer: {}", first_line(&e)),
                })?;
        if status == StatusCode::NOT_MODIFIED
            && let Some(c) = cached
        {
            self.not_modified.fetch_add(1, Ordering::Relaxed);
            let mut headers = headers;
            if let Some(link) = c.link {
                headers.insert(LINK, link);
            }
            return Ok(Answer {
                status: StatusCode::OK,
                headers,
                body: c.body,
            });
        }
        if call.conditional && self.options.conditional_requests && status == StatusCode::OK {
            self.remember(&call.path, &headers, &body);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn remember(&self, path: &str, headers: &HeaderMap, body: &str) {
        let Some(etag) = headers.get(ETAG) else {
            return;
        };
        let mut etags = lock(&self.etags);
        if etags.len() >= MAX_CACHED && !etags.contains_key(path) {
            etags.clear();
        }
        etags.insert(
            path.to_owned(),
            Cached {
                etag: etag.clone(),
                link: headers.get(LINK).cloned(),
                body: body.to_owned(),
            },
        );
    }

    fn note_rate_limit(&self, headers: &HeaderMap) {
        let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") else {
            return;
        };
        *lock(&self.rate) = Some(RateLimitStatus {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining,
            reset: header_u64(headers, "x-ratelimit-reset")
                .and_then(|s| DateTime::from_timestamp(s as i64, 0)),
        });
    }

    fn classify(&self, call: &Call, answer: &Answer) -> Verdict {
        let status = answer.status;
        if status.is_server_error() {
            return Verdict::ServerError;
        }
        if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
            return Verdict::Done;
        }
        let now = Utc::now();
        if let Some(secs) = header_u64(&answer.headers, "retry-after") {
            let wait = Duration::from_secs(secs);
            return Verdict::RateLimited {
                wait,
                until: now + chrono::Duration::seconds(secs as i64),
            };
        }
        if header_u64(&answer.headers, "x-ratelimit-remaining") == Some(0)
            && let Some(reset) = header_u64(&answer.headers, "x-ratelimit-reset")
                .and_then(|s| DateTime::from_timestamp(s as i64, 0))
        {
            // One second of slack: the reset is whole seconds, the limit's clock is not.
            let until = reset + chrono::Duration::seconds(1);
            return Verdict::RateLimited {
                wait: (until - now).to_std().unwrap_or_default(),
                until,
            };
        }
        let message = answer.message().to_ascii_lowercase();
        if status == StatusCode::TOO_MANY_REQUESTS
            || message.contains("rate limit")
            || message.contains("abuse")
        {
            let wait = self.options.secondary_default_wait;
            tracing::debug!(call = %call.what(), "rate limited without a retry time");
            return Verdict::RateLimited {
                wait,
                until: now + chrono::Duration::from_std(wait).unwrap_or_default(),
            };
        }
        Verdict::Done
    }

    fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .options
            .backoff_base
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(Duration::from_secs(30));
        // Up to a quarter more, so that replicas retrying together spread out.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        exp + exp.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }

    /// `send`, then turn any answer but `2xx` into an error.
    async fn ok(&self, call: &Call) -> Result<Answer> {
        let answer = self.send(call).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(answer.error(call))
        }
    }

    async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        self.ok(call).await?.parse(call)
    }

    /// Every page of a list, following `Link: rel="next"`.
    async fn pages(&self, route: &'static str, path: String) -> Result<Vec<Answer>> {
        let mut out = Vec::new();
        let mut next = Some(path);
        while let Some(path) = next.take() {
            let answer = self.ok(&Call::get(route, path)).await?;
            next = next_link(&answer.headers).map(|url| self.relative(&url));
            out.push(answer);
            if out.len() >= MAX_PAGES {
                tracing::warn!(route, "stopped after {MAX_PAGES} pages");
                break;
            }
        }
        Ok(out)
    }

    async fn list<T: DeserializeOwned>(&self, route: &'static str, path: String) -> Result<Vec<T>> {
        let mut items = Vec::new();
        for answer in self.pages(route, path).await? {
            let call = Call::get(route, String::new());
            items.extend(answer.parse::<Vec<T>>(&call)?);
        }
        Ok(items)
    }

    /// The path and query of a URL GitHub handed out (pagination links), so that the request
    /// goes to the configured host with its credentials and nowhere else.
    fn relative(&self, url: &str) -> String {
        match url.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map(|i| rest[i..].to_owned())
                .unwrap_or_else(|| "/".to_owned()),
            None => url.to_owned(),
        }
    }

    fn pull_info(&self, p: GhPull) -> PullRequestInfo {
        let state = if p.merged_at.is_some() || p.merged == Some(true) {
            PrState::Merged
        } else if p.state == "open" {
            PrState::Open
        } else {
            PrState::Closed
        };
        PullRequestInfo {
            number: p.number,
            title: p.title,
            body: p.body.unwrap_or_default(),
            head_ref: p.head.ref_,
            head_sha: p.head.sha,
            base_ref: p.base.ref_,
            labels: p.labels.into_iter().map(|l| l.name).collect(),
            state,
            author: p.user.map(|u| u.login).unwrap_or_default(),
            html_url: p.html_url,
        }
    }

    fn is_own_head(&self, p: &GhPull) -> bool {
        p.head
            .repo
            .as_ref()
            .is_some_and(|r| r.full_name.eq_ignore_ascii_case(&self.repository()))
    }

    /// The open PR from `head` into `base`, if there is one.
    async fn find_open_pull(&self, head: &str, base: &str) -> Result<Option<GhPull>> {
        let path = self.repo_path(&format!(
            "/pulls?state=open&head={}&base={}&per_page=100",
            query(&format!("{}:{head}", self.owner)),
            query(base)
        ));
        let pulls: Vec<GhPull> = self.json(&Call::get(ROUTE_PULLS, path)).await?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.ref_ == head && p.base.ref_ == base && self.is_own_head(p)))
    }

    /// A comment by the bot with exactly `body`, updated since `since`.
    async fn find_own_comment(
        &self,
        number: u64,
        body: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let path = self.repo_path(&format!(
            "/issues/{number}/comments?since={}&per_page=100",
            query(&since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        ));
        let comments: Vec<GhComment> = self.list(ROUTE_COMMENTS, path).await?;
        Ok(comments
            .into_iter()
            .rev()
            .find(|c| {
                c.user.as_ref().is_some_and(|u| u.login == self.bot_login)
                    && c.body.as_deref() == Some(body)
            })
            .map(|c| c.id))
    }

    /// `set_status` with a token: a commit status (GitHub keeps every one; the newest per
    /// context counts).
    async fn set_commit_status(&self, sha: &str, status: &StatusUpdate) -> Result<()> {
        let state = match status.state {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        };
        let mut body = json!({
            "state": state,
            "context": status.context,
            "description": truncate_chars(&status.description, STATUS_DESCRIPTION_LIMIT),
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = json!(url);
        }
        let call = Call::new(
            Method::POST,
            "/repos/{owner}/{repo}/statuses/{sha}",
            self.repo_path(&format!("/statuses/{}", seg(sha))),
            Some(body),
        );
        self.ok(&call).await.map(drop)
    }

    /// `set_status` as a GitHub App: the App's check run named after the context on `sha`.
    /// The latest such run is read first: when it already says the same, nothing is written;
    /// otherwise it is updated, or a run is created when there is none, or when a finished run
    /// would have to go back to in progress (a new run, which becomes the latest). A create
    /// whose answer was lost is found by the next read, not made twice.
    async fn set_check_run(&self, app_id: u64, sha: &str, status: &StatusUpdate) -> Result<()> {
        let wanted = CheckRunWrite::of(status);
        let mut failures = 0;
        loop {
            let current = self
                .own_check_runs(app_id, sha, Some(&status.context))
                .await?
                .into_iter()
                .max_by_key(|r| r.id);
            let call = match current {
                Some(run) if wanted.is_written(&run) => return Ok(()),
                Some(run) if run.status != "completed" || wanted.conclusion.is_some() => Call::new(
                    Method::PATCH,
                    "/repos/{owner}/{repo}/check-runs/{check_run_id}",
                    self.repo_path(&format!("/check-runs/{}", run.id)),
                    Some(wanted.body(None)),
                ),
                _ => Call::new(
                    Method::POST,
                    "/repos/{owner}/{repo}/check-runs",
                    self.repo_path("/check-runs"),
                    Some(wanted.body(Some(sha))),
                )
                .no_retry(),
            };
            match self.ok(&call).await {
                Ok(_) => return Ok(()),
                Err(ForgeError::Unavailable { .. })
                    if call.method == Method::POST && failures < self.options.max_retries =>
                {
                    failures += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// This App's latest check runs on `sha` (of one name, or all), newest first as listed.
    async fn own_check_runs(
        &self,
        app_id: u64,
        sha: &str,
        name: Option<&str>,
    ) -> Result<Vec<GhCheckRun>> {
        let route = "/repos/{owner}/{repo}/commits/{ref}/check-runs";
        let name = name
            .map(|n| format!("&check_name={}", query(n)))
            .unwrap_or_default();
        let path = self.repo_path(&format!(
            "/commits/{}/check-runs?app_id={app_id}{name}&filter=latest&per_page=100",
            seg(sha)
        ));
        let mut runs = Vec::new();
        for answer in self.pages(route, path).await? {
            let page: GhCheckRuns = answer.parse(&Call::get(route, String::new()))?;
            runs.extend(
                page.check_runs
                    .into_iter()
                    .filter(|r| r.app.as_ref().is_some_and(|a| a.id == app_id)),
            );
        }
        Ok(runs)
    }

    async fn labels_added(&self, number: u64, labels: &[String]) -> Result<Vec<String>> {
        let call = Call::new(
            Method::POST,
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            self.repo_path(&format!("/issues/{number}/labels")),
            Some(json!({ "labels": labels })),
        );
        let added: Vec<GhLabel> = self.json(&call).await?;
        Ok(added.into_iter().map(|l| l.name).collect())
    }
}

const ROUTE_PULLS: &str = "/repos/{owner}/{repo}/pulls";
const ROUTE_PULL: &str = "/repos/{owner}/{repo}/pulls/{pull_number}";
const ROUTE_COMMENTS: &str = "/repos/{owner}/{repo}/issues/{issue_number}/comments";

impl Forge for GitHubForge {
    fn bot_login(&self) -> &str {
        &self.bot_login
    }

    async fn open_promotion_prs(&self) -> Result<Vec<PullRequestInfo>> {
        let path = self.repo_path("/pulls?state=open&per_page=100");
        let pulls: Vec<GhPull> = self.list(ROUTE_PULLS, path).await?;
        let mut out: Vec<_> = pulls
            .into_iter()
            // A fork's branch may be called `baton/...` too; only the bot's own branches count.
            .filter(|p| p.head.ref_.starts_with("baton/") && self.is_own_head(p))
            .map(|p| self.pull_info(p))
            .collect();
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    async fn recently_closed_promotion_prs(&self, limit: u8) -> Result<Vec<PullRequestInfo>> {
        let path = self.repo_path(&format!(
            "/pulls?state=closed&sort=updated&direction=desc&per_page={}",
            limit.clamp(1, 100)
        ));
        let pulls: Vec<GhPull> = self.json(&Call::get(ROUTE_PULLS, path)).await?;
        Ok(pulls
            .into_iter()
            .filter(|p| p.head.ref_.starts_with("baton/") && self.is_own_head(p))
            .map(|p| self.pull_info(p))
            .collect())
    }

    async fn open_pull_requests(&self) -> Result<Vec<PullRequestInfo>> {
        let path = self.repo_path("/pulls?state=open&per_page=100");
        let pulls: Vec<GhPull> = self.list(ROUTE_PULLS, path).await?;
        let mut out: Vec<_> = pulls.into_iter().map(|p| self.pull_info(p)).collect();
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    async fn pull_request(&self, number: u64) -> Result<PullRequestInfo> {
        let path = self.repo_path(&format!("/pulls/{number}"));
        let pull: GhPull = self.json(&Call::get(ROUTE_PULL, path)).await?;
        Ok(self.pull_info(pull))
    }

    async fn open_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequestInfo> {
        let call = Call::new(
            Method::POST,
            ROUTE_PULLS,
            self.repo_path("/pulls"),
            Some(json!({
                "title": pr.title,
                "head": pr.head,
                "base": pr.base,
                "body": pr.body,
            })),
        )
        .no_retry();
        let mut failures = 0;
        let pull = loop {
            match self.send(&call).await {
                Ok(answer) if answer.status.is_success() => break answer.parse::<GhPull>(&call)?,
                // Already open (an earlier attempt or run opened it): that one is the answer.
                Ok(answer) if answer.status == StatusCode::UNPROCESSABLE_ENTITY => {
                    match self.find_open_pull(&pr.head, &pr.base).await? {
                        Some(existing) => break existing,
                        None => return Err(answer.error(&call)),
                    }
                }
                Ok(answer) => return Err(answer.error(&call)),
                Err(e @ ForgeError::Unavailable { .. }) if failures < self.options.max_retries => {
                    failures += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(failures)).await;
                    if let Some(existing) = self.find_open_pull(&pr.head, &pr.base).await? {
                        tracing::info!(error = %e, "an earlier attempt opened the pull request");
                        break existing;
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let mut info = self.pull_info(pull);
        let missing: Vec<String> = pr
            .labels
            .iter()
            .filter(|l| !info.labels.contains(l))
            .cloned()
            .collect();
        if !missing.is_empty() {
            info.labels = self.labels_added(info.number, &missing).await?;
        }
        Ok(info)
    }

    async fn update_pull_request(&self, number: u64, title: &str, body: &str) -> Result<()> {
        let call = Call::new(
            Method::PATCH,
            ROUTE_PULL,
            self.repo_path(&format!("/pulls/{number}")),
            Some(json!({ "title": title, "body": body })),
        );
        self.ok(&call).await.map(drop)
    }

    async fn close_pull_request(&self, number: u64) -> Result<()> {
        let call = Call::new(
            Method::PATCH,
            ROUTE_PULL,
            self.repo_path(&format!("/pulls/{number}")),
            Some(json!({ "state": "closed" })),
        );
        self.ok(&call).await.map(drop)
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        self.labels_added(number, labels).await.map(drop)
    }

    async fn remove_label(&self, number: u64, label: &str) -> Result<()> {
        let call = Call::new(
            Method::DELETE,
            "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
            self.repo_path(&format!("/issues/{number}/labels/{}", seg(label))),
            None,
        );
        let answer = self.send(&call).await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(answer.error(&call))
        }
    }

    async fn request_reviewers(&self, number: u64, approvers: &[String]) -> Result<()> {
        let request = review_request(approvers, &self.owner, &self.bot_login);
        if !request.skipped.is_empty() {
            tracing::warn!(pr = number, skipped = ?request.skipped, "cannot request these reviewers: GitHub asks only teams of the repository's organization, never the PR's author");
        }
        if request.users.is_empty() && request.teams.is_empty() {
            return Ok(());
        }
        let call = Call::new(
            Method::POST,
            "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
            self.repo_path(&format!("/pulls/{number}/requested_reviewers")),
            Some(json!({ "reviewers": request.users, "team_reviewers": request.teams })),
        );
        self.ok(&call).await.map(drop)
    }

    async fn reviews(&self, number: u64) -> Result<Vec<Review>> {
        let path = self.repo_path(&format!("/pulls/{number}/reviews?per_page=100"));
        let reviews: Vec<GhReview> = self
            .list("/repos/{owner}/{repo}/pulls/{pull_number}/reviews", path)
            .await?;
        let mut out = Vec::new();
        for r in reviews {
            let state = match r.state.as_str() {
                "APPROVED" => ReviewState::Approved,
                "CHANGES_REQUESTED" => ReviewState::ChangesRequested,
                "COMMENTED" => ReviewState::Commented,
                "DISMISSED" => ReviewState::Dismissed,
                // PENDING: not submitted, not visible to anyone but its author.
                _ => continue,
            };
            let (Some(user), Some(submitted_at)) = (r.user, r.submitted_at) else {
                continue;
            };
            let permission = self.permission(&user.login).await?;
            out.push(Review {
                user: user.login,
                state,
                commit_id: r.commit_id.unwrap_or_default(),
                submitted_at,
                permission,
            });
        }
        Ok(out)
    }

    async fn comments(&self, number: u64) -> Result<Vec<CommentInfo>> {
        let path = self.repo_path(&format!("/issues/{number}/comments?per_page=100"));
        let comments: Vec<GhComment> = self.list(ROUTE_COMMENTS, path).await?;
        let mut out: Vec<CommentInfo> = comments
            .into_iter()
            .map(|c| {
                let (author, kind) = c
                    .user
                    .map(|u| (u.login, u.kind))
                    .unwrap_or_else(|| ("ghost".to_owned(), String::new()));
                CommentInfo {
                    id: c.id,
                    author_is_bot: kind == "Bot" || author.ends_with("[bot]"),
                    author,
                    body: c.body.unwrap_or_default(),
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                }
            })
            .collect();
        out.sort_by_key(|c| (c.created_at, c.id));
        Ok(out)
    }

    async fn create_comment(&self, number: u64, body: &str) -> Result<u64> {
        let call = Call::new(
            Method::POST,
            ROUTE_COMMENTS,
            self.repo_path(&format!("/issues/{number}/comments")),
            Some(json!({ "body": body })),
        )
        .no_retry();
        // Clocks differ; a minute of slack only widens the search.
        let since = Utc::now() - chrono::Duration::minutes(1);
        let mut failures = 0;
        loop {
            match self.json::<GhComment>(&call).await {
                Ok(c) => return Ok(c.id),
                Err(e @ ForgeError::Unavailable { .. }) if failures < self.options.max_retries => {
                    failures += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(failures)).await;
                    if let Some(id) = self.find_own_comment(number, body, since).await? {
                        tracing::info!(error = %e, "an earlier attempt posted the comment");
                        return Ok(id);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn update_comment(&self, comment_id: u64, body: &str) -> Result<()> {
        let call = Call::new(
            Method::PATCH,
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            self.repo_path(&format!("/issues/comments/{comment_id}")),
            Some(json!({ "body": body })),
        );
        self.ok(&call).await.map(drop)
    }

    async fn react(&self, comment_id: u64, content: &str) -> Result<()> {
        let call = Call::new(
            Method::POST,
            "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
            self.repo_path(&format!("/issues/comments/{comment_id}/reactions")),
            Some(json!({ "content": content })),
        );
        self.ok(&call).await.map(drop)
    }

    async fn checks(&self, sha: &str) -> Result<Vec<Check>> {
        let combined: GhCombinedStatus = self
            .json(&Call::get(
                "/repos/{owner}/{repo}/commits/{ref}/status",
                self.repo_path(&format!("/commits/{}/status?per_page=100", seg(sha))),
            ))
            .await?;
        let runs_route = "/repos/{owner}/{repo}/commits/{ref}/check-runs";
        let mut runs = Vec::new();
        for answer in self
            .pages(
                runs_route,
                self.repo_path(&format!(
                    "/commits/{}/check-runs?filter=latest&per_page=100",
                    seg(sha)
                )),
            )
            .await?
        {
            let page: GhCheckRuns = answer.parse(&Call::get(runs_route, String::new()))?;
            runs.extend(page.check_runs);
        }
        Ok(merge_checks(combined.statuses, runs))
    }

    async fn set_status(&self, sha: &str, status: &StatusUpdate) -> Result<()> {
        match &self.app {
            Some(app) => self.set_check_run(app.app_id, sha, status).await,
            None => self.set_commit_status(sha, status).await,
        }
    }

    async fn statuses(&self, sha: &str) -> Result<Vec<CommitStatus>> {
        let listed: Vec<GhStatus> = self
            .json(&Call::get(
                "/repos/{owner}/{repo}/commits/{ref}/statuses",
                self.repo_path(&format!("/commits/{}/statuses?per_page=100", seg(sha))),
            ))
            .await?;
        let runs = match &self.app {
            Some(app) => self.own_check_runs(app.app_id, sha, None).await?,
            None => Vec::new(),
        };
        Ok(statuses_and_own_runs(listed, runs, &self.bot_login))
    }

    async fn permission(&self, login: &str) -> Result<Permission> {
        let ttl = self.options.permission_ttl;
        if let Some((p, at)) = lock(&self.permissions).get(login)
            && at.elapsed() < ttl
        {
            return Ok(*p);
        }
        let call = Call::get(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            self.repo_path(&format!("/collaborators/{}/permission", seg(login))),
        );
        let answer = self.send(&call).await?;
        let permission = if answer.status == StatusCode::NOT_FOUND {
            Permission::None
        } else if answer.status.is_success() {
            let p: GhPermission = answer.parse(&call)?;
            permission_of(&p)
        } else {
            return Err(answer.error(&call));
        };
        lock(&self.permissions).insert(login.to_owned(), (permission, Instant::now()));
        Ok(permission)
    }

    async fn team_members(&self, org: &str, slug: &str) -> Result<Vec<String>> {
        let path = format!(
            "/orgs/{}/teams/{}/members?per_page=100",
            seg(org),
            seg(slug)
        );
        let members: Vec<GhUser> = self
            .list("/orgs/{org}/teams/{team_slug}/members", path)
            .await?;
        Ok(members.into_iter().map(|u| u.login).collect())
    }

    async fn merge(
        &self,
        number: u64,
        sha: &str,
        method: MergeMethod,
        title: &str,
        message: &str,
    ) -> Result<Merged> {
        let call = Call::new(
            Method::PUT,
            "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
            self.repo_path(&format!("/pulls/{number}/merge")),
            Some(json!({
                "sha": sha,
                "merge_method": match method {
                    MergeMethod::Merge => "merge",
                    MergeMethod::Squash => "squash",
                },
                "commit_title": title,
                "commit_message": message,
            })),
        )
        .no_retry();
        let mut failures = 0;
        loop {
            let answer = match self.send(&call).await {
                Ok(answer) => answer,
                Err(e @ ForgeError::Unavailable { .. }) if failures < self.options.max_retries => {
                    failures += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(failures)).await;
                    // The failed attempt may have merged: then that merge is the answer.
                    let pull: GhPull = self
                        .json(&Call::get(
                            ROUTE_PULL,
                            self.repo_path(&format!("/pulls/{number}")),
                        ))
                        .await?;
                    if let (Some(merge_sha), true) =
                        (&pull.merge_commit_sha, pull.merged_at.is_some())
                    {
                        if pull.head.sha == sha {
                            tracing::info!(error = %e, pr = number, "an earlier attempt merged the pull request");
                            return Ok(Merged {
                                sha: merge_sha.clone(),
                            });
                        }
                        return Err(ForgeError::NotMergeable {
                            pr: number,
                            reason: format!("it was merged at head {}, not {sha}", pull.head.sha),
                        });
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            return match answer.status {
                s if s.is_success() => {
                    let m: GhMerge = answer.parse(&call)?;
                    Ok(Merged { sha: m.sha })
                }
                StatusCode::CONFLICT => Err(ForgeError::NotMergeable {
                    pr: number,
                    reason: format!("its head is no longer {sha} ({})", answer.message()),
                }),
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNPROCESSABLE_ENTITY => {
                    Err(ForgeError::MergeRefused {
                        pr: number,
                        reason: answer.message(),
                    })
                }
                _ => Err(answer.error(&call)),
            };
        }
    }
}

/// What orders two reports: time, then check run (1) over status (0), then id.
type Rank = (Option<DateTime<Utc>>, u8, u64);

/// A check run as `set_status` writes it for a [`StatusUpdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckRunWrite {
    name: String,
    /// `in_progress` or `completed`.
    status: &'static str,
    /// `success` or `failure` when completed (a status `error` is a `failure`: check runs
    /// have no error).
    conclusion: Option<&'static str>,
    /// The description, cut like a commit status's, so that it reads back the same.
    title: String,
    /// The whole description (GitHub requires a summary; an empty description is the title).
    summary: String,
    details_url: Option<String>,
}

impl CheckRunWrite {
    fn of(status: &StatusUpdate) -> Self {
        let (state, conclusion) = match status.state {
            StatusState::Pending => ("in_progress", None),
            StatusState::Success => ("completed", Some("success")),
            StatusState::Failure | StatusState::Error => ("completed", Some("failure")),
        };
        let title = match truncate_chars(&status.description, STATUS_DESCRIPTION_LIMIT) {
            t if t.is_empty() => format!("{}: {}", status.context, conclusion.unwrap_or(state)),
            t => t,
        };
        let summary = match status.description.as_str() {
            "" => title.clone(),
            d => d.to_owned(),
        };
        Self {
            name: status.context.clone(),
            status: state,
            conclusion,
            title,
            summary,
            details_url: status.target_url.clone(),
        }
    }

    /// Whether `run` already says all of this.
    fn is_written(&self, run: &GhCheckRun) -> bool {
        let output = run.output.as_ref();
        run.name == self.name
            && run.status == self.status
            && run.conclusion.as_deref() == self.conclusion
            && output.and_then(|o| o.title.as_deref()) == Some(self.title.as_str())
            && output.and_then(|o| o.summary.as_deref()) == Some(self.summary.as_str())
            && (self.details_url.is_none() || run.details_url == self.details_url)
    }

    /// The create (with `head_sha`) or update body.
    fn body(&self, head_sha: Option<&str>) -> Value {
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut body = json!({
            "name": self.name,
            "status": self.status,
            "output": { "title": self.title, "summary": self.summary },
        });
        if let Some(sha) = head_sha {
            body["head_sha"] = json!(sha);
            body["started_at"] = json!(now);
        }
        if let Some(c) = self.conclusion {
            body["conclusion"] = json!(c);
            body["completed_at"] = json!(now);
        }
        if let Some(url) = &self.details_url {
            body["details_url"] = json!(url);
        }
        body
    }
}

/// Commit statuses and the bot's own check runs (what `set_status` writes as an App) as one
/// list of [`CommitStatus`], newest first (a check run before a status of the same time).
fn statuses_and_own_runs(
    statuses: Vec<GhStatus>,
    runs: Vec<GhCheckRun>,
    bot_login: &str,
) -> Vec<CommitStatus> {
    let mut all: Vec<(Rank, CommitStatus)> = Vec::new();
    for s in statuses {
        let at = s.updated_at.or(s.created_at);
        all.push((
            (at, 0, s.id),
            CommitStatus {
                state: match s.state.as_str() {
                    "success" => StatusState::Success,
                    "pending" => StatusState::Pending,
                    "failure" => StatusState::Failure,
                    _ => StatusState::Error,
                },
                context: s.context,
                description: s.description.unwrap_or_default(),
                creator: s.creator.map(|u| u.login).unwrap_or_default(),
                target_url: s.target_url,
            },
        ));
    }
    for r in runs {
        let at = r.completed_at.or(r.started_at);
        all.push((
            (at, 1, r.id),
            CommitStatus {
                state: match check_run_state(&r.status, r.conclusion.as_deref()) {
                    CheckState::Success => StatusState::Success,
                    CheckState::Pending => StatusState::Pending,
                    CheckState::Failure => StatusState::Failure,
                },
                context: r.name,
                description: r.output.and_then(|o| o.title).unwrap_or_default(),
                creator: bot_login.to_owned(),
                target_url: r.details_url,
            },
        ));
    }
    // Stable: statuses of one time and id (ids missing) keep GitHub's newest-first order.
    all.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    all.into_iter().map(|(_, s)| s).collect()
}

/// Who a review request for `approvers` (`approvals.from`) asks: logins as users, `@org/slug`
/// as the team `slug` when `org` is the repository's `owner`. Teams of other organizations
/// (GitHub cannot request them) and `author` (GitHub refuses to ask a PR's author) are
/// `skipped`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReviewRequest {
    users: Vec<String>,
    teams: Vec<String>,
    skipped: Vec<String>,
}

fn review_request(approvers: &[String], owner: &str, author: &str) -> ReviewRequest {
    let mut out = ReviewRequest::default();
    for who in approvers {
        let (list, name) = match who.strip_prefix('@') {
            Some(team) => match team.split_once('/') {
                Some((org, slug)) if org.eq_ignore_ascii_case(owner) && !slug.is_empty() => {
                    (&mut out.teams, slug)
                }
                _ => (&mut out.skipped, who.as_str()),
            },
            None if who.eq_ignore_ascii_case(author) || who.is_empty() => {
                (&mut out.skipped, who.as_str())
            }
            None => (&mut out.users, who.as_str()),
        };
        if !list.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            list.push(name.to_owned());
        }
    }
    out
}

/// Statuses and check runs, one per context or name: the latest, preferring a check run over a
/// status of the same name when they tie.
fn merge_checks(statuses: Vec<GhStatus>, runs: Vec<GhCheckRun>) -> Vec<Check> {
    let mut latest: BTreeMap<String, (Rank, CheckState)> = BTreeMap::new();
    let mut keep = |name: String, rank: Rank, state: CheckState| {
        if latest.get(&name).is_none_or(|(old, _)| *old < rank) {
            latest.insert(name, (rank, state));
        }
    };
    for s in statuses {
        let state = match s.state.as_str() {
            "success" => CheckState::Success,
            "pending" => CheckState::Pending,
            _ => CheckState::Failure,
        };
        keep(s.context, (s.updated_at.or(s.created_at), 0, s.id), state);
    }
    for r in runs {
        let state = check_run_state(&r.status, r.conclusion.as_deref());
        keep(r.name, (r.completed_at.or(r.started_at), 1, r.id), state);
    }
    latest
        .into_iter()
        .map(|(context, (_, state))| Check { context, state })
        .collect()
}

fn check_run_state(status: &str, conclusion: Option<&str>) -> CheckState {
    if status != "completed" {
        return CheckState::Pending;
    }
    match conclusion {
        Some("success" | "neutral" | "skipped") => CheckState::Success,
        None => CheckState::Pending,
        // failure, cancelled, timed_out, action_required, stale, startup_failure, and
        // anything newer: a finished run that did not pass.
        Some(_) => CheckState::Failure,
    }
}

/// `role_name` is the precise role (`maintain`, `triage`, or a custom role); `permission` is the
/// legacy base role, the fallback for custom roles.
fn permission_of(p: &GhPermission) -> Permission {
    match p.role_name.as_deref().map(Permission::from_github) {
        Some(Permission::None) | None => Permission::from_github(&p.permission),
        Some(role) => role,
    }
}

fn map_octocrab_error(what: &str, e: octocrab::Error) -> ForgeError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code;
            let message = format!("{status} {}", source.message);
            if status.is_server_error() {
                ForgeError::Unavailable {
                    what: what.to_owned(),
                    message,
                }
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                ForgeError::Forbidden {
                    what: what.to_owned(),
                    message,
                }
            } else {
                ForgeError::Other {
                    what: what.to_owned(),
                    message,
                }
            }
        }
        octocrab::Error::JWT { .. } => {
            config_error("cannot sign a GitHub App JWT with github.app.privateKey")
        }
        other => ForgeError::Unavailable {
            what: what.to_owned(),
            message: first_line(&other),
        },
    }
}

/// snafu's `Display` may append a backtrace; the first line says what happened.
fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == r#"rel="next""#)
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// Percent-encode a path segment.
fn seg(s: &str) -> String {
    encode(s, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Percent-encode a query value.
fn query(s: &str) -> String {
    encode(s, |b| b.is_ascii_alphanumeric() || b"-._~:".contains(&b))
}

fn encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// One REST call: what to send, and the route template it is counted under.
struct Call {
    method: Method,
    route: &'static str,
    /// Path and query, relative to the API URL.
    path: String,
    body: Option<Value>,
    /// Retry `5xx` and transport failures (safe for reads and idempotent writes).
    retry: bool,
    /// Send `If-None-Match` and keep the answer for a `304`.
    conditional: bool,
}

impl Call {
    fn new(method: Method, route: &'static str, path: String, body: Option<Value>) -> Self {
        Self {
            conditional: method == Method::GET,
            method,
            route,
            path,
            body,
            retry: true,
        }
    }

    fn get(route: &'static str, path: String) -> Self {
        Self::new(Method::GET, route, path, None)
    }

    fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// `METHOD /path` without the query, for errors and logs.
    fn what(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        let path = if path.is_empty() { self.route } else { path };
        format!("{} {path}", self.method)
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// GitHub's `message` with the messages of its validation `errors` (a `422` says
    /// "Validation Failed" and why in `errors`), or the start of the body.
    fn message(&self) -> String {
        #[derive(Deserialize)]
        struct Message {
            message: String,
            /// Objects with a `message`, or (in some answers) plain strings.
            #[serde(default)]
            errors: Vec<Value>,
        }
        match serde_json::from_str::<Message>(&self.body) {
            Ok(m) => {
                let details: Vec<&str> = m
                    .errors
                    .iter()
                    .filter_map(|e| e.get("message").unwrap_or(e).as_str())
                    .collect();
                if details.is_empty() {
                    m.message
                } else {
                    format!("{}: {}", m.message, details.join("; "))
                }
            }
            Err(_) => truncate_chars(self.body.trim(), 200),
        }
    }

    fn parse<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| ForgeError::Other {
            what: call.what(),
            message: format!("unexpected answer: {e}"),
        })
    }

    fn error(&self, call: &Call) -> ForgeError {
        let message = format!("{} {}", self.status, self.message());
        match self.status {
            StatusCode::NOT_FOUND => ForgeError::NotFound(call.what()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ForgeError::Forbidden {
                what: call.what(),
                message,
            },
            s if s.is_server_error() => ForgeError::Unavailable {
                what: call.what(),
                message,
            },
            _ => ForgeError::Other {
                what: call.what(),
                message,
            },
        }
    }
}

enum Verdict {
    Done,
    ServerError,
    RateLimited {
        wait: Duration,
        until: DateTime<Utc>,
    },
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct GhLabel {
    name: String,
}

#[derive(Deserialize)]
struct GhRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct GhBranch {
    #[serde(rename = "ref")]
    ref_: String,
    sha: String,
    repo: Option<GhRepo>,
}

#[derive(Deserialize)]
struct GhPull {
    number: u64,
    #[serde(default)]
    title: String,
    body: Option<String>,
    head: GhBranch,
    base: GhBranch,
    #[serde(default)]
    labels: Vec<GhLabel>,
    state: String,
    merged_at: Option<String>,
    /// Only in single-PR answers.
    merged: Option<bool>,
    merge_commit_sha: Option<String>,
    user: Option<GhUser>,
    #[serde(default)]
    html_url: String,
}

#[derive(Deserialize)]
struct GhComment {
    id: u64,
    user: Option<GhUser>,
    body: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct GhReview {
    user: Option<GhUser>,
    state: String,
    commit_id: Option<String>,
    submitted_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct GhCombinedStatus {
    #[serde(default)]
    statuses: Vec<GhStatus>,
}

#[derive(Deserialize)]
struct GhStatus {
    #[serde(default)]
    id: u64,
    context: String,
    state: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    creator: Option<GhUser>,
    #[serde(default)]
    target_url: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct GhCheckRuns {
    #[serde(default)]
    check_runs: Vec<GhCheckRun>,
}

#[derive(Deserialize)]
struct GhCheckRun {
    id: u64,
    name: String,
    status: String,
    conclusion: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    details_url: Option<String>,
    #[serde(default)]
    output: Option<GhCheckOutput>,
    #[serde(default)]
    app: Option<GhApp>,
}

#[derive(Deserialize)]
struct GhCheckOutput {
    title: Option<String>,
    summary: Option<String>,
}

#[derive(Deserialize)]
struct GhApp {
    id: u64,
}

#[derive(Deserialize)]
struct GhPermission {
    permission: String,
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct GhAppInfo {
    slug: String,
}

#[derive(Deserialize)]
struct GhMerge {
    sha: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    fn run(id: u64, name: &str, status: &str, conclusion: Option<&str>, at: &str) -> GhCheckRun {
        GhCheckRun {
            id,
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(Into::into),
            started_at: t(at),
            completed_at: None,
            details_url: None,
            output: None,
            app: None,
        }
    }

    fn status(id: u64, context: &str, state: &str, at: &str) -> GhStatus {
        GhStatus {
            id,
            context: context.into(),
            state: state.into(),
            created_at: t(at),
            updated_at: t(at),
            description: None,
            creator: None,
            target_url: None,
        }
    }

    #[test]
    fn check_run_conclusions_map_to_outcomes() {
        for c in ["success", "neutral", "skipped"] {
            assert_eq!(check_run_state("completed", Some(c)), CheckState::Success);
        }
        for c in [
            "failure",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
        ] {
            assert_eq!(check_run_state("completed", Some(c)), CheckState::Failure);
        }
        for s in ["queued", "in_progress", "waiting", "requested", "pending"] {
            assert_eq!(check_run_state(s, None), CheckState::Pending);
        }
    }

    #[test]
    fn the_latest_of_a_status_and_a_check_run_with_one_name_wins() {
        let checks = merge_checks(
            vec![
                status(1, "ci", "failure", "2026-01-01T10:00:00Z"),
                status(2, "baton/dev", "pending", "2026-01-01T10:00:00Z"),
                status(3, "error-ctx", "error", "2026-01-01T10:00:00Z"),
            ],
            vec![
                run(
                    10,
                    "ci",
                    "completed",
                    Some("success"),
                    "2026-01-01T11:00:00Z",
                ),
                run(11, "lint", "in_progress", None, "2026-01-01T11:00:00Z"),
            ],
        );
        let got: Vec<_> = checks
            .iter()
            .map(|c| (c.context.as_str(), c.state))
            .collect();
        assert_eq!(
            got,
            [
                ("baton/dev", CheckState::Pending),
                ("ci", CheckState::Success),
                ("error-ctx", CheckState::Failure),
                ("lint", CheckState::Pending),
            ]
        );
    }

    #[test]
    fn the_precise_role_wins_over_the_legacy_permission() {
        let p = |permission: &str, role: Option<&str>| {
            permission_of(&GhPermission {
                permission: permission.into(),
                role_name: role.map(Into::into),
            })
        };
        assert_eq!(p("write", Some("maintain")), Permission::Maintain);
        assert_eq!(p("read", Some("triage")), Permission::Triage);
        assert_eq!(p("write", Some("custom-deployer")), Permission::Write);
        assert_eq!(p("admin", None), Permission::Admin);
        assert_eq!(p("none", Some("none")), Permission::None);
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/repositories/1/pulls?page=2>; rel="next", <https://api.github.com/repositories/1/pulls?page=5>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/pulls?page=2")
        );
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<https://x/?page=1>; rel="prev""#),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn names_are_encoded_for_paths_and_queries() {
        assert_eq!(seg("env:prod"), "env%3Aprod");
        assert_eq!(seg("needs review"), "needs%20review");
        assert_eq!(seg("renovate[bot]"), "renovate%5Bbot%5D");
        assert_eq!(query("shop:baton/dev/web"), "shop:baton%2Fdev%2Fweb");
    }

    #[test]
    fn approvers_become_users_and_team_slugs_of_the_repository_owner() {
        let from: Vec<String> = [
            "alice",
            "@shop/release-managers",
            "@Shop/sre",
            "@other-org/ops",
            "baton[bot]",
            "ALICE",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            review_request(&from, "shop", "baton[bot]"),
            ReviewRequest {
                users: vec!["alice".into()],
                teams: vec!["release-managers".into(), "sre".into()],
                skipped: vec!["@other-org/ops".into(), "baton[bot]".into()],
            }
        );
        assert_eq!(review_request(&[], "shop", "x"), ReviewRequest::default());
    }

    fn update(state: StatusState, description: &str) -> StatusUpdate {
        StatusUpdate {
            context: "baton/dev".into(),
            state,
            description: description.into(),
            target_url: None,
        }
    }

    #[test]
    fn a_status_becomes_a_check_run_that_reads_back_as_the_same_status() {
        let long = "x".repeat(200);
        for (state, status, conclusion) in [
            (StatusState::Pending, "in_progress", None),
            (StatusState::Success, "completed", Some("success")),
            (StatusState::Failure, "completed", Some("failure")),
            (StatusState::Error, "completed", Some("failure")),
        ] {
            let w = CheckRunWrite::of(&update(state, &long));
            assert_eq!((w.status, w.conclusion), (status, conclusion));
            assert_eq!(w.title.chars().count(), STATUS_DESCRIPTION_LIMIT);
            assert_eq!(w.summary, long, "the summary keeps it all");
            let body = w.body(Some("abc"));
            assert_eq!(body["head_sha"], "abc");
            assert_eq!(body["conclusion"].as_str(), conclusion);
            assert!(w.body(None).get("head_sha").is_none());

            let run: GhCheckRun = serde_json::from_value(json!({
                "id": 1, "name": "baton/dev", "status": status, "conclusion": conclusion,
                "started_at": "2026-01-01T10:00:00Z", "completed_at": null,
                "output": {"title": w.title, "summary": w.summary}, "app": {"id": 7},
            }))
            .unwrap();
            assert!(w.is_written(&run));
            let read = statuses_and_own_runs(vec![], vec![run], "baton[bot]");
            assert_eq!(read[0].context, "baton/dev");
            assert_eq!(read[0].creator, "baton[bot]");
            assert_eq!(read[0].description, w.title);
            let expected = if state == StatusState::Error {
                StatusState::Failure
            } else {
                state
            };
            assert_eq!(read[0].state, expected);
        }
        let pending = CheckRunWrite::of(&update(StatusState::Pending, "applying"));
        let success = CheckRunWrite::of(&update(StatusState::Success, "applying"));
        let run: GhCheckRun = serde_json::from_value(json!({
            "id": 1, "name": "baton/dev", "status": "in_progress", "conclusion": null,
            "started_at": null, "completed_at": null,
            "output": {"title": "applying", "summary": "applying"},
        }))
        .unwrap();
        assert!(pending.is_written(&run));
        assert!(!success.is_written(&run));
        assert_eq!(
            CheckRunWrite::of(&update(StatusState::Success, "")).title,
            "baton/dev: success"
        );
    }

    #[test]
    fn own_check_runs_and_statuses_read_newest_first() {
        let mut old = status(1, "baton/dev", "failure", "2026-01-01T10:00:00Z");
        old.creator = Some(GhUser {
            login: "baton[bot]".into(),
            kind: "Bot".into(),
        });
        let newer = status(2, "ci", "success", "2026-01-01T12:00:00Z");
        let run = run(
            10,
            "baton/dev",
            "completed",
            Some("success"),
            "2026-01-01T11:00:00Z",
        );
        let read = statuses_and_own_runs(vec![newer, old], vec![run], "baton[bot]");
        let got: Vec<_> = read.iter().map(|s| (s.context.as_str(), s.state)).collect();
        assert_eq!(
            got,
            [
                ("ci", StatusState::Success),
                ("baton/dev", StatusState::Success),
                ("baton/dev", StatusState::Failure),
            ]
        );
    }

    #[test]
    fn status_descriptions_are_cut_on_characters() {
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ok", 140), "ok");
    }
}
