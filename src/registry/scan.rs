//! The scan: for one app, which tags are blessed, what digest each points at, which is newest,
//! and (when the pipeline asks) whether its cosign signature verifies.
//!
//! Polling is cheap because almost everything is cached: image metadata and signature results
//! by digest (content-addressed, so never stale), and tag → digest for `revalidate_after`
//! (release tags are treated as immutable in between; a registry webhook for the tag drops the
//! entry at once, see [`Scanner::invalidate`]). So a scan in which nothing changed costs one
//! tag-list request per repository (or one `HEAD` of the marker tag for `bless: {tag: …}`),
//! which is the number the benchmark in `docs/registry.md` measures.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use semver::Version;
use serde::Serialize;

use super::bless::{self, Rank, Rejection, Rule, RuleError};
use super::client::{RegistryClient, TagList};
use super::cosign::SignatureStatus;
use super::error::RegistryError;
use super::manifest::{self, ImageMeta, Manifest};
use super::repo::Repo;
use super::verify::{self, AttestationStatus, Outcome, Requirements};
use crate::config::pipeline::{App, Newest, Pipeline};

/// How much a scan resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// Resolve, read and verify only as far down the ordered candidates as needed to find
    /// the newest acceptable one (what the bot needs). Ordering by creation time always
    /// reads every candidate.
    #[default]
    Newest,
    /// Resolve, read and verify every blessed tag (what `baton registry scan` shows).
    Full,
}

/// Scanner settings.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// `n` for tag-list requests; `None` lets the registry choose (pagination via `Link` is
    /// followed either way).
    pub page_size: Option<usize>,
    /// How long a cached tag → digest is trusted before it is read again. Each entry expires
    /// somewhere in the last quarter of this window so revalidation does not come in bursts.
    pub revalidate_after: Duration,
    /// Requests in flight per app.
    pub concurrency: usize,
    pub detail: Detail,
    /// How long a tag list is used without asking again, on a registry whose push
    /// notifications have reached baton ([`Scanner::note_notifying`]): a push there
    /// invalidates the list, so an idle scan costs no request. Other registries are asked
    /// (conditionally) on every scan.
    pub notified_list_reuse: Duration,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            page_size: None,
            revalidate_after: Duration::from_secs(15 * 60),
            concurrency: 8,
            detail: Detail::Newest,
            notified_list_reuse: Duration::from_secs(30 * 60),
        }
    }
}

/// A blessed tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `None` only in [`Detail::Newest`] scans, for candidates below the newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ImageMeta>,
    pub signature: SignatureStatus,
    /// The attestations `verify.attestations` requires, as found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationStatus>,
}

impl Candidate {
    fn parsed_version(&self) -> Option<Version> {
        self.version.as_deref().and_then(|v| Version::parse(v).ok())
    }

    fn rank<'a>(&'a self, version: Option<&'a Version>) -> Rank<'a> {
        Rank {
            tag: &self.tag,
            version,
            created: self.meta.as_ref().and_then(|m| m.created),
        }
    }
}

/// A tag that is not blessed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The reason in words.
    pub reason: String,
    /// The reason as data.
    pub rejection: Rejection,
}

/// The result of scanning one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppScan {
    pub app: String,
    pub image: String,
    /// The rule in words (`semver >=1.0.0`).
    pub rule: String,
    pub newest_by: Newest,
    /// The newest blessed candidate that passed verification.
    pub newest: Option<Candidate>,
    /// Blessed candidates that passed verification, best first.
    pub candidates: Vec<Candidate>,
    /// Tags that are not blessed (including blessed tags whose signature failed).
    pub rejected: Vec<Rejected>,
}

/// Why an app could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("app {app}: {source}")]
    Rule {
        app: String,
        #[source]
        source: RuleError,
    },
    /// `verify:` cannot be used (key or trusted root unreadable or invalid).
    #[error("app {app}: verify: {reason}")]
    Verify { app: String, reason: String },
    #[error("app {app}: {source}")]
    Registry {
        app: String,
        #[source]
        source: RegistryError,
    },
}

impl ScanError {
    /// The app the error is about.
    pub fn app(&self) -> &str {
        match self {
            Self::Rule { app, .. } | Self::Verify { app, .. } | Self::Registry { app, .. } => app,
        }
    }

