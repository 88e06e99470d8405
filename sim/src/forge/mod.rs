//! A stateful GitHub stand-in: the REST subset baton uses (pulls, issue comments, reactions,
//! labels, reviews, requested reviewers, commit statuses, check runs, collaborator permission,
//! team membership), Git smart HTTP for its repositories, signed webhook deliveries, rate-limit
//! headers and `Link` pagination, plus a control surface (Rust methods on [`ForgeHandle`] and
//! HTTP under `/_sim/`) to act as people and CI and to inject faults.
//!
//! Everything lives in memory except the repositories, which are real bare repos in a temp
//! directory, so merges are real commits that `git` and git2 can fetch.
//!
//! Point octocrab at [`ForgeHandle::url`] with `base_uri` and the bot token from
//! [`ForgeHandle::bot_token`]; clone from [`ForgeHandle::git_url`] with basic auth
//! `x-access-token:<token>`.

mod api;
mod control;
mod deployments;
mod gitdata;
mod gitops;
mod hooks;
mod issues;
mod json;
mod mw;
mod ops;
mod protect;
mod queue;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use tokio::sync::{Notify, mpsc};

use crate::Server;
use crate::git::{Access, GitAccess, GitOp, GitService};

pub use deployments::{DeploymentStatusView, DeploymentView};
pub use issues::IssueView;
pub use protect::Protection;
pub use state::{Delivery, Fault, FaultKind, Permission, ReviewState};

/// The bot's login unless [`ForgeOptions::bot_login`] says otherwise.
pub const DEFAULT_BOT_LOGIN: &str = "baton[bot]";
/// The bot's installation token unless [`ForgeOptions::bot_token`] says otherwise.
pub const DEFAULT_BOT_TOKEN: &str = "ghs_simbot0000000000000000000000000000";

/// An error from the forge, shaped like GitHub's: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Error {
    pub status: u16,
    pub message: String,
    /// GitHub's `errors` array for 422 answers.
    pub errors: Option<serde_json::Value>,
}

impl Error {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: None,
        }
    }

    pub(crate) fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    pub(crate) fn validation(
        resource: &str,
        field: Option<&str>,
        code: &str,
        message: Option<&str>,
    ) -> Self {
        let mut e = serde_json::json!({"resource": resource, "code": code});
        if let Some(f) = field {
            e["field"] = f.into();
        }
        if let Some(m) = message {
            e["message"] = m.into();
        }
        Self {
            status: 422,
            message: "Validation Failed".into(),
            errors: Some(serde_json::json!([e])),
        }
    }
}

/// How to start a forge.
#[derive(Debug, Clone)]
pub struct ForgeOptions {
    /// The bot's login (a `Bot` user), e.g. `baton[bot]`.
    pub bot_login: String,
    /// The bot's installation token (`ghs_...`).
    pub bot_token: String,
    /// Where the bare repositories live; a fresh temp directory when `None`.
    pub root: Option<PathBuf>,
}

impl Default for ForgeOptions {
    fn default() -> Self {
        Self {
            bot_login: DEFAULT_BOT_LOGIN.to_owned(),
            bot_token: DEFAULT_BOT_TOKEN.to_owned(),
            root: None,
        }
    }
}

pub(crate) struct Inner {
    state: Mutex<state::State>,
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    base: OnceLock<String>,
    bot_token: String,
    outgoing: mpsc::UnboundedSender<hooks::Outgoing>,
    pending: AtomicUsize,
    idle: Notify,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn base(&self) -> &str {
        self.base.get().map(String::as_str).unwrap_or("")
    }

    pub(crate) fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        crate::git::repo_path(&self.root, owner, repo)
    }
}

/// A running forge: the server plus its [`ForgeHandle`] (reachable through `Deref`).
/// Dropping it stops the server and removes its temp directory.
pub struct Forge {
    server: Server,
    handle: ForgeHandle,
}

impl std::fmt::Debug for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forge")
            .field("url", &self.server.url())
            .finish()
    }
}

