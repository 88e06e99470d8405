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
//!
//! This file holds construction, identity and the [`Forge`] impl, which hands each call to the
//! module of its concern: `credentials` (tokens, App tokens, who they act as), `transport` (the
//! send loop: counting, conditional reads, rate limits, retries), `pulls`, `comments`,
//! `reviews` (and permissions, teams), `deployments` (GitHub Deployments and their statuses),
//! `issues` (the dashboard issue), `rules` (rulesets and branch protection), `checks` (statuses and check runs), and `wire` (GitHub's
//! answers as read).

mod checks;
mod comments;
mod commits;
mod credentials;
mod deployments;
mod gitdata;
mod issues;
mod pulls;
mod reviews;
mod rules;
mod transport;
mod wire;

pub use credentials::GitHubAuth;
use pulls::GRAPHQL_ROUTE;
use transport::*;
use wire::*;

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
    CommentInfo, CommitStatus, DeploymentInfo, DeploymentStatusInfo, Forge, ForgeError,
    IssueFilter, IssueInfo, IssueUpdate, Merged, NewDeployment, NewDeploymentStatus,
    NewPullRequest, PrState, PullRequestInfo, Result, StatusState, StatusUpdate,
};
use crate::commands::Permission;
use crate::config::pipeline::MergeMethod;
use crate::config::runtime::GitHubConfig;
use crate::config::secret::Secret;
use crate::promote::BaseRules;
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
    /// Pacing of content-creating writes (every call but `GET`): at most `.0` per `.1`, for
    /// each pair. GitHub's secondary-limit guidance: 80 a minute, 500 an hour. Writes wait
    /// their turn in one queue (first come, first served, so every app's promotion gets its
    /// turn); a turn further away than `max_rate_limit_wait` is [`ForgeError::RateLimited`].
    pub write_limits: Vec<(u32, Duration)>,
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
            write_limits: vec![
                (80, Duration::from_secs(60)),
                (500, Duration::from_secs(3600)),
            ],
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
    /// The client for GitHub's GraphQL endpoint ([`graphql_url`]): `crab` itself on github.com,
    /// one rooted at `https://HOST/api` on GitHub Enterprise Server.
    graphql: Arc<Octocrab>,
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
    /// When GitHub last refused to show branch protection (`403`): not asked again for
    /// `permission_ttl`, so that an App without *Administration: read* does not spend a call
    /// on every pass.
    protection_refused: Mutex<Option<Instant>>,
    /// When recent writes were sent, oldest first: the write queue ([`GitHubOptions::write_limits`]).
    writes: tokio::sync::Mutex<std::collections::VecDeque<Instant>>,
    /// The lease writes are made under ([`GitHubForge::set_fence`]); unset: always.
    fence: std::sync::OnceLock<crate::leader::Fence>,
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

    /// Make every write wait for this lease: once [`crate::leader::Fence::holds`] is false (the
    /// renew deadline passed, another replica may act), writes fail with
    /// [`ForgeError::Fenced`] before they are sent. Set once; later calls are ignored.
    pub fn set_fence(&self, fence: crate::leader::Fence) {
        let _ = self.fence.set(fence);
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
        let graphql_base = graphql_base(&api_url);
        let builder_at = |base: &str| {
            Ok::<_, ForgeError>(
                Octocrab::builder()
                    .base_uri(base)
                    .map_err(|_| config_error(format!("github.apiUrl `{api_url}` is not a URL")))?
                    // Retries are baton's (counted, with backoff and bounded rate-limit waits).
                    .add_retry_config(RetryConfig::None)
                    .set_connect_timeout(Some(options.timeout))
                    .set_read_timeout(Some(options.timeout))
                    .set_write_timeout(Some(options.timeout)),
            )
        };
        let builder = || builder_at(&api_url);
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
        let (crab, graphql, app) = match auth {
            GitHubAuth::Token(token) => {
                let build = |base: &str| {
                    builder_at(base)?
                        .personal_token(token.expose().to_owned())
                        .build()
                        .map(Arc::new)
                        .map_err(build_error)
                };
                let crab = build(&api_url)?;
                let graphql = if graphql_base == api_url {
                    crab.clone()
                } else {
                    build(&graphql_base)?
                };
                (crab, graphql, None)
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
                let graphql = if graphql_base == api_url {
                    crab.clone()
                } else {
                    Arc::new(builder_at(&graphql_base)?.build().map_err(build_error)?)
                };
                let tokens = credentials::AppTokens::new(
                    app_id,
                    installation_id,
                    app_crab,
                    chrono::Duration::from_std(options.token_refresh_margin)
                        .unwrap_or(chrono::Duration::minutes(5)),
                    counts.clone(),
                );
                (crab, graphql, Some(Arc::new(tokens)))
            }
        };
        Ok(Self {
            crab,
            graphql,
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
            protection_refused: Mutex::default(),
            writes: tokio::sync::Mutex::default(),
            fence: std::sync::OnceLock::new(),
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
}

const ROUTE_PULLS: &str = "/repos/{owner}/{repo}/pulls";
const ROUTE_PULL: &str = "/repos/{owner}/{repo}/pulls/{pull_number}";
const ROUTE_COMMENTS: &str = "/repos/{owner}/{repo}/issues/{issue_number}/comments";

impl Forge for GitHubForge {
    fn bot_login(&self) -> &str {
        &self.bot_login
    }

    async fn open_promotion_prs(&self) -> Result<Vec<PullRequestInfo>> {
        pulls::open_promotion_prs(self).await
    }

    async fn recently_closed_promotion_prs(&self, limit: u8) -> Result<Vec<PullRequestInfo>> {
        pulls::recently_closed_promotion_prs(self, limit).await
    }

    async fn open_pull_requests(&self) -> Result<Vec<PullRequestInfo>> {
        pulls::open_pull_requests(self).await
    }

    async fn pull_request(&self, number: u64) -> Result<PullRequestInfo> {
        pulls::pull_request(self, number).await
    }

    async fn open_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequestInfo> {
        pulls::open_pull_request(self, pr).await
    }

    async fn update_pull_request(&self, number: u64, title: &str, body: &str) -> Result<()> {
        pulls::update_pull_request(self, number, title, body).await
    }

    async fn close_pull_request(&self, number: u64) -> Result<()> {
        pulls::close_pull_request(self, number).await
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<()> {
        pulls::add_labels(self, number, labels).await
    }

    async fn remove_label(&self, number: u64, label: &str) -> Result<()> {
        pulls::remove_label(self, number, label).await
    }

    async fn request_reviewers(&self, number: u64, approvers: &[String]) -> Result<()> {
        reviews::request_reviewers(self, number, approvers).await
    }

    async fn reviews(&self, number: u64) -> Result<Vec<Review>> {
        reviews::reviews(self, number).await
    }

    async fn comments(&self, number: u64) -> Result<Vec<CommentInfo>> {
        comments::comments(self, number).await
    }

    async fn create_comment(&self, number: u64, body: &str) -> Result<u64> {
        comments::create_comment(self, number, body).await
    }

    async fn update_comment(&self, comment_id: u64, body: &str) -> Result<()> {
        comments::update_comment(self, comment_id, body).await
    }

    async fn react(&self, comment_id: u64, content: &str) -> Result<()> {
        comments::react(self, comment_id, content).await
    }

    async fn checks(&self, sha: &str) -> Result<Vec<Check>> {
        checks::checks(self, sha).await
    }

    async fn set_status(&self, sha: &str, status: &StatusUpdate) -> Result<()> {
        checks::set_status(self, sha, status).await
    }

    async fn statuses(&self, sha: &str) -> Result<Vec<CommitStatus>> {
        checks::statuses(self, sha).await
    }

    async fn permission(&self, login: &str) -> Result<Permission> {
        reviews::permission(self, login).await
    }

    async fn team_members(&self, org: &str, slug: &str) -> Result<Vec<String>> {
        reviews::team_members(self, org, slug).await
    }

    async fn head_pushed_at(&self, branch: &str, sha: &str) -> Result<Option<DateTime<Utc>>> {
        pulls::head_pushed_at(self, branch, sha).await
    }

    async fn base_rules(&self, branch: &str) -> Result<BaseRules> {
        rules::base_rules(self, branch).await
    }

    async fn deployments(&self, environment: &str, sha: &str) -> Result<Vec<DeploymentInfo>> {
        deployments::deployments(self, environment, sha).await
    }

    async fn create_deployment(&self, deployment: &NewDeployment) -> Result<DeploymentInfo> {
        deployments::create_deployment(self, deployment).await
    }

    async fn deployment_statuses(&self, deployment_id: u64) -> Result<Vec<DeploymentStatusInfo>> {
        deployments::deployment_statuses(self, deployment_id).await
    }

    async fn create_deployment_status(
        &self,
        deployment_id: u64,
        status: &NewDeploymentStatus,
    ) -> Result<()> {
        deployments::create_deployment_status(self, deployment_id, status).await
    }

    async fn issues(&self, filter: &IssueFilter) -> Result<Vec<IssueInfo>> {
        issues::issues(self, filter).await
    }

    async fn create_issue(&self, title: &str, body: &str, labels: &[String]) -> Result<IssueInfo> {
        issues::create_issue(self, title, body, labels).await
    }

    async fn update_issue(&self, number: u64, update: &IssueUpdate) -> Result<()> {
        issues::update_issue(self, number, update).await
    }

    async fn merge(
        &self,
        number: u64,
        sha: &str,
        method: MergeMethod,
        title: &str,
        message: &str,
    ) -> Result<Merged> {
        pulls::merge(self, number, sha, method, title, message).await
    }

    async fn enqueue(&self, number: u64, sha: &str) -> Result<()> {
        pulls::enqueue(self, number, sha).await
    }

    fn makes_verified_commits(&self) -> bool {
        self.app.is_some()
    }

    async fn create_commit(
        &self,
        branch: &str,
        parent: &str,
        base_tree: &str,
        message: &str,
        files: &[(String, String)],
    ) -> Result<String> {
        gitdata::create_commit(self, branch, parent, base_tree, message, files).await
    }
}

/// The base the GraphQL client is rooted at: the REST base, except on GitHub Enterprise Server,
/// whose REST API is under `https://HOST/api/v3` and GraphQL at `https://HOST/api/graphql`.
fn graphql_base(api_url: &str) -> String {
    let api_url = api_url.trim_end_matches('/');
    match api_url.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api"),
        None => api_url.to_owned(),
    }
}

/// GitHub's GraphQL endpoint for the REST API at `api_url`: `https://api.github.com/graphql`,
/// `https://HOST/api/graphql` on GitHub Enterprise Server.
pub fn graphql_url(api_url: &str) -> String {
    format!("{}/graphql", graphql_base(api_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_is_beside_the_rest_api_on_github_com_and_at_api_graphql_on_enterprise_server() {
        assert_eq!(
            graphql_url("https://api.github.com"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            graphql_url("https://api.github.com/"),
            "https://api.github.com/graphql"
        );
        // GitHub Enterprise Cloud with data residency: api.<subdomain>.ghe.com, as github.com.
        assert_eq!(
            graphql_url("https://api.octo.ghe.com"),
            "https://api.octo.ghe.com/graphql"
        );
        assert_eq!(
            graphql_url("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            graphql_url("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com/api/graphql"
        );
        assert_eq!(
            graphql_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/graphql"
        );
    }

    /// On a GitHub Enterprise Server layout (REST under `/api/v3`), `enqueue` reads the pull
    /// under `/api/v3` and posts the mutation to `/api/graphql`, through the production client.
    #[tokio::test]
    async fn enqueue_on_enterprise_server_posts_to_api_graphql() {
        use axum::routing::{get, post};
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let pull = json!({
            "number": 7, "node_id": "PR_kw7", "title": "t", "body": null, "state": "open",
            "merged_at": null, "merged": false, "merge_commit_sha": null, "user": null,
            "head": {"ref": "baton/dev/web", "sha": "abc123", "repo": null},
            "base": {"ref": "main", "sha": "def456", "repo": null},
        });
        let log = |seen: &Arc<Mutex<Vec<String>>>, what: String| seen.lock().unwrap().push(what);
        let router = axum::Router::new()
            .route(
                "/api/v3/repos/shop/config/pulls/7",
                get({
                    let seen = seen.clone();
                    move || async move {
                        log(&seen, "GET /api/v3/repos/shop/config/pulls/7".into());
                        axum::Json(pull)
                    }
                }),
            )
            .route(
                "/api/graphql",
                post({
                    let seen = seen.clone();
                    move |body: axum::Json<Value>| async move {
                        log(&seen, format!("POST /api/graphql {}", body.0["variables"]));
                        axum::Json(json!({"data": {"enqueuePullRequest": {
                            "mergeQueueEntry": {"id": "MQE_1", "position": 1, "state": "QUEUED"}
                        }}}))
                    }
                }),
            )
            .fallback(|uri: http::Uri| async move {
                (StatusCode::NOT_FOUND, format!("no route {uri}"))
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let forge = GitHubForge::new(
            &format!("http://{addr}/api/v3"),
            "shop/config",
            GitHubAuth::Token(Secret::new("t0ken")),
            "bot",
            GitHubOptions::default(),
        )
        .unwrap();
        forge.enqueue(7, "abc123").await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "GET /api/v3/repos/shop/config/pulls/7");
        assert!(
            seen[1].starts_with("POST /api/graphql ") && seen[1].contains("PR_kw7"),
            "{seen:?}"
        );
        assert_eq!(forge.calls().by_route.get("POST /graphql"), Some(&1));
        server.abort();
    }
}
