//! Adoption on the real control plane (issue 13, part 4): objects another tool made are taken
//! over cleanly, so that a field later removed from Git is removed from the cluster. Each tool
//! makes the objects the way it does on the wire:
//!
//! - client-side `kubectl apply` (real kubectl: `Update` by `kubectl-client-side-apply`, the
//!   `last-applied-configuration` annotation), and Argo CD's client-side sync (the same, with
//!   `--field-manager=argocd-controller`);
//! - Helm 3 (the assets' real `helm install` of a small chart: `Create`/`Update` by `helm`);
//! - server-side apply by Helm 4 (`helm`), Flux (`kustomize-controller`) and Argo CD
//!   (`argocd-controller`), sent through the kube client with their field-manager names.
//!
//! Real cluster only: the stand-in ignores `managedFields` sent by clients (docs/sim.md).

mod chart_support;
mod kube_support;

use std::path::Path;
use std::process::Command;

use baton::promote::state::DeployState;
use baton::reconcile::{Action, Env, reconcile};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube_support::*;
use serde_json::{Value, json};

/// How the tool made the objects.
#[derive(Clone, Copy)]
enum Maker {
    /// `kubectl apply` (client-side) with this field manager (`None`: kubectl's own).
    KubectlClientSide(Option<&'static str>),
    /// `helm install` of a chart holding the objects (Helm 3, client-side).
    Helm3,
    /// Server-side apply with this field manager.
    ServerSideApply(&'static str),
}

/// The tool's objects: a ConfigMap with two keys and a label, and a Deployment whose container
/// has two environment variables (a list whose items are owned by key).
fn config_map_v1(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "legacy", "namespace": ns, "labels": {"team": "shop"}},
        "data": {"a": "1", "b": "2"}})
}

