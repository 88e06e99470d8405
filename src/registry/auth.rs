//! Registry credentials and the `WWW-Authenticate` challenge grammar.
//!
//! Credentials come from several places, merged per registry host: explicit entries (a
//! username plus a password or token read from an environment variable or a file, as a
//! [`SecretRef`]), a Docker `config.json` (`auths`), and Docker credential helpers
//! (`credHelpers`, `credsStore`: `docker-credential-<name> get`, run as docker runs them).
//! Credentials rotate: a file (secret or `config.json`) is read again when it changes, and a
//! helper's answer is kept for [`HELPER_TTL`] or until the registry refuses it. Every secret is
//! held in the config module's [`Secret`], which never prints its value, so a credential cannot
//! end up in a log line or an error message by accident; only the HTTP layer calls
//! [`Secret::expose`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde::Deserialize;

pub use crate::config::runtime::CredentialConfig;
pub use crate::config::secret::{Secret, SecretError, SecretRef};

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password: sent as HTTP Basic to registries that ask for Basic, and to the
    /// token endpoint of registries that answer with a Bearer challenge.
    Basic { username: String, password: Secret },
    /// A registry token sent as `Authorization: Bearer` without a token exchange
    /// (Docker `registrytoken`).
    Bearer(Secret),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Self::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Credential {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: Secret::new(password),
        }
    }

    /// The `Authorization` header value for HTTP Basic, if this is a username/password.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
            Self::Bearer(_) => None,
        }
    }
}

impl CredentialConfig {
    pub fn resolve(&self, host: &str) -> Result<Credential, AuthError> {
        match (&self.username, &self.password, &self.token) {
            (Some(username), Some(password), None) => Ok(Credential::Basic {
                username: username.clone(),
                password: resolve(host, password)?,
            }),
            (username, None, Some(token)) => Ok(Credential::Basic {
                username: username
                    .clone()
                    .unwrap_or_else(|| TOKEN_USERNAME.to_string()),
                password: resolve(host, token)?,
            }),
            _ => Err(AuthError::Incomplete {
                host: host.to_string(),
            }),
        }
    }
}

/// The username sent with a `token:` when none is configured (GHCR accepts any).
pub const TOKEN_USERNAME: &str = "baton";

/// How long a credential helper's answer is used before the helper runs again (it runs again
/// at once when the registry refuses the credential).
pub const HELPER_TTL: Duration = Duration::from_secs(300);

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

impl CredentialConfig {
    /// The files this entry's secrets are read from (read again when they change).
    fn files(&self) -> Vec<PathBuf> {
        [&self.password, &self.token]
            .into_iter()
            .flatten()
            .filter_map(|r| r.file.clone())
            .collect()
    }
}

fn resolve(host: &str, r: &SecretRef) -> Result<Secret, AuthError> {
    r.resolve().map_err(|source| AuthError::Secret {
        host: host.to_string(),
        source,
    })
}

/// A problem reading credentials. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials for {host}: {source}")]
    Secret {
        host: String,
        #[source]
        source: SecretError,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    DockerConfig { path: PathBuf, reason: String },
    #[error("credentials for {host} need `username` and `password`, or `token`")]
    Incomplete { host: String },
}

/// Credentials by registry host (`registry.example.com`, `127.0.0.1:5000`). Clones share
/// their caches.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    by_host: BTreeMap<String, Arc<Source>>,
    /// `credsStore`: the helper asked about hosts without an entry.
    store: Option<String>,
    /// The `credsStore` helper's sources by host, made on first use.
    store_cache: Arc<Mutex<BTreeMap<String, Arc<Source>>>>,
    /// Where `docker-credential-*` programs are looked for (default: `PATH`).
    helper_dir: Option<PathBuf>,
}

