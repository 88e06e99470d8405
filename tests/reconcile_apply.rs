//! The reconciler against the `sim` Kubernetes stand-in over real HTTP: apply, skip unchanged,
//! prune, refuse bad input, CRDs, drift, and API faults.

mod reconcile_support;

use std::time::Duration;

use baton::promote::state::DeployState;
use baton::reconcile::inventory::Inventory;
use baton::reconcile::prune::PruneGuard;
use baton::reconcile::{Action, Env, Pruned, ReconcileError, reconcile, rendered};
use reconcile_support::*;
use serde_json::{Value, json};
use sim::cluster::Fault;

fn actions(report: &baton::reconcile::Report) -> Vec<(String, &'static str)> {
    report
        .objects
        .iter()
        .map(|o| (o.object.to_string(), o.action.name()))
        .collect()
}

#[tokio::test]
async fn the_example_dev_environment_is_applied_and_becomes_healthy_on_its_digests() {
    let (cluster, ctx) = start().await;
    let objects = kustomize("environments/dev");
    let report = reconcile(&Env::new("dev"), &objects, "c0ffee1", &ctx)
        .await
        .unwrap();

    assert_eq!(
        report.health.state,
        DeployState::Healthy,
        "{}",
        report.health.summary()
    );
    let mut created: Vec<String> = report
        .objects
        .iter()
        .map(|o| o.object.to_string())
        .collect();
    created.sort();
    assert_eq!(
        created,
        [
            "ConfigMap/shop-dev/web-config-758kt8k87t",
            "Deployment/shop-dev/web",
            "Deployment/shop-dev/worker",
            "Namespace/shop-dev",
            "Service/shop-dev/web",
        ]
    );
    assert!(report.objects.iter().all(|o| o.action == Action::Created));
    let web = cluster
        .get("apps/v1", "Deployment", "shop-dev", "web")
        .unwrap();
    assert_eq!(web["metadata"]["labels"]["baton.dev/environment"], "dev");
    assert!(
        web["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "baton")
    );

    let inventory = cluster
        .get("v1", "ConfigMap", "baton-system", &Inventory::name("dev"))
        .expect("inventory recorded in the bot's namespace");
    let recorded = Inventory::parse(inventory["data"]["objects"].as_str().unwrap()).unwrap();
    assert_eq!(recorded.objects.len(), 5);

    let deployments = report.deployments(&pipeline());
    let summary: Vec<(&str, &str, DeployState)> = deployments
        .iter()
        .map(|d| (d.app.as_str(), d.digest.as_str(), d.state))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "web",
                "sha256:4c58c90f14978d5f4dd361f5347b51ca8aa93e55e46c5e39dbb11ccdb91a7c2c",
                DeployState::Healthy
            ),
            (
                "worker",
                "sha256:c14b0af4f3c10d66634eb3dcb48c7962c1288ffb5c77d149e62e79161f8eeb8d",
                DeployState::Healthy
            ),
        ]
    );
    assert!(deployments.iter().all(|d| d.healthy_since.is_some()));
}

#[tokio::test]
async fn the_native_render_of_the_dev_environment_applies_exactly_what_kubectl_renders() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let native = baton::reconcile::render_input(
        &env,
        "c0ffee1",
        &project_root(),
        "environments/dev".as_ref(),
    )
    .unwrap();
    let first = reconcile(&env, &native, "c0ffee1", &ctx).await.unwrap();
    assert_eq!(first.counts().created, 5);
    // Same objects, same hashes: nothing to write when the oracle's output is applied.
    cluster.reset_counts();
    let oracle = reconcile(&env, &kustomize("environments/dev"), "c0ffee1", &ctx)
        .await
        .unwrap();
    assert_eq!(oracle.writes(), 0);
    assert_eq!(cluster.counts().writes(), 0);

    let error = baton::reconcile::render_input(
        &env,
        "c0ffee1",
        &project_root(),
        "environments/missing".as_ref(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ReconcileError::Render { .. }) && !error.is_transient(),
        "{error}"
    );
}

#[tokio::test]
async fn an_unchanged_resync_makes_no_write_calls_and_one_list_per_kind() {
    let (cluster, ctx) = start().await;
    let objects = kustomize("environments/dev");
    let env = Env::new("dev");
    reconcile(&env, &objects, "c0ffee1", &ctx).await.unwrap();

    cluster.reset_counts();
    let report = reconcile(&env, &objects, "c0ffee1", &ctx).await.unwrap();
    let counts = cluster.counts();
    assert_eq!(counts.writes(), 0, "{counts:?}");
    assert_eq!(report.writes(), 0);
    assert!(report.objects.iter().all(|o| o.action == Action::Unchanged));
    assert_eq!(report.health.state, DeployState::Healthy);
    // Namespaces, ConfigMaps, Services, Deployments, plus the inventory.
    assert_eq!(counts.reads(), 5, "{counts:?}");
    assert_eq!(counts.total(), 5, "no discovery on a resync: {counts:?}");
}

