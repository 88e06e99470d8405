//! What a restart must not lose, on a real control plane: `baton run` is killed with SIGKILL
//! in the middle of dev's soak, between staging's merge and its apply, and in the middle of
//! staging's verification Job, and started again each time. The persisted state
//! (`baton-state-<env>` ConfigMaps, docs/service.md) must keep the release on time: staging's
//! PR opens within one plan interval of when dev's soak ends, prod's within one plan interval
//! of when staging's soak (counted from its passed verification) ends; the verification Job
//! runs once; no PR or comment is duplicated. Then `baton plan`, a separate process, gives the
//! prod PR the same soak verdict as the bot's own status comment.
//!
//! GitHub and the registry are the `sim` stand-ins of a sandbox; Kubernetes is real.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::sandbox::{OWNER, REPO, Sandbox, SandboxOptions};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// dev → staging and staging → prod soak.
const SOAK: Duration = Duration::from_secs(30);
/// The sandbox's `intervals.plan`.
const PLAN: Duration = Duration::from_secs(2);
/// What opening a PR takes after the pass that decides it (a push and three API calls on a
/// loaded 2-core machine), on top of one plan interval.
const SLACK: Duration = Duration::from_secs(4);

/// A `baton run` child process, killed when dropped.
struct Baton {
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
    fn start(sb: &Sandbox, port: u16, n: usize) -> Self {
        let log = sb.dir.join(format!("baton-run-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", "--config", sb.config_file.to_str().unwrap()])
            .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn,baton=info")
            .env_remove("BATON_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, nothing flushed.
    fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log()
    }
}

/// Poll `probe` every 100 ms until it yields, for at most `within`.
async fn until<T>(
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
fn state(sb: &Sandbox, env: &str) -> Option<Value> {
    let (_, home) = baton::service::home_cluster(&sb.config).unwrap();
    let cm = sb.cluster.get(
        "v1",
        "ConfigMap",
        &home.namespace,
        &format!("baton-state-{env}"),
    )?;
    serde_json::from_str(cm["data"][baton::state::KEY].as_str()?).ok()
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()?.parse().ok()
}

/// Since when `env` has run `digest` of web healthy, per its persisted soak clock.
fn healthy_since(sb: &Sandbox, env: &str, digest: &str) -> Option<DateTime<Utc>> {
    let s = state(sb, env)?;
    let web = &s["apps"]["web"];
    (web["running"]["digest"] == digest && web["running"]["state"] == "healthy")
        .then(|| time(&web["clocks"][digest]["healthySince"]))?
}

fn open_pr(sb: &Sandbox, branch: &str) -> Option<sim::forge::PullView> {
    sb.forge
        .pulls(OWNER, REPO)
        .into_iter()
        .find(|p| p.head_ref == branch)
}

fn pulls(sb: &Sandbox) -> String {
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
fn smoke_jobs(sb: &Sandbox) -> Vec<String> {
    sb.cluster
        .list("batch/v1", "Job", None)
        .into_iter()
        .filter(|j| j["metadata"]["labels"][baton::reconcile::verify::LABEL_ENV] == "staging")
        .filter_map(|j| j["metadata"]["name"].as_str().map(String::from))
        .collect()
}

/// Wait until `opened` is at most one plan interval (and the time to open a PR) after `due`,
/// and never before it; returns when it was seen.
async fn opens_on_time(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_stays_on_time_through_kill_9_mid_soak_mid_merge_and_mid_verification() {
    baton::tls::install_crypto_provider();
    let assets =
        controlplane::assets_dir(&common::project_root()).unwrap_or_else(|e| panic!("{e}"));
    let sb = Sandbox::start(&SandboxOptions {
        kube_assets: Some(assets),
        soak: SOAK,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let port = common::free_port();
    sb.connect(format!("127.0.0.1:{port}").parse().unwrap());
    let mut baton = Baton::start(&sb, port, 1);
    let initial = sb.initial["web"].clone();
    until(
        "dev runs web 1.0.0 healthy, per the persisted state",
        Duration::from_secs(180),
        || healthy_since(&sb, "dev", &initial),
        || baton.log(),
    )
    .await;

    // A release: dev's PR merges, and dev's soak clock starts.
    let digest = sb.push("web", "1.1.0");
    let dev_since = until(
        "dev runs web 1.1.0 healthy",
        Duration::from_secs(120),
        || healthy_since(&sb, "dev", &digest),
        || format!("{}\n{}", pulls(&sb), baton.log()),
    )
    .await;

    // 1. Killed in the middle of dev's soak.
    until(
        "a third of dev's soak",
        SOAK,
        || (Utc::now() >= dev_since + SOAK / 3).then_some(()),
        String::new,
    )
    .await;
    assert!(
        open_pr(&sb, "baton/staging/web").is_none(),
        "{}",
        pulls(&sb)
    );
    let before = baton.kill9();
    baton = Baton::start(&sb, port, 2);
    let staging_pr = opens_on_time(&sb, "baton/staging/web", dev_since + SOAK, || {
        format!("{before}\n--- after the restart ---\n{}", baton.log())
    })
    .await;

    // 2. Killed between staging's merge and its apply.
    until(
        "staging's PR merged",
        Duration::from_secs(120),
        || {
            sb.forge
                .pull(OWNER, REPO, staging_pr.number)
                .filter(|p| p.merged)
        },
        || format!("{}\n{}", pulls(&sb), baton.log()),
    )
    .await;
    baton.kill9();
    baton = Baton::start(&sb, port, 3);

    // 3. Killed while staging's verification Job runs (or just after it was created).
    until(
        "staging's verification Job",
        Duration::from_secs(120),
        || (!smoke_jobs(&sb).is_empty()).then_some(()),
        || baton.log(),
    )
    .await;
    let before = baton.kill9();
    baton = Baton::start(&sb, port, 4);

    // Prod's soak counts from the passed verification of what staging runs healthy.
    let staging_due = until(
        "staging's verification passed, per the persisted state",
        Duration::from_secs(120),
        || {
            let s = state(&sb, "staging")?;
            let v = &s["apps"]["web"]["verification"];
            let passed = v["digest"] == digest.as_str() && v["passed"] == true;
            let since = healthy_since(&sb, "staging", &digest)?;
            passed.then(|| since.max(time(&v["passedAt"]).unwrap_or(since)))
        },
        || format!("{before}\n--- after the restart ---\n{}", baton.log()),
    )
    .await;
    let prod_pr = opens_on_time(&sb, "baton/prod/web", staging_due + SOAK, || baton.log()).await;

    // No verification ran twice: one Job for web 1.1.0, attempt 1 (and one per app and
    // digest it ran before).
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    let jobs = smoke_jobs(&sb);
    let of_release: Vec<&String> = jobs.iter().filter(|j| j.contains(short)).collect();
    assert_eq!(of_release.len(), 1, "{jobs:?}");
    assert!(of_release[0].ends_with("-1"), "{jobs:?}");
    let mut runs: Vec<&str> = jobs.iter().map(|j| j.rsplit_once('-').unwrap().0).collect();
    let n = runs.len();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), n, "a verification ran twice: {jobs:?}");

    // The bot's status comment on the prod PR shows soak passed; `baton plan`, another
    // process, says the same from the persisted state.
    let row = until(
        "the prod PR's gate table",
        Duration::from_secs(30),
        || {
            sb.forge
                .comments(OWNER, REPO, prod_pr.number)
                .into_iter()
                .find(|c| c.body.contains("<!-- baton:status -->"))
                .and_then(|c| {
                    c.body
                        .lines()
                        .find(|l| l.starts_with("| soak |"))
                        .map(String::from)
                })
        },
        || baton.log(),
    )
    .await;
    assert!(row.contains("passed"), "{row}");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["plan", "-o", "json", "--config"])
        .arg(&sb.config_file)
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let actions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let soak = actions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["env"] == "prod" && a["app"] == "web")
        .flat_map(|a| {
            a["evaluation"]["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|r| r["gate"] == "soak")
        .unwrap_or_else(|| panic!("no soak gate for prod/web in `baton plan`: {actions:#}"));
    assert_eq!(soak["verdict"], "passed", "{soak}");
    let reason = soak["reason"].as_str().unwrap();
    assert!(
        row.contains(reason),
        "`baton plan` says {reason:?}; the bot's status comment says {row:?}"
    );

    // Nothing was duplicated: one PR per branch and head, one status comment per PR, and no
    // comment posted twice.
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
    let per_branch = sb
        .forge
        .pulls(OWNER, REPO)
        .iter()
        .filter(|p| p.head_ref == "baton/staging/web")
        .count();
    assert_eq!(per_branch, 1, "{}", pulls(&sb));
}
