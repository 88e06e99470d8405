//! The HTTP side of the OCI distribution protocol: one thin client for every registry baton
//! reads from or copies to.
//!
//! `oci-client` gives us the protocol's data model (references, manifests, indexes, media
//! types), but its `Client` hides response headers and owns its connection pool, and the
//! watcher needs exactly those headers: `Link` to follow tag pagination, `Docker-Content-Digest`
//! and `ETag` for cheap polling, `Retry-After` for rate limits, `WWW-Authenticate` for the
//! Bearer challenge, and a hook to count every request. So requests go through this client
//! (reqwest), and the manifest types come from `oci-client`.
//!
//! Auth is challenge-driven: the first request to a registry goes out anonymously; a `401`
//! teaches the client the registry's scheme (Basic or a Bearer token endpoint), after which
//! credentials or cached tokens are attached up front, so steady-state polling pays no extra
//! round trips. Transient failures (connection errors, 5xx, 429) are retried with exponential
//! backoff, honouring `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_client::manifest::OciImageIndex;
use reqwest::header::{self, HeaderMap};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::auth::{Challenge, Credential, CredentialStore, Secret, parse_challenge};
use super::error::RegistryError;
use super::metrics::{RequestCounter, RequestKind, RequestStats};
use super::repo::Repo;

mod bearer;

/// Every manifest media type baton understands, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Blobs read into memory (image configs, signature payloads) are capped at this size; layers
/// are only ever streamed.
const MAX_SMALL_BLOB: usize = 16 << 20;

/// How transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total tries per request, including the first.
    pub attempts: u32,
    /// First backoff; doubled on each retry.
    pub base_delay: Duration,
    /// Longest wait between tries; a `Retry-After` longer than this is returned to the
    /// caller as [`RegistryError::RateLimited`] instead of blocking.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registry hosts reached over plain HTTP. Loopback hosts (`localhost`, `127.0.0.1`,
    /// `[::1]`) always are, like Docker's default insecure registries.
    pub plain_http: Vec<String>,
    pub retry: RetryPolicy,
    /// Per-request timeout (connect + response headers + body).
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            plain_http: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the request needs: decides the token scope.
#[derive(Debug, Clone)]
enum Access<'a> {
    Pull,
    Push,
    /// Push to the target and pull from `from` (cross-repository mount).
    PushMountFrom(&'a str),
}

#[derive(Debug, Default)]
struct HostAuth {
    /// Learned from the last 401.
    scheme: Option<Scheme>,
    /// Bearer tokens by scope set.
    tokens: HashMap<String, (Secret, Instant)>,
}

#[derive(Debug, Clone)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// `GET /v2/<name>/tags/list`, all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// The registry said nothing changed since `etag` (`304`).
    NotModified,
    Tags {
        tags: Vec<String>,
        /// The first page's `ETag`, for the next conditional request.
        etag: Option<String>,
    },
}

/// What `HEAD` on a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: String,
    pub media_type: Option<String>,
}

/// A manifest as stored: its exact bytes (the digest is over these), media type and digest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub bytes: Bytes,
    pub media_type: Option<String>,
    pub digest: String,
}

/// Result of a cross-repository mount request.
#[derive(Debug)]
pub enum Mount {
    Mounted,
    /// The registry could not mount and opened an upload session instead.
    UploadAt(String),
}

