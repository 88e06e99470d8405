//! The Kubernetes stand-in checked with kube-rs: typed and dynamic APIs, server-side apply,
//! optimistic concurrency, watchers, simulated rollouts and Jobs, faults and request counters.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Resource;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use kube::discovery::Discovery;
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sim::cluster::{Cluster, ClusterConfig, Fault};

const WAIT: Duration = Duration::from_secs(20);

fn client(cluster: &Cluster) -> Client {
    // Both of rustls' providers are compiled in (see the workspace Cargo.toml): choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_from(Config::new(cluster.url().parse().unwrap())).unwrap()
}

fn deployment(image: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}},
        },
    })
}

fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force()
}

/// Server-side apply `obj` as `baton`, forcing conflicts, as the reconciler does.
async fn apply_obj<K>(api: &Api<K>, name: &str, obj: Value) -> K
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &apply("baton"), &Patch::Apply(obj))
        .await
        .unwrap()
}

/// The object `name` once `cond` holds for it; panics after [`WAIT`].
async fn until<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .unwrap_or_else(|_| panic!("{name}: condition not met within {WAIT:?}"))
        .unwrap()
        .unwrap_or_else(|| panic!("{name} does not exist"))
}

fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_typed_deployment_applied_with_a_field_manager_rolls_out_and_reports_completion() {
    let cluster = Cluster::start().await.unwrap();
    let deployments: Api<Deployment> = Api::default_namespaced(client(&cluster));
    let applied = apply_obj(&deployments, "web", deployment("web:1", 3)).await;
    assert_eq!(applied.metadata.generation, Some(1));
    assert!(applied.metadata.uid.is_some() && applied.metadata.creation_timestamp.is_some());
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["baton"]);

    let done = until(&deployments, "web", conditions::is_deployment_completed()).await;
    let status = done.status.unwrap();
    assert_eq!(
        (
            status.observed_generation,
            status.available_replicas,
            status.updated_replicas
        ),
        (Some(1), Some(3), Some(3))
    );

    let next = apply_obj(&deployments, "web", deployment("web:2", 3)).await;
    assert_eq!(
        next.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );
}

#[tokio::test]
async fn re_applying_an_unchanged_object_is_a_no_op_that_writes_nothing() {
    let cluster = Cluster::start_with(ClusterConfig {
        rollout_duration: Duration::ZERO,
        ..Default::default()
    })
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::default_namespaced(client(&cluster));
    apply_obj(&deployments, "web", deployment("web:1", 1)).await;
    until(&deployments, "web", conditions::is_deployment_completed()).await;
    let before = deployments.get("web").await.unwrap();
    let store_version = cluster.resource_version();

    let again = apply_obj(&deployments, "web", deployment("web:1", 1)).await;
    assert_eq!(
        again.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(
        again.metadata.managed_fields,
        before.metadata.managed_fields
    );
    assert_eq!(
        cluster.resource_version(),
        store_version,
        "nothing was stored"
    );
    let counts = cluster.counts();
    assert_eq!(counts.get("apply", "deployments"), 2);
    assert!(counts.reads() >= 1);
}

#[tokio::test]
async fn another_manager_changing_an_owned_field_gets_a_409_naming_the_owner() {
    let cluster = Cluster::start().await.unwrap();
    let deployments: Api<Deployment> = Api::default_namespaced(client(&cluster));
    apply_obj(&deployments, "web", deployment("web:1", 2)).await;

    let err = deployments
        .patch("web", &PatchParams::apply("hpa"), &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 7}})))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"baton\": .spec.replicas"
    );

    // A plain update (not apply) takes the field without conflict; baton's next apply then
    // conflicts with the updater, named with its API version.
    deployments
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("kubectl-scale".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    let err = deployments
        .patch(
            "web",
            &PatchParams::apply("baton"),
            &Patch::Apply(deployment("web:1", 2)),
        )
        .await
        .unwrap_err();
    assert_eq!(
        api_error(err).message,
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
    );
    let forced = apply_obj(&deployments, "web", deployment("web:1", 2)).await;
    assert_eq!(forced.spec.unwrap().replicas, Some(2));
}

#[tokio::test]
async fn an_update_with_a_stale_resource_version_is_rejected_with_409() {
    let cluster = Cluster::start().await.unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&cluster));
    let mut cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}})).unwrap();
    let created = maps.create(&PostParams::default(), &cm).await.unwrap();
    let err = maps.create(&PostParams::default(), &cm).await.unwrap_err();
    assert_eq!(api_error(err).reason, "AlreadyExists");

    cm = created.clone();
    cm.data = Some([("a".to_string(), "2".to_string())].into());
    maps.replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    let err = maps
        .replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );

    let missing = maps.get("nope").await.unwrap_err();
    let status = api_error(missing);
    assert_eq!(
        (status.code, status.message.as_str()),
        (404, "configmaps \"nope\" not found")
    );
}

