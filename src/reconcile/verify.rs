//! Acceptance tests after a healthy rollout: an environment's `verify:` Jobs, run once per
//! promoted digest and attempt in the environment's cluster.
//!
//! ```no_run
//! # async fn demo(ctx: &baton::reconcile::Context, repo: &std::path::Path, env: &baton::config::Environment) -> Result<(), Box<dyn std::error::Error>> {
//! use baton::reconcile::{Env, verify::{VerifyJob, VerifyRun, verify}};
//! // The manifests at the merged commit; a Diagnostic (file:line:col) when one is broken.
//! let jobs = VerifyJob::load_all(repo, env).map_err(|d| d.to_string())?;
//! let run = VerifyRun::new("web", "sha256:…", Some("1.5.0".into()), 1);
//! let report = verify(ctx, &Env::new(&env.name), &jobs, &run).await?;
//! println!("{}", report.summary());
//! # Ok(()) }
//! ```
//!
//! Each run is a fresh Job `<env>-<job>-<digest[..12]>-<attempt>` (see [`run_name`]) made from
//! the manifest: labels ([`LABEL_ENV`], [`LABEL_JOB`], [`LABEL_APP`], [`LABEL_DIGEST`],
//! [`LABEL_ATTEMPT`], `app.kubernetes.io/managed-by: baton`) on the Job and its pod template,
//! annotations with the full digest and tag, `activeDeadlineSeconds` = the timeout unless the
//! manifest sets one, and these variables in every container and init container (replacing
//! ones of the same name): `BATON_ENV`, `BATON_APP`, `BATON_DIGEST` (`sha256:…`), `BATON_TAG`
//! (empty when unknown), `BATON_ATTEMPT`.
//!
//! The run is idempotent: asking again for the same digest and attempt reads the Job that
//! exists (finished: its result; running: waits for it with the deadline counted from its
//! creation) instead of creating another. Attempt `n + 1` (`/retry`) creates a new Job. After
//! creating a run, older runs of the same environment and job beyond
//! [`VerifyOptions::history`] are deleted (with their pods).
//!
//! Decisions (naming, the Job object, reading its state, which runs to delete, log tails) are
//! pure functions here; [`verify`] is the thin I/O around them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{Context, Env, ReconcileError, retrying};
pub use crate::config::verify_job::VerifyJob;

/// The environment a run verifies.
pub const LABEL_ENV: &str = "baton.dev/verify-env";
/// The verify job's name (the manifest's `metadata.name`).
pub const LABEL_JOB: &str = "baton.dev/verify-job";
/// The app whose digest was promoted.
pub const LABEL_APP: &str = "baton.dev/verify-app";
/// The first 12 hex digits of the promoted digest.
pub const LABEL_DIGEST: &str = "baton.dev/verify-digest";
/// The attempt number (1 for the first run, +1 per `/retry`).
pub const LABEL_ATTEMPT: &str = "baton.dev/verify-attempt";
/// Annotation: the full promoted digest.
pub const ANNOTATION_DIGEST: &str = "baton.dev/digest";
/// Annotation: the promoted tag (informational).
pub const ANNOTATION_TAG: &str = "baton.dev/tag";
/// Annotation written when baton gave up waiting: the run's result stays "timed out" even if
/// the Job finishes later.
pub const ANNOTATION_OUTCOME: &str = "baton.dev/verify-outcome";

/// How runs are kept and reported.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Runs kept per environment and job (the current one included).
    pub history: usize,
    /// Log lines kept from a failed run's pod.
    pub log_lines: usize,
    /// How often a running Job is read.
    pub poll: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            history: 3,
            log_lines: 20,
            poll: Duration::from_secs(1),
        }
    }
}

/// What is being verified: a promoted digest of an app, and which attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyRun {
    pub app: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub tag: Option<String>,
    /// 1 for the first run; each `/retry` adds one.
    pub attempt: u32,
}