/// The registry client. Cheap to share (`Arc` inside); one per process.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    credentials: CredentialStore,
    options: ClientOptions,
    auth: Mutex<HashMap<String, HostAuth>>,
    /// Registries that answered 404 on the referrers API.
    no_referrers: Mutex<std::collections::HashSet<String>>,
    counter: RequestCounter,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(credentials: CredentialStore, options: ClientOptions) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            // Registries redirect blob GETs to storage; never forward our Authorization
            // there (reqwest drops it on cross-host redirects).
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .expect("static reqwest configuration is valid");
        Self {
            inner: Arc::new(Inner {
                http,
                credentials,
                options,
                auth: Mutex::default(),
                no_referrers: Mutex::default(),
                counter: RequestCounter::default(),
            }),
        }
    }

    /// An anonymous client with default options.
    pub fn anonymous() -> Self {
        Self::new(CredentialStore::new(), ClientOptions::default())
    }

    /// Request counters since this client was created.
    pub fn stats(&self) -> RequestStats {
        self.inner.counter.snapshot()
    }

    fn base(&self, registry: &str) -> String {
        let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                registry
            }
        });
        let loopback = matches!(host, "localhost" | "[::1]") || host.starts_with("127.");
        let plain = loopback || self.inner.options.plain_http.iter().any(|h| h == registry);
        let api_host = if registry == "docker.io" || registry == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        format!("{}://{api_host}", if plain { "http" } else { "https" })
    }

    fn url(&self, repo: &Repo, rest: &str) -> String {
        format!(
            "{}/v2/{}/{rest}",
            self.base(&repo.registry),
            repo.repository
        )
    }

    /// All tags of a repository, following `Link` pagination. With `etag`, asks the registry
    /// to answer `304` when nothing changed (registries that send `ETag` on tag lists).
    pub async fn list_tags(
        &self,
        repo: &Repo,
        page_size: Option<usize>,
        etag: Option<&str>,
    ) -> Result<TagList, RegistryError> {
        let what = repo.to_string();
        let mut url = self.url(repo, "tags/list");
        if let Some(n) = page_size {
            url.push_str(&format!("?n={n}"));
        }
        let mut tags = Vec::new();
        let mut first_etag = None;
        let mut first = true;
        loop {
            let conditional = if first { etag } else { None };
            let resp = self
                .execute(repo, RequestKind::Tags, Access::Pull, &what, |c| {
                    let r = c.get(&url);
                    match conditional {
                        Some(e) => r.header(header::IF_NONE_MATCH, e),
                        None => r,
                    }
                })
                .await?;
            if first && resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(TagList::NotModified);
            }
            let resp = self.check(repo, &what, resp).await?;
            if first {
                first_etag = header_str(resp.headers(), header::ETAG);
            }
            let next = next_link(resp.headers());
            #[derive(Deserialize)]
            struct Page {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| self.unreachable(repo, &what, e))?;
            let page: Page =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                    registry: repo.registry.clone(),
                    what: what.clone(),
                    reason: format!("tag list is not JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            first = false;
            match next {
                Some(link) => url = self.resolve_link(repo, &link),
                None => break,
            }
        }
        Ok(TagList::Tags {
            tags,
            etag: first_etag,
        })
    }

    fn resolve_link(&self, repo: &Repo, link: &str) -> String {
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_string()
        } else {
            format!("{}{link}", self.base(&repo.registry))
        }
    }

    /// `HEAD` a manifest by tag or digest: its digest without downloading it.
    pub async fn head_manifest(
        &self,
        repo: &Repo,
        reference: &str,
    ) -> Result<ManifestHead, RegistryError> {
        let what = repo.at(reference);
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .execute(repo, RequestKind::ManifestHead, Access::Pull, &what, |c| {
                c.head(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let resp = self.check(repo, &what, resp).await?;
        let media_type = header_str(resp.headers(), header::CONTENT_TYPE);
        match header_str(resp.headers(), "docker-content-digest") {
            Some(digest) => Ok(ManifestHead { digest, media_type }),
            // Registries that omit the header: fall back to hashing the body.
            None => {
                let raw = self.get_manifest(repo, reference).await?;
                Ok(ManifestHead {
                    digest: raw.digest,
                    media_type: raw.media_type,
                })
            }
        }
    }

    /// `GET` a manifest. The digest is computed from the bytes and checked against the
    /// reference (when it is a digest) and the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repo: &Repo,
        reference: &str,
    ) -> Result<RawManifest, RegistryError> {
        let what = repo.at(reference);
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .execute(repo, RequestKind::ManifestGet, Access::Pull, &what, |c| {
                c.get(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let resp = self.check(repo, &what, resp).await?;
        let media_type = header_str(resp.headers(), header::CONTENT_TYPE);
        let claimed = header_str(resp.headers(), "docker-content-digest");
        let bytes = self.read_limited(repo, &what, resp).await?;
        let digest = sha256_digest(&bytes);
        for expected in [reference_digest(reference), claimed.as_deref()]
            .into_iter()
            .flatten()
        {
            if expected.starts_with("sha256:") && expected != digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// A small blob (config, signature payload), read into memory and checked against its
    /// digest.
    pub async fn get_blob(&self, repo: &Repo, digest: &str) -> Result<Bytes, RegistryError> {
        let what = repo.at(digest);
        let resp = self.blob_response(repo, digest).await?;
        let bytes = self.read_limited(repo, &what, resp).await?;
        let actual = sha256_digest(&bytes);
        if digest.starts_with("sha256:") && actual != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The blob's response, for streaming.
    pub async fn blob_response(
        &self,
        repo: &Repo,
        digest: &str,
    ) -> Result<Response, RegistryError> {
        let what = repo.at(digest);
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self
            .execute(repo, RequestKind::BlobGet, Access::Pull, &what, |c| {
                c.get(&url)
            })
            .await?;
        self.check(repo, &what, resp).await
    }

    /// Whether the repository already has the blob. Checked with push access, because
    /// that is what a copy holds for its target.
    pub async fn blob_exists(&self, repo: &Repo, digest: &str) -> Result<bool, RegistryError> {
        let what = repo.at(digest);
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self
            .execute(repo, RequestKind::BlobHead, Access::Push, &what, |c| {
                c.head(&url)
            })
            .await?;
        match self.check(repo, &what, resp).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Ask the registry to mount `digest` from `from` (same registry) into `repo`.
    pub async fn mount_blob(
        &self,
        repo: &Repo,
        digest: &str,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let what = repo.at(digest);
        let url = self.url(repo, "blobs/uploads/");
        let resp = self
            .execute(
                repo,
                RequestKind::BlobMount,
                Access::PushMountFrom(from),
                &what,
                |c| {
                    c.post(&url)
                        .query(&[("mount", digest), ("from", from)])
                        .header(header::CONTENT_LENGTH, "0")
                },
            )
            .await?;
        let resp = self.check(repo, &what, resp).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            _ => Ok(Mount::UploadAt(self.location(repo, &what, &resp)?)),
        }
    }

    /// Open an upload session; returns its location.
    pub async fn start_upload(&self, repo: &Repo, what: &str) -> Result<String, RegistryError> {
        let url = self.url(repo, "blobs/uploads/");
        let resp = self
            .execute(repo, RequestKind::BlobUpload, Access::Push, what, |c| {
                c.post(&url).header(header::CONTENT_LENGTH, "0")
            })
            .await?;
        let resp = self.check(repo, what, resp).await?;
        self.location(repo, what, &resp)
    }

    /// Whether `repo` accepts pushes with the configured credentials: opens an upload session
    /// and cancels it (nothing is written).
    pub async fn check_push(&self, repo: &Repo) -> Result<(), RegistryError> {
        let what = format!("an upload to {repo}");
        let location = self.start_upload(repo, &what).await?;
        // Cancelling is a courtesy: registries expire abandoned sessions.
        let _ = self
            .execute(repo, RequestKind::BlobUpload, Access::Push, &what, |c| {
                c.delete(&location)
            })
            .await;
        Ok(())
    }

    /// Finish an upload session with the whole blob in one `PUT`. The body is consumed, so
    /// this request is not retried here; callers retry the whole transfer.
    pub async fn finish_upload(
        &self,
        repo: &Repo,
        location: &str,
        digest: &str,
        body: reqwest::Body,
        size: Option<u64>,
    ) -> Result<(), RegistryError> {
        let what = repo.at(digest);
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let mut req = self
            .inner
            .http
            .put(&url)
            .header(header::CONTENT_TYPE, "application/octet-stream");
        if let Some(size) = size {
            req = req.header(header::CONTENT_LENGTH, size);
        }
        let req = self.authorize(repo, &Access::Push, &what, req).await?;
        self.inner
            .counter
            .request(&repo.registry, RequestKind::BlobUpload);
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(repo, &what, e))?;
        self.check(repo, &what, resp).await.map(|_| ())
    }

    /// `PUT` a manifest under a tag or its digest; returns the digest the registry stored.
    pub async fn put_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let what = repo.at(reference);
        let url = self.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .execute(repo, RequestKind::ManifestPut, Access::Push, &what, |c| {
                c.put(&url)
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        let resp = self.check(repo, &what, resp).await?;
        Ok(header_str(resp.headers(), "docker-content-digest")
            .unwrap_or_else(|| sha256_digest(&bytes)))
    }

    /// The OCI referrers API. `None` when the registry does not implement it (`404`, `400`,
    /// `405`), which is remembered so that later calls to that registry cost nothing, or
    /// refuses it (`403`).
    pub async fn referrers(
        &self,
        repo: &Repo,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Option<OciImageIndex>, RegistryError> {
        if self.lock_no_referrers().contains(&repo.registry) {
            return Ok(None);
        }
        let what = format!("referrers of {}", repo.at(digest));
        let url = self.url(repo, &format!("referrers/{digest}"));
        let resp = self
            .execute(repo, RequestKind::Referrers, Access::Pull, &what, |c| {
                let r = c
                    .get(&url)
                    .header(header::ACCEPT, "application/vnd.oci.image.index.v1+json");
                match artifact_type {
                    Some(t) => r.query(&[("artifactType", t)]),
                    None => r,
                }
            })
            .await?;
        match resp.status() {
            // No referrers API (distribution 2.8 answers 404; others 400 or 405).
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {
                self.lock_no_referrers().insert(repo.registry.clone());
                return Ok(None);
            }
            // Some registries refuse the endpoint to tokens scoped for pulls; the tag schemes
            // still work there.
            StatusCode::FORBIDDEN => return Ok(None),
            _ => {}
        }
        let resp = self.check(repo, &what, resp).await?;
        let body = self.read_limited(repo, &what, resp).await?;
        let index = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            registry: repo.registry.clone(),
            what,
            reason: format!("referrers response is not an image index: {e}"),
        })?;
        Ok(Some(index))
    }

    fn lock_no_referrers(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner
            .no_referrers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn location(&self, repo: &Repo, what: &str, resp: &Response) -> Result<String, RegistryError> {
        let loc = header_str(resp.headers(), header::LOCATION).ok_or_else(|| {
            RegistryError::Protocol {
                registry: repo.registry.clone(),
                what: what.to_string(),
                reason: "upload session without a Location header".into(),
            }
        })?;
        Ok(self.resolve_link(repo, &loc))
    }

    async fn read_limited(
        &self,
        repo: &Repo,
        what: &str,
        mut resp: Response,
    ) -> Result<Bytes, RegistryError> {
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_SMALL_BLOB)
        {
            return Err(RegistryError::Protocol {
                registry: repo.registry.clone(),
                what: what.to_string(),
                reason: format!("response larger than {MAX_SMALL_BLOB} bytes"),
            });
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.unreachable(repo, what, e))?
        {
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_SMALL_BLOB {
                return Err(RegistryError::Protocol {
                    registry: repo.registry.clone(),
                    what: what.to_string(),
                    reason: format!("response larger than {MAX_SMALL_BLOB} bytes"),
                });
            }
        }
        Ok(Bytes::from(buf))
    }

    fn unreachable(&self, repo: &Repo, what: &str, source: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: repo.registry.clone(),
            what: what.to_string(),
            source: source.without_url(),
        }
    }

    /// Map a final non-success status to an error; pass successes (and 304) through.
    async fn check(
        &self,
        repo: &Repo,
        what: &str,
        resp: Response,
    ) -> Result<Response, RegistryError> {
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let registry = repo.registry.clone();
        let what = what.to_string();
        let retry_after = retry_after(resp.headers());
        let message = error_message(resp.text().await.unwrap_or_default());
        Err(match status.as_u16() {
            404 => RegistryError::NotFound { registry, what },
            401 | 403 => RegistryError::Unauthorized {
                registry,
                what,
                status: status.as_u16(),
                message,
            },
            429 => RegistryError::RateLimited {
                registry,
                what,
                retry_after,
            },
            s @ 500..=599 => RegistryError::Server {
                registry,
                what,
                status: s,
                message,
            },
            s => RegistryError::Unexpected {
                registry,
                what,
                status: s,
                message,
            },
        })
    }

    /// Send with auth, counting, and retries of transient failures. Returns the final
    /// response whatever its status (except 401 after re-authentication and exhausted
    /// 5xx/429, which become errors).
    async fn execute(
        &self,
        repo: &Repo,
        kind: RequestKind,
        access: Access<'_>,
        what: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let policy = &self.inner.options.retry;
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            // Credentials go out only once the registry asked for them (or as a static token).
            let with_credentials = self
                .lock_auth()
                .get(&repo.registry)
                .is_some_and(|h| h.scheme.is_some());
            let req = self
                .authorize(repo, &access, what, make(&self.inner.http))
                .await?;
            self.inner.counter.request(&repo.registry, kind);
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    if attempt < policy.attempts {
                        self.wait(repo, policy.backoff(attempt)).await;
                        continue;
                    }
                    return Err(self.unreachable(repo, what, e));
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                reauthenticated = true;
                if with_credentials {
                    // Refused: rotated credentials? Read the file or ask the helper again.
                    self.inner.credentials.invalidate(&repo.registry);
                }
                if self
                    .learn_challenge(repo, &access, what, resp.headers())
                    .await?
                {
                    attempt -= 1;
                    continue;
                }
                return self.check(repo, what, resp).await;
            }
            let throttled = status == StatusCode::TOO_MANY_REQUESTS;
            if throttled || status.is_server_error() {
                let asked = retry_after(resp.headers());
                let wait = asked.unwrap_or_else(|| policy.backoff(attempt));
                if attempt < policy.attempts && wait <= policy.max_delay {
                    tracing::debug!(registry = %repo.registry, %what, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "registry asked to retry");
                    self.wait(repo, wait).await;
                    continue;
                }
                return self.check(repo, what, resp).await;
            }
            return Ok(resp);
        }
    }

    async fn wait(&self, repo: &Repo, d: Duration) {
        self.inner.counter.retry(&repo.registry);
        tokio::time::sleep(d).await;
    }
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn reference_digest(reference: &str) -> Option<&str> {
    reference.contains(':').then_some(reference)
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header_str(headers, header::RETRY_AFTER)?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(&v).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::LINK) {
        let value = value.to_str().ok()?;
        for part in value.split(',') {
            let (target, params) = part.split_once(';').unwrap_or((part, ""));
            if params
                .split(';')
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            {
                let t = target.trim();
                return Some(t.trim_start_matches('<').trim_end_matches('>').to_string());
            }
        }
    }
    None
}

/// The registry's error JSON (`{"errors":[{"code","message"}]}`) as one short line.
fn error_message(body: String) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_str::<Errors>(&body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => body.trim().to_string(),
    };
    let mut text: String = text.chars().take(200).collect();
    if text.contains('\n') {
        text = text.replace('\n', " ");
    }
    text
}

#[cfg(test)]
mod tests;