impl std::ops::Deref for Forge {
    type Target = ForgeHandle;
    fn deref(&self) -> &ForgeHandle {
        &self.handle
    }
}

impl Forge {
    /// Start with the default bot (`baton[bot]`, [`DEFAULT_BOT_TOKEN`]) in a temp directory.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(ForgeOptions::default()).await
    }

    /// Start on an ephemeral loopback port.
    pub async fn start_with(options: ForgeOptions) -> std::io::Result<Self> {
        let (root, tmp) = match options.root {
            Some(root) => {
                std::fs::create_dir_all(&root)?;
                (root, None)
            }
            None => {
                let tmp = tempfile::tempdir()?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = state::State::new(&options.bot_login);
        st.add_user(&options.bot_login, Permission::Write, true);
        st.tokens.insert(
            options.bot_token.clone(),
            state::Token {
                login: options.bot_login.clone(),
                kind: state::TokenKind::Installation,
                expires: None,
            },
        );
        let inner = Arc::new(Inner {
            state: Mutex::new(st),
            root: root.clone(),
            _tmp: tmp,
            base: OnceLock::new(),
            bot_token: options.bot_token,
            outgoing: tx,
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        tokio::spawn(hooks::deliver(Arc::downgrade(&inner), rx));
        let weak = Arc::downgrade(&inner);
        let git =
            GitService::new(root, ForgeAccess(Arc::downgrade(&inner))).on_push(move |notice| {
                if let Some(inner) = weak.upgrade() {
                    ops::on_push(&inner, notice);
                }
            });
        let router = router(inner.clone(), git);
        let server = Server::start(router).await?;
        let _ = inner.base.set(server.url());
        Ok(Self {
            server,
            handle: ForgeHandle { inner },
        })
    }

    /// A cloneable handle for the control methods (e.g. to move into a task).
    pub fn handle(&self) -> ForgeHandle {
        self.handle.clone()
    }

    /// Stop serving and wait for the server task to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn router(inner: Arc<Inner>, git: GitService) -> Router {
    let counted = api::routes()
        .route_layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            mw::github,
        ))
        .merge(
            git.router()
                .route_layer(axum::middleware::from_fn_with_state(
                    inner.clone(),
                    mw::git_faults,
                )),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            mw::count,
        ));
    counted
        .merge(control::routes())
        .fallback(mw::not_found)
        .with_state(inner)
}

/// Git access for the forge's users: any valid token reads, `write` and above push.
struct ForgeAccess(Weak<Inner>);

impl GitAccess for ForgeAccess {
    fn check(&self, _owner: &str, _repo: &str, token: Option<&str>, op: GitOp) -> Access {
        let Some(inner) = self.0.upgrade() else {
            return Access::Unauthorized;
        };
        let st = inner.lock();
        let Some(t) = token.and_then(|t| st.token(t)) else {
            return Access::Unauthorized;
        };
        let need = match op {
            GitOp::Read => Permission::Read,
            GitOp::Write => Permission::Write,
        };
        if st.permission(&t.login) >= need {
            Access::Granted(t.login.clone())
        } else {
            Access::Forbidden
        }
    }
}

/// What the control surface reports about a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullView {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub open: bool,
    pub merged: bool,
    pub head_ref: String,
    pub base_ref: String,
    pub head_sha: String,
    pub labels: Vec<String>,
    pub merge_commit_sha: Option<String>,
    pub requested_reviewers: Vec<String>,
    /// Slugs of the teams asked to review.
    pub requested_teams: Vec<String>,
}

/// An issue or pull-request comment as the control surface reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentView {
    pub id: u64,
    pub user: String,
    pub body: String,
    /// `(user, content)` for each reaction, e.g. `("baton[bot]", "eyes")`.
    pub reactions: Vec<(String, String)>,
}

