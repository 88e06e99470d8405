//! What the real API server exposed in the reconciler (issue 13, part 4), each scenario run on
//! the `sim` stand-in and on the real control plane and compared (`on_both!`), or on the real
//! one alone where the stand-in cannot follow (listed in docs/sim.md).

#[macro_use]
mod kube_support;

use std::time::Duration;

use baton::config::Pipeline;
use baton::promote::state::DeployState;
use baton::reconcile::{Action, Env, reconcile};
use kube::api::{Patch, PatchParams};
use kube_support::*;
use serde_json::{Value, json};

fn job(ns: &str, name: &str, image: &str, args: &[&str]) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": name, "image": image, "args": args}]}}}
    })
}

/// The mutating requests `user` made after the first `from` (none on the stand-in, which has
/// no audit log; its write counters are checked by the sim's own tests).
fn writes_since(b: &Backend, user: &str, from: usize) -> Vec<String> {
    match b {
        Backend::Real(cp) => cp.writes_by(user)[from..].to_vec(),
        Backend::Sim(_) => Vec::new(),
    }
}

fn writes_count(b: &Backend, user: &str) -> usize {
    match b {
        Backend::Real(cp) => cp.writes_by(user).len(),
        Backend::Sim(_) => 0,
    }
}

// --- 1. Replicas another manager owns ------------------------------------------------------

async fn replicas_taken_through_scale(b: Backend, ns: String) -> Vec<String> {
    let (client, user) = identity(&b, &unique("baton-hpa")).await;
    let ctx = baton::reconcile::Context::new(client, options(&format!("{ns}-inv")));
    let env = Env::new(&ns);
    let mut objects = vec![namespace(&ns), deployment(&ns, "web", &image(D1), 2)];
    let first = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(first.health.state, DeployState::Healthy, "{}", b.name());
    let mut story = outcome(&first);

    // A second manager takes .spec.replicas through /scale, as the HPA controller does.
    let scaler = dynamic(&b.client().await, "apps/v1", "Deployment", &ns);
    let pp = PatchParams {
        field_manager: Some("hpa-stand-in".into()),
        ..Default::default()
    };
    scaler
        .patch_scale("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .unwrap();
    b.wait_for("apps/v1", "Deployment", &ns, "web", "scaled to 4", |d| {
        d["status"]["availableReplicas"] == 4
    })
    .await;

    let before = writes_count(&b, &user);
    for i in 0..10 {
        let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
        assert!(
            again.objects.iter().all(|o| o.action == Action::Unchanged) && again.drift == 0,
            "{}: resync {i} after the scale: {:?}",
            b.name(),
            outcome(&again)
        );
    }
    assert_eq!(
        writes_since(&b, &user, before),
        Vec::<String>::new(),
        "baton wrote during idle resyncs after another manager took the replicas"
    );
    let live = b.get("apps/v1", "Deployment", &ns, "web").await.unwrap();
    assert_eq!(live["spec"]["replicas"], 4, "{}", b.name());
    story.push("10 idle resyncs: unchanged, no writes, replicas 4".into());

    // A change in Git is applied, and still leaves the replicas to their owner.
    objects[1]["spec"]["template"]["metadata"]["annotations"] = json!({"rev": "2"});
    let changed = reconcile(&env, &objects, "2", &ctx).await.unwrap();
    story.extend(outcome(&changed));
    let live = b.get("apps/v1", "Deployment", &ns, "web").await.unwrap();
    story.push(format!(
        "replicas after a Git change: {}",
        live["spec"]["replicas"]
    ));
    story
}

#[tokio::test]
async fn replicas_another_manager_took_through_scale_are_neither_reset_nor_drift() {
    let story = on_both!(replicas_taken_through_scale);
    assert_eq!(story.last().unwrap(), "replicas after a Git change: 4");
}

// --- 2. Drift noise from the API server's normalisation ------------------------------------

fn varied_objects(ns: &str) -> Vec<Value> {
    vec![
        namespace(ns),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("gadgets.{ns}.example.com")},
            "spec": {"group": format!("{ns}.example.com"), "scope": "Namespaced",
                "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "memory": {"type": "string"}}}}}}}]}}),
        json!({"apiVersion": format!("{ns}.example.com/v1"), "kind": "Gadget",
            "metadata": {"name": "g", "namespace": ns},
            "spec": {"size": 3, "port": "http", "memory": "1024Mi"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns,
            "annotations": {}, "labels": {"tier": "web"}},
            "data": {"empty": "", "n": "1"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ns},
            "type": "Opaque", "stringData": {"token": "t0ken"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "admin", "port": 9090, "targetPort": "admin"}]}}),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits", "namespace": ns},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "1000m", "memory": "0.5Gi"},
                "defaultRequest": {"cpu": "0.1"}}]}}),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {
                "replicas": 1, "progressDeadlineSeconds": 5, "paused": false,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "hostNetwork": false,
                        "terminationGracePeriodSeconds": 30,
                        "containers": [{"name": "web", "image": image(D1),
                            "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}],
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp", "readOnly": false}],
                            "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"},
                                "limits": {"cpu": 2, "memory": "2048Mi"}}}],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1024Mi"}}]
                    }
                }
            }
        }),
    ]
}