impl VerifyRun {
    pub fn new(
        app: impl Into<String>,
        digest: impl Into<String>,
        tag: Option<String>,
        attempt: u32,
    ) -> Self {
        Self {
            app: app.into(),
            digest: digest.into(),
            tag,
            attempt,
        }
    }

    /// The first 12 hex digits of the digest (a label value and part of run names).
    pub fn short_digest(&self) -> String {
        short_digest(&self.digest)
    }
}

/// The outcome of one verify job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// The Job completed: how long it ran, and when it completed (from the Job's status, so
    /// the same after a restart).
    Passed {
        #[serde(with = "secs")]
        duration: Duration,
        completed_at: DateTime<Utc>,
    },
    /// The Job failed: its condition's reason and message, and the end of its pod's log.
    Failed {
        reason: String,
        message: String,
        log_tail: Option<String>,
    },
    /// The Job did not finish within the timeout (or the cluster's `activeDeadlineSeconds`
    /// stopped it).
    TimedOut {
        #[serde(with = "secs")]
        after: Duration,
        log_tail: Option<String>,
    },
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed { .. })
    }

    pub fn log_tail(&self) -> Option<&str> {
        match self {
            Outcome::Failed { log_tail, .. } | Outcome::TimedOut { log_tail, .. } => {
                log_tail.as_deref()
            }
            Outcome::Passed { .. } => None,
        }
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// One verify job's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobReport {
    /// The verify job's name.
    pub job: String,
    /// Its manifest file in the config repo.
    pub file: String,
    /// The Job object of this run.
    pub namespace: String,
    pub run: String,
    pub outcome: Outcome,
}

impl JobReport {
    /// `Job/ns/name` of the run.
    pub fn object(&self) -> String {
        format!("Job/{}/{}", self.namespace, self.run)
    }
}

/// The acceptance tests of one promoted digest in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub env: String,
    pub app: String,
    pub digest: String,
    pub attempt: u32,
    /// One per verify job, in pipeline order.
    pub jobs: Vec<JobReport>,
    /// When the last job finished (when the report was made, for runs read back).
    pub finished_at: DateTime<Utc>,
}

impl VerifyReport {
    /// Every job passed (true when there are none).
    pub fn passed(&self) -> bool {
        self.jobs.iter().all(|j| j.outcome.passed())
    }

    /// When verification passed: the last job's completion (`None` unless every job passed).
    /// The next environment's soak counts from here.
    pub fn passed_at(&self) -> Option<DateTime<Utc>> {
        if !self.passed() {
            return None;
        }
        self.jobs
            .iter()
            .filter_map(|j| match j.outcome {
                Outcome::Passed { completed_at, .. } => Some(completed_at),
                _ => None,
            })
            .max()
            .or(Some(self.finished_at))
    }

    /// The status/check context: `baton/<env>/verify`.
    pub fn status_context(&self) -> String {
        format!("baton/{}/verify", self.env)
    }

    /// One line for a commit status description or the PR's status comment, e.g.
    /// `verification passed: smoke (12s)` or `verification failed: smoke: BackoffLimitExceeded`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .jobs
            .iter()
            .map(|j| match &j.outcome {
                Outcome::Passed { duration, .. } => {
                    format!("{} ({})", j.job, super::human(*duration))
                }
                Outcome::Failed { reason, .. } => format!("{}: {reason}", j.job),
                Outcome::TimedOut { after, .. } => {
                    format!("{}: timed out after {}", j.job, super::human(*after))
                }
            })
            .collect();
        let verdict = if self.passed() { "passed" } else { "failed" };
        if parts.is_empty() {
            format!("verification {verdict} (no jobs)")
        } else {
            format!("verification {verdict}: {}", parts.join(", "))
        }
    }

    /// Markdown for the PR's status comment: the summary line, then per failed job its
    /// object, message and log tail in a code block.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} (attempt {}; `/retry` runs it again)\n",
            self.summary(),
            self.attempt
        );
        for j in &self.jobs {
            let (message, tail) = match &j.outcome {
                Outcome::Passed { .. } => continue,
                Outcome::Failed {
                    message, log_tail, ..
                } => (message.clone(), log_tail),
                Outcome::TimedOut { after, log_tail } => (
                    format!("did not finish within {}", super::human(*after)),
                    log_tail,
                ),
            };
            out.push_str(&format!(
                "\n**{}** (`{}`, from `{}`): {message}\n",
                j.job,
                j.object(),
                j.file
            ));
            if let Some(tail) = tail {
                out.push_str(&format!(
                    "```\n{}\n```\n",
                    tail.trim_end().replace("```", "ˋˋˋ")
                ));
            }
        }
        out
    }
}