/// Control methods: set up repositories, people and teams, act as them, break things, and
/// read back counters and deliveries.
#[derive(Clone)]
pub struct ForgeHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ForgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeHandle")
            .field("url", &self.inner.base())
            .finish()
    }
}

impl ForgeHandle {
    /// The REST API root, `http://127.0.0.1:PORT` (octocrab's `base_uri`).
    pub fn url(&self) -> String {
        self.inner.base().to_owned()
    }

    /// The bot's installation token.
    pub fn bot_token(&self) -> String {
        self.inner.bot_token.clone()
    }

    /// The bot's login, e.g. `baton[bot]`.
    pub fn bot_login(&self) -> String {
        self.inner.lock().bot_login.clone()
    }

    /// The directory holding `<owner>/<repo>.git`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The bare repository's path on disk.
    pub fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.inner.repo_path(owner, repo)
    }

    /// `http://127.0.0.1:PORT/<owner>/<repo>.git` (no credentials).
    pub fn git_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.inner.base())
    }

    /// The clone URL with `x-access-token:<bot token>@` in it, for the `git` CLI.
    pub fn authenticated_git_url(&self, owner: &str, repo: &str) -> String {
        self.git_url(owner, repo).replacen(
            "http://",
            &format!("http://x-access-token:{}@", self.inner.bot_token),
            1,
        )
    }

    /// Create an empty repository whose default branch is `main`.
    pub fn create_repo(&self, owner: &str, repo: &str) -> Result<(), Error> {
        ops::create_repo(&self.inner, owner, repo, "main")
    }

    /// Create a repository with `files` committed on `default_branch`; returns the commit SHA.
    pub fn create_repo_with_files(
        &self,
        owner: &str,
        repo: &str,
        default_branch: &str,
        files: &[(&str, &str)],
    ) -> Result<String, Error> {
        ops::create_repo(&self.inner, owner, repo, default_branch)?;
        ops::commit_files(
            &self.inner,
            owner,
            repo,
            default_branch,
            files,
            "Initial commit",
            None,
        )
    }

    /// Commit `files` on `branch` (created from nothing when missing) as if someone pushed it:
    /// a `push` event is delivered (and `synchronize` for pulls from that branch).
    pub fn commit_files(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> Result<String, Error> {
        ops::commit_files(
            &self.inner,
            owner,
            repo,
            branch,
            files,
            message,
            Some(branch),
        )
    }

    /// Add a person with a permission on every repository, or change their permission.
    /// Returns their personal token (`ghp_...`).
    pub fn add_user(&self, login: &str, permission: Permission) -> String {
        let mut st = self.inner.lock();
        st.add_user(login, permission, false);
        let token = format!(
            "ghp_sim_{}",
            login.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        st.tokens.insert(
            token.clone(),
            state::Token {
                login: login.to_owned(),
                kind: state::TokenKind::Personal,
                expires: None,
            },
        );
        token
    }

    /// Accept another installation token acting as the bot (e.g. after a token refresh).
    pub fn add_bot_token(&self, token: &str) {
        let mut st = self.inner.lock();
        let login = st.bot_login.clone();
        st.tokens.insert(
            token.to_owned(),
            state::Token {
                login,
                kind: state::TokenKind::Installation,
                expires: None,
            },
        );
    }

    /// How long installation tokens minted from now on work, for REST and for Git (GitHub: one
    /// hour, the default). The fixed [`ForgeHandle::bot_token`] never expires.
    pub fn set_installation_token_ttl(&self, ttl: Duration) {
        self.inner.lock().installation_token_ttl = ttl;
    }

    /// How many installation tokens the App has minted (`POST .../access_tokens` answered).
    pub fn minted_tokens(&self) -> usize {
        self.inner
            .lock()
            .tokens
            .values()
            .filter(|t| t.expires.is_some())
            .count()
    }

    /// Protect `branch` with `rules` (branch protection, or a ruleset when `rules.ruleset`);
    /// merges that break them are refused with GitHub's `405`. `Protection::default()` lifts
    /// every rule.
    pub fn protect_branch(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        rules: Protection,
    ) -> Result<(), Error> {
        let mut st = self.inner.lock();
        let r = st.repo_mut(owner, repo).ok_or_else(Error::not_found)?;
        r.protection.insert(branch.to_owned(), rules);
        Ok(())
    }

    /// Enforce GitHub's secondary limit on content creation: at most `max` writes (non-`GET`
    /// REST calls) per `window` and principal (GitHub: about 80 a minute and 500 an hour); more
    /// are `403` "secondary rate limit" with `retry-after`. `None` lifts it.
    pub fn set_write_limit(&self, limit: Option<(u32, Duration)>) {
        self.set_write_limits(limit.into_iter().collect());
    }

    /// Enforce several secondary limits at once, e.g. GitHub's `[(80, 1 min), (500, 1 h)]`:
    /// a write over any of them is refused. The windows are real time; a bench can scale them
    /// (a minute of 1 s) together with baton's own pacing. Empty lifts them.
    pub fn set_write_limits(&self, limits: Vec<(u32, Duration)>) {
        let mut st = self.inner.lock();
        st.write_limits = limits;
        st.writes.clear();
    }

    /// Writes the secondary limit refused so far.
    pub fn secondary_refusals(&self) -> u64 {
        self.inner.lock().secondary_refusals
    }

    /// Give `login` (a person or the bot) `permission` on every repository.
    pub fn set_permission(&self, login: &str, permission: Permission) {
        let mut st = self.inner.lock();
        if let Some(u) = st.users.get_mut(login) {
            u.permission = permission;
        }
    }

    /// Take the Organization permission *Members: read* from the App's installation (`false`):
    /// its team member lookups are then refused with `403`, as on GitHub.
    pub fn set_members_readable(&self, readable: bool) {
        self.inner.lock().members_unreadable = !readable;
    }

    /// Create team `org/slug` (if missing) and make `members` its members.
    pub fn add_team(&self, org: &str, slug: &str, members: &[&str]) {
        let mut st = self.inner.lock();
        let key = (org.to_owned(), slug.to_owned());
        if !st.teams.contains_key(&key) {
            let id = st.id();
            st.teams.insert(
                key.clone(),
                state::Team {
                    id,
                    org: org.to_owned(),
                    slug: slug.to_owned(),
                    name: slug.to_owned(),
                    members: BTreeMap::new(),
                },
            );
        }
        let team = st.teams.get_mut(&key).expect("inserted above");
        for m in members {
            team.members.insert((*m).to_owned(), "member".to_owned());
        }
    }

    /// Comment on an issue or pull request as `login`; delivers `issue_comment` `created`.
    pub fn comment_as(
        &self,
        login: &str,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<u64, Error> {
        ops::create_comment(&self.inner, login, owner, repo, number, body).map(|(id, _)| id)
    }

    /// Edit a comment as `login`; delivers `issue_comment` `edited` with the old body.
    pub fn edit_comment_as(&self, login: &str, comment_id: u64, body: &str) -> Result<(), Error> {
        ops::update_comment(&self.inner, login, comment_id, body, true).map(|_| ())
    }

    /// Submit a review as `login` (approve, request changes or comment); delivers
    /// `pull_request_review` `submitted`. Returns the review id.
    pub fn review_as(
        &self,
        login: &str,
        owner: &str,
        repo: &str,
        number: u64,
        state: ReviewState,
        body: &str,
    ) -> Result<u64, Error> {
        ops::submit_review(&self.inner, login, owner, repo, number, state, body).map(|(id, _)| id)
    }

    /// Create or update the simulated CI's check run `name` on `sha`: `Some(conclusion)`
    /// completes it (`success`, `failure`, `neutral`, ...), `None` leaves it `in_progress`.
    /// Delivers `check_run` (and `check_suite` `completed` when the suite completes).
    pub fn set_check_conclusion(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        name: &str,
        conclusion: Option<&str>,
    ) -> Result<u64, Error> {
        ops::set_ci_check(&self.inner, owner, repo, sha, name, conclusion)
    }

    /// Set a commit status as `login` (CI, a person); delivers `status`.
    pub fn set_status_as(
        &self,
        login: &str,
        owner: &str,
        repo: &str,
        sha: &str,
        context: &str,
        state: &str,
    ) -> Result<u64, Error> {
        ops::create_status(
            &self.inner,
            login,
            owner,
            repo,
            sha,
            state,
            context,
            None,
            None,
        )
        .map(|(id, _)| id)
    }

    /// Deliver every event to `url`, signed with `secret`.
    pub fn add_webhook(&self, url: &str, secret: &str) {
        self.inner.lock().hooks.push(state::Hook {
            url: url.to_owned(),
            secret: secret.to_owned(),
        });
    }

    /// Queue a fault for upcoming calls (faults are served in the order queued). REST calls meet
    /// every fault; Git smart-HTTP calls only faults whose route matches theirs.
    pub fn inject(&self, fault: Fault) {
        self.inner.lock().faults.push(fault);
    }

    /// Drop every queued fault.
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// Use up the primary rate limit: calls get 403 with `x-ratelimit-remaining: 0` until
    /// `reset_in` has passed, then the limit refills.
    pub fn exhaust_rate_limit(&self, reset_in: Duration) {
        let mut st = self.inner.lock();
        st.rate.remaining = 0;
        st.rate.restart(reset_in);
    }

    /// Set the primary limit per hour (and refill it).
    pub fn set_rate_limit(&self, limit: u64) {
        let mut st = self.inner.lock();
        st.rate = state::RateLimit::new(limit);
    }

    /// REST and Git calls so far by `"METHOD /route/template"`, e.g.
    /// `"POST /repos/{owner}/{repo}/issues/{issue_number}/comments"`.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.inner.lock().calls.clone()
    }

    /// All calls so far.
    pub fn total_calls(&self) -> u64 {
        self.inner.lock().calls.values().sum()
    }

    /// Start counting from zero.
    pub fn reset_calls(&self) {
        self.inner.lock().calls.clear();
    }

    /// Keep every REST request and its answer from now on (or stop), for
    /// [`crate::contract::check_exchanges`].
    pub fn record_exchanges(&self, on: bool) {
        self.inner.lock().recording = on;
    }

    /// The REST exchanges kept since recording started, oldest first (and forget them).
    pub fn take_exchanges(&self) -> Vec<crate::contract::Exchange> {
        std::mem::take(&mut self.inner.lock().exchanges)
    }

    /// Webhook deliveries attempted so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().deliveries.clone()
    }

    /// Wait until every queued webhook has been attempted, or `timeout` passes (returns false).
    pub async fn flush_webhooks(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inner.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// A pull request's current state.
    pub fn pull(&self, owner: &str, repo: &str, number: u64) -> Option<PullView> {
        ops::pull_view(&self.inner, owner, repo, number)
    }

    /// Open and closed pull requests of a repository, by number.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<PullView> {
        let numbers: Vec<u64> = {
            let st = self.inner.lock();
            st.repo(owner, repo)
                .map(|r| {
                    r.issues
                        .values()
                        .filter(|i| i.pull.is_some())
                        .map(|i| i.number)
                        .collect()
                })
                .unwrap_or_default()
        };
        numbers
            .into_iter()
            .filter_map(|n| self.pull(owner, repo, n))
            .collect()
    }

    /// The comments on an issue or pull request, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, number: u64) -> Vec<CommentView> {
        let st = self.inner.lock();
        st.comments
            .values()
            .filter(|c| c.owner == owner && c.repo == repo && c.issue == number)
            .map(|c| CommentView {
                id: c.id,
                user: c.author.clone(),
                body: c.body.clone(),
                reactions: c
                    .reactions
                    .iter()
                    .map(|r| (r.user.clone(), r.content.clone()))
                    .collect(),
            })
            .collect()
    }
}
