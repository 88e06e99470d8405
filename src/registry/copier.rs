//! [`Copier`]: copies images to environments' `copyTo` registries and checks beforehand that
//! they can be copied. Shared by the promotion engine (the `copy` gate, the copy before the
//! merge), the reconcilers (pinned images are in the target before an apply) and the PR
//! check (`baton/validate`). See docs/registry.md.
//!
//! What it remembers (digests known present in a target, failures and their backoff, preflight
//! results) is a cache: a restarted bot checks again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::copy::{CopyOptions, CopyReport, copy_image};
use super::verify::{self, Requirements};
use super::{RegistryClient, RegistryError, Repo, copy_destination};
use crate::config::pipeline::Pipeline;
use crate::image::Pinned;

/// How long a preflight result is reused (a waiting PR is re-planned on every pass).
pub const PREFLIGHT_TTL: Duration = Duration::from_secs(60);

/// Where an environment gets an app's image from, and where it puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub source: Repo,
    pub target: Repo,
}

/// The copy route of `app` into `env`, when `env` has `copyTo`.
pub fn route(pipeline: &Pipeline, env: &str, app: &str) -> Option<Result<Route, RegistryError>> {
    let copy_to = pipeline.environment(env)?.copy_to.as_ref()?;
    let image = &pipeline.app(app)?.image;
    Some(Repo::parse(image).and_then(|source| {
        let target = copy_destination(copy_to, &source)?;
        Ok(Route { source, target })
    }))
}

/// Whether an image can be copied now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The source has it and the target accepts pushes (or has it already).
    Ready { already_there: bool },
    /// The source registry no longer has the digest.
    SourceMissing,
    /// The source or the target cannot be used: why, and whether that may pass by itself.
    Problem { reason: String, transient: bool },
}

/// A copy that did not happen (now, or on its last attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFailure {
    pub reason: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is made.
    pub retry_at: DateTime<Utc>,
    /// Whether retrying can help without someone changing something (an outage) or not (a
    /// refused credential, a missing source image); it is retried either way.
    pub transient: bool,
}

/// How failed copies are retried.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    pub fn after(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

struct Failed {
    failure: CopyFailure,
    retry_at: Instant,
}

/// Copies images to `copyTo` registries (see the module docs).
pub struct Copier {
    client: RegistryClient,
    pub backoff: Backoff,
    /// `target@digest` known to be in the target (content-addressed).
    present: Mutex<HashSet<String>>,
    /// Failed copies by (env, app, digest).
    failures: Mutex<BTreeMap<(String, String, String), Failed>>,
    /// Preflight results by `source@digest target`.
    preflights: Mutex<HashMap<String, (Instant, Readiness)>>,
}

impl std::fmt::Debug for Copier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier").finish_non_exhaustive()
    }
}