#[tokio::test]
async fn list_filters_by_label_selector_and_pages_with_continue_tokens() {
    let cluster = Cluster::start().await.unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&cluster));
    for i in 0..5 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}"), "labels": {"tier": tier}}});
        apply_obj(&maps, &format!("cm{i}"), cm).await;
    }
    let front = maps
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(front.items.len(), 3);
    let sets = maps
        .list(&ListParams::default().labels("tier in (front,back),tier!=front"))
        .await
        .unwrap();
    assert_eq!(sets.items.len(), 2);

    let page = maps.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("more pages");
    let rest = maps
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(rest.metadata.continue_.is_none_or(|c| c.is_empty()));
}

#[tokio::test]
async fn dynamic_objects_of_a_crd_defined_kind_are_served_after_discovery() {
    let cluster = Cluster::start().await.unwrap();
    let client = client(&cluster);
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "rollouts.baton.dev"},
        "spec": {"group": "baton.dev", "scope": "Namespaced",
            "names": {"plural": "rollouts", "singular": "rollout", "kind": "Rollout"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    apply_obj(&crds, "rollouts.baton.dev", crd).await;
    until(
        &crds,
        "rollouts.baton.dev",
        conditions::is_crd_established(),
    )
    .await;

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("baton.dev", "v1", "Rollout"))
        .expect("discovered");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let rollouts: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let obj = json!({"apiVersion": "baton.dev/v1", "kind": "Rollout", "metadata": {"name": "r1"}, "spec": {"env": "prod"}, "status": {"ignored": true}});
    let created = apply_obj(&rollouts, "r1", obj).await;
    assert_eq!(created.data["spec"]["env"], "prod");
    assert!(
        created.data.get("status").is_none(),
        "status is only written through /status"
    );
    let listed = rollouts.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn a_watcher_sees_applies_and_deletes_and_recovers_from_a_disconnect() {
    let cluster = Cluster::start().await.unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&cluster));
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"v": v}});
    apply_obj(&maps, "cfg", cm("1")).await;

    let mut events = watcher(maps.clone(), watcher::Config::default().labels("app=web"))
        .default_backoff()
        .boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap()
    };
    assert!(matches!(next().await, watcher::Event::Init));
    assert!(
        matches!(next().await, watcher::Event::InitApply(c) if c.data.as_ref().unwrap()["v"] == "1")
    );
    assert!(matches!(next().await, watcher::Event::InitDone));

    apply_obj(&maps, "cfg", cm("2")).await;
    assert!(
        matches!(next().await, watcher::Event::Apply(c) if c.data.as_ref().unwrap()["v"] == "2")
    );

    cluster.disconnect_watches();
    apply_obj(&maps, "cfg", cm("3")).await;
    // The watcher re-watches from its last resourceVersion and does not miss the change.
    assert!(
        matches!(next().await, watcher::Event::Apply(c) if c.data.as_ref().unwrap()["v"] == "3")
    );

    maps.delete("cfg", &DeleteParams::default()).await.unwrap();
    assert!(
        matches!(next().await, watcher::Event::Delete(c) if c.metadata.name.as_deref() == Some("cfg"))
    );
    assert!(cluster.counts().verb("watch") >= 2);
}

#[tokio::test]
async fn a_broken_image_ends_the_rollout_with_progress_deadline_exceeded() {
    let config = ClusterConfig::rollouts(Duration::from_millis(100), Duration::from_millis(400));
    let cluster = Cluster::start_with(config).await.unwrap();
    let deployments: Api<Deployment> = Api::default_namespaced(client(&cluster));
    apply_obj(&deployments, "web", deployment("shop/web@sha256:aaaa", 2)).await;
    until(&deployments, "web", conditions::is_deployment_completed()).await;

    cluster.mark_broken("sha256:bbbb");
    apply_obj(&deployments, "web", deployment("shop/web@sha256:bbbb", 2)).await;
    let deadline_exceeded = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            })
    };
    let failed = until(&deployments, "web", deadline_exceeded).await;
    let status = failed.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        status.available_replicas,
        Some(2),
        "old replicas keep serving"
    );
    assert!(status.updated_replicas.unwrap() < 2);
}