    /// Retrying later may help (registry outage, 5xx, rate limit).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Registry { source, .. } => source.is_transient(),
            Self::Rule { .. } | Self::Verify { .. } => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Registry { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct TagEntry {
    digest: String,
    checked: Instant,
}

#[derive(Default)]
struct Cache {
    /// Per repository: the `ETag`, the tags, and when they were read.
    tag_lists: HashMap<Repo, (Option<String>, Vec<String>, Instant)>,
    /// Registries whose push notifications reach baton.
    notifying: HashSet<String>,
    tags: HashMap<(Repo, String), TagEntry>,
    /// Tags known not to exist (signature tags), with when that was learned.
    absent: HashMap<(Repo, String), Instant>,
    meta: HashMap<String, Result<ImageMeta, String>>,
    /// (repo, image digest, requirements id) → the outcome, and when it was learned. An
    /// acceptable outcome is kept; another is read again after `revalidate_after` (a
    /// signature pushed after the image counts then) or when the repository is invalidated.
    outcomes: HashMap<(Repo, String, String), (Outcome, Instant)>,
}

/// Scans apps against their registries and remembers what it learned. One per process; share
/// it by reference (`&Scanner` is `Send + Sync`).
pub struct Scanner {
    client: RegistryClient,
    options: ScanOptions,
    cache: Mutex<Cache>,
}

impl Scanner {
    pub fn new(client: RegistryClient, options: ScanOptions) -> Self {
        Self {
            client,
            options,
            cache: Mutex::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget what is cached about `repo` (one tag, or all of it) so that the next scan reads
    /// it from the registry again. Called for registry webhook hints.
    pub fn invalidate(&self, repo: &Repo, tag: Option<&str>) {
        let mut cache = self.cache();
        match tag {
            Some(t) => {
                cache.tags.remove(&(repo.clone(), t.to_string()));
                cache.absent.retain(|(r, _), _| r != repo);
            }
            None => {
                cache.tags.retain(|(r, _), _| r != repo);
                cache.absent.retain(|(r, _), _| r != repo);
            }
        }
        cache.tag_lists.remove(repo);
        cache
            .outcomes
            .retain(|(r, _, _), (o, _)| r != repo || o.is_acceptable());
    }

    /// `registry` (a host) sends baton its push notifications: from now on its tag lists are
    /// reused for [`ScanOptions::notified_list_reuse`] instead of asked for on every scan
    /// (each notification invalidates its repository).
    pub fn note_notifying(&self, registry: &str) {
        self.cache().notifying.insert(registry.to_string());
    }

    /// Read the digest `tag` points at now, bypassing the cache (and refreshing it): what the
    /// bot does before acting on a webhook hint.
    pub async fn resolve_tag(&self, repo: &Repo, tag: &str) -> Result<String, RegistryError> {
        let head = self.client.head_manifest(repo, tag).await?;
        self.cache().tags.insert(
            (repo.clone(), tag.to_string()),
            TagEntry {
                digest: head.digest.clone(),
                checked: Instant::now(),
            },
        );
        Ok(head.digest)
    }

    /// Scan every app of a pipeline (or only `only`), loading cosign keys and trusted roots
    /// relative to `repo_root`. Apps are scanned `concurrency` at a time; results are in pipeline order.
    pub async fn scan_pipeline(
        &self,
        pipeline: &Pipeline,
        repo_root: &Path,
        only: Option<&str>,
    ) -> Vec<Result<AppScan, ScanError>> {
        let apps = pipeline
            .apps
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()));
        futures::stream::iter(apps)
            .map(|(name, app)| async move {
                let req = match &app.verify {
                    None => None,
                    Some(v) => Some(
                        Requirements::from_config(v, &|path| {
                            std::fs::read(repo_root.join(path))
                                .map_err(|e| format!("cannot read {path}: {e}"))
                        })
                        .map_err(|reason| ScanError::Verify {
                            app: name.clone(),
                            reason,
                        })?,
                    ),
                };
                self.scan_app(name, app, req.as_ref()).await
            })
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await
    }

    /// Scan one app. `req` is what its `verify` asks; without it, signatures are not checked.
    pub async fn scan_app(
        &self,
        name: &str,
        app: &App,
        req: Option<&Requirements>,
    ) -> Result<AppScan, ScanError> {
        let rule = Rule::compile(&app.bless).map_err(|source| ScanError::Rule {
            app: name.to_string(),
            source,
        })?;
        let registry_err = |source| ScanError::Registry {
            app: name.to_string(),
            source,
        };
        let repo = Repo::parse(&app.image).map_err(registry_err)?;
        self.scan_repo(name, &app.image, &repo, &rule, app.bless.newest, req)
            .await
            .map_err(registry_err)
    }

    async fn scan_repo(
        &self,
        name: &str,
        image: &str,
        repo: &Repo,
        rule: &Rule,
        newest_by: Newest,
        key: Option<&Requirements>,
    ) -> Result<AppScan, RegistryError> {
        let mut rejected = Vec::new();
        let mut blessed: Vec<(String, Option<Version>)> = Vec::new();
        // The repository's tags, when listed: signature lookup uses it to avoid requests.
        let listed: Option<HashSet<String>>;

        if let Some(marker) = rule.marker() {
            listed = None;
            blessed.push((marker.to_string(), bless::parse_version(marker)));
        } else {
            let tags = self.tags(repo).await?;
            for tag in &tags {
                if bless::is_artifact_tag(tag) {
                    continue;
                }
                match rule.judge(tag) {
                    Ok(v) => blessed.push((tag.clone(), v)),
                    Err(r) => rejected.push(rejected_tag(tag, None, r)),
                }
            }
            listed = Some(tags.into_iter().collect());
        }
        blessed.sort_by(|a, b| {
            bless::compare(
                Newest::Semver,
                &Rank {
                    tag: &a.0,
                    version: a.1.as_ref(),
                    created: None,
                },
                &Rank {
                    tag: &b.0,
                    version: b.1.as_ref(),
                    created: None,
                },
            )
        });

        let full = self.options.detail == Detail::Full || newest_by == Newest::Created;
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut found = false;
        // `Full` examines every candidate (`concurrency` at a time); `Newest` stops at the
        // first acceptable one.
        let mut queue = blessed.into_iter().peekable();
        while queue.peek().is_some() {
            if found && !full {
                // Below the newest: listed, not read.
                for (tag, version) in queue.by_ref() {
                    candidates.push(Candidate {
                        tag,
                        version: version.map(|v| v.to_string()),
                        digest: None,
                        meta: None,
                        signature: match key {
                            Some(_) => SignatureStatus::Unchecked,
                            None => SignatureStatus::NotRequired,
                        },
                        attestations: Vec::new(),
                    });
                }
                break;
            }
            let chunk: Vec<_> = queue
                .by_ref()
                // Newest detail walks down one candidate at a time: the top one usually
                // wins, and each one examined costs a HEAD, a manifest and a config read.
                .take(if full { usize::MAX } else { 1 })
                .collect();
            let examined: Vec<_> = futures::stream::iter(chunk)
                .map(|(tag, version)| self.examine(repo, tag, version, listed.as_ref(), key))
                .buffered(self.options.concurrency.max(1))
                .collect()
                .await;
            for outcome in examined {
                match outcome? {
                    Examined::Candidate(c, None) => {
                        found = true;
                        candidates.push(c);
                    }
                    Examined::Candidate(c, Some(rejection)) => {
                        rejected.push(rejected_tag(&c.tag, c.digest.clone(), rejection));
                    }
                    Examined::Rejected(r) => rejected.push(r),
                }
            }
        }

        candidates.sort_by(|a, b| {
            let (va, vb) = (a.parsed_version(), b.parsed_version());
            bless::compare(newest_by, &a.rank(va.as_ref()), &b.rank(vb.as_ref()))
        });
        let newest = candidates.iter().find(|c| c.digest.is_some()).cloned();
        self.prune(repo, listed.as_ref());
        Ok(AppScan {
            app: name.to_string(),
            image: image.to_string(),
            rule: rule.to_string(),
            newest_by,
            newest,
            candidates,
            rejected,
        })
    }

    /// The repository's tags, from the registry (conditionally, when it sends `ETag`).
    async fn tags(&self, repo: &Repo) -> Result<Vec<String>, RegistryError> {
        let etag = {
            let cache = self.cache();
            let cached = cache.tag_lists.get(repo);
            if let Some((_, tags, read)) = cached
                && cache.notifying.contains(&repo.registry)
                && read.elapsed() < self.options.notified_list_reuse
            {
                return Ok(tags.clone());
            }
            cached.and_then(|(etag, _, _)| etag.clone())
        };
        match self
            .client
            .list_tags(repo, self.options.page_size, etag.as_deref())
            .await?
        {
            TagList::NotModified => {
                let mut cache = self.cache();
                Ok(match cache.tag_lists.get_mut(repo) {
                    Some((_, tags, read)) => {
                        *read = Instant::now();
                        tags.clone()
                    }
                    None => Vec::new(),
                })
            }
            TagList::Tags { tags, etag } => {
                self.cache()
                    .tag_lists
                    .insert(repo.clone(), (etag, tags.clone(), Instant::now()));
                Ok(tags)
            }
        }
    }

    /// Resolve, read and verify one blessed tag. Problems with the tag's content reject the
    /// tag; transient registry problems fail the scan.
    async fn examine(
        &self,
        repo: &Repo,
        tag: String,
        version: Option<Version>,
        listed: Option<&HashSet<String>>,
        key: Option<&Requirements>,
    ) -> Result<Examined, RegistryError> {
        let marker = listed.is_none();
        let digest = match self.digest_of(repo, &tag, marker).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                let rejection = if marker {
                    Rejection::MarkerMissing {
                        marker: tag.clone(),
                    }
                } else {
                    Rejection::Unreadable {
                        detail: "the tag was deleted during the scan".into(),
                    }
                };
                return Ok(Examined::Rejected(rejected_tag(&tag, None, rejection)));
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                return Ok(Examined::Rejected(rejected_tag(
                    &tag,
                    None,
                    Rejection::Unreadable {
                        detail: e.to_string(),
                    },
                )));
            }
        };
        let meta = match self.meta(repo, &tag, &digest).await? {
            Ok(m) => m,
            Err(detail) => {
                return Ok(Examined::Rejected(rejected_tag(
                    &tag,
                    Some(digest),
                    Rejection::Unreadable { detail },
                )));
            }
        };
        let outcome = match key {
            None => Outcome {
                signature: SignatureStatus::NotRequired,
                attestations: Vec::new(),
            },
            Some(req) => self.outcome(repo, &digest, listed, req).await?,
        };
        let rejection = if !outcome.signature.is_acceptable() {
            Some(Rejection::Signature {
                detail: outcome.signature.to_string(),
            })
        } else {
            outcome
                .attestations
                .iter()
                .find(|a| !a.is_verified())
                .map(|a| Rejection::Attestation {
                    detail: a.summary(),
                })
        };
        Ok(Examined::Candidate(
            Candidate {
                tag,
                version: version.map(|v| v.to_string()),
                digest: Some(digest),
                meta: Some(meta),
                signature: outcome.signature,
                attestations: outcome.attestations,
            },
            rejection,
        ))
    }

