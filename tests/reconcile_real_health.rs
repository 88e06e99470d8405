//! Health with real controllers (issue 13, part 3) for the kinds beyond Deployment, Job, PVC
//! and Service: StatefulSet, DaemonSet, CronJob, Ingress and a custom resource with kstatus
//! conditions. Each scenario runs on the `sim` stand-in and on the real control plane (its
//! StatefulSet, DaemonSet and CronJob controllers, kwok's fake kubelets) and the two stories
//! are compared (`on_both!`). Where no controller exists (Ingress, the custom resource) the test
//! plays the controller, writing only the `/status` subresource a controller would write.

#[macro_use]
mod kube_support;

use std::time::{Duration, Instant};

use baton::reconcile::{Env, Report, reconcile};
use kube::api::{Patch, PatchParams};
use kube_support::*;
use serde_json::{Value, json};

/// `<Kind/ns/name> <status> <reason>` of one object of the report.
fn health_of(report: &Report, object: &str) -> String {
    let o = report
        .object(object)
        .unwrap_or_else(|| panic!("{object} not in {:?}", outcome(report)));
    format!("{:?} {}", o.health.status, o.health.reason)
}

fn stateful_set(ns: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 2, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image}]}}
        }
    })
}

fn headless(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 5432}]}})
}

fn daemon_set(ns: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": image}]}}
        }
    })
}

/// A workload that rolls out healthy, then to an image kwok (or the stand-in) never makes
/// Ready: neither controller has a failure condition for these kinds, so the rollout stays
/// progressing and baton fails it when the environment's health timeout passes, saying what it
/// waited for.
async fn workload_then_broken(
    b: Backend,
    ns: String,
    id: &str,
    objects: fn(&str, &str) -> Vec<Value>,
) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let id = id.replace("NS", &ns);
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(60));
    let first = reconcile(&env, &objects(&ns, &image(D1)), "1", &ctx)
        .await
        .unwrap();
    let mut story = outcome(&first);
    story.push(format!("first: {}", health_of(&first, &id)));

    b.mark_broken(D2);
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(8));
    let second = reconcile(&env, &objects(&ns, &image(D2)), "2", &ctx)
        .await
        .unwrap();
    story.extend(outcome(&second));
    let message = &second.object(&id).unwrap().health.message;
    story.push(format!("broken: {}", health_of(&second, &id)));
    story.push(format!(
        "waited for the rollout: {}",
        [
            "RolloutInProgress",
            "WaitingForReady",
            "WaitingForAvailable"
        ]
        .iter()
        .any(|r| message.contains(r))
    ));
    story
}

fn stateful_set_objects(ns: &str, image: &str) -> Vec<Value> {
    vec![namespace(ns), headless(ns, "db"), stateful_set(ns, image)]
}

fn daemon_set_objects(ns: &str, image: &str) -> Vec<Value> {
    vec![namespace(ns), daemon_set(ns, image)]
}

async fn stateful_set_rollouts(b: Backend, ns: String) -> Vec<String> {
    workload_then_broken(b, ns, "StatefulSet/NS/db", stateful_set_objects).await
}

async fn daemon_set_rollouts(b: Backend, ns: String) -> Vec<String> {
    workload_then_broken(b, ns, "DaemonSet/NS/agent", daemon_set_objects).await
}

#[tokio::test]
async fn a_stateful_set_is_healthy_when_its_pods_are_ready_and_fails_by_the_timeout_when_they_never_are()
 {
    let story = on_both!(stateful_set_rollouts);
    assert!(story.contains(&"first: Healthy Ready".into()), "{story:#?}");
    let n = story.len();
    assert_eq!(
        story[n - 3..],
        [
            "env Failed drift 0".to_string(),
            "broken: Failed HealthTimeout".into(),
            "waited for the rollout: true".into()
        ],
        "{story:#?}"
    );
}

