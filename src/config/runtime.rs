//! The bot's own runtime config, `baton.yaml`: where the config repo is and how to reach it,
//! GitHub credentials, clusters, the listen address and loop intervals. Secrets are named
//! (env var or file), never written inline. A few settings can be overridden by environment
//! variables (see [`ENV_OVERRIDES`]), which is what container deployments usually want.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::diag::{self, Diagnostic};
use super::duration::HumanDuration;
use super::secret::SecretRef;

/// Environment variables that override settings after the file is read.
pub const ENV_OVERRIDES: [(&str, &str); 5] = [
    ("BATON_REPO_URL", "repo.url"),
    ("BATON_REPO_BRANCH", "repo.branch"),
    ("BATON_LISTEN", "listen"),
    ("BATON_GITHUB_API_URL", "github.apiUrl"),
    ("BATON_WORKDIR", "workdir"),
];

/// `baton.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeConfig {
    pub repo: RepoConfig,
    #[serde(default)]
    pub github: GitHubConfig,
    /// Clusters by name; environments refer to them with `cluster:`.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Address of the webhook, metrics and status server.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Who may read the status page and its JSON API (`server.auth`).
    #[serde(default, skip_serializing_if = "ServerConfig::is_default")]
    pub server: ServerConfig,
    #[serde(default)]
    pub intervals: Intervals,
    /// Where the bot keeps its clone of the config repo (a cache; safe to delete).
    #[serde(default = "default_workdir")]
    pub workdir: PathBuf,
    /// Registry credentials by host (`{ username, password }` or `{ token }`).
    #[serde(default, skip_serializing_if = "indexmap::IndexMap::is_empty")]
    pub registries: indexmap::IndexMap<String, CredentialConfig>,
    /// A Docker `config.json` whose `auths` are used too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_config: Option<PathBuf>,
    /// How config-repo trees are rendered.
    #[serde(default, skip_serializing_if = "RenderSettings::is_default")]
    pub render: RenderSettings,
    /// Where baton tells people about promotions ([`super::notify`], docs/notify.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<super::notify::NotifyConfig>,
}

/// `render:` in `baton.yaml`: what the built-in kustomize renderer may run.
/// ```yaml
/// render: { helm: true, helmCommand: /usr/local/bin/helm }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RenderSettings {
    /// Inflate `helmCharts` with the `helm` binary (`kubectl kustomize --enable-helm`).
    #[serde(default)]
    pub helm: bool,
    /// The helm binary (default `helm`, found on `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_command: Option<PathBuf>,
}

impl RenderSettings {
    fn is_default(&self) -> bool {
        self == &RenderSettings::default()
    }

    /// The helm binary to run when `helm` is on (what `render::Options::helm` takes).
    pub fn helm_binary(&self) -> Option<PathBuf> {
        self.helm.then(|| {
            self.helm_command
                .clone()
                .unwrap_or_else(|| PathBuf::from("helm"))
        })
    }
}

/// The HTTP server's settings beyond its address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    /// Protects the status page (`/`) and the JSON API (`/api/…`). Webhooks keep their own
    /// signatures; `/healthz`, `/readyz` and `/metrics` stay open. Without it, anyone who can
    /// reach the port reads the status page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ServerAuth>,
    /// Where people reach the status page (`https://baton.example.com/`), for links baton
    /// puts on GitHub: each Deployment status's `environment_url`. Without it those links are
    /// left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Who may post registry notifications to `/webhooks/registry`. Without it anyone who
    /// can reach the port may (a notification only makes baton read the registry sooner, or
    /// trust a notifying registry's tag lists for `intervals.registryFallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_webhook: Option<RegistryWebhook>,
}

/// `server.registryWebhook`: a bearer token the registry sends (distribution's `headers`,
/// Harbor's auth header), an HMAC secret for the signed generic form, or both:
/// ```yaml
/// server:
///   registryWebhook:
///     token: { file: /run/secrets/registry-webhook-token }   # Authorization: Bearer <token>
///     hmacSecret: { env: REGISTRY_WEBHOOK_HMAC }              # X-Baton-Signature-256: sha256=…
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryWebhook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<SecretRef>,
}