    /// The digest a tag points at, from the cache while it is fresh. A marker tag is read
    /// every scan (it moves by design). `None`: the tag does not exist.
    async fn digest_of(
        &self,
        repo: &Repo,
        tag: &str,
        always: bool,
    ) -> Result<Option<String>, RegistryError> {
        let key = (repo.clone(), tag.to_string());
        if !always
            && let Some(e) = self.cache().tags.get(&key).cloned()
            && e.checked.elapsed() < self.ttl(tag)
        {
            return Ok(Some(e.digest));
        }
        match self.client.head_manifest(repo, tag).await {
            Ok(head) => {
                self.cache().tags.insert(
                    key,
                    TagEntry {
                        digest: head.digest.clone(),
                        checked: Instant::now(),
                    },
                );
                Ok(Some(head.digest))
            }
            Err(e) if e.is_not_found() => {
                self.cache().tags.remove(&key);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A per-tag revalidation window in `[3/4, 1] × revalidate_after`, stable per tag.
    fn ttl(&self, tag: &str) -> Duration {
        let h = tag.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let quarter = self.options.revalidate_after / 4;
        self.options.revalidate_after - quarter.mul_f64((h % 1000) as f64 / 1000.0)
    }

    /// The metadata (`created`, `revision`, `source`) of `digest` in `repo`, cached like a
    /// scan's. `Ok(Err(reason))` when the manifest is malformed or not an image.
    pub async fn image_meta(
        &self,
        repo: &Repo,
        digest: &str,
    ) -> Result<Result<ImageMeta, String>, RegistryError> {
        self.meta(repo, digest, digest).await
    }

    /// Metadata of a digest (cached forever: content-addressed). `Ok(Err(reason))` when the
    /// manifest is malformed or not an image.
    async fn meta(
        &self,
        repo: &Repo,
        tag: &str,
        digest: &str,
    ) -> Result<Result<ImageMeta, String>, RegistryError> {
        if let Some(m) = self.cache().meta.get(digest) {
            return Ok(m.clone());
        }
        let result = match self.read_meta(repo, tag, digest).await {
            Ok(meta) => Ok(meta),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        self.cache().meta.insert(digest.to_string(), result.clone());
        Ok(result)
    }

    async fn read_meta(
        &self,
        repo: &Repo,
        tag: &str,
        digest: &str,
    ) -> Result<ImageMeta, RegistryError> {
        let malformed = |reason: String| RegistryError::MalformedManifest {
            what: repo.at(tag),
            reason,
        };
        let raw = self.client.get_manifest(repo, digest).await?;
        let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(malformed)?;
        let mut meta = ImageMeta {
            media_type: parsed.kind().media_type().to_string(),
            ..ImageMeta::default()
        };
        meta.absorb(parsed.annotations());
        let image = match parsed {
            Manifest::Image(_, m) => m,
            Manifest::Index(_, index) => {
                meta.platforms = manifest::platforms(&index);
                let Some(child) = manifest::representative_child(&index) else {
                    return if index.manifests.is_empty() {
                        Err(malformed("the image index lists no manifests".into()))
                    } else {
                        Ok(meta)
                    };
                };
                meta.absorb(child.annotations.as_ref());
                if meta.complete() {
                    return Ok(meta);
                }
                let raw = self.client.get_manifest(repo, &child.digest).await?;
                match manifest::parse(&raw.bytes, raw.media_type.as_deref())
                    .map_err(|r| malformed(format!("child {}: {r}", child.digest)))?
                {
                    Manifest::Image(_, m) => m,
                    Manifest::Index(..) => return Ok(meta),
                }
            }
        };
        meta.absorb(image.annotations.as_ref());
        if !meta.complete() {
            match self.client.get_blob(repo, &image.config.digest).await {
                Ok(config) => meta.absorb_config(&config),
                Err(e) if e.is_transient() => return Err(e),
                // A missing or odd config only costs us metadata.
                Err(e) => tracing::debug!(error = %e, "image config unreadable"),
            }
        }
        Ok(meta)
    }

    /// Check one image (not necessarily a blessed tag's) against `req`, with the scan's cache.
    pub async fn check(
        &self,
        repo: &Repo,
        digest: &str,
        req: &Requirements,
    ) -> Result<Outcome, RegistryError> {
        self.outcome(repo, digest, None, req).await
    }

    /// Check `digest` against the app's requirements (signature, attestations), cached: an
    /// acceptable outcome for good, another for `revalidate_after`.
    async fn outcome(
        &self,
        repo: &Repo,
        digest: &str,
        listed: Option<&HashSet<String>>,
        req: &Requirements,
    ) -> Result<Outcome, RegistryError> {
        let key = (repo.clone(), digest.to_string(), req.id());
        if let Some((o, at)) = self.cache().outcomes.get(&key)
            && (o.is_acceptable() || at.elapsed() < self.options.revalidate_after)
        {
            return Ok(o.clone());
        }
        let outcome = verify::check(&self.client, repo, digest, req, listed).await?;
        self.cache()
            .outcomes
            .insert(key, (outcome.clone(), Instant::now()));
        Ok(outcome)
    }

    /// Drop cache entries for tags that no longer exist, and metadata no tag points at.
    fn prune(&self, repo: &Repo, listed: Option<&HashSet<String>>) {
        let Some(listed) = listed else { return };
        let mut cache = self.cache();
        cache
            .tags
            .retain(|(r, t), _| r != repo || listed.contains(t));
        if cache.meta.len() > 2 * cache.tags.len() + 1024 {
            let live: HashSet<String> = cache.tags.values().map(|e| e.digest.clone()).collect();
            cache.meta.retain(|d, _| live.contains(d));
            cache.outcomes.retain(|(_, d, _), _| live.contains(d));
        }
    }
}

enum Examined {
    /// Read; with the rejection when its verification failed.
    Candidate(Candidate, Option<Rejection>),
    Rejected(Rejected),
}

fn rejected_tag(tag: &str, digest: Option<String>, rejection: Rejection) -> Rejected {
    Rejected {
        tag: tag.to_string(),
        digest,
        reason: rejection.to_string(),
        rejection,
    }
}