fn deployment_v1(ns: &str) -> Value {
    let mut d = deployment(ns, "web", &image(D1), 1);
    d["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "MODE", "value": "live"}, {"name": "DEBUG", "value": "1"}]);
    d
}

/// What Git says later: `b`, the label and `DEBUG` are gone.
fn git_v2(ns: &str) -> Vec<Value> {
    let mut cm = config_map_v1(ns);
    cm["metadata"].as_object_mut().unwrap().remove("labels");
    cm["data"].as_object_mut().unwrap().remove("b");
    let mut d = deployment_v1(ns);
    d["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "MODE", "value": "live"}]);
    vec![namespace(ns), cm, d]
}

fn kubeconfig_file(b: &Backend, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, b.kubeconfig()).unwrap();
    path
}

async fn make(b: &Backend, maker: Maker, ns: &str) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_file(b, dir.path());
    let objects = [config_map_v1(ns), deployment_v1(ns)];
    // The namespace is there before the tool comes (made by someone else).
    let namespaces = dynamic(&b.client().await, "v1", "Namespace", "");
    let ns_object: DynamicObject = serde_json::from_value(namespace(ns)).unwrap();
    namespaces
        .patch(ns, &PatchParams::apply("tests"), &Patch::Apply(&ns_object))
        .await
        .unwrap();
    match maker {
        Maker::KubectlClientSide(manager) => {
            let manifest = dir.path().join("objects.json");
            std::fs::write(
                &manifest,
                serde_json::to_string(
                    &json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                )
                .unwrap(),
            )
            .unwrap();
            let mut kubectl = Command::new("kubectl");
            kubectl.arg("--kubeconfig").arg(&kubeconfig).arg("apply");
            if let Some(m) = manager {
                kubectl.arg(format!("--field-manager={m}"));
            }
            let out = kubectl.arg("-f").arg(&manifest).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Maker::Helm3 => {
            let chart = dir.path().join("legacy");
            std::fs::create_dir_all(chart.join("templates")).unwrap();
            std::fs::write(
                chart.join("Chart.yaml"),
                "apiVersion: v2\nname: legacy\nversion: 0.1.0\n",
            )
            .unwrap();
            for (i, o) in objects.iter().enumerate() {
                // JSON is YAML; nothing in it is a template expression.
                std::fs::write(
                    chart.join("templates").join(format!("{i}.yaml")),
                    serde_json::to_string_pretty(o).unwrap(),
                )
                .unwrap();
            }
            let (ok, stdout, stderr) = chart_support::helm_run(
                &[
                    "install",
                    "legacy",
                    chart.to_str().unwrap(),
                    "--namespace",
                    ns,
                    "--kubeconfig",
                    kubeconfig.to_str().unwrap(),
                ],
                &json!({}),
            );
            assert!(ok, "helm install:\n{stdout}\n{stderr}");
        }
        Maker::ServerSideApply(manager) => {
            let client = b.client().await;
            for o in &objects {
                let api = dynamic(
                    &client,
                    o["apiVersion"].as_str().unwrap(),
                    o["kind"].as_str().unwrap(),
                    ns,
                );
                let obj: DynamicObject = serde_json::from_value(o.clone()).unwrap();
                api.patch(
                    o["metadata"]["name"].as_str().unwrap(),
                    &PatchParams::apply(manager),
                    &Patch::Apply(&obj),
                )
                .await
                .unwrap();
            }
        }
    }
}

/// The managers of an object's main resource (not its subresources).
fn managers(o: &Value) -> Vec<String> {
    let mut m: Vec<String> = o["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.get("subresource").is_none_or(|s| s == ""))
        .map(|e| {
            format!(
                "{} {}",
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or("")
            )
        })
        .collect();
    m.sort();
    m.dedup();
    m
}

/// The tool makes the objects; baton applies the same objects, then Git drops fields: they go
/// from the cluster, nothing of the tool's ownership is left, and a resync writes nothing.
async fn adopted_from(maker: Maker, tool: &str) {
    let b = Backend::real();
    let ns = unique(&format!("adopt-{tool}"));
    make(&b, maker, &ns).await;
    let made = b.get("v1", "ConfigMap", &ns, "legacy").await.unwrap();
    let tool_managers = managers(&made);

    let (client, user) = identity(&b, &unique("baton-adopt")).await;
    let ctx = baton::reconcile::Context::new(client, options(&format!("{ns}-inv")));
    let env = Env::new(&ns);
    let first = reconcile(
        &env,
        &[namespace(&ns), config_map_v1(&ns), deployment_v1(&ns)],
        "1",
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(
        first.health.state,
        DeployState::Healthy,
        "{tool}: {}",
        first.health.summary()
    );
    let second = reconcile(&env, &git_v2(&ns), "2", &ctx).await.unwrap();
    assert_eq!(
        second.health.state,
        DeployState::Healthy,
        "{tool}: {}",
        second.health.summary()
    );

    let cm = b.get("v1", "ConfigMap", &ns, "legacy").await.unwrap();
    assert_eq!(
        cm["data"],
        json!({"a": "1"}),
        "{tool} (made by {tool_managers:?}): {cm:#?}"
    );
    assert!(
        cm["metadata"]["labels"].get("team").is_none(),
        "{tool}: the label Git dropped is gone: {cm:#?}"
    );
    let web = b.get("apps/v1", "Deployment", &ns, "web").await.unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "MODE", "value": "live"}]),
        "{tool}: the env var Git dropped is gone"
    );
    for o in [&cm, &web] {
        assert!(
            o["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none(),
            "{tool}: {o:#?}"
        );
        let left = managers(o);
        assert!(
            left.iter()
                .all(|m| m == "baton Apply" || m == "kube-controller-manager Update"),
            "{tool}: only baton manages the objects now (was {tool_managers:?}): {left:?}"
        );
    }

    // Adopted once: the next resync changes and writes nothing.
    let before = real().writes_by(&user).len();
    let again = reconcile(&env, &git_v2(&ns), "2", &ctx).await.unwrap();
    assert!(
        again.objects.iter().all(|o| o.action == Action::Unchanged) && again.drift == 0,
        "{tool}: {:?}",
        outcome(&again)
    );
    assert_eq!(
        real().writes_by(&user)[before..].to_vec(),
        Vec::<String>::new(),
        "{tool}: writes during the resync after adoption"
    );
    // The tool really had made them its way.
    assert!(
        !tool_managers.is_empty() && tool_managers.iter().all(|m| !m.starts_with("baton")),
        "{tool}: {tool_managers:?}"
    );
}

#[tokio::test]
async fn an_object_created_by_client_side_kubectl_apply_is_adopted_and_a_field_removed_from_git_goes()
 {
    adopted_from(Maker::KubectlClientSide(None), "kubectl").await;
}

#[tokio::test]
async fn objects_installed_by_helm_3_are_adopted_and_fields_removed_from_git_go() {
    adopted_from(Maker::Helm3, "helm3").await;
}

#[tokio::test]
async fn objects_server_side_applied_by_helm_4_are_adopted_and_fields_removed_from_git_go() {
    adopted_from(Maker::ServerSideApply("helm"), "helm4").await;
}

#[tokio::test]
async fn objects_server_side_applied_by_flux_are_adopted_and_fields_removed_from_git_go() {
    adopted_from(Maker::ServerSideApply("kustomize-controller"), "flux").await;
}

#[tokio::test]
async fn objects_server_side_applied_by_argo_cd_are_adopted_and_fields_removed_from_git_go() {
    adopted_from(Maker::ServerSideApply("argocd-controller"), "argocd-ssa").await;
}

#[tokio::test]
async fn objects_applied_client_side_by_argo_cd_are_adopted_and_fields_removed_from_git_go() {
    adopted_from(
        Maker::KubectlClientSide(Some("argocd-controller")),
        "argocd-csa",
    )
    .await;
}
