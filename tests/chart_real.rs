//! `charts/baton` installed with real helm on the real control plane (`controlplane`, one per
//! test binary), and baton running under the ServiceAccount the chart creates, with a token
//! minted by the API server (TokenRequest): `baton run` in both RBAC scopes (under
//! `namespaces` every list and watch names a namespace, per the API server's audit log), two
//! `baton run` replicas electing a leader on a real Lease and handing over when the leader is
//! SIGKILLed, an app's Role applied through the chart's identity (and refused, until
//! `rbac.bindAndEscalate`, when it grants more than baton holds), and a missing permission
//! reported once, naming verb, resource and namespace.
//!
//! GitHub and the registry are the `sim` stand-ins of a sandbox; only Kubernetes is real.

mod chart_support;
mod common;
mod kube_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::reconcile::{Env, ReconcileError, Scope, reconcile};
use baton::sandbox::{Sandbox, SandboxError, SandboxOptions, image_config, seed_files};
use chart_support::{chart_dir, helm_run};
use controlplane::ControlPlane;
use kube::api::{Api, Patch, PatchParams};
use kube_support::{dynamic, options, real, unique};
use serde_json::{Value, json};

/// `helm install` (or `upgrade --install`) the chart as `release` in `namespace`.
fn helm_install(cp: &ControlPlane, release: &str, namespace: &str, overrides: Value) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cp.kubeconfig()).unwrap();
    let (ok, stdout, stderr) = helm_run(
        &[
            "upgrade",
            "--install",
            release,
            chart_dir().to_str().unwrap(),
            "--namespace",
            namespace,
            "--create-namespace",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        &overrides,
    );
    assert!(ok, "helm install {release}:\n{stdout}\n{stderr}");
}

async fn create_namespace(cp: &ControlPlane, name: &str) {
    let api = dynamic(&cp.client().await.unwrap(), "v1", "Namespace", "");
    let ns: kube::api::DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .unwrap();
    api.patch(name, &PatchParams::apply("tests"), &Patch::Apply(&ns))
        .await
        .unwrap();
}

/// The chart's ServiceAccount (named after the release): its kubeconfig and audit username.
async fn chart_identity(cp: &ControlPlane, release: &str, namespace: &str) -> (String, String) {
    let kubeconfig = cp
        .service_account_kubeconfig(namespace, release)
        .await
        .unwrap();
    (
        kubeconfig,
        format!("system:serviceaccount:{namespace}:{release}"),
    )
}