impl ServerConfig {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// `server.auth`: a bearer token, a trusted proxy's user header, or both (either admits):
/// ```yaml
/// server:
///   auth:
///     token: { file: /run/secrets/baton-status-token }
///     trustedProxy: { header: X-Forwarded-User, from: [127.0.0.1/32, 10.0.0.0/8] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerAuth {
    /// Requests must carry `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// A proxy that authenticates people (oauth2-proxy, an ingress with SSO) and names the
    /// user in a header. The header is believed only from the listed addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxy: Option<TrustedProxy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustedProxy {
    /// The header naming the authenticated user (default `X-Forwarded-User`).
    #[serde(default = "default_user_header")]
    pub header: String,
    /// Addresses or CIDR ranges the proxy connects from (`127.0.0.1/32`, `10.0.0.0/8`,
    /// `::1`). A request from anywhere else is not believed, whatever headers it carries.
    pub from: Vec<String>,
}

/// An address range (`10.0.0.0/8`, `::1/128`; a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 peer counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn default_user_header() -> String {
    "X-Forwarded-User".into()
}

/// One registry's entry in the runtime config (`registry::auth` resolves it to a credential):
/// ```yaml
/// registry.example.com: { username: ci, password: { env: REGISTRY_PASSWORD } }
/// ghcr.io: { token: { file: /run/secrets/ghcr-token } }
/// ```
/// A `token` (a GitHub token for GHCR, a robot token) is a password: it goes to the
/// registry's token endpoint with HTTP Basic (username `username`, default `baton`) through the
/// normal challenge, never straight into a `Bearer` header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
}

/// The config repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    /// `https://github.com/org/repo.git`, `git@github.com:org/repo.git`,
    /// `ssh://…`, or a local path.
    pub url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Token for https (sent as `x-access-token:<token>`, GitHub's form). When omitted,
    /// the GitHub credentials below are used for https URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// Private key for ssh URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<SshKey>,
    /// An OpenSSH private key (no passphrase) that signs every commit baton makes with Git
    /// (promotion and rollback branches under a token), as `git commit -S` with
    /// `gpg.format=ssh` does. Unused under GitHub App auth, where GitHub signs the commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SecretRef>,
    /// Who bot commits are made as (default `baton[bot]`,
    /// `baton[bot]@users.noreply.github.com`). GitHub shows a signed commit as verified only
    /// when this email is a verified email of the account the signing key is registered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committer: Option<Committer>,
}

/// `repo.committer`: the name and email of bot commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Committer {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SshKey {
    pub file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<SecretRef>,
}

/// GitHub: a token or a GitHub App, and the webhook secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitHubConfig {
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// `owner/name`; derived from `repo.url` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<GitHubApp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretRef>,
    /// The login the bot's comments and reviews appear under. baton asks GitHub at start
    /// (`<app-slug>[bot]` for a GitHub App, the user's login for a token); when set, this must
    /// agree with GitHub's answer or baton stops. Needed only for an installation token given
    /// as `token:`, whose owner GitHub does not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_login: Option<String>,
    /// Keep the promotion dashboard issue ("baton: promotions") in the config repo up to date
    /// (`service::dashboard`). On by default; `false` leaves an existing one as it is.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub dashboard: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            api_url: default_api_url(),
            repository: None,
            token: None,
            app: None,
            webhook_secret: None,
            bot_login: None,
            dashboard: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitHubApp {
    pub app_id: u64,
    pub installation_id: u64,
    pub private_key: SecretRef,
}

/// How to reach one cluster: the in-cluster service account, or a kubeconfig (and context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(default)]
    pub in_cluster: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Namespace where baton keeps its inventory and lease.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// What baton's RBAC lets it touch: `cluster` (any namespace and cluster-scoped objects;
    /// the chart's `rbac.scope: cluster`), or `namespaces` (only objects in `namespaces`, listed
    /// and watched per namespace; the chart's `rbac.scope: namespaces`).
    #[serde(default, skip_serializing_if = "ClusterScope::is_cluster")]
    pub scope: ClusterScope,
    /// The namespaces baton may use under `scope: namespaces` (the chart's `rbac.namespaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// How far baton's permissions on a cluster reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClusterScope {
    #[default]
    Cluster,
    Namespaces,
}