#[tokio::test]
async fn a_resource_removed_from_git_is_pruned_but_namespaces_and_opted_out_objects_stay() {
    let (cluster, ctx) = start().await;
    // Half the inventory goes at once: the prune guard is not what this test is about.
    let env = Env::new("dev").with_prune_guard(PruneGuard::off());
    let mut keep = config_map("shop", "keep", "1");
    keep["metadata"]["annotations"] = json!({"baton.dev/prune": "disabled"});
    let first = vec![
        namespace("shop"),
        namespace("scratch"),
        config_map("shop", "a", "1"),
        config_map("shop", "b", "1"),
        keep,
        deployment("shop", "old", &web_image(D1), 1),
    ];
    reconcile(&env, &first, "1", &ctx).await.unwrap();

    let second = vec![namespace("shop"), config_map("shop", "a", "1")];
    let report = reconcile(&env, &second, "2", &ctx).await.unwrap();
    assert_eq!(
        report.pruned,
        [
            Pruned::Deleted {
                object: "Deployment/shop/old".into()
            },
            Pruned::Skipped {
                object: "ConfigMap/shop/keep".into(),
                reason: "annotated baton.dev/prune: disabled".into()
            },
            Pruned::Deleted {
                object: "ConfigMap/shop/b".into()
            },
            Pruned::Skipped {
                object: "Namespace/scratch".into(),
                reason: "namespaces are not pruned (prune_namespaces is off)".into()
            },
        ]
    );
    assert!(cluster.get("v1", "ConfigMap", "shop", "b").is_none());
    assert!(
        cluster
            .get("apps/v1", "Deployment", "shop", "old")
            .is_none()
    );
    assert!(cluster.get("v1", "ConfigMap", "shop", "keep").is_some());
    assert!(cluster.get("v1", "Namespace", "", "scratch").is_some());
    assert!(cluster.get("v1", "ConfigMap", "shop", "a").is_some());

    // Skipped objects leave the inventory: a third run prunes nothing and writes nothing.
    cluster.reset_counts();
    let third = reconcile(&env, &second, "2", &ctx).await.unwrap();
    assert!(third.pruned.is_empty());
    assert_eq!(cluster.counts().writes(), 0);
}

#[tokio::test]
async fn a_failed_render_or_invalid_input_leaves_the_cluster_untouched() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let good = vec![
        namespace("shop"),
        config_map("shop", "a", "1"),
        config_map("shop", "b", "1"),
    ];
    reconcile(&env, &good, "1", &ctx).await.unwrap();
    let before = cluster.resource_version();
    cluster.reset_counts();

    // The renderer failed: there is no input, and the error says where.
    let failed = rendered(
        &env,
        "2",
        Err::<Vec<Value>, _>(std::io::Error::other(
            "environments/dev/kustomization.yaml:3: unknown field",
        )),
    );
    let error = failed.unwrap_err();
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("kustomization.yaml:3"),
        "{error}"
    );

    // A partial render (an object without a name) is refused before any call that writes;
    // `b` is missing from it and must not be pruned.
    let partial = vec![
        namespace("shop"),
        config_map("shop", "a", "2"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "shop"}}),
    ];
    let error = reconcile(&env, &partial, "2", &ctx).await.unwrap_err();
    assert!(
        matches!(error, ReconcileError::InvalidInput { .. }),
        "{error}"
    );
    assert!(!error.is_transient());

    // A kind the cluster does not serve, and no CRD for it in the environment.
    let unknown = vec![
        config_map("shop", "a", "2"),
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "shop"}}),
    ];
    let error = reconcile(&env, &unknown, "2", &ctx).await.unwrap_err();
    assert!(
        matches!(error, ReconcileError::UnknownKinds { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("Widget.example.com/shop/w"),
        "{error}"
    );

    assert_eq!(cluster.counts().writes(), 0, "{:?}", cluster.counts());
    assert_eq!(
        cluster.resource_version(),
        before,
        "nothing changed in the cluster"
    );
    assert_eq!(
        cluster.get("v1", "ConfigMap", "shop", "a").unwrap()["data"]["value"],
        "1"
    );
    assert!(cluster.get("v1", "ConfigMap", "shop", "b").is_some());
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                // No status subresource, so the test can write status with a plain apply.
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

#[tokio::test]
async fn a_crd_and_its_custom_resource_are_applied_in_one_reconcile() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "shop"}, "spec": {"size": 3}});
    // Listed before its CRD on purpose: the order comes from the kinds.
    let objects = vec![widget, namespace("shop"), widget_crd()];
    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(
        actions(&report),
        [
            ("Namespace/shop".to_string(), "created"),
            (
                "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com".to_string(),
                "created"
            ),
            ("Widget.example.com/shop/w".to_string(), "created"),
        ]
    );
    assert_eq!(report.health.state, DeployState::Healthy);
    let live = cluster
        .get("example.com/v1", "Widget", "shop", "w")
        .unwrap();
    assert_eq!(live["spec"]["size"], 3);

    // The custom resource's health follows its Ready condition.
    let mut status = live.clone();
    status["status"] = json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning", "message": "making widgets"}]});
    cluster.apply("widget-controller", status).unwrap();
    cluster.reset_counts();
    let options = baton::reconcile::Options {
        wait_for_health: false,
        ..options()
    };
    let quick = baton::reconcile::Context::for_url(&cluster.url(), options).unwrap();
    let report = reconcile(&env, &objects, "1", &quick).await.unwrap();
    assert_eq!(cluster.counts().writes(), 0);
    assert_eq!(report.health.state, DeployState::Progressing);
    assert_eq!(report.health.unhealthy[0].health.reason, "Provisioning");
}