#[tokio::test]
async fn jobs_complete_or_fail_by_rule_and_their_pod_logs_are_readable() {
    let cluster = Cluster::start().await.unwrap();
    let client = client(&cluster);
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let job = |name: &str, fail: bool| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "smoke:1",
                "env": [{"name": "SIM_JOB_FAIL", "value": if fail { "true" } else { "false" }}, {"name": "SIM_JOB_LOG", "value": "checked /healthz"}]}]}}}})
    };
    apply_obj(&jobs, "pass", job("pass", false)).await;
    apply_obj(&jobs, "fail", job("fail", true)).await;
    until(&jobs, "pass", conditions::is_job_completed()).await;
    let failed = |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
    };
    let failed_job = until(&jobs, "fail", failed).await;
    assert_eq!(failed_job.status.unwrap().failed, Some(1));

    let pods: Api<Pod> = Api::default_namespaced(client);
    let pass_pods = pods
        .list(&ListParams::default().labels("job-name=pass"))
        .await
        .unwrap();
    let pod = &pass_pods.items[0];
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let log = pods
        .logs(pod.metadata.name.as_ref().unwrap(), &LogParams::default())
        .await
        .unwrap();
    assert!(
        log.contains("checked /healthz") && log.contains("exit code 0"),
        "{log}"
    );
}

#[tokio::test]
async fn injected_faults_fail_requests_the_given_number_of_times() {
    let cluster = Cluster::start().await.unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&cluster));
    cluster.inject(Fault::status(500).verb("list").times(1));
    let err = maps.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_error(err).code, 500);
    maps.list(&ListParams::default())
        .await
        .expect("the fault is used up");

    // kube's default retry policy retries 503 and 429 (honouring Retry-After) on its own.
    cluster.reset_counts();
    cluster.inject(Fault::status(503).verb("list").times(1));
    maps.list(&ListParams::default())
        .await
        .expect("retried by the client");
    assert_eq!(cluster.counts().get("list", "configmaps"), 2);

    cluster.inject(
        Fault::too_many_requests(1)
            .verb("write")
            .resource("configmaps")
            .times(1),
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let started = std::time::Instant::now();
    apply_obj(&maps, "c", cm).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the client waited for Retry-After"
    );
    assert_eq!(cluster.counts().get("apply", "configmaps"), 2);

    cluster.inject(
        Fault::delay(Duration::from_millis(300))
            .verb("get")
            .times(1),
    );
    let started = std::time::Instant::now();
    maps.get("c").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    cluster.clear_faults();
}

#[tokio::test]
async fn namespaces_must_exist_and_deleting_one_deletes_its_objects() {
    let cluster = Cluster::start().await.unwrap();
    let client = client(&cluster);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "baton-system");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "baton-leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    let err = leases
        .patch(
            "baton-leader",
            &apply("baton"),
            &Patch::Apply(lease.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        api_error(err).message,
        "namespaces \"baton-system\" not found"
    );

    let namespaces: Api<Namespace> = Api::all(client);
    apply_obj(
        &namespaces,
        "baton-system",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "baton-system"}}),
    )
    .await;
    let created = apply_obj(&leases, "baton-leader", lease).await;
    assert_eq!(created.spec.unwrap().holder_identity.as_deref(), Some("a"));

    namespaces
        .delete("baton-system", &DeleteParams::default())
        .await
        .unwrap();
    assert!(leases.get_opt("baton-leader").await.unwrap().is_none());
}

#[tokio::test]
async fn the_http_control_api_injects_faults_marks_images_and_reports_counts() {
    let cluster = Cluster::start().await.unwrap();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&cluster));
    let http = reqwest::Client::new();
    let control = |path: &str| format!("{}/_sim/{path}", cluster.url());

    let added = http
        .post(control("faults"))
        .json(&json!({"type": "status", "code": 500, "verb": "get", "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    assert_eq!(api_error(maps.get("x").await.unwrap_err()).code, 500);
    assert_eq!(
        api_error(maps.get("x").await.unwrap_err()).code,
        404,
        "used up after one request"
    );

    http.post(control("images/broken"))
        .json(&json!({"image": "sha256:dead"}))
        .send()
        .await
        .unwrap();
    let get = async |path: &str| -> Value {
        let response = http.get(control(path)).send().await.unwrap();
        response.json().await.unwrap()
    };
    assert_eq!(get("images/broken").await, json!(["sha256:dead"]));

    let counts = get("requests").await;
    assert_eq!(counts["reads"], 2);
    assert_eq!(counts["writes"], 0);
    assert_eq!(counts["byVerbAndResource"]["get configmaps"], 2);
    http.delete(control("requests")).send().await.unwrap();
    assert_eq!(cluster.counts().total(), 0);
}