#[tokio::test]
async fn a_daemon_set_is_healthy_when_every_node_runs_it_and_fails_by_the_timeout_when_a_pod_never_is_ready()
 {
    let story = on_both!(daemon_set_rollouts);
    assert!(
        story.contains(&"first: Healthy Available".into()),
        "{story:#?}"
    );
    let n = story.len();
    assert_eq!(
        story[n - 3..],
        [
            "env Failed drift 0".to_string(),
            "broken: Failed HealthTimeout".into(),
            "waited for the rollout: true".into()
        ],
        "{story:#?}"
    );
}

// --- CronJob ---------------------------------------------------------------------------------

async fn cron_job(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(10));
    let cron = |suspend: bool| {
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": ns},
            "spec": {"schedule": "0 3 * * *", "suspend": suspend,
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "Never", "containers": [{"name": "n", "image": image(D1)}]}}}}}})
    };
    let first = reconcile(&env, &[namespace(&ns), cron(false)], "1", &ctx)
        .await
        .unwrap();
    let mut story = outcome(&first);
    story.push(health_of(&first, &format!("CronJob/{ns}/nightly")));
    let second = reconcile(&env, &[namespace(&ns), cron(true)], "2", &ctx)
        .await
        .unwrap();
    story.push(health_of(&second, &format!("CronJob/{ns}/nightly")));
    story
}

#[tokio::test]
async fn a_cron_job_is_healthy_once_it_exists_scheduled_or_suspended() {
    let story = on_both!(cron_job);
    assert_eq!(
        story[story.len() - 2..],
        ["Healthy Scheduled".to_string(), "Healthy Suspended".into()],
        "{story:#?}"
    );
}

// --- Ingress ---------------------------------------------------------------------------------

async fn ingress(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(10));
    let objects = vec![
        namespace(&ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    ];
    let id = format!("Ingress/{ns}/web");
    let first = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let mut story = outcome(&first);
    story.push(health_of(&first, &id));

    // An ingress controller (played by the test) publishes an address.
    dynamic(&b.client().await, "networking.k8s.io/v1", "Ingress", &ns)
        .patch_status(
            "web",
            &PatchParams {
                field_manager: Some("ingress-controller".into()),
                ..Default::default()
            },
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}),
            ),
        )
        .await
        .unwrap();
    let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    story.push(format!(
        "{} writes {} drift {}",
        health_of(&again, &id),
        again.writes(),
        again.drift
    ));
    story.push(again.object(&id).unwrap().health.message.clone());
    story
}

#[tokio::test]
async fn an_ingress_without_a_controller_is_healthy_and_says_no_address_was_published() {
    let story = on_both!(ingress);
    let n = story.len();
    assert_eq!(
        story[n - 3..],
        [
            "Healthy IngressAddressPending".to_string(),
            "Healthy IngressReady writes 0 drift 0".into(),
            "served at 203.0.113.7".into()
        ],
        "{story:#?}"
    );
    assert!(story.contains(&"env Healthy drift 0".into()), "{story:#?}");
}

// --- A custom resource with kstatus conditions -------------------------------------------------