async fn varied_objects_then_idle_resync(b: Backend, ns: String) -> Vec<String> {
    let (client, user) = identity(&b, &unique("baton-noise")).await;
    let ctx = baton::reconcile::Context::new(client, options(&format!("{ns}-inv")));
    let env = Env::new(&ns);
    let objects = varied_objects(&ns);
    let first = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(
        first.health.state,
        DeployState::Healthy,
        "{}: {}",
        b.name(),
        first.health.summary()
    );
    let mut story = outcome(&first);
    let before = writes_count(&b, &user);
    let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    story.extend(outcome(&again));
    story.push(format!(
        "writes during the idle resync: {:?}",
        writes_since(&b, &user, before)
    ));
    story
}

#[tokio::test]
async fn what_the_api_server_normalises_is_not_drift_and_an_idle_resync_writes_nothing() {
    let story = on_both!(varied_objects_then_idle_resync);
    let resync = &story[story.iter().position(|l| l.starts_with("env ")).unwrap() + 1..];
    assert!(
        resync
            .iter()
            .filter(|l| l.contains('/'))
            .all(|l| l.contains(" unchanged ")),
        "{story:#?}"
    );
    assert!(
        resync.contains(&"env Healthy drift 0".to_string()),
        "{story:#?}"
    );
    assert_eq!(story.last().unwrap(), "writes during the idle resync: []");
}

// --- 5. Inventory entries for RBAC names --------------------------------------------------

async fn rbac_names_in_the_inventory(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns);
    let cluster_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{ns}:view_all.v1")},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "system:reader_x.y", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    let all = vec![namespace(&ns), cluster_role.clone(), role];
    let first = reconcile(&env, &all, "1", &ctx).await.unwrap();
    let mut story = outcome(&first);
    let again = reconcile(&env, &all, "1", &ctx).await;
    story.push(format!(
        "resync: {:?}",
        again.as_ref().map(outcome).map_err(|e| e.to_string())
    ));
    let fewer = reconcile(&env, &[namespace(&ns), cluster_role], "2", &ctx).await;
    story.push(format!(
        "without the Role: {:?}",
        fewer.as_ref().map(outcome).map_err(|e| e.to_string())
    ));
    story.push(format!(
        "Role left: {}",
        b.get(
            "rbac.authorization.k8s.io/v1",
            "Role",
            &ns,
            "system:reader_x.y"
        )
        .await
        .is_some()
    ));
    story
}

