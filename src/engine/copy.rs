//! The copy step of environments with `copyTo`: the image a promotion pins
//! (`<copyTo>/<name>@<digest>`) is copied there from the app's registry once every other gate
//! of the PR has passed and before the merge, so the target registry holds only approved
//! images and the merged pin never names an image that is not there.
//!
//! - While the other gates wait, [`Copier::preflight`] checks that the source image is still
//!   there and that the target accepts pushes (cached for [`PREFLIGHT_TTL`]); the result is the
//!   `copy` gate on the PR.
//! - At the merge, [`Copier::copy`] copies the index, every platform manifest, the blobs
//!   (mounted across repositories on one registry), the cosign `.sig`/`.att`/`.sbom` tags and
//!   OCI referrers, then reads the digests back from the target. A failure is the `copy` gate
//!   with its reason; it is retried with backoff, never skipped.
//! - [`Copier::ensure`] makes sure a digest the config branch already pins exists in the
//!   target (a rollback to an old release, a registry that lost it, a repo adopted with pins
//!   already in place), copying it again when missing. The reconcilers call it before they
//!   apply an environment with `copyTo`.
//!
//! What is remembered (digests known present, failures and their backoff, preflight results)
//! is a cache: a restarted bot checks again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Engine, EngineError, Observed, RepoView};
use crate::config::pipeline::Pipeline;
use crate::forge::Forge;
use crate::gitrepo::files::Files as _;
use crate::promote::gates::{Gate, GateResult, Verdict};
use crate::registry::cosign::{CosignKey, SignatureStatus};
use crate::registry::{
    CopyOptions, CopyReport, RegistryClient, RegistryError, Repo, copy_destination, copy_image,
};

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

