//! Acceptance-test Jobs (`reconcile::verify`) against the `sim` Kubernetes stand-in over real
//! HTTP: Jobs there complete after `job_duration`, fail when a container has
//! `SIM_JOB_FAIL=true`, and have pod logs.

use std::time::Duration;

use baton::reconcile::verify::{
    self, Outcome, VerifyJob, VerifyOptions, VerifyRun, history_selector, verify_with,
};
use baton::reconcile::{Context, Env, Options};
use serde_json::{Value, json};
use sim::cluster::{Cluster, ClusterConfig};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const NS: &str = "shop-staging";

fn options() -> VerifyOptions {
    VerifyOptions {
        poll: Duration::from_millis(20),
        ..VerifyOptions::default()
    }
}

async fn start(job_duration: Duration) -> (Cluster, Context) {
    baton::tls::install_crypto_provider();
    let cluster = Cluster::start_with(ClusterConfig {
        job_duration,
        ..ClusterConfig::default()
    })
    .await
    .unwrap();
    cluster
        .apply(
            "test",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .unwrap();
    let ctx = Context::for_url(
        &cluster.url(),
        Options {
            retry_base: Duration::from_millis(10),
            ..Options::default()
        },
    )
    .unwrap();
    (cluster, ctx)
}

/// A verify Job manifest as a user writes it; `env` entries are added to its container.
fn job(name: &str, env: &[(&str, &str)], extra_spec: &str, timeout: Duration) -> VerifyJob {
    let env: String = env
        .iter()
        .map(|(n, v)| format!("            - {{ name: {n}, value: \"{v}\" }}\n"))
        .collect();
    let text = format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: {NS}
spec:
{extra_spec}  template:
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: curlimages/curl:8.10.1
          command: [sh, -c, 'curl --fail http://web/healthz']
          env:
            - {{ name: TARGET, value: web }}
{env}"
    );
    VerifyJob::parse(
        &format!("environments/staging/verify/{name}.yaml"),
        &text,
        timeout,
    )
    .unwrap()
}

fn run(digest: &str, attempt: u32) -> VerifyRun {
    VerifyRun::new("web", digest, Some("1.5.0".into()), attempt)
}

fn runs_of(cluster: &Cluster, name: &str) -> Vec<Value> {
    let selector = history_selector("staging", name);
    let (env_label, job_label) = selector.split_once(',').unwrap();
    let want = |label: &str, obj: &Value| {
        let (k, v) = label.split_once('=').unwrap();
        obj["metadata"]["labels"][k] == v
    };
    cluster
        .list("batch/v1", "Job", Some(NS))
        .into_iter()
        .filter(|j| want(env_label, j) && want(job_label, j))
        .collect()
}

