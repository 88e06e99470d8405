use super::*;
use crate::config::validate::is_dns_label;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

const DIGEST: &str = "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

const SMOKE: &str = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  namespace: shop-staging
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: smoke
          image: curlimages/curl:8.10.1
          env:
            - { name: BATON_TAG, value: overridden }
            - { name: TARGET, value: http://web }
";

fn smoke() -> VerifyJob {
    VerifyJob::parse(
        "environments/staging/verify/smoke.yaml",
        SMOKE,
        Duration::from_secs(600),
    )
    .unwrap()
}

fn run(attempt: u32) -> VerifyRun {
    VerifyRun::new("web", DIGEST, Some("1.5.0".into()), attempt)
}

#[test]
fn run_names_are_dns_labels_that_name_env_job_digest_and_attempt() {
    assert_eq!(
        run_name("staging", "smoke", DIGEST, 1),
        "staging-smoke-abcdef012345-1"
    );
    let long = run_name(&"e".repeat(63), &"j".repeat(63), DIGEST, 12);
    assert!(long.len() <= 63 && is_dns_label(&long), "{long}");
    assert!(long.ends_with("-abcdef012345-12"), "{long}");
    let other = run_name(&"e".repeat(63), &"k".repeat(63), DIGEST, 12);
    assert_ne!(long, other, "cut names keep a hash of what was cut");
    assert_eq!(run_name("Dev_1", "x", "bad", 1), "dev-1-x-bad-1");
}

#[test]
fn a_manifest_must_be_a_named_batch_v1_job_with_containers() {
    let job = smoke();
    assert_eq!(
        (job.name.as_str(), job.namespace.as_str()),
        ("smoke", "shop-staging")
    );
    let d = VerifyJob::parse(
        "x.yaml",
        &SMOKE.replace("kind: Job", "kind: Deployment"),
        Duration::ZERO,
    )
    .unwrap_err();
    assert_eq!((d.line, d.column), (Some(2), Some(7)), "{d}");
    assert!(
        d.to_string().starts_with(
            "x.yaml:2:7: kind: is batch/v1 Deployment; a verify step must be a batch/v1 Job"
        ),
        "{d}"
    );
    let d = VerifyJob::parse(
        "x.yaml",
        &SMOKE.replace("  name: smoke\n", ""),
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(d.message.contains("must be set to a DNS label"), "{d}");
    let d = VerifyJob::parse("x.yaml", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n      containers: []\n", Duration::ZERO).unwrap_err();
    assert!(d.message.contains("no containers"), "{d}");
    let d = VerifyJob::parse("x.yaml", "kind: [", Duration::ZERO).unwrap_err();
    assert!(d.message.starts_with("invalid YAML"), "{d}");
    let d = VerifyJob::parse(
        "x.yaml",
        &SMOKE.replace("restartPolicy: Never", "restartPolicy: [1]"),
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(d.message.contains("not a valid batch/v1 Job"), "{d}");
}

#[test]
fn the_run_object_carries_name_labels_deadline_and_baton_variables_in_every_container() {
    let job = run_object(&smoke(), "staging", &run(2));
    let v = serde_json::to_value(&job).unwrap();
    assert_eq!(v["metadata"]["name"], "staging-smoke-abcdef012345-2");
    assert_eq!(v["metadata"]["namespace"], "shop-staging");
    for labels in [
        &v["metadata"]["labels"],
        &v["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels[LABEL_ENV], "staging");
        assert_eq!(labels[LABEL_JOB], "smoke");
        assert_eq!(labels[LABEL_DIGEST], "abcdef012345");
        assert_eq!(labels[LABEL_ATTEMPT], "2");
        assert_eq!(labels[LABEL_APP], "web");
    }
    assert_eq!(v["metadata"]["annotations"][ANNOTATION_DIGEST], DIGEST);
    assert_eq!(v["spec"]["activeDeadlineSeconds"], 600);
    let env: BTreeMap<String, String> = job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(env["BATON_ENV"], "staging");
    assert_eq!(env["BATON_DIGEST"], DIGEST);
    assert_eq!(env["BATON_APP"], "web");
    assert_eq!(
        env["BATON_TAG"], "1.5.0",
        "baton's value replaces the manifest's"
    );
    assert_eq!(env["BATON_ATTEMPT"], "2");
    assert_eq!(env["TARGET"], "http://web");
}

fn job_with(status: Value, annotations: Value) -> Job {
    serde_json::from_value(json!({
            "metadata": {"name": "r", "creationTimestamp": "2026-01-01T00:00:00Z", "annotations": annotations},
            "status": status,
        }))
        .unwrap()
}

#[test]
fn run_state_reads_conditions_and_the_timed_out_mark() {
    let complete = job_with(
        json!({"startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:00:13Z",
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        json!({}),
    );
    assert_eq!(
        run_state(&complete),
        RunState::Complete {
            duration: Duration::from_secs(12),
            completed_at: Some("2026-01-01T00:00:13Z".parse().unwrap()),
        }
    );
    let failed = job_with(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        json!({}),
    );
    assert_eq!(
        run_state(&failed),
        RunState::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into()
        }
    );
    let deadline = job_with(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}),
        json!({}),
    );
    assert_eq!(run_state(&deadline), RunState::TimedOut);
    let marked = job_with(
        json!({"conditions": [{"type": "Complete", "status": "True"}]}),
        json!({ANNOTATION_OUTCOME: "timed-out"}),
    );
    assert_eq!(run_state(&marked), RunState::TimedOut);
    let running = job_with(
        json!({"active": 1, "conditions": [{"type": "Complete", "status": "False"}]}),
        json!({}),
    );
    assert_eq!(run_state(&running), RunState::Running);
}

#[test]
fn the_timeout_counts_from_the_jobs_creation() {
    let job = job_with(json!({}), json!({}));
    let now = "2026-01-01T00:04:00Z".parse().unwrap();
    assert_eq!(
        remaining(&job, Duration::from_secs(600), now),
        Duration::from_secs(360)
    );
    let later = "2026-01-01T01:00:00Z".parse().unwrap();
    assert_eq!(
        remaining(&job, Duration::from_secs(600), later),
        Duration::ZERO
    );
}

#[test]
fn gc_keeps_the_newest_runs_and_never_the_current_one() {
    let at = |name: &str, secs: i64| {
        let mut j = Job::default();
        j.metadata.name = Some(name.into());
        j.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
        ));
        j
    };
    let runs = vec![at("a", 1), at("b", 2), at("c", 3), at("d", 4), at("e", 5)];
    let mut victims = gc_victims(&runs, "e", 3);
    victims.sort();
    assert_eq!(victims, ["a", "b"]);
    // The current run is kept even when it is not the newest (a re-run of an old attempt).
    let mut victims = gc_victims(&runs, "a", 2);
    victims.sort();
    assert_eq!(victims, ["b", "c", "d"]);
    assert!(gc_victims(&runs[..2], "b", 3).is_empty());
}

#[test]
fn tails_keep_the_last_lines_within_a_bound() {
    assert_eq!(tail("1\n2\n3\n4\n", 2), "3\n4");
    assert_eq!(tail("only", 5), "only");
    let long = (0..2000)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let t = tail(&long, 1000);
    assert!(
        t.len() <= 4096 && t.ends_with("line 1999") && t.starts_with("line "),
        "{}",
        &t[..20]
    );
}

#[test]
fn the_report_says_what_failed_and_shows_the_log_tail() {
    let report = VerifyReport {
        env: "staging".into(),
        app: "web".into(),
        digest: DIGEST.into(),
        attempt: 1,
        jobs: vec![
            JobReport {
                job: "smoke".into(),
                file: "environments/staging/verify/smoke.yaml".into(),
                namespace: "shop-staging".into(),
                run: "staging-smoke-abcdef012345-1".into(),
                outcome: Outcome::Passed {
                    duration: Duration::from_secs(12),
                    completed_at: Utc::now(),
                },
            },
            JobReport {
                job: "e2e".into(),
                file: "environments/staging/verify/e2e.yaml".into(),
                namespace: "shop-staging".into(),
                run: "staging-e2e-abcdef012345-1".into(),
                outcome: Outcome::Failed {
                    reason: "BackoffLimitExceeded".into(),
                    message: "Job has reached the specified backoff limit".into(),
                    log_tail: Some("GET /health 503\n".into()),
                },
            },
        ],
        finished_at: Utc::now(),
    };
    assert!(!report.passed());
    assert_eq!(report.passed_at(), None);
    assert_eq!(report.status_context(), "baton/staging/verify");
    assert_eq!(
        report.summary(),
        "verification failed: smoke (12s), e2e: BackoffLimitExceeded"
    );
    let md = report.markdown();
    assert!(md.contains("**e2e** (`Job/shop-staging/staging-e2e-abcdef012345-1`, from `environments/staging/verify/e2e.yaml`): Job has reached"), "{md}");
    assert!(md.contains("```\nGET /health 503\n```"), "{md}");
    assert!(!md.contains("**smoke**"), "{md}");
}
