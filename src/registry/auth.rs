//! Registry credentials and the `WWW-Authenticate` challenge grammar.
//!
//! Credentials come from three places, merged per registry host: explicit entries (a
//! username plus a password read from an environment variable or a file, as a
//! [`SecretRef`]), and a Docker `config.json` (`auths`). Every secret is held in the
//! config module's [`Secret`], which never prints its value, so a credential cannot end up
//! in a log line or an error message by accident; only the HTTP layer calls
//! [`Secret::expose`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

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
            (None, None, Some(token)) => Ok(Credential::Bearer(resolve(host, token)?)),
            _ => Err(AuthError::Incomplete {
                host: host.to_string(),
            }),
        }
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

/// Credentials by registry host (`registry.example.com`, `127.0.0.1:5000`).
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    by_host: BTreeMap<String, Credential>,
}

impl CredentialStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set (or replace) the credential for `host`.
    pub fn insert(&mut self, host: impl Into<String>, credential: Credential) {
        self.by_host
            .insert(normalize_host(&host.into()), credential);
    }

    pub fn get(&self, host: &str) -> Option<&Credential> {
        self.by_host.get(&normalize_host(host))
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Resolve explicit runtime-config entries.
    pub fn from_config<'a>(
        entries: impl IntoIterator<Item = (&'a String, &'a CredentialConfig)>,
    ) -> Result<Self, AuthError> {
        let mut store = Self::new();
        for (host, config) in entries {
            store.insert(host.as_str(), config.resolve(host)?);
        }
        Ok(store)
    }

    /// Add the entries of a Docker `config.json` that are not set already (explicit entries
    /// win). Entries handled by `credsStore`/`credHelpers` are not read: baton does not run
    /// credential helpers.
    pub fn merge_docker_config(&mut self, path: &Path) -> Result<(), AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        for (host, cred) in
            parse_docker_config(&text).map_err(|reason| AuthError::DockerConfig {
                path: path.to_path_buf(),
                reason,
            })?
        {
            self.by_host.entry(normalize_host(&host)).or_insert(cred);
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
            Some(&Credential::basic("user", "pass:with:colons"))
        );
        assert_eq!(
            store.get("ghcr.io"),
            Some(&Credential::Bearer(Secret::new("t0k")))
        );
        assert_eq!(
            store.get("127.0.0.1:5000"),
            Some(&Credential::basic("u", "p"))
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
            Some(&Credential::basic("ci", "s3cret"))
        );
        assert_eq!(store.get("b.io"), Some(&Credential::basic("b", "y")));

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
}