#[tokio::test]
async fn drift_behind_the_bots_back_is_corrected_counted_and_named_by_field() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let objects = vec![
        namespace("shop"),
        config_map("shop", "settings", "1"),
        deployment("shop", "web", &web_image(D1), 2),
    ];
    reconcile(&env, &objects, "1", &ctx).await.unwrap();

    // Someone scales by hand and edits a ConfigMap; someone else deletes... nothing of ours
    // but adds a label of their own, which is not drift.
    let mut scaled = cluster.get("apps/v1", "Deployment", "shop", "web").unwrap();
    scaled["spec"]["replicas"] = json!(5);
    scaled["metadata"]["labels"]["team"] = json!("checkout");
    scaled["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    cluster.apply("kubectl", scaled).unwrap();
    cluster
        .delete("v1", "ConfigMap", "shop", "settings")
        .unwrap();

    cluster.reset_counts();
    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(report.drift, 2);
    let web = report.object("Deployment/shop/web").unwrap();
    assert_eq!(
        web.action,
        Action::DriftCorrected {
            fields: vec![".spec.replicas".into()]
        }
    );
    let settings = report.object("ConfigMap/shop/settings").unwrap();
    assert_eq!(
        settings.action,
        Action::DriftCorrected {
            fields: vec!["(deleted)".into()]
        }
    );
    assert_eq!(cluster.counts().writes(), 2, "{:?}", cluster.counts());
    let live = cluster.get("apps/v1", "Deployment", "shop", "web").unwrap();
    assert_eq!(live["spec"]["replicas"], 2);
    assert_eq!(
        live["metadata"]["labels"]["team"], "checkout",
        "other managers' fields stay"
    );
    assert!(cluster.get("v1", "ConfigMap", "shop", "settings").is_some());

    // Corrected drift stays corrected.
    cluster.reset_counts();
    let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(again.drift, 0);
    assert_eq!(cluster.counts().writes(), 0);
}

#[tokio::test]
async fn single_conflicts_and_server_errors_are_retried_within_the_reconcile() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let objects = vec![
        namespace("shop"),
        config_map("shop", "a", "1"),
        deployment("shop", "web", &web_image(D1), 1),
    ];
    cluster.inject(
        Fault::status(409)
            .verb("apply")
            .resource("deployments")
            .times(1),
    );
    cluster.inject(
        Fault::status(500)
            .verb("list")
            .resource("configmaps")
            .times(1),
    );
    cluster.inject(
        Fault::status(500)
            .verb("get")
            .resource("configmaps")
            .times(1),
    );
    let report = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(report.health.state, DeployState::Healthy);
    assert!(report.objects.iter().all(|o| o.action == Action::Created));
    assert_eq!(
        cluster.counts().get("apply", "deployments"),
        2,
        "retried once"
    );
}

#[tokio::test]
async fn a_persistent_server_error_stops_the_reconcile_before_any_write_and_prunes_nothing() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let first = vec![
        namespace("shop"),
        config_map("shop", "old", "1"),
        config_map("shop", "a", "1"),
    ];
    reconcile(&env, &first, "1", &ctx).await.unwrap();

    let second = vec![
        namespace("shop"),
        config_map("shop", "a", "2"),
        deployment("shop", "web", &web_image(D1), 1),
    ];
    cluster.inject(Fault::status(500).verb("apply").resource("deployments"));
    cluster.reset_counts();
    let error = reconcile(&env, &second, "2", &ctx).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("Deployment/shop/web") && text.contains("dry run; nothing was applied"),
        "{text}"
    );
    assert_eq!(
        cluster.counts().writes(),
        0,
        "refused by the dry run: {:?}",
        cluster.counts()
    );
    assert_eq!(
        cluster.get("v1", "ConfigMap", "shop", "a").unwrap()["data"]["value"],
        "1"
    );
    assert!(
        cluster.get("v1", "ConfigMap", "shop", "old").is_some(),
        "no prune after a failed apply"
    );

    cluster.clear_faults();
    let report = reconcile(&env, &second, "2", &ctx).await.unwrap();
    assert_eq!(
        report.pruned,
        [Pruned::Deleted {
            object: "ConfigMap/shop/old".into()
        }]
    );
    assert_eq!(
        report.object("Deployment/shop/web").unwrap().action,
        Action::Created
    );
}

