//! The reconciler's scenarios on two backends: the `sim` stand-in and the real control plane
//! (`controlplane`, one per test binary, started from `scripts/kube-assets`). A scenario is
//! written once against [`Backend`] and run on both, so every difference between the stand-in
//! and the real API server shows up as a failing comparison (fixed in the stand-in, or listed in
//! docs/sim.md).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baton::reconcile::{Context, Options};
use controlplane::ControlPlane;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

pub fn project_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane of this test binary. Fails the test, saying how to build the assets, when
/// they are missing.
pub fn real() -> &'static ControlPlane {
    match controlplane::shared(&project_root()) {
        Ok(cp) => cp,
        Err(e) => panic!("{e}"),
    }
}

/// A name no other test of this binary uses (tests share the control plane).
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Options for tests: quick retries, timeouts that fail a stuck test in seconds, and the
/// inventory in a namespace of the test's own.
pub fn options(inventory_ns: &str) -> Options {
    Options {
        retry_base: Duration::from_millis(10),
        health_timeout: Duration::from_secs(60),
        crd_timeout: Duration::from_secs(30),
        namespace: inventory_ns.to_string(),
        ..Options::default()
    }
}

pub enum Backend {
    Sim(sim::cluster::Cluster),
    Real(&'static ControlPlane),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sim(_) => "stand-in",
            Backend::Real(_) => "real",
        }
    }

    /// The stand-in with rollouts of about the real cluster's pace.
    pub async fn sim() -> Self {
        let cluster = sim::cluster::Cluster::start_with(sim::cluster::ClusterConfig {
            rollout_duration: Duration::from_millis(300),
            progress_deadline: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .unwrap();
        Backend::Sim(cluster)
    }

    pub fn real() -> Self {
        Backend::Real(real())
    }

    pub async fn client(&self) -> kube::Client {
        match self {
            Backend::Sim(c) => {
                baton::tls::install_crypto_provider();
                kube::Client::try_from(kube::Config::new(c.url().parse().unwrap())).unwrap()
            }
            Backend::Real(cp) => cp.client().await.unwrap(),
        }
    }

    pub async fn context(&self, options: Options) -> Context {
        Context::new(self.client().await, options)
    }

    pub fn kubeconfig(&self) -> String {
        match self {
            Backend::Sim(c) => c.kubeconfig(),
            Backend::Real(cp) => cp.kubeconfig(),
        }
    }

    pub fn mark_broken(&self, marker: &str) {
        match self {
            Backend::Sim(c) => c.mark_broken(marker),
            Backend::Real(cp) => cp.mark_broken(marker).unwrap(),
        }
    }

    /// One object as the API server returns it, or `None`.
    pub async fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let api = dynamic(&self.client().await, api_version, kind, ns);
        api.get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Poll `get` until `ok` holds for the object (bounded: 60 s).
    pub async fn wait_for(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let obj = self.get(api_version, kind, ns, name).await;
            if let Some(o) = &obj
                && ok(o)
            {
                return o.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: {kind}/{ns}/{name} never {what}: {obj:#?}",
                self.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A dynamic API for `kind` in `api_version` (plural guessed the way the built-ins form it).
pub fn dynamic(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    ns: &str,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let lower = kind.to_lowercase();
    let plural = if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    };
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
    if ns.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    }
}

/// An identity of its own for the reconciler under test: a ServiceAccount bound to
/// `cluster-admin` on the real cluster (its writes are then counted from the API server's audit
/// log by [`ControlPlane::writes_by`]); the stand-in has no authentication, so there it is the
/// anonymous client. Returns the client and the audit username.
pub async fn identity(backend: &Backend, name: &str) -> (kube::Client, String) {
    match backend {
        Backend::Sim(_) => (backend.client().await, String::new()),
        Backend::Real(cp) => {
            let ns = "baton-identities";
            let kubeconfig = cp.service_account_kubeconfig(ns, name).await.unwrap();
            let admin = cp.client().await.unwrap();
            let crb: Api<DynamicObject> = dynamic(
                &admin,
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                "",
            );
            let binding: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": format!("{name}-admin")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
            }))
            .unwrap();
            crb.patch(
                &format!("{name}-admin"),
                &kube::api::PatchParams::apply("tests").force(),
                &kube::api::Patch::Apply(&binding),
            )
            .await
            .unwrap();
            let client = controlplane::client_from_kubeconfig(&kubeconfig)
                .await
                .unwrap();
            (client, format!("system:serviceaccount:{ns}:{name}"))
        }
    }
}

/// Run `scenario` (an `async fn(Backend, String) -> Vec<String>` taking the namespace to use)
/// on the stand-in and on the real control plane; both must tell the same story. One namespace
/// name serves both: they are different clusters, and outcomes name objects.
#[macro_export]
macro_rules! on_both {
    ($scenario:ident) => {{
        let ns = $crate::kube_support::unique(&stringify!($scenario).replace('_', "-"));
        let sim = $scenario($crate::kube_support::Backend::sim().await, ns.clone()).await;
        let real = $scenario($crate::kube_support::Backend::real(), ns).await;
        assert_eq!(
            sim, real,
            "the stand-in and the real API server disagree (left: stand-in)"
        );
        real
    }};
}

/// What a report says, in a form both backends must agree on.
pub fn outcome(report: &baton::reconcile::Report) -> Vec<String> {
    let mut out: Vec<String> = report
        .objects
        .iter()
        .map(|o| format!("{} {} {:?}", o.object, o.action.name(), o.health.status))
        .collect();
    out.sort();
    out.push(format!(
        "env {:?} drift {}",
        report.health.state, report.drift
    ));
    out.extend(report.pruned.iter().map(|p| format!("{p:?}")));
    out
}

pub const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// `registry.example.com/shop/web:1.4.0@<digest>`.
pub fn image(digest: &str) -> String {
    format!("registry.example.com/shop/web:1.4.0@{digest}")
}

pub fn namespace(name: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn config_map(ns: &str, name: &str, value: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"value": value}})
}

/// A Deployment of `image` whose failed rollouts are declared after 5 s (not the real 600 s).
pub fn deployment(ns: &str, name: &str, image: &str, replicas: i64) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 5,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image,
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
            }
        }
    })
}
