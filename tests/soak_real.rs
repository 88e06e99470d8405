//! A flap in the middle of a soak, on the real control plane: a Deployment that rolled out
//! healthy loses its only pod (the real ReplicaSet controller replaces it, and with
//! `minReadySeconds` the Deployment has no available replica for a few seconds). The next
//! reconcile waits the flap out and reports the Deployment healthy again, but `interrupted`,
//! with a healthy time that starts over; the persisted soak clock restarts and the next
//! environment's soak gate says when and why.

mod kube_support;

use std::time::Duration;

use baton::promote::gates::{Gate, Verdict};
use baton::promote::state::{DeployState, PullRequest};
use baton::reconcile::{Env, reconcile};
use baton::state::{EnvState, observations};
use chrono::Utc;
use kube_support::{Backend, deployment, dynamic, image, namespace, options, unique};
use serde_json::{Value, json};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn pipeline(env: &str) -> baton::config::pipeline::Pipeline {
    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: registry.example.com/shop/web\n    bless: {{ semver: \">=1.0.0\" }}\nenvironments:\n  - name: {env}\n  - name: next\n    after: {env}\n    soak: 10m\n"
    );
    baton::config::pipeline::Pipeline::parse("pipeline.yaml", &text)
        .unwrap()
        .pipeline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flap_in_the_middle_of_a_soak_restarts_the_clock_and_the_gate_says_why() {
    let b = Backend::real();
    let ns = unique("flap");
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(60));
    let mut web: Value = deployment(&ns, "web", &image(D1), 1);
    // A replacement pod counts as available only after 5 s Ready: a window to see the flap.
    web["spec"]["minReadySeconds"] = json!(5);
    web["spec"]["progressDeadlineSeconds"] = json!(60);
    let objects = vec![namespace(&ns), web];
    let pipeline = pipeline(&ns);

    let first = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let mut state = EnvState::default();
    state.observe(&observations(&first, &pipeline), Utc::now());
    let before = state.deployments(&ns, false).pop().unwrap();
    assert_eq!(before.state, DeployState::Healthy, "{}", first.summary());
    let since = before.healthy_since.unwrap();

    // The flap: the pod goes; until its replacement has been Ready for 5 s, nothing is
    // available.
    let pods = dynamic(&b.client().await, "v1", "Pod", &ns);
    for pod in pods.list(&Default::default()).await.unwrap() {
        let name = pod.metadata.name.unwrap();
        pods.delete(&name, &Default::default()).await.unwrap();
    }
    b.wait_for(
        "apps/v1",
        "Deployment",
        &ns,
        "web",
        "without an available replica",
        |d| d["status"]["availableReplicas"].as_i64().unwrap_or(0) == 0,
    )
    .await;

    // The reconcile waits it out: healthy at its end, but interrupted, healthy anew.
    let second = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let report = second
        .objects
        .iter()
        .find(|o| o.object.kind == "Deployment")
        .unwrap();
    assert!(report.health.is_healthy(), "{}", second.summary());
    let why = report
        .interrupted
        .clone()
        .unwrap_or_else(|| panic!("the flap is reported: {report:?}"));
    assert!(why.starts_with("Deployment/web: "), "{why}");
    assert!(report.healthy_since.unwrap() > since, "{report:?}");

    // The soak clock starts over, and says why.
    state.observe(&observations(&second, &pipeline), Utc::now());
    let after = state.deployments(&ns, false).pop().unwrap();
    assert_eq!(after.state, DeployState::Healthy);
    assert_eq!(after.healthy_since, report.healthy_since);
    let restart = after.restarted.clone().expect("the restart is kept");
    assert_eq!(restart.reason, why);

    // The next environment's soak gate counts from the restart.
    let next = pipeline.environment("next").unwrap();
    let pr = PullRequest {
        number: 1,
        app: "web".into(),
        env: "next".into(),
        digest: after.digest.clone(),
        tag: None,
        head_sha: "abc".into(),
        head_pushed_at: since,
        labels: vec![],
        hold_reason: None,
        reviews: vec![],
        checks: vec![],
        commands: vec![],
    };
    let now = Utc::now();
    let teams = Default::default();
    let errors = Default::default();
    let e = baton::promote::gates::evaluate(
        &pr,
        &baton::promote::gates::Context {
            env: next,
            now,
            previous: Some(&after),
            teams: &teams,
            team_errors: &errors,
            base_rules: None,
            bot_login: "baton",
            policies: &[],
            from: None,
            attestations: None,
        },
    );
    let soak = e.results.iter().find(|r| r.gate == Gate::Soak).unwrap();
    assert_eq!(soak.verdict, Verdict::Waiting);
    let detail = soak.detail(now);
    assert!(
        detail.starts_with("healthy for ")
            && detail.contains(" of 10m (restarted at ")
            && detail.ends_with(&format!("after {why})")),
        "{detail}"
    );
}
