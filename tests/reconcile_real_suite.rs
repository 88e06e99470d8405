//! More of the reconciler's suite on the real control plane, each scenario also run on the
//! stand-in and compared: prune and the inventory, a CRD and its custom resources in one pass,
//! drift made by another field manager, and acceptance-test Jobs run by the real Job
//! controller.

#[macro_use]
mod kube_support;

use std::time::Duration;

use baton::promote::state::DeployState;
use baton::reconcile::prune::PruneGuard;
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
    // Half the inventory goes at once: the prune guard is not what this scenario is about.
    let env = Env::new(&ns).with_prune_guard(PruneGuard::off());
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

/// Which of `names` (ConfigMaps in `ns`) exist and are not being deleted.
async fn present(b: &Backend, ns: &str, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let live = b.get("v1", "ConfigMap", ns, name).await;
        if live.is_some_and(|o| o.pointer("/metadata/deletionTimestamp").is_none()) {
            out.push(name.to_string());
        }
    }
    out
}

async fn mass_deletion(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns);
    let names = ["a", "b", "c", "d", "e"];
    let mut all = vec![namespace(&ns)];
    all.extend(names.iter().map(|n| config_map(&ns, n, "1")));
    reconcile(&env, &all, "1", &ctx).await.unwrap();
    let mut story = Vec::new();

    // One ConfigMap of six objects (17 %) goes at once.
    let mut fewer = all.clone();
    fewer.retain(|o| o["metadata"]["name"] != "e");
    let r = reconcile(&env, &fewer, "2", &ctx).await.unwrap();
    story.push(format!(
        "one removed: pruned {} held {}",
        r.pruned.len(),
        r.prune_held.is_some()
    ));

    // A render that lost most of the environment (a broken `resources:` list) applies what
    // it has and deletes nothing: 3 of 5 (60 %) is more than the default 30 %.
    let broken = vec![namespace(&ns), config_map(&ns, "a", "2")];
    let r = reconcile(&env, &broken, "3", &ctx).await.unwrap();
    let hold = r.prune_held.clone().expect("the deletions are held");
    story.push(format!(
        "broken render: pruned {} held {:?} of {}",
        r.pruned.len(),
        hold.objects
            .iter()
            .map(|o| o.replace(&ns, "NS"))
            .collect::<Vec<_>>(),
        hold.inventory
    ));
    story.push(format!(
        "summary names it: {}",
        r.summary().contains("/prune")
    ));
    story.push(format!(
        "live after hold: {:?}",
        present(&b, &ns, &names).await
    ));
    let live_a = b.get("v1", "ConfigMap", &ns, "a").await.unwrap();
    story.push(format!("a applied: {}", live_a["data"]["value"]));

    // Resyncs keep holding (the objects stay in the inventory), and write nothing.
    let again = reconcile(&env, &broken, "3", &ctx).await.unwrap();
    story.push(format!(
        "resync: pruned {} held {} writes {}",
        again.pruned.len(),
        again.prune_held.is_some(),
        again.writes()
    ));

    // An approval for another commit does not cover this one.
    let elsewhere = env.clone().with_prune_guard(PruneGuard {
        approved: Some("2".into()),
        ..PruneGuard::default()
    });
    let r = reconcile(&elsewhere, &broken, "3", &ctx).await.unwrap();
    story.push(format!("approved for 2: held {}", r.prune_held.is_some()));

    // `/prune` for this commit lets them go.
    let approved = env.clone().with_prune_guard(PruneGuard {
        approved: Some("3".into()),
        ..PruneGuard::default()
    });
    let r = reconcile(&approved, &broken, "3", &ctx).await.unwrap();
    story.push(format!(
        "approved for 3: pruned {} held {}",
        r.pruned.len(),
        r.prune_held.is_some()
    ));
    story.push(format!(
        "live after approval: {:?}",
        present(&b, &ns, &names).await
    ));
    story
}

#[tokio::test]
async fn a_render_that_would_delete_most_of_an_environment_waits_for_prune_and_applies_the_rest() {
    let story = on_both!(mass_deletion);
    let expect = [
        "one removed: pruned 1 held false",
        r#"broken render: pruned 0 held ["ConfigMap/NS/b", "ConfigMap/NS/c", "ConfigMap/NS/d"] of 5"#,
        "summary names it: true",
        r#"live after hold: ["a", "b", "c", "d"]"#,
        r#"a applied: "2""#,
        "resync: pruned 0 held true writes 0",
        "approved for 2: held true",
        "approved for 3: pruned 3 held false",
        r#"live after approval: ["a"]"#,
    ];
    assert_eq!(story, expect);
}

async fn outside_allow(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let allow = baton::config::pipeline::Allow {
        namespaces: vec![ns.clone()],
        kinds: vec!["Namespace".into(), "ConfigMap".into()],
    };
    let env = Env::new(&ns).with_allow(Some(allow));
    let other = format!("{ns}-other");
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": format!("{ns}-reader")}, "rules": []});
    let objects = vec![
        namespace(&ns),
        config_map(&ns, "a", "1"),
        config_map(&other, "b", "1"),
        app(&ns, "web"),
        role,
    ];
    let error = reconcile(&env, &objects, "1", &ctx).await.unwrap_err();
    let mut story: Vec<String> = match &error {
        baton::reconcile::ReconcileError::NotAllowed { objects, .. } => {
            objects.iter().map(|o| o.replace(&ns, "NS")).collect()
        }
        other => vec![format!("unexpected: {other}")],
    };
    story.sort();
    story.push(format!("permanent: {}", !error.is_transient()));
    story.push(format!(
        "namespace created: {}",
        b.get("v1", "Namespace", "", &ns).await.is_some()
    ));
    story.push(format!(
        "allowed ConfigMap applied: {}",
        b.get("v1", "ConfigMap", &ns, "a").await.is_some()
    ));
    story
}

#[tokio::test]
async fn objects_outside_an_environments_allow_are_refused_before_any_write() {
    let story = on_both!(outside_allow);
    assert_eq!(
        story,
        [
            "ClusterRole/NS-reader: cluster-scoped kind rbac.authorization.k8s.io/ClusterRole is not named in allow.kinds",
            "ConfigMap/NS-other/b: namespace NS-other is not in allow.namespaces (NS)",
            "Deployment/NS/web: kind apps/Deployment is not in allow.kinds",
            "permanent: true",
            "namespace created: false",
            "allowed ConfigMap applied: false",
        ]
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