fn names(jobs: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = jobs
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_passing_smoke_job_yields_passed_with_its_duration() {
    let (cluster, ctx) = start(Duration::from_millis(1100)).await;
    let smoke = job("smoke", &[], "", Duration::from_secs(20));
    let report = verify_with(
        &ctx,
        &Env::new("staging"),
        std::slice::from_ref(&smoke),
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();

    assert!(report.passed(), "{report:?}");
    let [only] = report.jobs.as_slice() else {
        panic!("one job report: {report:?}")
    };
    assert_eq!(only.run, "staging-smoke-111111111111-1");
    let Outcome::Passed {
        duration,
        completed_at,
    } = only.outcome
    else {
        panic!("{:?}", only.outcome)
    };
    // The next environment's soak counts from the Job's completion.
    assert_eq!(report.passed_at(), Some(completed_at));
    let age = chrono::Utc::now() - completed_at;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::seconds(3),
        "{age}"
    );
    // The sim stamps start and completion in whole seconds around a 1.1 s run.
    assert!(
        duration >= Duration::from_secs(1) && duration <= Duration::from_secs(3),
        "{duration:?}"
    );
    assert!(
        report.summary().starts_with("verification passed: smoke ("),
        "{}",
        report.summary()
    );

    // The Job ran with the promoted digest and environment in its container's environment.
    let live = cluster
        .get("batch/v1", "Job", NS, "staging-smoke-111111111111-1")
        .unwrap();
    let env: Vec<(String, String)> = live
        .pointer("/spec/template/spec/containers/0/env")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (name, value) in [
        ("BATON_ENV", "staging"),
        ("BATON_APP", "web"),
        ("BATON_DIGEST", D1),
        ("BATON_TAG", "1.5.0"),
        ("BATON_ATTEMPT", "1"),
        ("TARGET", "web"),
    ] {
        assert!(
            env.contains(&(name.to_string(), value.to_string())),
            "{name}={value} missing from {env:?}"
        );
    }
    assert_eq!(
        live["metadata"]["labels"][verify::LABEL_DIGEST],
        "111111111111"
    );
    assert_eq!(
        live["metadata"]["annotations"][verify::ANNOTATION_DIGEST],
        D1
    );
}

#[tokio::test]
async fn a_failing_job_yields_failed_with_the_tail_of_its_log() {
    let (_cluster, ctx) = start(Duration::from_millis(100)).await;
    let smoke = job(
        "smoke",
        &[
            ("SIM_JOB_FAIL", "true"),
            (
                "SIM_JOB_LOG",
                "GET http://web/healthz: expected 200, got 503",
            ),
        ],
        "",
        Duration::from_secs(20),
    );
    let report = verify_with(
        &ctx,
        &Env::new("staging"),
        &[smoke],
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();

    assert!(!report.passed());
    let Outcome::Failed {
        reason, log_tail, ..
    } = &report.jobs[0].outcome
    else {
        panic!("{:?}", report.jobs[0].outcome)
    };
    assert_eq!(reason, "BackoffLimitExceeded");
    let tail = log_tail.as_deref().expect("the pod's log is collected");
    assert!(
        tail.contains("expected 200, got 503") && tail.ends_with("exit code 1"),
        "{tail}"
    );
    assert!(tail.lines().count() <= options().log_lines, "{tail}");
    let md = report.markdown();
    assert!(
        md.contains("verification failed: smoke: BackoffLimitExceeded")
            && md.contains("Job/shop-staging/staging-smoke-111111111111-1")
            && md.contains("expected 200, got 503"),
        "{md}"
    );
}

#[tokio::test]
async fn the_same_run_asked_twice_or_after_a_restart_does_not_create_a_second_job() {
    let (cluster, ctx) = start(Duration::from_millis(100)).await;
    let smoke = job("smoke", &[], "", Duration::from_secs(20));
    let staging = Env::new("staging");
    let first = verify_with(
        &ctx,
        &staging,
        std::slice::from_ref(&smoke),
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();
    let creates = cluster.counts().get("create", "jobs");
    assert_eq!(creates, 1);

    let again = verify_with(
        &ctx,
        &staging,
        std::slice::from_ref(&smoke),
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();
    // A restarted bot has a fresh context; it reads the finished run too.
    let restarted = Context::for_url(&cluster.url(), Options::default()).unwrap();
    let after_restart = verify_with(
        &restarted,
        &staging,
        std::slice::from_ref(&smoke),
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();

    assert_eq!(cluster.counts().get("create", "jobs"), 1);
    assert_eq!(runs_of(&cluster, "smoke").len(), 1);
    // The same result, completion time included (read from the Job, not from the clock).
    assert_eq!(again.jobs, first.jobs);
    assert_eq!(after_restart.jobs, first.jobs);
    assert_eq!(after_restart.passed_at(), first.passed_at());
}

#[tokio::test]
async fn attempt_two_creates_a_new_job() {
    let (cluster, ctx) = start(Duration::from_millis(100)).await;
    let smoke = job("smoke", &[], "", Duration::from_secs(20));
    let staging = Env::new("staging");
    for attempt in [1, 2] {
        let report = verify_with(
            &ctx,
            &staging,
            std::slice::from_ref(&smoke),
            &run(D1, attempt),
            &options(),
        )
        .await
        .unwrap();
        assert!(report.passed());
        assert_eq!(report.attempt, attempt);
    }
    assert_eq!(
        names(&runs_of(&cluster, "smoke")),
        [
            "staging-smoke-111111111111-1",
            "staging-smoke-111111111111-2"
        ]
    );
}

#[tokio::test]
async fn old_runs_are_garbage_collected_down_to_the_history_bound() {
    let (cluster, ctx) = start(Duration::from_millis(50)).await;
    let smoke = job("smoke", &[], "", Duration::from_secs(20));
    let other = job("e2e", &[], "", Duration::from_secs(20));
    let staging = Env::new("staging");
    let options = VerifyOptions {
        history: 2,
        ..options()
    };
    // Another environment's runs of a job with the same name are not this history.
    verify_with(
        &ctx,
        &Env::new("qa"),
        std::slice::from_ref(&smoke),
        &run(D2, 1),
        &options,
    )
    .await
    .unwrap();
    for attempt in 1..=4 {
        verify_with(
            &ctx,
            &staging,
            &[smoke.clone(), other.clone()],
            &run(D1, attempt),
            &options,
        )
        .await
        .unwrap();
        assert!(runs_of(&cluster, "smoke").len() <= 2);
    }

    assert_eq!(
        names(&runs_of(&cluster, "smoke")),
        [
            "staging-smoke-111111111111-3",
            "staging-smoke-111111111111-4"
        ]
    );
    assert_eq!(runs_of(&cluster, "e2e").len(), 2);
    assert!(
        cluster
            .get("batch/v1", "Job", NS, "qa-smoke-222222222222-1")
            .is_some()
    );
    // The deleted runs' pods went with them.
    let pods_of_deleted = cluster
        .list("v1", "Pod", Some(NS))
        .into_iter()
        .filter(|p| {
            p["metadata"]["labels"]["job-name"]
                .as_str()
                .is_some_and(|j| j.starts_with("staging-smoke-111111111111-1"))
        })
        .count();
    assert_eq!(pods_of_deleted, 0);
}

#[tokio::test]
async fn a_job_that_does_not_finish_in_time_yields_timed_out_and_stays_so() {
    let (cluster, ctx) = start(Duration::from_millis(50)).await;
    // A suspended Job never runs in the sim.
    let stuck = job(
        "stuck",
        &[],
        "  suspend: true\n",
        Duration::from_millis(300),
    );
    let staging = Env::new("staging");
    let report = verify_with(
        &ctx,
        &staging,
        std::slice::from_ref(&stuck),
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();
    let Outcome::TimedOut { after, .. } = &report.jobs[0].outcome else {
        panic!("{:?}", report.jobs[0].outcome)
    };
    assert_eq!(*after, Duration::from_millis(300));
    assert!(!report.passed());
    assert!(
        report.summary().contains("stuck: timed out after"),
        "{}",
        report.summary()
    );

    // Asked again (e.g. after a restart), the run is read as timed out, not waited for again.
    let started = std::time::Instant::now();
    let again = verify_with(
        &ctx,
        &staging,
        std::slice::from_ref(&stuck),
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap();
    assert!(matches!(again.jobs[0].outcome, Outcome::TimedOut { .. }));
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(cluster.counts().get("create", "jobs"), 1);
}

#[tokio::test]
async fn a_missing_namespace_is_a_permanent_error_naming_the_job() {
    let (_cluster, ctx) = start(Duration::from_millis(50)).await;
    let mut smoke = job("smoke", &[], "", Duration::from_secs(5));
    smoke.namespace = "nowhere".into();
    let err = verify_with(
        &ctx,
        &Env::new("staging"),
        &[smoke],
        &run(D1, 1),
        &options(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .contains("Job/nowhere/staging-smoke-111111111111-1"),
        "{err}"
    );
}