// ---- pure decisions -------------------------------------------------------------------------

/// The first 12 hex digits of `sha256:<hex>` (or of whatever is given, lowercased).
pub fn short_digest(digest: &str) -> String {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    hex.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The Job name of a run: `<env>-<job>-<digest12>-<attempt>`, a valid DNS-1123 label of at
/// most 63 characters. When `<env>-<job>` is too long it is cut and ends with 6 hex digits of
/// its hash, so that different long names stay different.
pub fn run_name(env: &str, job: &str, digest: &str, attempt: u32) -> String {
    let suffix = format!("-{}-{attempt}", short_digest(digest));
    let prefix = sanitize(&format!("{env}-{job}"));
    let room = 63 - suffix.len();
    let prefix = if prefix.len() <= room {
        prefix
    } else {
        let hash = hex::encode(Sha256::digest(prefix.as_bytes()));
        let cut = prefix[..room - 7].trim_end_matches('-');
        format!("{cut}-{}", &hash[..6])
    };
    format!("{prefix}{suffix}")
}

/// Lowercase, `[a-z0-9-]` only, no leading or trailing `-`, never empty.
fn sanitize(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "verify".into()
    } else {
        trimmed.to_string()
    }
}

/// The labels every run of `job` in `env` carries (without digest and attempt): the selector
/// for its history.
pub fn history_selector(env: &str, job: &str) -> String {
    format!("{LABEL_ENV}={env},{LABEL_JOB}={job}")
}

/// The Job object of one run: the manifest with the run's name, labels, annotations,
/// deadline and environment variables.
pub fn run_object(job: &VerifyJob, env: &str, run: &VerifyRun) -> Job {
    let mut obj = job.manifest.clone();
    let name = run_name(env, &job.name, &run.digest, run.attempt);
    let labels: BTreeMap<String, String> = [
        (LABEL_ENV, env.to_string()),
        (LABEL_JOB, job.name.clone()),
        (LABEL_APP, sanitize(&run.app)),
        (LABEL_DIGEST, run.short_digest()),
        (LABEL_ATTEMPT, run.attempt.to_string()),
        ("app.kubernetes.io/managed-by", "baton".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let meta = &mut obj.metadata;
    meta.name = Some(name);
    meta.generate_name = None;
    meta.namespace = Some(job.namespace.clone());
    meta.resource_version = None;
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.managed_fields = None;
    meta.labels.get_or_insert_default().extend(labels.clone());
    let annotations = meta.annotations.get_or_insert_default();
    annotations.insert(ANNOTATION_DIGEST.into(), run.digest.clone());
    if let Some(tag) = &run.tag {
        annotations.insert(ANNOTATION_TAG.into(), tag.clone());
    }
    annotations.insert("baton.dev/verify-file".into(), job.file.clone());
    obj.status = None;
    let vars = [
        ("BATON_ENV", env.to_string()),
        ("BATON_APP", run.app.clone()),
        ("BATON_DIGEST", run.digest.clone()),
        ("BATON_TAG", run.tag.clone().unwrap_or_default()),
        ("BATON_ATTEMPT", run.attempt.to_string()),
    ];
    let spec = obj.spec.get_or_insert_default();
    if spec.active_deadline_seconds.is_none() {
        spec.active_deadline_seconds = Some(job.timeout.as_secs().max(1) as i64);
    }
    let template_meta = spec.template.metadata.get_or_insert_default();
    template_meta.labels.get_or_insert_default().extend(labels);
    if let Some(pod) = spec.template.spec.as_mut() {
        let init = pod.init_containers.iter_mut().flatten();
        for container in pod.containers.iter_mut().chain(init) {
            let env_list = container.env.get_or_insert_default();
            env_list.retain(|e| !vars.iter().any(|(n, _)| *n == e.name));
            env_list.extend(vars.iter().map(|(n, v)| EnvVar {
                name: n.to_string(),
                value: Some(v.clone()),
                value_from: None,
            }));
        }
    }
    obj
}

/// Where a run stands, read from its Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    Complete {
        duration: Duration,
        completed_at: Option<DateTime<Utc>>,
    },
    Failed {
        reason: String,
        message: String,
    },
    TimedOut,
}