#[tokio::test]
async fn inventory_entries_survive_names_with_underscores_dots_and_colons() {
    let story = on_both!(rbac_names_in_the_inventory);
    assert!(
        story
            .iter()
            .any(|l| l.starts_with("without the Role: Ok") && l.contains("Deleted")),
        "{story:#?}"
    );
    assert_eq!(story.last().unwrap(), "Role left: false");
}

// --- 7. Soak with the app's image also in a Job and a CronJob ------------------------------

fn pipeline(env: &str) -> Pipeline {
    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: registry.example.com/shop/web\n    bless: {{ semver: \">=1.0.0\" }}\nenvironments:\n  - name: {env}\n"
    );
    Pipeline::parse("pipeline.yaml", &text).unwrap().pipeline
}

async fn soak_with_a_job(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns);
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "n", "image": image(D1)}]}}}}}});
    let objects = vec![
        namespace(&ns),
        deployment(&ns, "web", &image(D1), 1),
        job(&ns, "migrate", &image(D1), &["migrate"]),
        cron,
    ];
    let p = pipeline(&ns);
    let first = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let since = |r: &baton::reconcile::Report| {
        let d = r.deployments(&p);
        assert_eq!(d.len(), 1, "{d:?}");
        (d[0].state, d[0].healthy_since)
    };
    let (state, first_since) = since(&first);
    assert_eq!(
        state,
        DeployState::Healthy,
        "{}: {}",
        b.name(),
        first.health.summary()
    );
    let mut story = outcome(&first);
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(20)).await; // so that "now" moves on
        let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
        let (state, s) = since(&again);
        story.push(format!(
            "resync {i}: {state:?}, healthy since the first reconcile: {}",
            s == first_since
        ));
    }
    story
}

#[tokio::test]
async fn an_app_whose_image_also_runs_in_a_job_and_a_cronjob_keeps_its_healthy_since() {
    let story = on_both!(soak_with_a_job);
    assert!(
        story[story.len() - 3..]
            .iter()
            .all(|l| l.ends_with("Healthy, healthy since the first reconcile: true")),
        "{story:#?}"
    );
}

// --- 6. Health: kstatus' rules for claims and load balancers --------------------------------

async fn load_balancer_without_an_address(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(5));
    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": ns},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let report = reconcile(&env, &[namespace(&ns), lb], "1", &ctx)
        .await
        .unwrap();
    let mut story = outcome(&report);
    story.push(
        report
            .object(&format!("Service/{ns}/edge"))
            .unwrap()
            .health
            .reason
            .clone(),
    );
    story
}

#[tokio::test]
async fn a_load_balancer_service_without_an_address_is_not_a_failure() {
    let story = on_both!(load_balancer_without_an_address);
    assert!(
        story.contains(&"env Healthy drift 0".to_string()),
        "{story:#?}"
    );
    assert_eq!(story.last().unwrap(), "LoadBalancerPending");
}

/// Real cluster only: the stand-in has no StorageClasses and never binds claims (docs/sim.md).
#[tokio::test]
async fn a_claim_waiting_for_its_first_consumer_is_not_a_failure() {
    let b = Backend::real();
    let ns = unique("wffc");
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(5));
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": format!("{ns}-late")}, "provisioner": "example.com/none",
        "volumeBindingMode": "WaitForFirstConsumer"});
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"storageClassName": format!("{ns}-late"), "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}});
    let report = reconcile(&env, &[namespace(&ns), class, claim], "1", &ctx)
        .await
        .unwrap();
    let data = report
        .object(&format!("PersistentVolumeClaim/{ns}/data"))
        .unwrap();
    assert_eq!(
        report.health.state,
        DeployState::Healthy,
        "{}",
        report.health.summary()
    );
    assert_eq!(data.health.reason, "WaitForFirstConsumer");
    let live = b
        .get("v1", "PersistentVolumeClaim", &ns, "data")
        .await
        .unwrap();
    assert_eq!(
        live["status"]["phase"], "Pending",
        "the claim really is unbound"
    );
}

