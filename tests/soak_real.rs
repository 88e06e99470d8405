//! The soak clock and its store on the real control plane.
//!
//! A flap in the middle of a soak: a Deployment that rolled out healthy loses its only pod (the
//! real ReplicaSet controller replaces it, and with `minReadySeconds` the Deployment has no
//! available replica for a few seconds). The next reconcile waits the flap out and reports the
//! Deployment healthy again, but `interrupted`, with a healthy time that starts over; the
//! persisted soak clock restarts and the next environment's soak gate says when and why.
//!
//! Two writers of one state ConfigMap: the resourceVersion precondition keeps both changes.

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
        group: None,
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

/// Two writers of one environment's state (a deposed leader and its successor, or two
/// processes racing): each write carries the resourceVersion it read, so the second is refused
/// by the API server, reads again and applies its change on top: both changes are kept, and a
/// third process reads them.
/// A client of the real control plane, and namespace `ns` created on it.
async fn namespace_on(b: &Backend, ns: &str) -> kube::Client {
    let client = b.client().await;
    let object: kube::api::DynamicObject = serde_json::from_value(namespace(ns)).unwrap();
    dynamic(&client, "v1", "Namespace", "")
        .patch(
            ns,
            &kube::api::PatchParams::apply("tests"),
            &kube::api::Patch::Apply(&object),
        )
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_based_on_a_stale_read_is_refused_and_applied_again_on_top() {
    use baton::state::store::StateStore;
    let b = Backend::real();
    let ns = unique("store");
    let client = namespace_on(&b, &ns).await;
    let envs = vec!["staging".to_string()];
    let a = StateStore::kube(client.clone(), &ns);
    let b_store = StateStore::kube(client.clone(), &ns);
    a.load(&envs).await.unwrap();
    b_store.load(&envs).await.unwrap();

    // Both read "nothing"; a creates it, b's create is refused and b applies its change to a's.
    a.update("staging", |s| s.request_retry("web")).await;
    b_store
        .update("staging", |s| s.request_retry("worker"))
        .await;
    // Now both hold a resourceVersion; a's is stale after b's write.
    a.update("staging", |s| s.request_retry("api")).await;

    let reader = StateStore::kube(client, &ns);
    reader.load(&envs).await.unwrap();
    let state = reader.get("staging");
    for app in ["web", "worker", "api"] {
        assert!(state.retry_pending(app), "{app} lost: {state:?}");
    }
    let cm = b
        .get("v1", "ConfigMap", &ns, &StateStore::name("staging"))
        .await
        .unwrap();
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"baton"), "{managers:?}");
}

/// A thousand apps' state (635 KB of JSON in the scale bench's shape, over the plain limit) is
/// kept gzipped: on the real API server the ConfigMap goes from plain `data` to `binaryData`
/// (server-side apply drops the key baton no longer applies), and another process reads every
/// app back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_apps_state_is_kept_gzipped_and_read_back_whole() {
    use baton::state::store::StateStore;
    use baton::state::{KEY, KEY_GZ, Observation};
    let b = Backend::real();
    let ns = unique("store-big");
    let client = namespace_on(&b, &ns).await;
    let envs = vec!["prod".to_string()];
    let store = StateStore::kube(client.clone(), &ns);
    store.load(&envs).await.unwrap();
    let now = Utc::now();
    let observe = |apps: u32| {
        let obs: Vec<Observation> = (0..apps)
            .map(|i| Observation {
                app: format!("app-{i:04}"),
                // A digest per app, as real releases have.
                digest: format!("sha256:{:064x}", 0xabc0_0000u64 + u64::from(i)),
                state: DeployState::Healthy,
                healthy_since: Some(now),
                reason: None,
            })
            .collect();
        move |s: &mut EnvState| s.observe(&obs, now)
    };
    let cm_name = StateStore::name("prod");
    let config_map = || b.get("v1", "ConfigMap", &ns, &cm_name);

    store.update("prod", observe(3)).await;
    let cm = config_map().await.unwrap();
    assert!(
        cm["data"][KEY].as_str().is_some_and(|t| t.starts_with('{')),
        "a small state is plain: {cm}"
    );

    store.update("prod", observe(1000)).await;
    let cm = config_map().await.unwrap();
    assert!(
        cm["binaryData"][KEY_GZ]
            .as_str()
            .is_some_and(|b| !b.is_empty()),
        "gzipped: {}",
        cm["metadata"]
    );
    assert_eq!(cm["data"][KEY], "", "the plain key is emptied");

    let reader = StateStore::kube(client, &ns);
    reader.load(&envs).await.unwrap();
    assert_eq!(reader.get("prod"), store.get("prod"));
    assert_eq!(reader.get("prod").apps.len(), 1000);
}