/// Read a run's state from its Job: baton's timed-out mark, then the `Complete` / `Failed`
/// conditions (`DeadlineExceeded` counts as timed out).
pub fn run_state(job: &Job) -> RunState {
    let annotations = job.metadata.annotations.as_ref();
    if annotations
        .and_then(|a| a.get(ANNOTATION_OUTCOME))
        .map(String::as_str)
        == Some("timed-out")
    {
        return RunState::TimedOut;
    }
    let Some(status) = &job.status else {
        return RunState::Running;
    };
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => {
                let start = status
                    .start_time
                    .as_ref()
                    .or(job.metadata.creation_timestamp.as_ref())
                    .map(|t| t.0.as_millisecond());
                let end = status
                    .completion_time
                    .as_ref()
                    .or(c.last_transition_time.as_ref())
                    .map(|t| t.0.as_millisecond());
                let duration = match (start, end) {
                    (Some(s), Some(e)) if e >= s => Duration::from_millis((e - s) as u64),
                    _ => Duration::ZERO,
                };
                let completed_at = end.and_then(DateTime::from_timestamp_millis);
                return RunState::Complete {
                    duration,
                    completed_at,
                };
            }
            "Failed" if c.reason.as_deref() == Some("DeadlineExceeded") => {
                return RunState::TimedOut;
            }
            "Failed" => {
                return RunState::Failed {
                    reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    RunState::Running
}

/// How long a run still has: its timeout counted from the Job's creation (so a restarted bot
/// does not give a running Job a fresh timeout).
pub fn remaining(job: &Job, timeout: Duration, now: DateTime<Utc>) -> Duration {
    let Some(created) = job.metadata.creation_timestamp.as_ref() else {
        return timeout;
    };
    let elapsed_ms = now.timestamp_millis() - created.0.as_millisecond();
    timeout.saturating_sub(Duration::from_millis(elapsed_ms.max(0) as u64))
}

/// The runs to delete so that at most `keep` remain, never `current`: the oldest first by
/// creation time (then name).
pub fn gc_victims(runs: &[Job], current: &str, keep: usize) -> Vec<String> {
    let mut others: Vec<(i64, String)> = runs
        .iter()
        .filter_map(|j| {
            let name = j.metadata.name.clone()?;
            (name != current).then(|| {
                let created = j
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(i64::MIN, |t| t.0.as_millisecond());
                (created, name)
            })
        })
        .collect();
    // Newest first; keep `keep - 1` of them besides the current run.
    others.sort_by(|a, b| b.cmp(a));
    others
        .into_iter()
        .skip(keep.saturating_sub(1))
        .map(|(_, name)| name)
        .collect()
}

/// The last `lines` lines of a log, at most 4 KiB (cut at a line start).
pub fn tail(log: &str, lines: usize) -> String {
    const MAX: usize = 4096;
    let all: Vec<&str> = log.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    if out.len() > MAX {
        let mut cut = out.len() - MAX;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = match out[cut..].find('\n') {
            Some(nl) => out[cut + nl + 1..].to_string(),
            None => out[cut..].to_string(),
        };
    }
    out
}

// ---- I/O ------------------------------------------------------------------------------------

/// Run (or read back) every verify job of `env` for `run`, concurrently, each within its
/// timeout, and report. Failed and timed-out jobs are `Ok` reports; errors are API calls that
/// could not be made (see [`ReconcileError::is_transient`]).
#[tracing::instrument(name = "verify", skip_all, fields(env = %env.name, app = %run.app, digest = %run.digest, attempt = run.attempt))]
pub async fn verify(
    ctx: &Context,
    env: &Env,
    jobs: &[VerifyJob],
    run: &VerifyRun,
) -> Result<VerifyReport, ReconcileError> {
    verify_with(ctx, env, jobs, run, &VerifyOptions::default()).await
}

/// [`verify`] with explicit options.
pub async fn verify_with(
    ctx: &Context,
    env: &Env,
    jobs: &[VerifyJob],
    run: &VerifyRun,
    options: &VerifyOptions,
) -> Result<VerifyReport, ReconcileError> {
    // The Jobs come from the config repo like the environment: they run as its ServiceAccount.
    let acting = ctx.acting_as(env);
    let results = join_all(
        jobs.iter()
            .map(|job| run_one(&acting, &env.name, job, run, options)),
    )
    .await;
    let jobs = match results.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(jobs) => jobs,
        Err(e) => {
            return Err(match &env.service_account {
                Some(account) => super::identity::explain(e, &env.name, account),
                None => e,
            });
        }
    };
    let report = VerifyReport {
        env: env.name.clone(),
        app: run.app.clone(),
        digest: run.digest.clone(),
        attempt: run.attempt,
        jobs,
        finished_at: Utc::now(),
    };
    tracing::info!(env = %env.name, "{}", report.summary());
    Ok(report)
}

async fn run_one(
    ctx: &Context,
    env: &str,
    job: &VerifyJob,
    run: &VerifyRun,
    options: &VerifyOptions,
) -> Result<JobReport, ReconcileError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace);
    let desired = run_object(job, env, run);
    let name = desired
        .metadata
        .name
        .clone()
        .expect("run_object names the Job");
    let object = format!("Job/{}/{name}", job.namespace);
    let api_err = |action: &'static str| {
        let object = object.clone();
        move |source| ReconcileError::Api {
            action,
            object,
            source,
        }
    };

    let existing = retrying(ctx, || api.get_opt(&name))
        .await
        .map_err(api_err("read verify job"))?;
    // A run found (after a restart, or asked twice) keeps the deadline from its creation.
    let (live, left) = match existing {
        Some(live) => {
            tracing::debug!(job = %object, "verify run exists; reading it instead of creating another");
            let left = remaining(&live, job.timeout, Utc::now());
            (live, left)
        }
        None => {
            let created = match api.create(&PostParams::default(), &desired).await {
                Ok(created) => created,
                // Created by a concurrent or earlier call after our read: use that one.
                Err(kube::Error::Api(s)) if s.code == 409 => retrying(ctx, || api.get(&name))
                    .await
                    .map_err(api_err("read verify job"))?,
                Err(e) => return Err(api_err("create verify job")(e)),
            };
            tracing::info!(job = %object, file = %job.file, "verify run started");
            collect_garbage(ctx, &api, env, job, &name, options.history).await;
            (created, job.timeout)
        }
    };

    let outcome = match settle(ctx, &api, &name, live, left, options.poll).await? {
        (
            RunState::Complete {
                duration,
                completed_at,
            },
            _,
        ) => Outcome::Passed {
            duration,
            completed_at: completed_at.unwrap_or_else(Utc::now),
        },
        (RunState::Failed { reason, message }, live) => Outcome::Failed {
            reason,
            message,
            log_tail: log_tail(ctx, &live, options.log_lines).await,
        },
        (RunState::TimedOut, live) => Outcome::TimedOut {
            after: job.timeout,
            log_tail: log_tail(ctx, &live, options.log_lines).await,
        },
        (RunState::Running, _) => unreachable!("settle returns a finished state"),
    };
    Ok(JobReport {
        job: job.name.clone(),
        file: job.file.clone(),
        namespace: job.namespace.clone(),
        run: name,
        outcome,
    })
}

