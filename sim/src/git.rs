//! Git smart HTTP over a directory of bare repositories laid out like GitHub's
//! (`<root>/<owner>/<repo>.git`), served by the real `git http-backend` as a CGI behind axum, so
//! clients (the `git` CLI, git2) speak the exact protocol they speak to github.com.
//!
//! Credentials are checked the way GitHub checks them: HTTP basic auth whose password (or, as
//! GitHub also accepts, whose username) is a valid token; anything else gets 401 with
//! `WWW-Authenticate: Basic realm="GitHub"`. [`GitServer`] serves one directory with one token;
//! the forge stand-in mounts a [`GitService`] with its own access rules and push notifications.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use crate::Server;

/// Largest request body accepted (a pushed pack).
const MAX_BODY: usize = 512 * 1024 * 1024;

/// What a Git request wants to do with a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitOp {
    /// Clone or fetch (`git-upload-pack`).
    Read,
    /// Push (`git-receive-pack`).
    Write,
}

/// The answer of a [`GitAccess`] check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Go ahead; the string names who is acting (the pusher in push notifications).
    Granted(String),
    /// No or unknown credentials: 401 with a Basic challenge.
    Unauthorized,
    /// Known credentials without the needed permission: 403.
    Forbidden,
}

/// Decides who may read or write which repository.
pub trait GitAccess: Send + Sync + 'static {
    /// `token` is the token found in the basic-auth credentials, if any.
    fn check(&self, owner: &str, repo: &str, token: Option<&str>, op: GitOp) -> Access;
}

/// One token with full access to every repository.
#[derive(Debug, Clone)]
pub struct SingleToken {
    token: String,
    login: String,
}

impl SingleToken {
    /// Accept `token`, acting as `x-access-token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            login: "x-access-token".to_owned(),
        }
    }
}

impl GitAccess for SingleToken {
    fn check(&self, _owner: &str, _repo: &str, token: Option<&str>, _op: GitOp) -> Access {
        match token {
            Some(t) if t == self.token => Access::Granted(self.login.clone()),
            _ => Access::Unauthorized,
        }
    }
}

/// A ref that a push changed. `None` means the ref did not exist before (created) or does not
/// exist after (deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChange {
    /// Full ref name, e.g. `refs/heads/main`.
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Reported after a push that changed at least one ref.
#[derive(Debug, Clone)]
pub struct PushNotice {
    pub owner: String,
    pub repo: String,
    /// Who pushed, as returned by [`GitAccess::check`].
    pub pusher: String,
    pub changes: Vec<RefChange>,
}

type PushHook = Arc<dyn Fn(PushNotice) + Send + Sync>;

/// Smart HTTP for the bare repositories under a root directory; mount [`GitService::router`]
/// at the root of a server.
#[derive(Clone)]
pub struct GitService {
    root: PathBuf,
    access: Arc<dyn GitAccess>,
    on_push: Option<PushHook>,
}

impl std::fmt::Debug for GitService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitService")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl GitService {
    /// Serve `<root>/<owner>/<repo>.git`, asking `access` about every request.
    pub fn new(root: impl Into<PathBuf>, access: impl GitAccess) -> Self {
        Self {
            root: root.into(),
            access: Arc::new(access),
            on_push: None,
        }
    }

    /// Call `hook` after every push that changed refs.
    pub fn on_push(mut self, hook: impl Fn(PushNotice) + Send + Sync + 'static) -> Self {
        self.on_push = Some(Arc::new(hook));
        self
    }

    /// Routes: `GET /{owner}/{repo}.git/info/refs`, `POST /{owner}/{repo}.git/git-upload-pack`,
    /// `POST /{owner}/{repo}.git/git-receive-pack` (the `.git` suffix is optional, as on GitHub).
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        Router::new()
            .route("/{owner}/{repo}/info/refs", get(handle))
            .route("/{owner}/{repo}/git-upload-pack", post(handle))
            .route("/{owner}/{repo}/git-receive-pack", post(handle))
            .with_state(Arc::new(self))
    }
}

/// Create an empty bare repository at `<root>/<owner>/<repo>.git` whose `HEAD` names
/// `default_branch`. Returns its path.
pub fn init_bare(
    root: &Path,
    owner: &str,
    repo: &str,
    default_branch: &str,
) -> Result<PathBuf, git2::Error> {
    let path = repo_path(root, owner, repo);
    let mut opts = git2::RepositoryInitOptions::new();
    opts.bare(true).initial_head(default_branch).mkpath(true);
    git2::Repository::init_opts(&path, &opts)?;
    Ok(path)
}