// --- 3. Immutable fields -------------------------------------------------------------------

/// An object whose change the API server refuses as immutable: `before` is applied, then
/// `after` (the same object with an immutable field changed).
struct ImmutableCase {
    api_version: &'static str,
    kind: &'static str,
    name: &'static str,
    before: fn(&str) -> Value,
    after: fn(&str) -> Value,
    /// What the refusal must name (the field, as the API server calls it).
    field: &'static str,
    /// Where the changed value is, and what it must be once replaced.
    pointer: &'static str,
    replaced: fn() -> Value,
}

fn selector_deployment(ns: &str, tier: &str) -> Value {
    let mut d = deployment(ns, "web", &image(D1), 1);
    d["spec"]["selector"]["matchLabels"]["tier"] = json!(tier);
    d["spec"]["template"]["metadata"]["labels"]["tier"] = json!(tier);
    d
}

/// No replicas: its pods would wait for claims no provisioner binds, and the field is
/// immutable all the same.
fn claims_stateful_set(ns: &str, size: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 0, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image(D1),
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}]
        }
    })
}

fn fixed_ip_service(ns: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
        "spec": {"clusterIP": ip, "selector": {"app": "web"}, "ports": [{"port": 80}]}})
}

const IMMUTABLE: [ImmutableCase; 4] = [
    ImmutableCase {
        api_version: "batch/v1",
        kind: "Job",
        name: "migrate",
        before: |ns| job(ns, "migrate", &image(D1), &["up"]),
        after: |ns| job(ns, "migrate", &image(D1), &["up", "--again"]),
        field: "spec.template",
        pointer: "/spec/template/spec/containers/0/args",
        replaced: || json!(["up", "--again"]),
    },
    ImmutableCase {
        api_version: "apps/v1",
        kind: "Deployment",
        name: "web",
        before: |ns| selector_deployment(ns, "front"),
        after: |ns| selector_deployment(ns, "edge"),
        field: "spec.selector",
        pointer: "/spec/selector/matchLabels/tier",
        replaced: || json!("edge"),
    },
    ImmutableCase {
        api_version: "apps/v1",
        kind: "StatefulSet",
        name: "db",
        before: |ns| claims_stateful_set(ns, "1Gi"),
        after: |ns| claims_stateful_set(ns, "2Gi"),
        field: "spec.volumeClaimTemplates",
        pointer: "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
        replaced: || json!("2Gi"),
    },
    ImmutableCase {
        api_version: "v1",
        kind: "Service",
        name: "web",
        // From the range's lower band, which the API server keeps for fixed addresses and
        // hands out last (KEP-3070): the other tests' Services, allocated at random beside
        // this one, took 10.0.0.202 once.
        before: |ns| fixed_ip_service(ns, "10.0.0.13"),
        after: |ns| fixed_ip_service(ns, "10.0.0.14"),
        field: "spec.clusterIP",
        pointer: "/spec/clusterIP",
        replaced: || json!("10.0.0.14"),
    },
];