impl ClusterScope {
    pub fn is_cluster(&self) -> bool {
        *self == ClusterScope::Cluster
    }
}

impl ClusterConfig {
    /// The namespaces baton is limited to on this cluster, or `None` when it may act
    /// cluster-wide.
    pub fn allowed_namespaces(&self) -> Option<&[String]> {
        match self.scope {
            ClusterScope::Cluster => None,
            ClusterScope::Namespaces => Some(&self.namespaces),
        }
    }
}

/// Loop intervals. Webhooks make these a safety net, not the main path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Intervals {
    /// How often registries are scanned.
    #[serde(default = "d_registry")]
    pub registry: HumanDuration,
    /// On a registry whose push notifications reach baton (`/webhooks/registry`), how long a
    /// repository's tag list is trusted without asking the registry again (a notification
    /// about the repository makes the next scan read it at once). The safety net for lost
    /// notifications.
    #[serde(default = "d_registry_fallback")]
    pub registry_fallback: HumanDuration,
    /// How often promotions are re-planned.
    #[serde(default = "d_plan")]
    pub plan: HumanDuration,
    /// How often clusters are re-synced (drift detection).
    #[serde(default = "d_resync")]
    pub resync: HumanDuration,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            registry: d_registry(),
            registry_fallback: d_registry_fallback(),
            plan: d_plan(),
            resync: d_resync(),
        }
    }
}

fn default_listen() -> SocketAddr {
    "0.0.0.0:8080".parse().expect("literal address")
}
fn default_workdir() -> PathBuf {
    PathBuf::from("/var/lib/baton")
}
fn default_branch() -> String {
    "main".into()
}
fn default_api_url() -> String {
    "https://api.github.com".into()
}
fn default_namespace() -> String {
    "baton-system".into()
}
fn d_registry() -> HumanDuration {
    HumanDuration::from_secs(120)
}
fn d_registry_fallback() -> HumanDuration {
    HumanDuration::from_secs(30 * 60)
}
fn d_plan() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn d_resync() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// Why the runtime config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostic),
}