/// `<root>/<owner>/<repo>.git`.
pub fn repo_path(root: &Path, owner: &str, repo: &str) -> PathBuf {
    root.join(owner).join(format!("{repo}.git"))
}

/// A standalone Git smart HTTP server, for tests that need a remote but not the rest of GitHub.
#[derive(Debug)]
pub struct GitServer {
    server: Server,
    root: PathBuf,
    token: String,
}

impl GitServer {
    /// Serve the bare repositories under `root` on an ephemeral loopback port, accepting
    /// `token` (as `x-access-token:<token>`, or any username with it).
    pub async fn start(
        root: impl Into<PathBuf>,
        token: impl Into<String>,
    ) -> std::io::Result<Self> {
        let root = root.into();
        let token = token.into();
        let service = GitService::new(root.clone(), SingleToken::new(token.clone()));
        let server = Server::start(service.router::<()>()).await?;
        Ok(Self {
            server,
            root,
            token,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The directory holding the bare repositories.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `http://127.0.0.1:PORT/<owner>/<repo>.git`, without credentials.
    pub fn repo_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.server.url())
    }

    /// The clone URL with `x-access-token:<token>@` in it, for the `git` CLI.
    pub fn authenticated_repo_url(&self, owner: &str, repo: &str) -> String {
        format!(
            "http://x-access-token:{}@{}/{owner}/{repo}.git",
            self.token,
            self.server.addr()
        )
    }

    /// Create an empty bare repository served by this server.
    pub fn init_bare(
        &self,
        owner: &str,
        repo: &str,
        default_branch: &str,
    ) -> Result<PathBuf, git2::Error> {
        init_bare(&self.root, owner, repo, default_branch)
    }

    /// Stop serving and wait for the server task to end.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The token in `Authorization: Basic ...`: the password, or the username when the password
/// is empty or GitHub's `x-oauth-basic`.
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    if pass.is_empty() || pass == "x-oauth-basic" {
        Some(user.to_owned())
    } else {
        Some(pass.to_owned())
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        body.to_owned(),
    )
        .into_response()
}

async fn handle(
    State(svc): State<Arc<GitService>>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    let repo = repo.strip_suffix(".git").unwrap_or(&repo).to_owned();
    if !valid_name(&owner) || !valid_name(&repo) {
        return text(StatusCode::NOT_FOUND, "Repository not found.");
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let op = if path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack") {
        GitOp::Write
    } else {
        GitOp::Read
    };
    let token = basic_token(request.headers());
    let pusher = match svc.access.check(&owner, &repo, token.as_deref(), op) {
        Access::Granted(who) => who,
        Access::Unauthorized => {
            return (
                StatusCode::UNAUTHORIZED,
                [
                    (header::WWW_AUTHENTICATE, "Basic realm=\"GitHub\""),
                    (header::CONTENT_TYPE, "text/plain"),
                ],
                "Invalid username or token. Password authentication is not supported for Git operations.",
            )
                .into_response();
        }
        Access::Forbidden => {
            return text(
                StatusCode::FORBIDDEN,
                &format!("Permission to {owner}/{repo}.git denied."),
            );
        }
    };
    let dir = repo_path(&svc.root, &owner, &repo);
    if !dir.is_dir() {
        return text(StatusCode::NOT_FOUND, "Repository not found.");
    }
    let before = if op == GitOp::Write && path.ends_with("/git-receive-pack") {
        Some(read_refs(&dir))
    } else {
        None
    };
    let suffix = path.rsplit_once('/').map(|(_, last)| last).unwrap_or("");
    let suffix = if suffix == "refs" {
        "info/refs"
    } else {
        suffix
    };
    let path_info = format!("/{owner}/{repo}.git/{suffix}");
    let response = match cgi(&svc.root, &path_info, &query, &pusher, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, "git http-backend failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed");
        }
    };
    if let (Some(before), Some(hook)) = (before, &svc.on_push) {
        let after = read_refs(&dir);
        let changes = diff_refs(&before, &after);
        if !changes.is_empty() {
            hook(PushNotice {
                owner,
                repo,
                pusher,
                changes,
            });
        }
    }
    response
}

