//! What the restart and failover tests on the real control plane share: `baton run` as a
//! process, its persisted state as any process reads it, and the timing and duplicate checks.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::sandbox::{OWNER, REPO, Sandbox};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// dev → staging and staging → prod soak.
pub const SOAK: Duration = Duration::from_secs(30);
/// The sandbox's `intervals.plan`.
pub const PLAN: Duration = Duration::from_secs(2);
/// What opening a PR takes after the pass that decides it (a push and three API calls on a
/// loaded 2-core machine), on top of one plan interval.
pub const SLACK: Duration = Duration::from_secs(4);

/// A `baton run` child process, killed when dropped.
pub struct Baton {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Baton {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Baton {
    pub fn start(sb: &Sandbox, port: u16, n: usize) -> Self {
        Self::start_with(sb, port, &format!("baton-run-{n}"), &[])
    }

    /// `baton run` with extra environment variables; its log is `<name>.log`.
    pub fn start_with(sb: &Sandbox, port: u16, name: &str, env: &[(&str, String)]) -> Self {
        let log = sb.dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", "--config", sb.config_file.to_str().unwrap()])
            .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn,baton=info")
            .env_remove("BATON_CONFIG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, nothing flushed.
    pub fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log()
    }
}

/// Poll `probe` every 100 ms until it yields, for at most `within`.
pub async fn until<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An environment's persisted state, as any process reads it.
pub fn state(sb: &Sandbox, env: &str) -> Option<Value> {
    let (_, home) = baton::service::home_cluster(&sb.config).unwrap();
    let cm = sb.cluster.get(
        "v1",
        "ConfigMap",
        &home.namespace,
        &format!("baton-state-{env}"),
    )?;
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(cm).ok()?;
    serde_json::from_str(&baton::state::store::document(&cm).ok()?).ok()
}

pub fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

/// Since when `env` has run `digest` of web healthy, per its persisted soak clock.
pub fn healthy_since(sb: &Sandbox, env: &str, digest: &str) -> Option<DateTime<Utc>> {
    let s = state(sb, env)?;
    let web = &s["apps"]["web"];
    (web["running"]["digest"] == digest && web["running"]["state"] == "healthy")
        .then(|| time(&web["clocks"][digest]["healthySince"]))?
}

pub fn open_pr(sb: &Sandbox, branch: &str) -> Option<sim::forge::PullView> {
    sb.forge
        .pulls(OWNER, REPO)
        .into_iter()
        .find(|p| p.head_ref == branch)
}

pub fn pulls(sb: &Sandbox) -> String {
    sb.forge
        .pulls(OWNER, REPO)
        .iter()
        .map(|p| {
            format!(
                "#{} {} open={} merged={} {:?}",
                p.number, p.head_ref, p.open, p.merged, p.labels
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The verification Jobs of staging's smoke test.
pub fn smoke_jobs(sb: &Sandbox) -> Vec<String> {
    sb.cluster
        .list("batch/v1", "Job", None)
        .into_iter()
        .filter(|j| j["metadata"]["labels"][baton::reconcile::verify::LABEL_ENV] == "staging")
        .filter_map(|j| j["metadata"]["name"].as_str().map(String::from))
        .collect()
}

/// Wait until `opened` is at most one plan interval (and the time to open a PR) after `due`,
/// and never before it; returns when it was seen.
pub async fn opens_on_time(
    sb: &Sandbox,
    branch: &str,
    due: DateTime<Utc>,
    log: impl Fn() -> String,
) -> sim::forge::PullView {
    let wait = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(60);
    let pr = until(
        &format!("a PR from {branch}"),
        wait,
        || open_pr(sb, branch),
        || format!("{}\n{}", pulls(sb), log()),
    )
    .await;
    let seen = Utc::now();
    let late = seen - due;
    assert!(
        late <= chrono::Duration::from_std(PLAN + SLACK).unwrap(),
        "{branch} opened {late} after its soak ended at {due} (one plan interval is {PLAN:?})\n{}",
        log()
    );
    assert!(
        late >= chrono::Duration::zero() - chrono::Duration::seconds(1),
        "{branch} opened {} before its soak ended at {due}",
        -late
    );
    pr
}

/// Staging's smoke test ran once for `digest` (attempt 1), and no run of any app and digest
/// has two Jobs.
pub fn verified_once(sb: &Sandbox, digest: &str) {
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    let jobs = smoke_jobs(sb);
    let of_release: Vec<&String> = jobs.iter().filter(|j| j.contains(short)).collect();
    assert_eq!(of_release.len(), 1, "{jobs:?}");
    assert!(of_release[0].ends_with("-1"), "{jobs:?}");
    let mut runs: Vec<&str> = jobs.iter().map(|j| j.rsplit_once('-').unwrap().0).collect();
    let n = runs.len();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), n, "a verification ran twice: {jobs:?}");
}

/// Nothing was duplicated: one PR per branch and head, one status comment per PR, and no
/// comment posted twice; one staging PR for web.
pub fn nothing_duplicated(sb: &Sandbox) {
    no_duplicates(sb);
    let per_branch = sb
        .forge
        .pulls(OWNER, REPO)
        .iter()
        .filter(|p| p.head_ref == "baton/staging/web")
        .count();
    assert_eq!(per_branch, 1, "{}", pulls(sb));
}

/// One PR per branch and head, one status comment per PR, and no comment posted twice.
pub fn no_duplicates(sb: &Sandbox) {
    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    for pr in sb.forge.pulls(OWNER, REPO) {
        *seen
            .entry((pr.head_ref.clone(), pr.head_sha.clone()))
            .or_default() += 1;
        let comments = sb.forge.comments(OWNER, REPO, pr.number);
        let status = comments
            .iter()
            .filter(|c| c.body.contains("<!-- baton:status -->"))
            .count();
        assert!(status <= 1, "#{} has {status} status comments", pr.number);
        let mut bodies: Vec<&str> = comments.iter().map(|c| c.body.as_str()).collect();
        let n = bodies.len();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), n, "#{} has a comment twice", pr.number);
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a PR was duplicated: {seen:?}"
    );
}