/// Requests of `user` that list or watch a resource without naming a namespace.
fn cluster_wide_reads(cp: &ControlPlane, user: &str) -> Vec<String> {
    cp.audit_events(user)
        .iter()
        .filter(|e| matches!(e["verb"].as_str(), Some("list" | "watch")))
        .filter(|e| {
            e["objectRef"]["namespace"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect()
}

/// Poll `probe` every 100 ms until it yields, at most `timeout`.
async fn wait<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
    seen: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; {}",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// `baton run` under the chart's identity.

/// A sandbox (GitHub and registry stand-ins, the example config repo) whose environments
/// deploy to `<prefix>-dev`, `<prefix>-staging` and `<prefix>-prod`; without their Namespace
/// objects when `namespaces_exist` (a namespaces scope may not create them).
async fn sandbox(prefix: &str, drop_namespace_objects: bool) -> Sandbox {
    sandbox_with(prefix, drop_namespace_objects, |_| {}).await
}

/// [`sandbox`], with `edit` run on the seed's `policies/pipeline.yaml` text.
async fn sandbox_with(
    prefix: &str,
    drop_namespace_objects: bool,
    edit: impl Fn(&mut String) + Send + 'static,
) -> Sandbox {
    let prefix = prefix.to_string();
    Sandbox::start_with(&SandboxOptions::default(), move |registry, seed| {
        let created = chrono::Utc::now() - chrono::Duration::days(1);
        let mut initial = std::collections::BTreeMap::new();
        for (app, tag) in [("web", "1.0.0"), ("worker", "release-2.0.0")] {
            let config = image_config(&format!("shop/{app}"), tag, created);
            let layer = format!("{app} {tag}");
            let digest =
                registry.push_image(&format!("shop/{app}"), tag, &config, &[layer.as_bytes()]);
            registry.push_image(
                &format!("prod-shop/{app}"),
                tag,
                &config,
                &[layer.as_bytes()],
            );
            initial.insert(app.to_string(), digest);
        }
        seed_files(seed, &registry.host(), Duration::from_secs(2), &initial)?;
        for env in ["dev", "staging", "prod"] {
            for file in walk(&seed.join("environments").join(env)) {
                let text = std::fs::read_to_string(&file).unwrap();
                let mut edited = text.replace(&format!("shop-{env}"), &format!("{prefix}-{env}"));
                if drop_namespace_objects && file.ends_with("kustomization.yaml") {
                    assert!(
                        edited.contains("  - namespace.yaml\n"),
                        "{}",
                        file.display()
                    );
                    edited = edited.replace("  - namespace.yaml\n", "");
                }
                std::fs::write(&file, edited).map_err(|e| SandboxError::Seed(e.to_string()))?;
            }
        }
        let pipeline = seed.join("policies/pipeline.yaml");
        let mut text = std::fs::read_to_string(&pipeline).unwrap();
        edit(&mut text);
        std::fs::write(&pipeline, text).map_err(|e| SandboxError::Seed(e.to_string()))?;
        Ok(initial)
    })
    .await
    .unwrap()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The sandbox's baton.yaml with every cluster reached as the chart's ServiceAccount, its
/// inventory in the release namespace, and the scope the chart wrote into its ConfigMap for
/// in-cluster clusters.
async fn config_for_chart(
    cp: &ControlPlane,
    sb: &Sandbox,
    release: &str,
    namespace: &str,
    kubeconfig: &str,
) -> std::path::PathBuf {
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cp.client().await.unwrap(), namespace);
    let cm = cms.get(&format!("{release}-config")).await.unwrap();
    let text = cm.data.unwrap()["baton.yaml"].clone();
    let chart_cfg = baton::config::RuntimeConfig::parse("chart", &text, []).unwrap();
    let sa_file = sb.dir.join(format!("{release}.kubeconfig"));
    std::fs::write(&sa_file, kubeconfig).unwrap();
    let mut yaml = std::fs::read_to_string(&sb.config_file).unwrap();
    let sandbox_kubeconfig = sb.dir.join("kubeconfig");
    for (name, cluster) in &sb.config.clusters {
        let chart_cluster = &chart_cfg.clusters[name];
        assert!(chart_cluster.in_cluster && chart_cluster.namespace == namespace);
        let mut entry = format!(
            "    kubeconfig: {}\n    namespace: {namespace}\n",
            sa_file.display()
        );
        if let Some(ns) = chart_cluster.allowed_namespaces() {
            entry.push_str(&format!(
                "    scope: namespaces\n    namespaces: [{}]\n",
                ns.join(", ")
            ));
        }
        assert_eq!(
            cluster.kubeconfig.as_deref(),
            Some(sandbox_kubeconfig.as_path())
        );
        yaml = yaml.replacen(
            &format!(
                "  {name}:\n    kubeconfig: {}\n",
                sandbox_kubeconfig.display()
            ),
            &format!("  {name}:\n{entry}"),
            1,
        );
    }
    let file = sb.dir.join(format!("{release}.baton.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    baton::config::RuntimeConfig::parse("baton.yaml", &yaml, []).unwrap();
    file
}

/// A `baton run` child process as the chart's Deployment runs it (leader election on, the
/// pod's name and namespace in the environment), killed (SIGKILL) when dropped.
struct Replica {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(sb: &Sandbox, config: &Path, release: &str, namespace: &str, pod: &str) -> Self {
        let port = common::free_port();
        let log = sb.dir.join(format!("{pod}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
            .env("BATON_WORKDIR", sb.dir.join(format!("work-{pod}")))
            .env("BATON_LEADER_ELECTION", "true")
            .env("BATON_LEASE_NAME", format!("{release}-leader"))
            .env("BATON_LEASE_DURATION", "3s")
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", namespace)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica { child, port, log }
    }

    fn ready(&self) -> bool {
        common::http_get(self.port, "/readyz").is_some_and(|(code, _)| code == 200)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

async fn lease_holder(cp: &ControlPlane, namespace: &str, release: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cp.client().await.unwrap(), namespace);
    leases
        .get_opt(&format!("{release}-leader"))
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// Wait for dev's web Deployment, applied by `user`, available in `<prefix>-dev`.
async fn dev_deployed(
    cp: &ControlPlane,
    prefix: &str,
    user: &str,
    replica_log: impl Fn() -> String,
) {
    let client = cp.client().await.unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client, &format!("{prefix}-dev"));
    wait(
        "dev's web Deployment applied by baton and available",
        Duration::from_secs(90),
        async || {
            let d = deployments.get_opt("web").await.ok()??;
            let labelled = d.metadata.labels.as_ref()?.get("baton.dev/environment")? == "dev";
            let available = d.status?.available_replicas.unwrap_or(0) >= 1;
            (labelled && available).then_some(())
        },
        || format!("baton's log:\n{}", replica_log()),
    )
    .await;
    let writes = cp.writes_by(user);
    assert!(
        writes.iter().any(
            |w| w.starts_with("patch deployments") && w.ends_with(&format!("{prefix}-dev/web"))
        ),
        "the Deployment was written by {user}: {writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_namespaces_scope_baton_run_as_the_charts_service_account_deploys_and_never_lists_cluster_wide()
 {
    baton::tls::install_crypto_provider();
    let cp = real();
    let prefix = unique("nsscope");
    let release = "baton";
    let namespace = format!("{prefix}-system");
    let app_namespaces: Vec<String> = ["dev", "staging", "prod"]
        .iter()
        .map(|e| format!("{prefix}-{e}"))
        .collect();
    // The platform team creates the namespaces; baton may not.
    for ns in &app_namespaces {
        create_namespace(cp, ns).await;
    }
    helm_install(
        cp,
        release,
        &namespace,
        json!({
            "rbac": {"scope": "namespaces", "namespaces": app_namespaces},
            "config": {"inClusterClusters": ["dev", "staging", "prod"]}
        }),
    );
    let sb = sandbox(&prefix, true).await;
    let (kubeconfig, user) = chart_identity(cp, release, &namespace).await;
    let config = config_for_chart(cp, &sb, release, &namespace, &kubeconfig).await;

    // baton validate agrees that the environments fit the scope.
    let out = common::baton(&[
        "validate",
        "--repo",
        sb.dir.join("seed").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stdout(&out));

    let mut replica = Replica::start(&sb, &config, release, &namespace, "baton-0");
    wait(
        "the replica leading and ready",
        Duration::from_secs(60),
        async || {
            let holder = lease_holder(cp, &namespace, release).await?;
            (holder == "baton-0" && replica.ready()).then_some(())
        },
        || format!("baton's log:\n{}", replica.log()),
    )
    .await;
    dev_deployed(cp, &prefix, &user, || replica.log()).await;
    assert!(replica.alive(), "baton run exited: {}", replica.log());

    let wide = cluster_wide_reads(cp, &user);
    assert!(wide.is_empty(), "cluster-wide lists or watches: {wide:#?}");
    let lists = cp
        .audit_events(&user)
        .iter()
        .filter(|e| e["verb"] == "list" && e["objectRef"]["namespace"] == format!("{prefix}-dev"))
        .count();
    assert!(lists > 0, "baton listed nothing in {prefix}-dev");
    let outside: Vec<String> = cp
        .writes_by(&user)
        .into_iter()
        .filter(|w| {
            let ns = w.rsplit(' ').next().unwrap().split('/').next().unwrap();
            ns != namespace && !app_namespaces.iter().any(|a| a == ns)
        })
        .collect();
    assert!(outside.is_empty(), "writes outside the scope: {outside:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_cluster_scope_two_replicas_elect_a_leader_on_a_real_lease_and_the_follower_takes_over_when_it_is_killed()
 {
    baton::tls::install_crypto_provider();
    let cp = real();
    let prefix = unique("clscope");
    let release = format!("{prefix}-baton");
    let namespace = format!("{prefix}-system");
    helm_install(
        cp,
        &release,
        &namespace,
        json!({"config": {"inClusterClusters": ["dev", "staging", "prod"]}}),
    );
    // The environments create their Namespaces themselves: the cluster scope allows it.
    let sb = sandbox(&prefix, false).await;
    let (kubeconfig, user) = chart_identity(cp, &release, &namespace).await;
    let config = config_for_chart(cp, &sb, &release, &namespace, &kubeconfig).await;
    let a = Replica::start(&sb, &config, &release, &namespace, "baton-a");
    let b = Replica::start(&sb, &config, &release, &namespace, "baton-b");
    let logs = || format!("a:\n{}\nb:\n{}", a.log(), b.log());
    let leader = wait(
        "one replica leading and ready",
        Duration::from_secs(60),
        async || {
            let holder = lease_holder(cp, &namespace, &release).await?;
            let leader_ready = if holder == "baton-a" {
                a.ready()
            } else {
                b.ready()
            };
            leader_ready.then_some(holder)
        },
        logs,
    )
    .await;
    let (mut leading, mut following) = if leader == "baton-a" { (a, b) } else { (b, a) };
    // A follower is Ready too (it serves the status page and passes webhooks on), once it has
    // started (it may still be cloning the config repo when the leader is ready).
    wait(
        "the follower ready",
        Duration::from_secs(30),
        async || following.ready().then_some(()),
        || following.log(),
    )
    .await;
    dev_deployed(cp, &prefix, &user, || leading.log()).await;
    assert!(following.alive() && leading.alive());

    // The leader dies without releasing its lease.
    leading.child.kill().unwrap();
    leading.child.wait().unwrap();
    let died = Instant::now();
    let follower = if leader == "baton-a" {
        "baton-b"
    } else {
        "baton-a"
    };
    wait(
        "the follower holding the lease",
        Duration::from_secs(30),
        async || {
            (lease_holder(cp, &namespace, &release).await.as_deref() == Some(follower))
                .then_some(())
        },
        || following.log(),
    )
    .await;
    let took = died.elapsed();
    // The follower counts the lease expired 3 s after it last saw it change (a renewal every
    // 0.5 s), looks every 0.5 s, and this poll adds up to 100 ms. Both replicas also reconcile
    // the clusters they hold, and on a loaded 2-core CI machine (this binary's other tests run
    // control planes beside it) their turns come seconds late: 7.1 s was seen once. The bound
    // is three lease durations: a follower that never took over, or only once the lease had
    // lain unrenewed for long, still fails it.
    assert!(
        took < Duration::from_secs(3) + Duration::from_secs(6),
        "takeover took {took:?} with a 3 s lease"
    );
    wait(
        "the new leader ready",
        Duration::from_secs(30),
        async || following.ready().then_some(()),
        || following.log(),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The reconciler through the chart's identity.

fn role(ns: &str, name: &str, verbs: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": verbs}]})
}

fn role_binding(ns: &str, name: &str, role_kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_role_applies_through_the_charts_identity_and_one_granting_more_needs_bind_and_escalate()
 {
    baton::tls::install_crypto_provider();
    let cp = real();
    let prefix = unique("roles");
    let (release, namespace, app) = ("baton", format!("{prefix}-system"), format!("{prefix}-app"));
    create_namespace(cp, &app).await;
    let values = |bind_and_escalate: bool| json!({"rbac": {"scope": "namespaces", "namespaces": [app], "bindAndEscalate": bind_and_escalate}});
    helm_install(cp, release, &namespace, values(false));
    let (kubeconfig, user) = chart_identity(cp, release, &namespace).await;
    let client = controlplane::client_from_kubeconfig(&kubeconfig)
        .await
        .unwrap();
    let mut opts = options(&namespace);
    opts.scope = Scope::namespaces([app.clone()]);
    let ctx = baton::reconcile::Context::new(client, opts);
    let env = Env::new("roles");
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": app}});

    // A Role granting what baton holds, and its binding: applied.
    let modest = vec![
        sa.clone(),
        role(&app, "reader", &["get", "list", "watch"]),
        role_binding(&app, "reader", "Role", "reader"),
    ];
    let report = reconcile(&env, &modest, "1", &ctx).await.unwrap();
    assert_eq!(report.objects.len(), 3, "{}", report.summary());
    assert!(
        cp.writes_by(&user)
            .iter()
            .any(|w| w == &format!("patch roles {app}/reader")),
        "{:?}",
        cp.writes_by(&user)
    );

    // More than baton holds: every verb on pods, and the built-in `edit` ClusterRole bound.
    let greedy = vec![
        sa.clone(),
        role(&app, "reader", &["get", "list", "watch"]),
        role_binding(&app, "reader", "Role", "reader"),
        role(&app, "admin", &["*"]),
        role_binding(&app, "editors", "ClusterRole", "edit"),
    ];
    let refused = reconcile(&env, &greedy, "2", &ctx).await.unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, ReconcileError::DryRun { .. }), "{text}");
    assert!(!refused.is_transient());
    for says in [
        &format!("Role/{app}/admin"),
        "attempting to grant RBAC permissions not currently held",
        &format!("RoleBinding/{app}/editors"),
        "grant it (the chart's rbac.rules",
    ] {
        assert!(text.contains(says), "missing {says:?} in:\n{text}");
    }
    let roles = dynamic(
        &cp.client().await.unwrap(),
        "rbac.authorization.k8s.io/v1",
        "Role",
        &app,
    );
    assert!(
        roles.get_opt("admin").await.unwrap().is_none(),
        "nothing was applied"
    );

    // With bind and escalate (the chart's rbac.bindAndEscalate), the same environment applies.
    helm_install(cp, release, &namespace, values(true));
    let report = wait(
        "the greedy Role applied once baton may bind and escalate",
        Duration::from_secs(20),
        async || reconcile(&env, &greedy, "2", &ctx).await.ok(),
        String::new,
    )
    .await;
    assert_eq!(report.objects.len(), 5, "{}", report.summary());
    assert!(roles.get_opt("admin").await.unwrap().is_some());
    let wide = cluster_wide_reads(cp, &user);
    assert!(wide.is_empty(), "cluster-wide lists or watches: {wide:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_one_error_naming_verb_resource_and_namespace_and_cluster_scoped_objects_are_refused_before_any_write()
 {
    baton::tls::install_crypto_provider();
    let cp = real();
    let prefix = unique("perm");
    let (release, namespace) = ("baton", format!("{prefix}-system"));
    let (granted, forgotten) = (format!("{prefix}-granted"), format!("{prefix}-forgotten"));
    create_namespace(cp, &granted).await;
    create_namespace(cp, &forgotten).await;
    helm_install(
        cp,
        release,
        &namespace,
        json!({"rbac": {"scope": "namespaces", "namespaces": [granted]}}),
    );
    let (kubeconfig, user) = chart_identity(cp, release, &namespace).await;
    let client = controlplane::client_from_kubeconfig(&kubeconfig)
        .await
        .unwrap();
    // baton.yaml names a namespace the chart's rbac.namespaces forgot.
    let mut opts = options(&namespace);
    opts.scope = Scope::namespaces([granted.clone(), forgotten.clone()]);
    let ctx = baton::reconcile::Context::new(client, opts);
    let cm = |ns: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"a": "1"}});
    let error = reconcile(
        &Env::new("perm"),
        &[cm(&granted), cm(&forgotten)],
        "1",
        &ctx,
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert_eq!(text.lines().count(), 1, "one error: {text}");
    for says in [
        "cannot list resource \"configmaps\"",
        &format!("in the namespace \"{forgotten}\""),
        &user,
        "grant it",
    ] {
        assert!(text.contains(says), "missing {says:?} in: {text}");
    }
    assert!(!error.is_transient());

    // A cluster-scoped object under the namespaces scope: refused before any write.
    let writes = cp.writes_by(&user).len();
    let ns_object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("{prefix}-new")}});
    let error = reconcile(&Env::new("perm2"), &[ns_object, cm(&granted)], "1", &ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ReconcileError::OutOfScope { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("Namespace/{prefix}-new: cluster-scoped")),
        "{error}"
    );
    assert_eq!(cp.writes_by(&user).len(), writes, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_impersonate_scope_baton_run_deploys_each_environment_as_its_service_account() {
    baton::tls::install_crypto_provider();
    let cp = real();
    let prefix = unique("impscope");
    let release = "baton";
    let namespace = format!("{prefix}-system");
    let admin = cp.client().await.unwrap();
    // The platform team: a namespace per environment, its deployer account, allowed anything
    // namespaced there and nothing else.
    for env in ["dev", "staging", "prod"] {
        let ns = format!("{prefix}-{env}");
        cp.service_account_token(&ns, "deployer").await.unwrap();
        for (kind, body) in [
            (
                "Role",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": "deployer", "namespace": ns},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"],
                        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
            ),
            (
                "RoleBinding",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": "deployer", "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
                    "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]}),
            ),
        ] {
            let object: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
            dynamic(&admin, "rbac.authorization.k8s.io/v1", kind, &ns)
                .patch(
                    "deployer",
                    &PatchParams::apply("tests"),
                    &Patch::Apply(&object),
                )
                .await
                .unwrap();
        }
    }
    let accounts: Vec<String> = ["dev", "staging", "prod"]
        .iter()
        .map(|e| format!("{prefix}-{e}/deployer"))
        .collect();
    helm_install(
        cp,
        release,
        &namespace,
        json!({
            "rbac": {"scope": "impersonate", "impersonate": accounts},
            "config": {"inClusterClusters": ["dev", "staging", "prod"]}
        }),
    );
    let p = prefix.clone();
    let sb = sandbox_with(&prefix, true, move |pipeline| {
        for env in ["dev", "staging", "prod"] {
            let entry = format!("  - name: {env}\n");
            assert!(pipeline.contains(&entry), "{pipeline}");
            *pipeline = pipeline.replacen(
                &entry,
                &format!("{entry}    serviceAccount: {p}-{env}/deployer\n"),
                1,
            );
        }
    })
    .await;
    let (kubeconfig, user) = chart_identity(cp, release, &namespace).await;
    let config = config_for_chart(cp, &sb, release, &namespace, &kubeconfig).await;

    let mut replica = Replica::start(&sb, &config, release, &namespace, "baton-0");
    wait(
        "the replica leading and ready",
        Duration::from_secs(60),
        async || {
            let holder = lease_holder(cp, &namespace, release).await?;
            (holder == "baton-0" && replica.ready()).then_some(())
        },
        || format!("baton's log:\n{}", replica.log()),
    )
    .await;
    dev_deployed(cp, &prefix, &user, || replica.log()).await;
    assert!(replica.alive(), "baton run exited: {}", replica.log());

    // Every write baton's token made outside its own namespace was made as that
    // environment's deployer; its own writes stayed in its namespace.
    let dev_deployer = format!("system:serviceaccount:{prefix}-dev:deployer");
    let mut as_dev = 0;
    for e in cp.audit_events(&user) {
        let verb = e["verb"].as_str().unwrap_or("");
        if !matches!(verb, "create" | "update" | "patch" | "delete") {
            continue;
        }
        let ns = e["objectRef"]["namespace"].as_str().unwrap_or("");
        let acting = e["impersonatedUser"]["username"].as_str();
        if ns == namespace {
            assert_eq!(
                acting, None,
                "baton's own namespace is written as baton: {e}"
            );
        } else {
            let env = ns.strip_prefix(&format!("{prefix}-")).unwrap_or("?");
            assert_eq!(
                acting,
                Some(format!("system:serviceaccount:{ns}:deployer").as_str()),
                "a write in {ns} (environment {env}) not made as its deployer: {e}"
            );
            if acting == Some(dev_deployer.as_str()) {
                as_dev += 1;
            }
        }
    }
    assert!(as_dev > 0, "nothing was written as dev's deployer");
}