/// Every ref (except symbolic ones) and the object it points at.
pub(crate) fn read_refs(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(repo) = git2::Repository::open_bare(dir) else {
        return out;
    };
    let Ok(refs) = repo.references() else {
        return out;
    };
    for r in refs.flatten() {
        if let (Ok(name), Some(target)) = (r.name(), r.target()) {
            out.insert(name.to_owned(), target.to_string());
        }
    }
    out
}

pub(crate) fn diff_refs(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<RefChange> {
    let mut changes = Vec::new();
    for (name, new) in after {
        match before.get(name) {
            Some(old) if old == new => {}
            old => changes.push(RefChange {
                name: name.clone(),
                old: old.cloned(),
                new: Some(new.clone()),
            }),
        }
    }
    for (name, old) in before {
        if !after.contains_key(name) {
            changes.push(RefChange {
                name: name.clone(),
                old: Some(old.clone()),
                new: None,
            });
        }
    }
    changes
}

#[derive(Debug, thiserror::Error)]
enum CgiError {
    #[error("reading the request body: {0}")]
    Body(#[source] axum::Error),
    #[error("running git http-backend: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("git http-backend wrote no header block")]
    NoHeaders,
}

/// Run `git http-backend` for one request and turn its CGI output into a response.
async fn cgi(
    root: &Path,
    path_info: &str,
    query: &str,
    remote_user: &str,
    request: Request,
) -> Result<Response, CgiError> {
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(CgiError::Body)?;
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "safe.directory")
        .env("GIT_CONFIG_VALUE_1", "*")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", method.as_str())
        .env("REMOTE_USER", remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_TYPE", header_str(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    let encoding = header_str(header::CONTENT_ENCODING);
    if !encoding.is_empty() {
        cmd.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(proto) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("HTTP_GIT_PROTOCOL", proto);
    }
    let mut child = cmd.spawn().map_err(CgiError::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let writer = tokio::spawn(async move {
        if method == Method::POST {
            // A backend that stops reading early closes the pipe; its output says why.
            let _ = stdin.write_all(&body).await;
        }
        drop(stdin);
    });
    let output = child.wait_with_output().await.map_err(CgiError::Spawn)?;
    let _ = writer.await;
    if !output.stderr.is_empty() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&output.stderr), "git http-backend");
    }
    parse_cgi(&output.stdout)
}

fn parse_cgi(out: &[u8]) -> Result<Response, CgiError> {
    let (head_len, sep_len) = find_header_end(out).ok_or(CgiError::NoHeaders)?;
    let head = String::from_utf8_lossy(&out[..head_len]);
    let body = out[head_len + sep_len..].to_vec();
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            status = code.parse().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let Ok(v) = HeaderValue::from_str(value) {
            builder = builder.header(name.trim(), v);
        }
    }
    Ok(builder
        .status(status)
        .body(Body::from(body))
        .expect("headers were validated"))
}

fn find_header_end(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    #[test]
    fn the_token_is_the_password_or_a_lone_username() {
        assert_eq!(
            basic_token(&basic("x-access-token", "t1")).as_deref(),
            Some("t1")
        );
        assert_eq!(basic_token(&basic("anyone", "t2")).as_deref(), Some("t2"));
        assert_eq!(basic_token(&basic("t3", "")).as_deref(), Some("t3"));
        assert_eq!(
            basic_token(&basic("t4", "x-oauth-basic")).as_deref(),
            Some("t4")
        );
        assert_eq!(basic_token(&HeaderMap::new()), None);
    }

    #[test]
    fn cgi_output_with_a_status_line_becomes_that_status() {
        let r =
            parse_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        let r = parse_cgi(b"Content-Type: application/x-git-upload-pack-advertisement\n\nbody")
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn ref_diffs_name_created_moved_and_deleted_refs() {
        let before: BTreeMap<_, _> = [
            ("refs/heads/a", "1"),
            ("refs/heads/b", "2"),
            ("refs/heads/c", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let after: BTreeMap<_, _> = [
            ("refs/heads/a", "1"),
            ("refs/heads/b", "9"),
            ("refs/heads/d", "4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let changes = diff_refs(&before, &after);
        assert_eq!(changes.len(), 3);
        assert!(changes.contains(&RefChange {
            name: "refs/heads/b".into(),
            old: Some("2".into()),
            new: Some("9".into())
        }));
        assert!(changes.contains(&RefChange {
            name: "refs/heads/d".into(),
            old: None,
            new: Some("4".into())
        }));
        assert!(changes.contains(&RefChange {
            name: "refs/heads/c".into(),
            old: Some("3".into()),
            new: None
        }));
    }
}