#[tokio::test]
async fn an_object_in_a_missing_namespace_is_refused_by_the_dry_run_before_any_write() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    reconcile(&env, &[namespace("shop")], "1", &ctx)
        .await
        .unwrap();
    cluster.reset_counts();
    let objects = vec![
        namespace("shop"),
        config_map("shop", "a", "1"),
        deployment("nowhere", "web", &web_image(D1), 1),
    ];
    let error = reconcile(&env, &objects, "2", &ctx).await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    assert!(
        error
            .to_string()
            .contains("Deployment/nowhere/web: namespaces \"nowhere\" not found"),
        "{error}"
    );
    assert_eq!(cluster.counts().writes(), 0);
    assert!(cluster.get("v1", "ConfigMap", "shop", "a").is_none());
}

#[tokio::test]
async fn without_a_dry_run_a_failure_mid_apply_records_what_was_applied_and_prunes_nothing() {
    let options = baton::reconcile::Options {
        dry_run: false,
        ..options()
    };
    let (cluster, ctx) = start_with(Default::default(), options).await;
    // Two of three objects go at once below: not what this test is about.
    let env = Env::new("dev").with_prune_guard(PruneGuard::off());
    let first = vec![namespace("shop"), config_map("shop", "old", "1")];
    reconcile(&env, &first, "1", &ctx).await.unwrap();

    let second = vec![
        namespace("shop"),
        config_map("shop", "new", "1"),
        deployment("shop", "web", &web_image(D1), 1),
    ];
    cluster.inject(Fault::status(500).verb("apply").resource("deployments"));
    let error = reconcile(&env, &second, "2", &ctx).await.unwrap_err();
    assert!(error.is_transient());
    assert!(error.to_string().contains("nothing was pruned"), "{error}");
    assert!(cluster.get("v1", "ConfigMap", "shop", "old").is_some());
    // The ConfigMap applied before the failure is in the inventory, so a later render that
    // drops it prunes it.
    cluster.clear_faults();
    let third = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D1), 1),
    ];
    let report = reconcile(&env, &third, "3", &ctx).await.unwrap();
    let mut pruned = report.pruned.clone();
    pruned.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(
        pruned,
        [
            Pruned::Deleted {
                object: "ConfigMap/shop/new".into()
            },
            Pruned::Deleted {
                object: "ConfigMap/shop/old".into()
            },
        ]
    );
}

#[tokio::test]
async fn a_field_conflict_without_force_is_permanent_and_names_the_other_manager() {
    let options = baton::reconcile::Options {
        force: false,
        ..options()
    };
    let (cluster, ctx) = start_with(Default::default(), options).await;
    let env = Env::new("dev");
    let objects = vec![
        namespace("shop"),
        deployment("shop", "web", &web_image(D1), 1),
    ];
    reconcile(&env, &objects, "1", &ctx).await.unwrap();
    let mut scaled = cluster.get("apps/v1", "Deployment", "shop", "web").unwrap();
    scaled["spec"]["replicas"] = json!(4);
    scaled["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    cluster.apply("kubectl", scaled).unwrap();

    let error = reconcile(&env, &objects, "1", &ctx).await.unwrap_err();
    assert!(!error.is_transient(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("kubectl") && text.contains("apply with force"),
        "{text}"
    );
}

#[tokio::test]
async fn two_reconciles_of_one_environment_run_one_after_the_other() {
    let (cluster, ctx) = start().await;
    let env = Env::new("dev");
    let objects = vec![namespace("shop"), config_map("shop", "a", "1")];
    cluster.inject(Fault::delay(Duration::from_millis(100)).verb("list"));
    let (a, b) = tokio::join!(
        reconcile(&env, &objects, "1", &ctx),
        reconcile(&env, &objects, "1", &ctx)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut writes = [a.writes(), b.writes()];
    writes.sort();
    assert_eq!(writes, [0, 2], "the second saw the first's work");
    // 2 objects; the inventory (refused until the bot's namespace exists), that namespace,
    // and the inventory again.
    assert_eq!(cluster.counts().writes(), 5, "{:?}", cluster.counts());
}