impl CopyFailure {
    /// The `copy` gate for this failure.
    pub fn gate(&self, route: &Route, digest: &str) -> GateResult {
        GateResult {
            gate: Gate::Copy,
            verdict: if self.transient {
                Verdict::Waiting
            } else {
                Verdict::Blocked
            },
            reason: format!(
                "copying `{}` to `{}` failed (attempt {}): {}; retrying at {}",
                route.source.at(digest),
                route.target,
                self.attempts,
                self.reason,
                self.retry_at.format("%H:%M:%S UTC")
            ),
            recheck_at: Some(self.retry_at),
        }
    }
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
    fn after(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

struct Failed {
    failure: CopyFailure,
    retry_at: Instant,
}

/// Copies images to `copyTo` registries; shared by the engine (copy before merge) and the
/// reconcilers (ensure before apply).
pub struct Copier {
    client: RegistryClient,
    pub backoff: Backoff,
    /// `target@digest` known to be in the target (content-addressed).
    present: Mutex<HashSet<String>>,
    /// Failed copies by (env, app, digest).
    failures: Mutex<BTreeMap<(String, String, String), Failed>>,
    /// Preflight results by `source@digest target`.
    preflights: Mutex<HashMap<String, (Instant, GateResult)>>,
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

    /// The `copy` gate while other gates wait: is the source still there, and does the target
    /// accept pushes?
    pub async fn preflight(&self, route: &Route, digest: &str) -> GateResult {
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

    async fn check(&self, route: &Route, digest: &str) -> GateResult {
        let gate = |verdict, reason: String| GateResult {
            gate: Gate::Copy,
            verdict,
            reason,
            recheck_at: None,
        };
        let source = route.source.at(digest);
        match self.client.head_manifest(&route.source, digest).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return gate(
                    Verdict::Blocked,
                    format!(
                        "`{source}` is no longer in its registry, so it cannot be copied to `{}`; push it again or promote another release",
                        route.target
                    ),
                );
            }
            Err(e) => {
                return gate(
                    if e.is_transient() {
                        Verdict::Waiting
                    } else {
                        Verdict::Blocked
                    },
                    format!("cannot check `{source}`: {e}"),
                );
            }
        }
        if self.known_present(&route.target, digest) {
            return gate(
                Verdict::Passed,
                format!("`{source}` is already in `{}`", route.target),
            );
        }
        match self.client.check_push(&route.target).await {
            Ok(()) => gate(
                Verdict::Passed,
                format!(
                    "`{source}` is there and `{}` accepts pushes; it is copied once every other gate passes",
                    route.target
                ),
            ),
            Err(e) => gate(
                if e.is_transient() {
                    Verdict::Waiting
                } else {
                    Verdict::Blocked
                },
                format!("`{}` cannot be pushed to: {e}", route.target),
            ),
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
        key: Option<&CosignKey>,
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
        key: Option<&CosignKey>,
    ) -> Result<CopyReport, (String, bool)> {
        let options = CopyOptions {
            tag: tag.map(String::from),
            signatures: true,
        };
        let report = copy_image(&self.client, &route.source, digest, &route.target, &options)
            .await
            .map_err(|e| (e.to_string(), e.is_transient()))?;
        if let Some(key) = key {
            match crate::registry::cosign::verify_image(&self.client, &route.target, digest, key)
                .await
            {
                Ok(SignatureStatus::Verified { .. }) => {}
                Ok(other) => {
                    return Err((
                        format!("the copy's signature does not verify with the app's key: {other}"),
                        false,
                    ));
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
}

/// What the copy step before a merge did.
pub(super) enum BeforeMerge {
    /// The environment has no `copyTo`.
    NotNeeded,
    /// Copied and verified: the timeline line.
    Copied(String),
    /// Not copied: the `copy` gate saying why.
    Failed(GateResult),
}

impl<F: Forge> Engine<F> {
    /// The copy route of an observed PR, or the `copy` gate saying why there is none.
    fn copy_route(
        &self,
        view: &RepoView,
        o: &Observed,
    ) -> Option<Result<(&Copier, Route), GateResult>> {
        let blocked = |reason: String| GateResult {
            gate: Gate::Copy,
            verdict: Verdict::Blocked,
            reason,
            recheck_at: None,
        };
        let route = match route(&view.pipeline, &o.state.env, &o.state.app)? {
            Ok(r) => r,
            Err(e) => return Some(Err(blocked(format!("cannot name the copy: {e}")))),
        };
        Some(match self.copier.as_deref() {
            Some(c) => Ok((c, route)),
            None => Err(blocked(
                "baton runs without a registry client and cannot copy to `copyTo`".into(),
            )),
        })
    }

    /// While other gates wait: the `copy` gate (source there, target accepts pushes), written
    /// into the PR body's copy section too.
    pub(super) async fn copy_preflight(
        &self,
        view: &RepoView,
        o: &mut Observed,
    ) -> Result<Option<GateResult>, EngineError> {
        let Some(found) = self.copy_route(view, o) else {
            return Ok(None);
        };
        let digest = o.state.digest.to_string();
        let (gate, section) = match found {
            Err(gate) => (gate, None),
            Ok((copier, route)) => {
                let gate = copier.preflight(&route, &digest).await;
                let section = match copier.deferred(&o.state.env, &o.state.app, &digest) {
                    Some(f) => failed_section(&route, &digest, &f),
                    None => pending_section(&route, &digest, &gate),
                };
                (gate, Some(section))
            }
        };
        if let Some(section) = section {
            self.set_copy_section(o, &section).await?;
        }
        Ok(Some(gate))
    }

    /// Before a merge: copy the PR's digest to the environment's `copyTo` and verify it.
    pub(super) async fn copy_before_merge(
        &self,
        view: &RepoView,
        o: &mut Observed,
    ) -> Result<BeforeMerge, EngineError> {
        let Some(found) = self.copy_route(view, o) else {
            return Ok(BeforeMerge::NotNeeded);
        };
        let (copier, route) = match found {
            Ok(found) => found,
            Err(gate) => return Ok(BeforeMerge::Failed(gate)),
        };
        let digest = o.state.digest.to_string();
        let key = match self.cosign_key(view, &o.state.app) {
            Ok(key) => key,
            Err(reason) => {
                return Ok(BeforeMerge::Failed(GateResult {
                    gate: Gate::Copy,
                    verdict: Verdict::Blocked,
                    reason,
                    recheck_at: None,
                }));
            }
        };
        match copier
            .copy(
                &o.state.env,
                &o.state.app,
                &route,
                &digest,
                o.state.tag.as_deref(),
                key.as_ref(),
            )
            .await
        {
            Ok(report) => {
                let now = Utc::now();
                self.set_copy_section(o, &copied_section(&route, &report, now))
                    .await?;
                Ok(BeforeMerge::Copied(format!(
                    "copied `{}` to `{}` ({}) ({})",
                    route.source.at(&digest),
                    route.target,
                    report.summary(),
                    now.format("%Y-%m-%d %H:%M UTC")
                )))
            }
            Err(failure) => {
                self.set_copy_section(o, &failed_section(&route, &digest, &failure))
                    .await?;
                Ok(BeforeMerge::Failed(failure.gate(&route, &digest)))
            }
        }
    }

    /// The app's cosign key at the config branch tip, when its pipeline asks for signatures.
    fn cosign_key(&self, view: &RepoView, app: &str) -> Result<Option<CosignKey>, String> {
        let Some(verify) = view.pipeline.app(app).and_then(|a| a.verify.as_ref()) else {
            return Ok(None);
        };
        let pem = tokio::task::block_in_place(|| {
            let repo = self.repo();
            let files = repo.files_at(repo.tip()?)?;
            Ok::<_, EngineError>(files.read(&verify.cosign_key).ok().flatten())
        })
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the cosign key {} is not in the config repo",
                verify.cosign_key
            )
        })?;
        CosignKey::from_pem(&pem, &verify.cosign_key)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Write the PR body's copy section, when it changed.
    async fn set_copy_section(&self, o: &mut Observed, section: &str) -> Result<(), EngineError> {
        let body = with_section(&o.info.body, section);
        if body != o.info.body {
            self.forge
                .update_pull_request(o.info.number, &o.info.title, &body)
                .await?;
            o.info.body = body;
        }
        Ok(())
    }
}

/// The copy routes and pins of every app `env` pins, when `env` has `copyTo`.
pub fn pinned_routes(
    pipeline: &Pipeline,
    files: &dyn crate::gitrepo::files::Files,
    env: &str,
) -> Result<Vec<(Route, crate::image::Pinned)>, String> {
    let mut out = Vec::new();
    for app in pipeline.apps.keys() {
        let Some(route) = route(pipeline, env, app) else {
            return Ok(out);
        };
        let route = route.map_err(|e| format!("copyTo of {env}: {e}"))?;
        if let Ok(Some(pin)) = crate::gitrepo::bump::current(files, pipeline, env, app) {
            out.push((route, pin));
        }
    }
    Ok(out)
}

impl Copier {
    /// [`Copier::ensure`] for every image `env` pins, before the reconciler applies it: an
    /// environment never runs a pin whose image is not in its `copyTo` registry.
    pub async fn ensure_pinned(
        &self,
        env: &str,
        pins: &[(Route, crate::image::Pinned)],
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

/// The PR body's copy section, between markers, so that it is replaced in place.
pub const SECTION_START: &str = "<!-- baton:copy -->";
const SECTION_END: &str = "<!-- /baton:copy -->";

/// `body` with its copy section set to `section`.
pub fn with_section(body: &str, section: &str) -> String {
    let block = format!("{SECTION_START}\n{}\n{SECTION_END}", section.trim_end());
    match (body.find(SECTION_START), body.find(SECTION_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{block}{}", &body[..a], &body[b + SECTION_END.len()..])
        }
        _ => format!("{}\n\n{block}\n", body.trim_end()),
    }
}

/// The copy section while the other gates wait.
pub fn pending_section(route: &Route, digest: &str, check: &GateResult) -> String {
    format!(
        "**Copy to `{}`** (`copyTo`): `{}` is copied there by digest once every other gate passes, before the merge.\nCheck: {} {}",
        route.target,
        route.source.at(digest),
        match check.verdict {
            Verdict::Passed => "✅",
            Verdict::Waiting => "⏳",
            Verdict::Blocked => "⛔",
        },
        check.reason
    )
}

/// The copy section once copied.
pub fn copied_section(route: &Route, report: &CopyReport, at: DateTime<Utc>) -> String {
    format!(
        "**Copied** `{}` → `{}` at {} ({}); verified by digest{}.",
        route.source.at(&report.digest),
        route.target.at(&report.digest),
        at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.summary(),
        if report.signature.is_some() {
            ", signature copied"
        } else {
            ""
        }
    )
}

/// The copy section after a failed attempt.
pub fn failed_section(route: &Route, digest: &str, failure: &CopyFailure) -> String {
    format!(
        "**Copy to `{}` failed** (attempt {}): {}. Retrying at {}; the PR merges only once `{}` is copied.",
        route.target,
        failure.attempts,
        failure.reason,
        failure.retry_at.format("%Y-%m-%d %H:%M:%S UTC"),
        route.source.at(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_route() -> Route {
        Route {
            source: Repo::new("r.io", "shop/web"),
            target: Repo::new("prod.io", "shop/web"),
        }
    }

    #[test]
    fn the_copy_section_is_appended_once_then_replaced_in_place() {
        let body = "Promotes **web** to **prod**.\n\nImage: `r.io/shop/web@sha256:aa`\n";
        let first = with_section(body, "pending");
        assert!(first.starts_with(body.trim_end()));
        assert_eq!(first.matches(SECTION_START).count(), 1);
        let second = with_section(&first, "copied");
        assert_eq!(second.matches(SECTION_START).count(), 1);
        assert!(
            second.contains("copied") && !second.contains("pending"),
            "{second}"
        );
        assert_eq!(with_section(&second, "copied"), second);
    }

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
    fn a_failure_is_a_gate_naming_source_target_attempt_and_retry() {
        let f = CopyFailure {
            reason: "registry prod.io refused access".into(),
            attempts: 2,
            retry_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 10, 0, 20).unwrap(),
            transient: false,
        };
        let g = f.gate(&web_route(), "sha256:aa");
        assert_eq!(g.gate, Gate::Copy);
        assert_eq!(g.verdict, Verdict::Blocked);
        assert_eq!(
            g.reason,
            "copying `r.io/shop/web@sha256:aa` to `prod.io/shop/web` failed (attempt 2): registry prod.io refused access; retrying at 10:00:20 UTC"
        );
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
