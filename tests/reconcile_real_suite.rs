//! More of the reconciler's suite on the real control plane, each scenario also run on the
//! stand-in and compared: prune and the inventory, a CRD and its custom resources in one pass,
//! drift made by another field manager, and acceptance-test Jobs run by the real Job
//! controller.

#[macro_use]
mod kube_support;

use std::time::Duration;

use baton::promote::state::DeployState;
use baton::reconcile::verify::{Outcome, VerifyJob, VerifyOptions, VerifyRun, verify_with};
use baton::reconcile::{Env, reconcile};
use kube::api::{Patch, PatchParams};
use kube_support::*;
use serde_json::{Value, json};

fn app(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1, "progressDeadlineSeconds": 5,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("registry.example.com/shop/{name}:1.0.0@{D1}")}]}}
        }
    })
}

async fn prune(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns);
    let scratch = format!("{ns}-scratch");
    let mut keep = config_map(&ns, "keep", "1");
    keep["metadata"]["annotations"] = json!({"baton.dev/prune": "disabled"});
    let first = vec![
        namespace(&ns),
        namespace(&scratch),
        config_map(&ns, "a", "1"),
        config_map(&ns, "b", "1"),
        keep,
        app(&ns, "old"),
    ];
    let one = reconcile(&env, &first, "1", &ctx).await.unwrap();
    assert_eq!(
        one.health.state,
        DeployState::Healthy,
        "{}: {}",
        b.name(),
        one.health.summary()
    );
    let second = vec![namespace(&ns), config_map(&ns, "a", "1")];
    let two = reconcile(&env, &second, "2", &ctx).await.unwrap();
    let mut story = outcome(&two);
    for (kind, api, n, name) in [
        ("ConfigMap", "v1", ns.as_str(), "b"),
        ("Deployment", "apps/v1", ns.as_str(), "old"),
        ("ConfigMap", "v1", ns.as_str(), "keep"),
        ("Namespace", "v1", "", scratch.as_str()),
    ] {
        let live = b.get(api, kind, n, name).await;
        // A pruned Deployment on the real server may linger with a deletionTimestamp while
        // the garbage collector removes its ReplicaSets: gone or going counts as pruned.
        let present = live.is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_none());
        story.push(format!("{kind}/{name} present: {present}"));
    }
    let three = reconcile(&env, &second, "2", &ctx).await.unwrap();
    assert!(three.pruned.is_empty(), "{}: {:?}", b.name(), three.pruned);
    story
}

#[tokio::test]
async fn what_git_no_longer_renders_is_pruned_but_namespaces_and_opted_out_objects_stay() {
    let story = on_both!(prune);
    assert!(
        story.contains(&"ConfigMap/b present: false".to_string()),
        "{story:?}"
    );
    assert!(
        story.contains(&"Deployment/old present: false".to_string()),
        "{story:?}"
    );
    assert!(
        story.contains(&"ConfigMap/keep present: true".to_string()),
        "{story:?}"
    );
}

fn widget_crd(group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]
        }
    })
}

async fn crd_and_custom_resource(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns);
    let group = format!("{ns}.example.com");
    let widget = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 3}});
    // Listed before its CRD on purpose: the order comes from the kinds.
    let objects = vec![widget, namespace(&ns), widget_crd(&group)];
    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let mut story: Vec<String> = outcome(&report)
        .into_iter()
        .map(|l| l.replace(&group, "GROUP"))
        .collect();
    let live = b
        .get(&format!("{group}/v1"), "Widget", &ns, "w")
        .await
        .unwrap();
    story.push(format!("size {}", live["spec"]["size"]));
    let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    story.push(format!(
        "resync drift {} writes {}",
        again.drift,
        again.writes()
    ));
    story
}

#[tokio::test]
async fn a_crd_and_its_custom_resource_are_applied_in_one_reconcile() {
    let story = on_both!(crd_and_custom_resource);
    assert!(
        story
            .iter()
            .any(|l| l.contains("Widget.GROUP/") && l.contains("created")),
        "{story:?}"
    );
    assert!(story.contains(&"size 3".to_string()), "{story:?}");
    assert!(
        story.contains(&"resync drift 0 writes 0".to_string()),
        "{story:?}"
    );
}

async fn drift(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns);
    let objects = vec![
        namespace(&ns),
        config_map(&ns, "settings", "1"),
        config_map(&ns, "extra", "1"),
    ];
    reconcile(&env, &objects, "1", &ctx).await.unwrap();

    // Someone edits a value with kubectl (an Update by another field manager), adds a label of
    // their own (not drift), and deletes an object.
    let client = b.client().await;
    let cms = dynamic(&client, "v1", "ConfigMap", &ns);
    cms.patch(
        "settings",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(
            json!({"metadata": {"labels": {"team": "checkout"}}, "data": {"value": "2"}}),
        ),
    )
    .await
    .unwrap();
    cms.delete("extra", &Default::default()).await.unwrap();

    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let mut story = outcome(&report);
    for o in &report.objects {
        if let baton::reconcile::Action::DriftCorrected { fields } = &o.action {
            story.push(format!("{}: {}", o.object, fields.join(",")));
        }
    }
    let live = b.get("v1", "ConfigMap", &ns, "settings").await.unwrap();
    story.push(format!(
        "value {} team {}",
        live["data"]["value"], live["metadata"]["labels"]["team"]
    ));
    let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    story.push(format!("then drift {}", again.drift));
    story
}

#[tokio::test]
async fn drift_made_by_another_field_manager_is_corrected_and_named_by_field() {
    let story = on_both!(drift);
    assert!(
        story.iter().any(|l| l.ends_with("/settings: .data.value")),
        "{story:?}"
    );
    assert!(
        story.contains(&"value \"1\" team \"checkout\"".to_string()),
        "{story:?}"
    );
    assert!(story.contains(&"then drift 0".to_string()), "{story:?}");
}

fn smoke_job(ns: &str, fail: bool) -> VerifyJob {
    let text = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: smoke\n  namespace: {ns}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: check\n          image: curlimages/curl:8.10.1\n          command: [sh, -c, 'curl --fail http://web/healthz']\n          env:\n            - {{ name: SIM_JOB_FAIL, value: \"{fail}\" }}\n"
    );
    VerifyJob::parse(
        "environments/staging/verify/smoke.yaml",
        &text,
        Duration::from_secs(60),
    )
    .unwrap()
}

async fn verification(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    reconcile(&Env::new(&ns), &[namespace(&ns)], "1", &ctx)
        .await
        .unwrap();
    let options = VerifyOptions {
        poll: Duration::from_millis(100),
        ..VerifyOptions::default()
    };
    let mut story = Vec::new();
    for (attempt, fail) in [(1, false), (2, true)] {
        let run = VerifyRun::new("web", D1, Some("1.5.0".into()), attempt);
        let report = verify_with(
            &ctx,
            &Env::new("staging"),
            &[smoke_job(&ns, fail)],
            &run,
            &options,
        )
        .await
        .unwrap();
        for j in &report.jobs {
            let outcome = match &j.outcome {
                Outcome::Passed { .. } => "passed".to_string(),
                other => format!("{other:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            story.push(format!("{} {outcome}", j.run));
        }
    }
    story
}

#[tokio::test]
async fn acceptance_jobs_pass_and_fail_by_the_real_job_controller() {
    let story = on_both!(verification);
    assert_eq!(story.len(), 2, "{story:?}");
    assert!(story[0].ends_with("-1 passed"), "{story:?}");
    assert!(story[1].ends_with("-2 Failed"), "{story:?}");
}