/// Real cluster only: the stand-in does not refuse changes to immutable fields (docs/sim.md).
/// Without `baton.dev/replace` the refusal names the object and the field, and only dry runs
/// were sent (the ConfigMap changed alongside is not half-applied); with it, the object is
/// deleted and re-created and the rest applied.
async fn immutable_field(case: &ImmutableCase) {
    let b = Backend::real();
    let ns = unique(&format!("immutable-{}", case.kind.to_lowercase()));
    let (client, user) = identity(&b, &unique("baton-immutable")).await;
    let ctx = baton::reconcile::Context::new(client, options(&format!("{ns}-inv")));
    let env = Env::new(&ns);
    let id = format!("{}/{ns}/{}", case.kind, case.name);
    let v1 = vec![
        namespace(&ns),
        config_map(&ns, "settings", "1"),
        (case.before)(&ns),
    ];
    let first = reconcile(&env, &v1, "1", &ctx).await.unwrap();
    assert_eq!(
        first.health.state,
        DeployState::Healthy,
        "{id}: {}",
        first.health.summary()
    );
    let uid = |o: &Value| o["metadata"]["uid"].as_str().unwrap().to_string();
    let get = || b.get(case.api_version, case.kind, &ns, case.name);
    let first_uid = uid(&get().await.unwrap());

    // The immutable field changes, and so does a ConfigMap: refused before any write.
    let v2 = vec![
        namespace(&ns),
        config_map(&ns, "settings", "2"),
        (case.after)(&ns),
    ];
    let before = writes_count(&b, &user);
    let err = reconcile(&env, &v2, "2", &ctx).await.unwrap_err();
    let text = err.to_string();
    assert!(!err.is_transient(), "{text}");
    assert!(
        text.contains(&id)
            && text.contains(case.field)
            && text.contains("immutable")
            && text.contains("baton.dev/replace"),
        "{id}: the refusal names the object, {} and what to do: {text}",
        case.field
    );
    let Backend::Real(cp) = &b else {
        unreachable!()
    };
    let events = cp.audit_events(&user);
    let writes: Vec<&str> = events
        .iter()
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete" | "deletecollection")
            )
        })
        .filter_map(|e| e["requestURI"].as_str())
        .collect();
    assert_eq!(writes.len(), before + 2, "{id}: two dry runs: {writes:?}");
    assert!(
        writes[before..]
            .iter()
            .all(|uri| uri.contains("dryRun=All")),
        "{id}: only dry runs after the refusal: {writes:?}"
    );
    let settings = b.get("v1", "ConfigMap", &ns, "settings").await.unwrap();
    assert_eq!(settings["data"]["value"], "1", "{id}: nothing half-applied");
    assert_eq!(uid(&get().await.unwrap()), first_uid, "{id}: not replaced");

    // Annotated: deleted and re-created, and the rest applied.
    let mut v3 = v2.clone();
    v3[2]["metadata"]["annotations"] = json!({"baton.dev/replace": "true"});
    let third = reconcile(&env, &v3, "3", &ctx).await.unwrap();
    assert_eq!(
        third.health.state,
        DeployState::Healthy,
        "{id}: {}",
        third.health.summary()
    );
    let live = get().await.unwrap();
    assert_ne!(uid(&live), first_uid, "{id}: re-created");
    assert_eq!(live.pointer(case.pointer), Some(&(case.replaced)()), "{id}");
    let settings = b.get("v1", "ConfigMap", &ns, "settings").await.unwrap();
    assert_eq!(settings["data"]["value"], "2", "{id}");

    // And the next resync leaves it alone.
    let again = reconcile(&env, &v3, "3", &ctx).await.unwrap();
    assert!(
        again.objects.iter().all(|o| o.action == Action::Unchanged),
        "{id}: {:?}",
        outcome(&again)
    );
}

#[tokio::test]
async fn a_change_to_an_immutable_field_is_refused_by_name_before_any_write_or_replaced_when_annotated()
 {
    immutable_field(&IMMUTABLE[0]).await;
}

#[tokio::test]
async fn a_deployments_changed_selector_is_refused_by_name_or_replaced_when_annotated() {
    immutable_field(&IMMUTABLE[1]).await;
}

#[tokio::test]
async fn a_stateful_sets_changed_volume_claim_templates_are_refused_by_name_or_replaced_when_annotated()
 {
    immutable_field(&IMMUTABLE[2]).await;
}

#[tokio::test]
async fn a_services_changed_cluster_ip_is_refused_by_name_or_replaced_when_annotated() {
    immutable_field(&IMMUTABLE[3]).await;
}

// --- 4. Adoption: tests/reconcile_real_adopt.rs ------------------------------------------------