impl RuntimeConfig {
    /// Read `path`, then apply environment overrides from `env` (pass `std::env::vars()`).
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RuntimeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text, env)
    }

    pub fn parse(
        file: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, RuntimeConfigError> {
        let tree = crate::yaml::parse(text).map_err(|e| {
            RuntimeConfigError::Invalid(Diagnostic::new(
                file,
                Some(e.pos),
                "",
                format!("invalid YAML: {}", e.message),
            ))
        })?;
        let mut cfg: RuntimeConfig = yaml_serde::from_str(text).map_err(|e| {
            RuntimeConfigError::Invalid(diag::refine(diag::from_serde(file, &e), &tree))
        })?;
        let invalid = |field: &str, message: String| {
            RuntimeConfigError::Invalid(Diagnostic::new("environment", None, field, message))
        };
        for (var, value) in env {
            match var.as_str() {
                "BATON_REPO_URL" => cfg.repo.url = value,
                "BATON_REPO_BRANCH" => cfg.repo.branch = value,
                "BATON_LISTEN" => {
                    cfg.listen = value.parse().map_err(|_| {
                        invalid(
                            "BATON_LISTEN",
                            format!("{value:?} is not an address such as 0.0.0.0:8080"),
                        )
                    })?
                }
                "BATON_GITHUB_API_URL" => cfg.github.api_url = value,
                "BATON_WORKDIR" => cfg.workdir = PathBuf::from(value),
                _ => {}
            }
        }
        for (name, c) in &cfg.clusters {
            if c.in_cluster == c.kubeconfig.is_some() {
                let pos = tree.lookup(&format!("clusters.{name}")).0.pos;
                return Err(RuntimeConfigError::Invalid(Diagnostic::new(
                    file,
                    Some(pos),
                    format!("clusters.{name}"),
                    "set exactly one of inCluster: true or kubeconfig: <path>",
                )));
            }
            let problem = match (c.scope, c.namespaces.is_empty()) {
                (ClusterScope::Namespaces, true) => Some(
                    "scope: namespaces needs the namespaces baton may use (namespaces: [shop, ...]), as the chart's rbac.namespaces grants them",
                ),
                (ClusterScope::Cluster, false) => Some(
                    "namespaces: is only used with scope: namespaces (set it, or remove namespaces:)",
                ),
                _ => None,
            };
            let bad_name = c.namespaces.iter().find(|n| !is_dns_label(n));
            if let Some(message) = problem {
                let pos = tree.lookup(&format!("clusters.{name}")).0.pos;
                return Err(RuntimeConfigError::Invalid(Diagnostic::new(
                    file,
                    Some(pos),
                    format!("clusters.{name}.namespaces"),
                    message,
                )));
            }
            if let Some(n) = bad_name {
                let pos = tree.lookup(&format!("clusters.{name}.namespaces")).0.pos;
                return Err(RuntimeConfigError::Invalid(Diagnostic::new(
                    file,
                    Some(pos),
                    format!("clusters.{name}.namespaces"),
                    format!("{n:?} is not a namespace name (lowercase letters, digits and '-')"),
                )));
            }
        }
        if cfg.repo.url.trim().is_empty() {
            return Err(invalid("repo.url", "is empty".into()));
        }
        if let Some(c) = &cfg.repo.committer
            && (c.name.trim().is_empty() || !c.email.contains('@') || c.email.contains(['<', '>']))
        {
            let pos = tree.lookup("repo.committer").0.pos;
            return Err(RuntimeConfigError::Invalid(Diagnostic::new(
                file,
                Some(pos),
                "repo.committer",
                "needs a name and an email (the email GitHub verified for the account whose signing key signs the commits)".to_string(),
            )));
        }
        if let Some(hook) = &cfg.server.registry_webhook
            && hook.token.is_none()
            && hook.hmac_secret.is_none()
        {
            let pos = tree.lookup("server.registryWebhook").0.pos;
            return Err(RuntimeConfigError::Invalid(Diagnostic::new(
                file,
                Some(pos),
                "server.registryWebhook",
                "set token: { file: … } (the bearer token the registry sends), hmacSecret: { … } (for signed notifications), or both".to_string(),
            )));
        }
        if let Some(url) = &cfg.server.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid(
                "server.publicUrl",
                format!("{url:?} is not an http(s) URL (e.g. https://baton.example.com/)"),
            ));
        }
        if let Some((path, message)) = super::notify::check(&cfg.notify) {
            let pos = tree.lookup(&path).0.pos;
            return Err(RuntimeConfigError::Invalid(Diagnostic::new(
                file,
                Some(pos),
                path,
                message,
            )));
        }
        if let Some(auth) = &cfg.server.auth {
            let at = |path: &str, message: String| {
                let pos = tree.lookup(path).0.pos;
                RuntimeConfigError::Invalid(Diagnostic::new(file, Some(pos), path, message))
            };
            if auth.token.is_none() && auth.trusted_proxy.is_none() {
                return Err(at(
                    "server.auth",
                    "set token: { file: … } (a bearer token), trustedProxy: { from: [<proxy address>] }, or both".into(),
                ));
            }
            if let Some(proxy) = &auth.trusted_proxy {
                if proxy.from.is_empty() {
                    return Err(at(
                        "server.auth.trustedProxy.from",
                        "list the addresses the proxy connects from (e.g. [127.0.0.1/32] for a sidecar); the header is believed from nowhere else".into(),
                    ));
                }
                if http::HeaderName::try_from(proxy.header.as_str()).is_err() {
                    return Err(at(
                        "server.auth.trustedProxy.header",
                        format!("{:?} is not an HTTP header name", proxy.header),
                    ));
                }
                for (i, range) in proxy.from.iter().enumerate() {
                    Cidr::parse(range)
                        .map_err(|m| at(&format!("server.auth.trustedProxy.from[{i}]"), m))?;
                }
            }
        }
        Ok(cfg)
    }

    /// `owner/name` of the config repo on GitHub: `github.repository`, or parsed from the
    /// repo URL (`https://host/owner/name(.git)` or `git@host:owner/name(.git)`).
    pub fn github_repository(&self) -> Option<String> {
        if let Some(r) = &self.github.repository {
            return Some(r.clone());
        }
        let url = self.repo.url.trim_end_matches('/').trim_end_matches(".git");
        let path = if let Some((_, rest)) = url.split_once("://") {
            rest.split_once('/')?.1
        } else {
            url.split_once(':')?.1
        };
        let parts: Vec<_> = path.rsplitn(3, '/').collect();
        (parts.len() >= 2).then(|| format!("{}/{}", parts[1], parts[0]))
    }
}