/// Where one host's credential comes from.
#[derive(Debug)]
enum Source {
    Fixed(Credential),
    /// A runtime-config entry; read again when one of its files changes.
    Config {
        host: String,
        config: CredentialConfig,
        state: Mutex<Loaded>,
    },
    /// An `auths` entry of a Docker `config.json`; read again when the file changes.
    DockerAuths {
        path: PathBuf,
        key: String,
        state: Mutex<Loaded>,
    },
    /// `docker-credential-<helper> get` for `server`.
    Helper {
        helper: String,
        server: String,
        cached: Mutex<Option<(Option<Credential>, Instant)>>,
    },
}

#[derive(Debug, Default)]
struct Loaded {
    credential: Option<Credential>,
    /// (mtime, length) of each file read, when last read.
    stamps: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
    /// Read again on the next use, whatever the stamps say (the registry refused it).
    stale: bool,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Loaded {
    fn changed(&self) -> bool {
        self.stale || self.stamps.iter().any(|(p, s)| stamp(p) != *s)
    }
}

impl Source {
    fn credential(&self, helper_dir: Option<&Path>) -> Option<Credential> {
        match self {
            Self::Fixed(c) => Some(c.clone()),
            Self::Config {
                host,
                config,
                state,
            } => {
                let mut state = lock(state);
                if state.changed() {
                    let stamps = config
                        .files()
                        .into_iter()
                        .map(|p| (stamp(&p), p))
                        .map(|(s, p)| (p, s))
                        .collect();
                    match config.resolve(host) {
                        Ok(c) => {
                            *state = Loaded {
                                credential: Some(c),
                                stamps,
                                stale: false,
                            };
                        }
                        // Keep the last good credential (a file being rewritten).
                        Err(e) => {
                            tracing::warn!(%host, error = %e, "cannot read registry credentials; using the last ones read")
                        }
                    }
                }
                state.credential.clone()
            }
            Self::DockerAuths { path, key, state } => {
                let mut state = lock(state);
                if state.changed() {
                    let read = std::fs::read_to_string(path)
                        .map_err(|e| e.to_string())
                        .and_then(|t| parse_docker_config(&t));
                    match read {
                        Ok(entries) => {
                            *state = Loaded {
                                credential: entries
                                    .into_iter()
                                    .find(|(h, _)| normalize_host(h) == *key)
                                    .map(|(_, c)| c),
                                stamps: vec![(path.clone(), stamp(path))],
                                stale: false,
                            };
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot read the Docker config; using the last credentials read")
                        }
                    }
                }
                state.credential.clone()
            }
            Self::Helper {
                helper,
                server,
                cached,
            } => {
                let mut cached = lock(cached);
                if let Some((c, at)) = cached.as_ref()
                    && at.elapsed() < HELPER_TTL
                {
                    return c.clone();
                }
                let answer = match run_helper(helper_dir, helper, server) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%helper, %server, error = %e, "credential helper failed");
                        None
                    }
                };
                *cached = Some((answer.clone(), Instant::now()));
                answer
            }
        }
    }

    /// The registry refused what this source gave: read it again next time.
    fn invalidate(&self) {
        match self {
            Self::Fixed(_) => {}
            Self::Config { state, .. } | Self::DockerAuths { state, .. } => {
                lock(state).stale = true
            }
            Self::Helper { cached, .. } => *lock(cached) = None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `docker-credential-<helper> get` with `server` on stdin, as docker does. `Ok(None)` when
/// the helper has no credentials for it. Errors never carry the helper's output (it may hold
/// the secret).
fn run_helper(
    dir: Option<&Path>,
    helper: &str,
    server: &str,
) -> Result<Option<Credential>, String> {
    use std::io::Write as _;
    let program = format!("docker-credential-{helper}");
    let path = dir.map_or_else(|| PathBuf::from(&program), |d| d.join(&program));
    let mut child = std::process::Command::new(&path)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let deadline = Instant::now() + HELPER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not answer within {}s",
                    HELPER_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("{program}: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        // "credentials not found in native keychain": nothing stored for this server.
        return Ok(None);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("{program} did not print {{\"Username\", \"Secret\"}} JSON"))?;
    if answer.username == "<token>" {
        return Err(format!(
            "{program} returned an identity token, which baton does not exchange; store a username and password or token"
        ));
    }
    Ok(Some(Credential::basic(answer.username, answer.secret)))
}

impl CredentialStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set (or replace) the credential for `host`.
    pub fn insert(&mut self, host: impl Into<String>, credential: Credential) {
        self.by_host.insert(
            normalize_host(&host.into()),
            Arc::new(Source::Fixed(credential)),
        );
    }

    /// The credential for `host` now: files that changed are read again, helpers run when
    /// their answer is older than [`HELPER_TTL`].
    pub fn get(&self, host: &str) -> Option<Credential> {
        let host = normalize_host(host);
        if let Some(source) = self.by_host.get(&host) {
            return source.credential(self.helper_dir.as_deref());
        }
        let store = self.store.as_ref()?;
        let source = lock(&self.store_cache)
            .entry(host.clone())
            .or_insert_with(|| {
                Arc::new(Source::Helper {
                    helper: store.clone(),
                    server: host.clone(),
                    cached: Mutex::default(),
                })
            })
            .clone();
        source.credential(self.helper_dir.as_deref())
    }

    /// The registry refused the credential for `host`: read or ask for it again next time.
    pub fn invalidate(&self, host: &str) {
        let host = normalize_host(host);
        if let Some(s) = self.by_host.get(&host) {
            s.invalidate();
        }
        if let Some(s) = lock(&self.store_cache).get(&host) {
            s.invalidate();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty() && self.store.is_none()
    }

    /// Look for `docker-credential-*` programs in `dir` instead of `PATH`.
    pub fn set_helper_dir(&mut self, dir: impl Into<PathBuf>) {
        self.helper_dir = Some(dir.into());
    }

    /// Resolve explicit runtime-config entries (files are read again when they change).
    pub fn from_config<'a>(
        entries: impl IntoIterator<Item = (&'a String, &'a CredentialConfig)>,
    ) -> Result<Self, AuthError> {
        let mut store = Self::new();
        for (host, config) in entries {
            let credential = config.resolve(host)?;
            let stamps = config
                .files()
                .into_iter()
                .map(|p| {
                    let s = stamp(&p);
                    (p, s)
                })
                .collect();
            store.by_host.insert(
                normalize_host(host),
                Arc::new(Source::Config {
                    host: host.clone(),
                    config: config.clone(),
                    state: Mutex::new(Loaded {
                        credential: Some(credential),
                        stamps,
                        stale: false,
                    }),
                }),
            );
        }
        Ok(store)
    }

    /// Add the entries of a Docker `config.json` that are not set already (explicit entries
    /// win): `credHelpers` (a helper per host), then `auths` (read again when the file
    /// changes), and `credsStore` (the helper for every other host).
    pub fn merge_docker_config(&mut self, path: &Path) -> Result<(), AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| AuthError::DockerConfig {
            path: path.to_path_buf(),
            reason,
        };
        let helpers: DockerHelpers = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a Docker config.json: {e}")))?;
        for (server, helper) in helpers.cred_helpers {
            self.by_host
                .entry(normalize_host(&server))
                .or_insert_with(|| {
                    Arc::new(Source::Helper {
                        helper,
                        server: server.clone(),
                        cached: Mutex::default(),
                    })
                });
        }
        for (host, cred) in parse_docker_config(&text).map_err(bad)? {
            let key = normalize_host(&host);
            self.by_host.entry(key.clone()).or_insert_with(|| {
                Arc::new(Source::DockerAuths {
                    path: path.to_path_buf(),
                    key,
                    state: Mutex::new(Loaded {
                        credential: Some(cred),
                        stamps: vec![(path.to_path_buf(), stamp(path))],
                        stale: false,
                    }),
                })
            });
        }
        if self.store.is_none() {
            self.store = helpers.creds_store.filter(|s| !s.is_empty());
        }
        Ok(())
    }

    /// The default Docker config location: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_docker_config() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerHelpers {
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

/// The host part of a Docker `auths` key: `https://index.docker.io/v1/` → `index.docker.io`.
fn normalize_host(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_string(),
        h => h.to_ascii_lowercase(),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// Parse the `auths` of a Docker `config.json`. Errors never quote the file's values.
pub fn parse_docker_config(text: &str) -> Result<Vec<(String, Credential)>, String> {
    let config: DockerConfig =
        serde_json::from_str(text).map_err(|e| format!("not a Docker config.json: {e}"))?;
    let mut out = Vec::new();
    for (host, entry) in config.auths {
        if let Some(token) = entry.registrytoken {
            out.push((host, Credential::Bearer(Secret::new(token))));
        } else if let (Some(username), Some(password)) = (entry.username, entry.password) {
            out.push((host, Credential::basic(username, password)));
        } else if let Some(auth) = entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| format!("auths.{host}.auth is not base64 of `user:password`"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| format!("auths.{host}.auth is not base64 of `user:password`"))?;
            out.push((host, Credential::basic(user, pass)));
        }
    }
    Ok(out)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse the first challenge of a `WWW-Authenticate` header (`Bearer realm="…",service="…"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k="v", k2=v2` with quoted strings and backslash escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n)
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cred = Credential::basic("ci", "hunter2");
        let store = {
            let mut s = CredentialStore::new();
            s.insert("registry.example.com", cred.clone());
            s
        };
        for text in [format!("{cred:?}"), format!("{store:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("***") || text.contains("redacted"), "{text}");
        }
        assert_eq!(
            format!("{:?}", Credential::Bearer(Secret::new("tok"))),
            "Bearer(***)"
        );
    }

    #[test]
    fn docker_config_auths_are_read_in_all_three_shapes() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndpdGg6Y29sb25z"},
            "ghcr.io": {"registrytoken": "t0k"},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
            "quay.io": {}
        }, "credsStore": "desktop"}"#;
        let mut store = CredentialStore::new();
        for (h, c) in parse_docker_config(text).unwrap() {
            store.insert(h, c);
        }
        assert_eq!(
            store.get("docker.io"),
            Some(Credential::basic("user", "pass:with:colons"))
        );
        assert_eq!(
            store.get("ghcr.io"),
            Some(Credential::Bearer(Secret::new("t0k")))
        );
        assert_eq!(
            store.get("127.0.0.1:5000"),
            Some(Credential::basic("u", "p"))
        );
        assert_eq!(store.get("quay.io"), None);
    }

    #[test]
    fn a_bad_docker_config_entry_is_named_without_its_value() {
        let err = parse_docker_config(r#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(err.contains("auths.r.io.auth"), "{err}");
        assert!(!err.contains("bm9jb2xvbg"), "{err}");
    }

    #[test]
    fn explicit_entries_resolve_from_env_and_file_and_win_over_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let cfg: BTreeMap<String, CredentialConfig> = yaml_serde::from_str(&format!(
            "r.example.com: {{ username: ci, password: {{ file: {} }} }}\n",
            pw.display()
        ))
        .unwrap();
        let mut store = CredentialStore::from_config(&cfg).unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"r.example.com":{"username":"other","password":"x"},"b.io":{"username":"b","password":"y"}}}"#,
        )
        .unwrap();
        store.merge_docker_config(&docker).unwrap();
        assert_eq!(
            store.get("r.example.com"),
            Some(Credential::basic("ci", "s3cret"))
        );
        assert_eq!(store.get("b.io"), Some(Credential::basic("b", "y")));

        let cfg: BTreeMap<String, CredentialConfig> = yaml_serde::from_str(
            "r.io: { username: ci, password: { env: BATON_TEST_SURELY_UNSET_VAR } }",
        )
        .unwrap();
        let missing = CredentialStore::from_config(&cfg).unwrap_err();
        assert!(
            missing.to_string().starts_with(
                "credentials for r.io: environment variable BATON_TEST_SURELY_UNSET_VAR"
            ),
            "{missing}"
        );
    }

    #[test]
    fn bearer_challenges_are_parsed_with_quoted_parameters() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:shop/web:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:shop/web:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn a_token_is_a_password_for_the_token_endpoint_not_a_bearer_header() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ghcr");
        std::fs::write(&file, "ghp_abc\n").unwrap();
        let cfg: BTreeMap<String, CredentialConfig> = yaml_serde::from_str(&format!(
            "ghcr.io: {{ token: {{ file: {} }} }}\nquay.io: {{ username: robot, token: {{ file: {} }} }}\n",
            file.display(),
            file.display()
        ))
        .unwrap();
        let store = CredentialStore::from_config(&cfg).unwrap();
        assert_eq!(
            store.get("ghcr.io"),
            Some(Credential::basic(TOKEN_USERNAME, "ghp_abc"))
        );
        assert_eq!(
            store.get("quay.io"),
            Some(Credential::basic("robot", "ghp_abc"))
        );
    }

    #[test]
    fn a_credential_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "first").unwrap();
        let cfg: BTreeMap<String, CredentialConfig> = yaml_serde::from_str(&format!(
            "r.io: {{ username: ci, password: {{ file: {} }} }}\n",
            pw.display()
        ))
        .unwrap();
        let store = CredentialStore::from_config(&cfg).unwrap();
        assert_eq!(store.get("r.io"), Some(Credential::basic("ci", "first")));
        // A different length, so the change shows even within the file system's mtime
        // granularity.
        std::fs::write(&pw, "second!").unwrap();
        assert_eq!(store.get("r.io"), Some(Credential::basic("ci", "second!")));
        // A file being rewritten (empty for a moment) keeps the last good credential.
        std::fs::write(&pw, "").unwrap();
        assert_eq!(store.get("r.io"), Some(Credential::basic("ci", "second!")));

        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"d.io":{"username":"a","password":"1"}}}"#,
        )
        .unwrap();
        let mut store = CredentialStore::new();
        store.merge_docker_config(&docker).unwrap();
        assert_eq!(store.get("d.io"), Some(Credential::basic("a", "1")));
        std::fs::write(
            &docker,
            r#"{"auths":{"d.io":{"username":"a","password":"22"}}}"#,
        )
        .unwrap();
        assert_eq!(store.get("d.io"), Some(Credential::basic("a", "22")));
    }

    #[test]
    fn credential_helpers_run_as_docker_runs_them_and_answers_are_kept_until_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        let calls = dir.path().join("calls");
        std::fs::write(&secret, "s1").unwrap();
        // Like docker-credential-ecr-login: the server on stdin, JSON on stdout; nothing
        // stored for other servers (exit 1).
        let script = format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {calls}\ncase \"$server\" in\n  r.io|other.io) printf '{{\"ServerURL\":\"%s\",\"Username\":\"AWS\",\"Secret\":\"%s\"}}' \"$server\" \"$(cat {secret})\" ;;\n  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            calls = calls.display(),
            secret = secret.display()
        );
        for name in ["docker-credential-ecr", "docker-credential-desktop"] {
            let p = dir.path().join(name);
            std::fs::write(&p, &script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"credHelpers":{"r.io":"ecr"},"credsStore":"desktop","auths":{"x.io":{}}}"#,
        )
        .unwrap();
        let mut store = CredentialStore::new();
        store.set_helper_dir(dir.path());
        store.merge_docker_config(&docker).unwrap();
        assert_eq!(store.get("r.io"), Some(Credential::basic("AWS", "s1")));
        std::fs::write(&secret, "s2").unwrap();
        // Cached: the helper is not asked again until the registry refuses the answer.
        assert_eq!(store.get("r.io"), Some(Credential::basic("AWS", "s1")));
        store.invalidate("r.io");
        assert_eq!(store.get("r.io"), Some(Credential::basic("AWS", "s2")));
        // credsStore answers for hosts without an entry; "not found" is no credential.
        assert_eq!(store.get("other.io"), Some(Credential::basic("AWS", "s2")));
        assert_eq!(store.get("nothing.io"), None);
        let calls = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            ["get r.io", "get r.io", "get other.io", "get nothing.io"]
        );
        assert!(!format!("{store:?}").contains("s2"));
    }
}