/// Poll the run until it finishes or its time is up (then mark it timed out, so that reading
/// it again gives the same answer). A Job is one object read every [`VerifyOptions::poll`];
/// polling survives dropped connections and restarts without watch bookkeeping.
async fn settle(
    ctx: &Context,
    api: &Api<Job>,
    name: &str,
    mut live: Job,
    left: Duration,
    poll: Duration,
) -> Result<(RunState, Job), ReconcileError> {
    let object = format!(
        "Job/{}/{name}",
        live.metadata.namespace.as_deref().unwrap_or("")
    );
    let deadline = tokio::time::Instant::now() + left;
    loop {
        let state = run_state(&live);
        if state != RunState::Running {
            return Ok((state, live));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
        match retrying(ctx, || api.get_opt(name)).await {
            Ok(Some(job)) => live = job,
            Ok(None) => {
                return Ok((
                    RunState::Failed {
                        reason: "Deleted".into(),
                        message: "the Job was deleted before it finished".into(),
                    },
                    live,
                ));
            }
            Err(source) => {
                return Err(ReconcileError::Api {
                    action: "read verify job",
                    object,
                    source,
                });
            }
        }
    }
    let patch = json!({"metadata": {"annotations": {ANNOTATION_OUTCOME: "timed-out"}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let marked = retrying(ctx, || api.patch(name, &params, &patch)).await;
    if let Err(e) = &marked {
        tracing::warn!(job = %object, error = %super::error::describe(e), "could not mark the verify run as timed out");
    }
    Ok((RunState::TimedOut, marked.unwrap_or(live)))
}

/// The end of the log of the run's newest pod, when the API still has it.
async fn log_tail(ctx: &Context, job: &Job, lines: usize) -> Option<String> {
    let ns = job.metadata.namespace.as_deref()?;
    let name = job.metadata.name.as_deref()?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = match job.metadata.uid.as_deref() {
        Some(uid) => format!("batch.kubernetes.io/controller-uid={uid}"),
        None => format!("batch.kubernetes.io/job-name={name}"),
    };
    let params = ListParams::default().labels(&selector);
    let list = retrying(ctx, || pods.list(&params))
        .await
        .map_err(|e| tracing::debug!(error = %super::error::describe(&e), "no pods for the verify run's log"))
        .ok()?;
    let pod = list.items.into_iter().max_by_key(|p| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
    })?;
    let pod_name = pod.metadata.name?;
    let params = LogParams {
        tail_lines: Some(lines as i64),
        ..LogParams::default()
    };
    match retrying(ctx, || pods.logs(&pod_name, &params)).await {
        Ok(log) => Some(tail(&log, lines)),
        Err(e) => {
            tracing::debug!(pod = %pod_name, error = %super::error::describe(&e), "verify run's log is not available");
            None
        }
    }
}

/// Delete the oldest runs of this environment and job beyond `keep`. Failures are logged, not
/// returned: a verification does not fail because history could not be trimmed.
async fn collect_garbage(
    ctx: &Context,
    api: &Api<Job>,
    env: &str,
    job: &VerifyJob,
    current: &str,
    keep: usize,
) {
    let selector = history_selector(env, &job.name);
    let params = ListParams::default().labels(&selector);
    let runs = match retrying(ctx, || api.list(&params)).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(env, job = %job.name, error = %super::error::describe(&e), "could not list old verify runs");
            return;
        }
    };
    let params = DeleteParams::background();
    for victim in gc_victims(&runs, current, keep) {
        match retrying(ctx, || api.delete(&victim, &params)).await {
            Ok(_) => tracing::debug!(env, run = %victim, "deleted an old verify run"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(env, run = %victim, error = %super::error::describe(&e), "could not delete an old verify run")
            }
        }
    }
}

#[cfg(test)]
mod tests;