fn bucket_crd(group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("buckets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": "Bucket", "plural": "buckets", "singular": "bucket", "listKind": "BucketList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    })
}

fn condition(ty: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({"type": ty, "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": "2026-12-02T10:00:00Z"})
}

/// Write the Bucket's status as its controller would (the `/status` subresource, a field
/// manager of its own).
async fn bucket_status(b: &Backend, group: &str, ns: &str, status: Value) {
    dynamic(&b.client().await, &format!("{group}/v1"), "Bucket", ns)
        .patch_status(
            "b",
            &PatchParams {
                field_manager: Some("bucket-controller".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

async fn custom_resource_conditions(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let quick = Env::new(&ns).with_health_timeout(Duration::from_secs(2));
    let group = format!("{ns}.example.com");
    let objects = |size: i64| {
        vec![
            namespace(&ns),
            bucket_crd(&group),
            json!({"apiVersion": format!("{group}/v1"), "kind": "Bucket",
                "metadata": {"name": "b", "namespace": ns}, "spec": {"size": size}}),
        ]
    };
    let id = format!("Bucket.{group}/{ns}/b");
    let mut story = Vec::new();
    let mut step = |what: &str, report: &Report| {
        let o = report.object(&id).unwrap();
        story.push(format!(
            "{what}: {:?} {} [{}]",
            o.health.status, o.health.reason, o.health.message
        ));
    };

    // No status yet: nothing to wait for (kstatus: current).
    let r = reconcile(&quick, &objects(1), "1", &ctx).await.unwrap();
    step("created", &r);

    // The controller reports it is still working: progressing until the timeout fails it.
    bucket_status(
        &b,
        &group,
        &ns,
        json!({"observedGeneration": 1, "conditions": [
            condition("Reconciling", "True", "Provisioning", "creating bucket", 1),
            condition("Ready", "False", "Provisioning", "creating bucket", 1)]}),
    )
    .await;
    let r = reconcile(&quick, &objects(1), "1", &ctx).await.unwrap();
    step("reconciling", &r);

    bucket_status(
        &b,
        &group,
        &ns,
        json!({"observedGeneration": 1, "conditions": [
            condition("Reconciling", "False", "Provisioned", "", 1),
            condition("Ready", "True", "Provisioned", "bucket is ready", 1)]}),
    )
    .await;
    let r = reconcile(&quick, &objects(1), "1", &ctx).await.unwrap();
    step("ready", &r);

    // A change in Git: the controller has not seen generation 2, so Ready is stale.
    let r = reconcile(&quick, &objects(2), "2", &ctx).await.unwrap();
    step("generation 2 unseen", &r);

    // Generation 3, and a controller that answers once it sees it: baton waits for it.
    let controller = {
        let b_client = b.client().await;
        let (group, ns) = (group.clone(), ns.clone());
        tokio::spawn(async move {
            let api = dynamic(&b_client, &format!("{group}/v1"), "Bucket", &ns);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let live = api.get("b").await.unwrap();
                if live.metadata.generation == Some(3) {
                    break;
                }
                assert!(Instant::now() < deadline, "generation 3 never applied");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            api.patch_status(
                "b",
                &PatchParams {
                    field_manager: Some("bucket-controller".into()),
                    ..Default::default()
                },
                &Patch::Merge(json!({"status": {"observedGeneration": 3, "conditions": [
                    condition("Reconciling", "False", "Provisioned", "", 3),
                    condition("Ready", "True", "Provisioned", "bucket resized", 3)]}})),
            )
            .await
            .unwrap();
        })
    };
    let patient = Env::new(&ns).with_health_timeout(Duration::from_secs(30));
    let r = reconcile(&patient, &objects(3), "3", &ctx).await.unwrap();
    controller.await.unwrap();
    step("generation 3 answered", &r);

    // The controller gives up: Stalled is a failure, reported at once with its message.
    bucket_status(
        &b,
        &group,
        &ns,
        json!({"observedGeneration": 3, "conditions": [
            condition("Stalled", "True", "QuotaExceeded", "bucket quota exceeded", 3),
            condition("Ready", "False", "QuotaExceeded", "bucket quota exceeded", 3)]}),
    )
    .await;
    let started = Instant::now();
    let r = reconcile(&patient, &objects(3), "3", &ctx).await.unwrap();
    step("stalled", &r);
    story.push(format!(
        "stalled reported before the timeout: {}",
        started.elapsed() < Duration::from_secs(30)
    ));
    story.push(format!("env {:?}", r.health.state));
    story
        .into_iter()
        .map(|l| l.replace(&group, "GROUP"))
        .collect()
}

#[tokio::test]
async fn a_custom_resource_follows_kstatus_ready_reconciling_stalled_and_observed_generation() {
    let story = on_both!(custom_resource_conditions);
    assert_eq!(
        story,
        [
            "created: Healthy Current []",
            "reconciling: Failed HealthTimeout [not healthy within 2s: creating bucket (Provisioning)]",
            "ready: Healthy Ready [bucket is ready]",
            "generation 2 unseen: Failed HealthTimeout [not healthy within 2s: waiting for the controller to observe generation 2 (seen 1) (ObservedGenerationStale)]",
            "generation 3 answered: Healthy Ready [bucket resized]",
            "stalled: Failed Stalled [bucket quota exceeded]",
            "stalled reported before the timeout: true",
            "env Failed",
        ]
    );
}