/// A Kubernetes namespace name (an RFC 1123 label).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "repo:\n  url: https://github.com/shop/config.git\n";

    #[test]
    fn a_minimal_config_gets_documented_defaults() {
        let c = RuntimeConfig::parse("baton.yaml", MINIMAL, []).unwrap();
        assert_eq!(c.repo.branch, "main");
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.intervals.plan.to_string(), "1m");
        assert_eq!(c.github.api_url, "https://api.github.com");
        assert_eq!(c.github_repository().as_deref(), Some("shop/config"));
    }

    #[test]
    fn environment_variables_override_the_file() {
        let env = [
            ("BATON_REPO_BRANCH".to_string(), "release".to_string()),
            ("BATON_LISTEN".into(), "127.0.0.1:9000".into()),
        ];
        let c = RuntimeConfig::parse("baton.yaml", MINIMAL, env).unwrap();
        assert_eq!(c.repo.branch, "release");
        assert_eq!(c.listen.port(), 9000);
        let bad = [("BATON_LISTEN".to_string(), "nowhere".to_string())];
        assert!(
            RuntimeConfig::parse("baton.yaml", MINIMAL, bad)
                .unwrap_err()
                .to_string()
                .contains("BATON_LISTEN")
        );
    }

    #[test]
    fn secrets_are_references_and_unknown_keys_are_located() {
        let text = format!(
            "{MINIMAL}github:\n  token: {{ env: GITHUB_TOKEN }}\n  webhookSecret: {{ file: /run/secret }}\nclusters:\n  prod: {{ kubeconfig: /k, context: prod }}\n"
        );
        let c = RuntimeConfig::parse("baton.yaml", &text, []).unwrap();
        assert_eq!(c.github.token, Some(SecretRef::from_env("GITHUB_TOKEN")));
        assert_eq!(c.clusters["prod"].namespace, "baton-system");
        let e = RuntimeConfig::parse("baton.yaml", &format!("{MINIMAL}listn: x\n"), [])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("baton.yaml:3:1") && e.contains("did you mean `listen`?"),
            "{e}"
        );
    }

    #[test]
    fn a_cluster_needs_exactly_one_way_in() {
        let e = RuntimeConfig::parse(
            "baton.yaml",
            &format!("{MINIMAL}clusters:\n  dev: {{ context: x }}\n"),
            [],
        )
        .unwrap_err();
        assert!(e.to_string().contains("clusters.dev"), "{e}");
    }

    #[test]
    fn a_namespaces_scope_names_its_namespaces_and_a_cluster_scope_names_none() {
        let parse = |cluster: &str| {
            RuntimeConfig::parse(
                "baton.yaml",
                &format!("{MINIMAL}clusters:\n  dev: {cluster}\n"),
                [],
            )
        };
        let c =
            parse("{ kubeconfig: /k, scope: namespaces, namespaces: [shop, payments] }").unwrap();
        assert_eq!(
            c.clusters["dev"].allowed_namespaces(),
            Some(&["shop".to_string(), "payments".to_string()][..])
        );
        let c = parse("{ kubeconfig: /k }").unwrap();
        assert_eq!(c.clusters["dev"].scope, ClusterScope::Cluster);
        assert_eq!(c.clusters["dev"].allowed_namespaces(), None);
        for (bad, says) in [
            (
                "{ kubeconfig: /k, scope: namespaces }",
                "needs the namespaces",
            ),
            (
                "{ kubeconfig: /k, namespaces: [shop] }",
                "only used with scope: namespaces",
            ),
            (
                "{ kubeconfig: /k, scope: namespaces, namespaces: [Shop_1] }",
                "not a namespace name",
            ),
            ("{ kubeconfig: /k, scope: everywhere }", "scope"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("clusters.dev") || e.contains("scope"),
                "{bad}: {e}"
            );
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_public_url_is_optional_and_must_be_http_and_the_dashboard_is_on_by_default() {
        let parse =
            |extra: &str| RuntimeConfig::parse("baton.yaml", &format!("{MINIMAL}{extra}"), []);
        let cfg = parse("").unwrap();
        assert_eq!(cfg.server.public_url, None);
        assert!(cfg.github.dashboard);
        let cfg = parse("server:\n  publicUrl: https://baton.example.com/\n").unwrap();
        assert_eq!(
            cfg.server.public_url.as_deref(),
            Some("https://baton.example.com/")
        );
        let e = parse("server:\n  publicUrl: baton.example.com\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.publicUrl") && e.contains("http"), "{e}");
    }

    #[test]
    fn server_auth_needs_a_way_in_and_a_proxy_needs_its_addresses() {
        let parse = |auth: &str| {
            RuntimeConfig::parse(
                "baton.yaml",
                &format!("{MINIMAL}server:\n  auth:\n{auth}"),
                [],
            )
        };
        let e = parse("    {}\n").unwrap_err().to_string();
        assert!(
            e.starts_with("baton.yaml:") && e.contains("server.auth") && e.contains("trustedProxy"),
            "{e}"
        );
        let e = parse("    trustedProxy: { from: [] }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.auth.trustedProxy.from") && e.contains("connects from"),
            "{e}"
        );
        let e = parse("    trustedProxy: { from: [127.0.0.1/32, 10.0.0.0/33] }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("from[1]") && e.contains("0-32"), "{e}");
        let e = parse("    trustedProxy: { from: [proxy.local] }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an IP address"), "{e}");
        let c =
            parse("    token: { file: /run/secrets/t }\n    trustedProxy: { from: [\"::1\"] }\n")
                .unwrap();
        let auth = c.server.auth.unwrap();
        assert_eq!(auth.trusted_proxy.unwrap().header, "X-Forwarded-User");
        assert!(auth.token.is_some());
    }

    #[test]
    fn a_registry_webhook_needs_a_token_or_an_hmac_secret() {
        let parse = |hook: &str| {
            RuntimeConfig::parse(
                "baton.yaml",
                &format!("{MINIMAL}server:\n  registryWebhook: {hook}\n"),
                [],
            )
        };
        let e = parse("{}").unwrap_err().to_string();
        assert!(
            e.starts_with("baton.yaml:")
                && e.contains("server.registryWebhook")
                && e.contains("hmacSecret"),
            "{e}"
        );
        let c = parse("{ token: { file: /run/secrets/t }, hmacSecret: { env: H } }").unwrap();
        let hook = c.server.registry_webhook.unwrap();
        assert!(hook.token.is_some() && hook.hmac_secret.is_some());
    }

    #[test]
    fn cidr_ranges_contain_what_they_should() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.0.9")),
            "IPv4-mapped peers count as IPv4"
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
    }

    #[test]
    fn a_committer_needs_a_name_and_an_email() {
        let parse = |c: &str| {
            RuntimeConfig::parse(
                "baton.yaml",
                &format!("repo:\n  url: /srv/config\n  committer: {c}\n"),
                [],
            )
        };
        let c = parse("{ name: shop-bot, email: 1+shop-bot@users.noreply.github.com }").unwrap();
        assert_eq!(c.repo.committer.unwrap().name, "shop-bot");
        let e = parse("{ name: shop-bot, email: nobody }")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("baton.yaml:3:") && e.contains("repo.committer"),
            "{e}"
        );
    }

    #[test]
    fn the_github_repository_comes_from_ssh_urls_too() {
        let c = RuntimeConfig::parse("b", "repo:\n  url: git@github.com:shop/config.git\n", [])
            .unwrap();
        assert_eq!(c.github_repository().as_deref(), Some("shop/config"));
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### `baton.yaml`")
            .nth(1)
            .expect("README documents baton.yaml");
        let yaml = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("a yaml block");
        let c = RuntimeConfig::parse("README.md", yaml, []).unwrap();
        assert_eq!(c.github.bot_login, None, "asked of GitHub at start");
        assert_eq!(c.registries.len(), 2);
        assert!(c.clusters["prod"].in_cluster);
    }
}
