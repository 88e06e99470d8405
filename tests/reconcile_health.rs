//! Health over real rollouts in the `sim` stand-in: waiting for a rollout, a broken image,
//! timeouts, Jobs, HPA scaling, a dropped watch; and the runner's triggers and backoff.

mod reconcile_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::promote::state::DeployState;
use baton::reconcile::runner::{Input, Outcome, Runner, Schedule};
use baton::reconcile::{Env, HealthStatus, ReconcileError, reconcile, rendered};
use reconcile_support::*;
use serde_json::json;
use sim::cluster::{ClusterConfig, Fault};

fn timings(rollout_ms: u64, deadline_ms: u64) -> ClusterConfig {
    ClusterConfig {
        rollout_duration: Duration::from_millis(rollout_ms),
        progress_deadline: Duration::from_millis(deadline_ms),
        ..ClusterConfig::default()
    }
}

#[tokio::test]
async fn a_rollout_is_waited_for_until_healthy_and_reported_on_its_digest() {
    let (cluster, ctx) = start_with(timings(500, 10_000), options()).await;
    let objects = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D1), 3),
    ];
    let report = reconcile(&Env::new("dev"), &objects, "1", &ctx)
        .await
        .unwrap();

    assert_eq!(
        report.health.state,
        DeployState::Healthy,
        "{}",
        report.health.summary()
    );
    let web = report.object("Deployment/shop/web").unwrap();
    assert_eq!(web.health.message, "3/3 replicas available");
    assert!(
        cluster.counts().get("watch", "deployments") >= 1,
        "waited on a watch"
    );
    assert!(
        report.durations.health >= Duration::from_millis(400),
        "{:?}",
        report.durations
    );
    let web = &report.deployments(&pipeline())[0];
    assert_eq!(
        (web.app.as_str(), web.digest.as_str(), web.state),
        ("web", D1, DeployState::Healthy)
    );
}

#[tokio::test]
async fn a_broken_image_ends_failed_with_progress_deadline_exceeded() {
    let (cluster, ctx) = start_with(timings(200, 1_000), options()).await;
    let env = Env::new("dev");
    let v1 = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D1), 2),
    ];
    assert_eq!(
        reconcile(&env, &v1, "1", &ctx).await.unwrap().health.state,
        DeployState::Healthy
    );

    cluster.mark_broken(D2);
    let v2 = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D2), 2),
    ];
    let report = reconcile(&env, &v2, "2", &ctx).await.unwrap();
    assert_eq!(report.health.state, DeployState::Failed);
    let failing = &report.health.unhealthy[0];
    assert_eq!(failing.object, "Deployment/shop/web");
    assert_eq!(failing.health.reason, "ProgressDeadlineExceeded");
    assert!(
        failing.health.message.contains("timed out progressing"),
        "{}",
        failing.health.message
    );
    assert!(
        report
            .health
            .summary()
            .starts_with("Deployment/shop/web: ProgressDeadlineExceeded")
    );
    let web = &report.deployments(&pipeline())[0];
    assert_eq!((web.digest.as_str(), web.state), (D2, DeployState::Failed));
    assert_eq!(web.healthy_since, None);
}

#[tokio::test]
async fn an_environment_not_healthy_within_its_timeout_fails_naming_what_it_waited_for() {
    let (_cluster, ctx) = start_with(timings(30_000, 60_000), options()).await;
    let env = Env::new("dev").with_health_timeout(Duration::from_millis(300));
    let objects = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D1), 2),
    ];
    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(report.health.state, DeployState::Failed);
    let web = report.object("Deployment/shop/web").unwrap();
    assert_eq!(web.health.reason, "HealthTimeout");
    assert!(
        web.health.message.starts_with("not healthy within 300ms:"),
        "{}",
        web.health.message
    );
}