impl Copier {
    pub fn new(client: RegistryClient) -> Self {
        Self {
            client,
            backoff: Backoff::default(),
            present: Mutex::default(),
            failures: Mutex::default(),
            preflights: Mutex::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Can `digest` be copied along `route` now: is the source still there, and does the
    /// target accept pushes? Cached for [`PREFLIGHT_TTL`].
    pub async fn preflight(&self, route: &Route, digest: &str) -> Readiness {
        let key = format!("{} {}", route.source.at(digest), route.target);
        if let Some((at, result)) = lock(&self.preflights).get(&key)
            && at.elapsed() < PREFLIGHT_TTL
        {
            return result.clone();
        }
        let result = self.check(route, digest).await;
        lock(&self.preflights).insert(key, (Instant::now(), result.clone()));
        result
    }

    async fn check(&self, route: &Route, digest: &str) -> Readiness {
        match self.client.head_manifest(&route.source, digest).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Readiness::SourceMissing,
            Err(e) => {
                return Readiness::Problem {
                    reason: format!("cannot check `{}`: {e}", route.source.at(digest)),
                    transient: e.is_transient(),
                };
            }
        }
        if self.known_present(&route.target, digest) {
            return Readiness::Ready {
                already_there: true,
            };
        }
        match self.client.check_push(&route.target).await {
            Ok(()) => Readiness::Ready {
                already_there: false,
            },
            Err(e) => Readiness::Problem {
                reason: format!("`{}` cannot be pushed to: {e}", route.target),
                transient: e.is_transient(),
            },
        }
    }

    /// The last failure of (env, app, digest), if its retry time has not come yet.
    pub fn deferred(&self, env: &str, app: &str, digest: &str) -> Option<CopyFailure> {
        lock(&self.failures)
            .get(&(env.to_string(), app.to_string(), digest.to_string()))
            .filter(|f| f.retry_at > Instant::now())
            .map(|f| f.failure.clone())
    }

    /// Copy `digest` for a promotion of `app` to `env` (tagging the copy `tag`), verify it by
    /// digest and, with `key`, its signature on the copy. A failure is remembered with its
    /// backoff: until then, [`Copier::deferred`] answers it without trying.
    pub async fn copy(
        &self,
        env: &str,
        app: &str,
        route: &Route,
        digest: &str,
        tag: Option<&str>,
        key: Option<&Requirements>,
    ) -> Result<CopyReport, CopyFailure> {
        if let Some(f) = self.deferred(env, app, digest) {
            return Err(f);
        }
        let id = (env.to_string(), app.to_string(), digest.to_string());
        match self.copy_verified(route, digest, tag, key).await {
            Ok(report) => {
                lock(&self.failures).remove(&id);
                lock(&self.present).insert(route.target.at(digest));
                tracing::info!(%env, %app, source = %report.source, target = %report.target, summary = %report.summary(), "copied image");
                Ok(report)
            }
            Err((reason, transient)) => {
                let mut failures = lock(&self.failures);
                let attempts = failures.get(&id).map_or(0, |f| f.failure.attempts) + 1;
                let wait = self.backoff.after(attempts);
                let failure = CopyFailure {
                    reason,
                    attempts,
                    retry_at: Utc::now()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    transient,
                };
                tracing::warn!(%env, %app, source = %route.source.at(digest), target = %route.target, attempts, reason = %failure.reason, retry_in = ?wait, "copy failed");
                failures.insert(
                    id,
                    Failed {
                        failure: failure.clone(),
                        retry_at: Instant::now() + wait,
                    },
                );
                Err(failure)
            }
        }
    }

    async fn copy_verified(
        &self,
        route: &Route,
        digest: &str,
        tag: Option<&str>,
        key: Option<&Requirements>,
    ) -> Result<CopyReport, (String, bool)> {
        let options = CopyOptions {
            tag: tag.map(String::from),
            signatures: true,
        };
        let report = copy_image(&self.client, &route.source, digest, &route.target, &options)
            .await
            .map_err(|e| (e.to_string(), e.is_transient()))?;
        if let Some(req) = key {
            // The check runs again on the copy: signature and required attestations.
            match verify::check(&self.client, &route.target, digest, req, None).await {
                Ok(outcome) => {
                    if let Some(problem) = outcome.problem() {
                        return Err((format!("on the copy, {problem}"), false));
                    }
                }
                Err(e) => return Err((e.to_string(), e.is_transient())),
            }
        }
        Ok(report)
    }

    fn known_present(&self, target: &Repo, digest: &str) -> bool {
        lock(&self.present).contains(&target.at(digest))
    }

    /// Make sure the target has `digest` (pinned on the config branch): `None` when it is there,
    /// the copy's report when it had to be copied.
    pub async fn ensure(
        &self,
        route: &Route,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<Option<CopyReport>, RegistryError> {
        if self.known_present(&route.target, digest) {
            return Ok(None);
        }
        match self.client.head_manifest(&route.target, digest).await {
            Ok(head) if head.digest == digest => {
                lock(&self.present).insert(route.target.at(digest));
                return Ok(None);
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let options = CopyOptions {
            tag: tag.map(String::from),
            signatures: true,
        };
        let report =
            copy_image(&self.client, &route.source, digest, &route.target, &options).await?;
        lock(&self.present).insert(route.target.at(digest));
        tracing::info!(source = %report.source, target = %report.target, summary = %report.summary(), "copied a pinned image missing from its copyTo registry");
        Ok(Some(report))
    }
    /// [`Copier::ensure`] for every image `env` pins, before the reconciler applies it: an
    /// environment never runs a pin whose image is not in its `copyTo` registry.
    pub async fn ensure_pinned(
        &self,
        env: &str,
        pins: &[(Route, Pinned)],
    ) -> Result<Vec<CopyReport>, String> {
        let mut copied = Vec::new();
        for (route, pin) in pins {
            let digest = pin.digest.to_string();
            match self.ensure(route, &digest, pin.tag.as_deref()).await {
                Ok(Some(report)) => copied.push(report),
                Ok(None) => {}
                Err(e) => {
                    return Err(format!(
                        "{env} pins `{}`, which is not in its copyTo registry and cannot be copied there: {e}",
                        route.target.at(&digest)
                    ));
                }
            }
        }
        Ok(copied)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_doubling_up_to_the_cap() {
        let b = Backoff {
            first: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.after(1), Duration::from_secs(10));
        assert_eq!(b.after(2), Duration::from_secs(20));
        assert_eq!(b.after(3), Duration::from_secs(40));
        assert_eq!(b.after(4), Duration::from_secs(60));
    }

    #[test]
    fn only_environments_with_copy_to_have_a_route() {
        let p = Pipeline::parse(
            "p.yaml",
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: r.io/team/web\n    bless: { semver: \">=1.0.0\" }\nenvironments:\n  - name: dev\n  - name: prod\n    after: dev\n    copyTo: prod.io/shop\n",
        )
        .unwrap()
        .pipeline;
        assert!(route(&p, "dev", "web").is_none());
        let r = route(&p, "prod", "web").unwrap().unwrap();
        assert_eq!(r.source, Repo::new("r.io", "team/web"));
        assert_eq!(r.target, Repo::new("prod.io", "shop/web"));
    }
}