#[tokio::test]
async fn jobs_are_healthy_once_complete_and_failed_when_their_pod_fails() {
    let (_cluster, ctx) = start().await;
    let job = |name: &str, fail: bool| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "tests:1",
                "env": [{"name": "SIM_JOB_FAIL", "value": if fail { "true" } else { "false" }}]}]}}}})
    };
    let ok = reconcile(
        &Env::new("dev"),
        &[namespace("shop"), job("smoke", false)],
        "1",
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(ok.health.state, DeployState::Healthy);
    assert_eq!(
        ok.object("Job/shop/smoke").unwrap().health.reason,
        "Complete"
    );

    let bad = reconcile(
        &Env::new("qa"),
        &[namespace("qa"), job("smoke", true)].map(|mut o| {
            if o["kind"] == "Job" {
                o["metadata"]["namespace"] = json!("qa");
            }
            o
        }),
        "1",
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(bad.health.state, DeployState::Failed);
    assert_eq!(
        bad.health.unhealthy[0].health.reason,
        "BackoffLimitExceeded"
    );
}

#[tokio::test]
async fn an_hpa_scaling_a_healthy_rollout_keeps_it_healthy_without_writes() {
    let (cluster, ctx) = start_with(timings(3_000, 60_000), options()).await;
    let env = Env::new("dev");
    // Replicas are the HPA's, so the manifest leaves them out.
    let mut web = deployment("shop", "web", &web_image(D1), 2);
    web["spec"].as_object_mut().unwrap().remove("replicas");
    let objects = vec![namespace("shop"), web];
    assert_eq!(
        reconcile(&env, &objects, "1", &ctx)
            .await
            .unwrap()
            .health
            .state,
        DeployState::Healthy
    );

    // The HPA scales to 6; the new replicas take a while (a slow rollout of the same template).
    let mut scaled = cluster.get("apps/v1", "Deployment", "shop", "web").unwrap();
    scaled["spec"]["replicas"] = json!(6);
    scaled["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    cluster.apply("horizontal-pod-autoscaler", scaled).unwrap();
    let live = cluster.get("apps/v1", "Deployment", "shop", "web").unwrap();
    let raw = baton::reconcile::health::assess(&live);
    assert_eq!(
        raw.status,
        HealthStatus::Progressing,
        "the object itself is scaling: {raw:?}"
    );

    cluster.reset_counts();
    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(
        cluster.counts().writes(),
        0,
        "the HPA's replicas are not drift"
    );
    assert_eq!(report.health.state, DeployState::Healthy);
    assert_eq!(
        report.object("Deployment/shop/web").unwrap().health.reason,
        "Scaling"
    );
}

#[tokio::test]
async fn a_watch_dropped_while_waiting_for_health_is_resumed() {
    let (cluster, ctx) = start_with(timings(3_000, 60_000), options()).await;
    let objects = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D1), 2),
    ];
    let wait = {
        let ctx = Arc::new(ctx);
        let objects = objects.clone();
        tokio::spawn(async move { reconcile(&Env::new("dev"), &objects, "1", &ctx).await })
    };
    // Poll (with a deadline) until the reconcile is watching, then cut every watch.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.counts().get("watch", "deployments") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never watched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.disconnect_watches();
    let report = wait.await.unwrap().unwrap();
    assert_eq!(
        report.health.state,
        DeployState::Healthy,
        "{}",
        report.health.summary()
    );
    assert!(
        cluster.counts().get("watch", "deployments") >= 2,
        "{:?}",
        cluster.counts()
    );
}

async fn next(outcomes: &mut tokio::sync::mpsc::Receiver<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(20), outcomes.recv())
        .await
        .expect("an outcome in time")
        .expect("the runner is running")
}

#[tokio::test]
async fn the_runner_reconciles_on_triggers_reports_render_errors_and_backs_off_after_transient_ones()
 {
    let (cluster, ctx) = start().await;
    let input: Arc<Mutex<Result<Input, String>>> = Arc::new(Mutex::new(Ok(Input {
        commit: "1".into(),
        objects: vec![namespace("shop"), config_map("shop", "a", "1")],
        prune: None,
        allow: None,
        service_account: None,
    })));
    let source =
        {
            let input = input.clone();
            move |env: Env| {
                let current = input.lock().unwrap().clone();
                async move {
                    match current {
                        Ok(i) => Ok(i),
                        Err(message) => rendered(&env, "2", Err(std::io::Error::other(message)))
                            .map(|objects| Input {
                                commit: "2".into(),
                                objects,
                                prune: None,
                                allow: None,
                                service_account: None,
                            }),
                    }
                }
            }
        };
    let schedule = Schedule {
        resync: Duration::from_secs(3600),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
    };
    let runner = Arc::new(Runner::new(
        Arc::new(ctx),
        vec![Env::new("dev")],
        schedule,
        source,
    ));
    assert!(!runner.trigger("nope"));
    let (tx, mut outcomes) = tokio::sync::mpsc::channel(8);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(runner.clone().run(tx, async move {
        let _ = stopped.await;
    }));

    let first = next(&mut outcomes).await;
    assert_eq!(
        (first.env.as_str(), first.commit.as_deref()),
        ("dev", Some("1"))
    );
    assert!(first.result.is_ok());
    assert_eq!(first.next_in, Duration::from_secs(3600));

    // The config branch moved to a commit that does not render.
    cluster.reset_counts();
    *input.lock().unwrap() =
        Err("environments/dev/kustomization.yaml:7: unknown field `patchez`".into());
    assert!(runner.trigger("dev"));
    let second = next(&mut outcomes).await;
    let error = second.result.unwrap_err();
    assert!(
        matches!(error, ReconcileError::Render { .. }) && !error.is_transient(),
        "{error}"
    );
    assert_eq!(cluster.counts().writes(), 0);

    // Fixed, but the API server fails the first attempts: one failed reconcile, then a
    // retry after a short backoff, without a trigger.
    *input.lock().unwrap() = Ok(Input {
        commit: "3".into(),
        objects: vec![namespace("shop"), config_map("shop", "a", "3")],
        prune: None,
        allow: None,
        service_account: None,
    });
    cluster.inject(
        Fault::status(500)
            .verb("apply")
            .resource("configmaps")
            .times(4),
    );
    runner.trigger("dev");
    let third = next(&mut outcomes).await;
    assert!(third.result.as_ref().unwrap_err().is_transient());
    assert_eq!(third.failures, 2, "the render error counted too");
    assert!(
        third.next_in <= Duration::from_millis(40),
        "{:?}",
        third.next_in
    );
    let fourth = next(&mut outcomes).await;
    assert_eq!(fourth.failures, 0);
    assert_eq!(fourth.result.unwrap().commit, "3");
    assert_eq!(
        cluster.get("v1", "ConfigMap", "shop", "a").unwrap()["data"]["value"],
        "3"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}
