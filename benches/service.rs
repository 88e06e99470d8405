//! Bench: the real `baton run` binary against the `sim` stand-ins on loopback.
//!
//! Run: `cargo bench --bench service` (options after `--`: `--pushes N` (default 100),
//! `--apps N` (default 200), `--only latency|memory`).
//!
//! 1. **push → PR** (the registry-webhook path): N pushes of a new blessed tag of the example's
//!    `web`, one after another; the time from the push until the stand-in's dev PR shows that
//!    tag (opened or updated). p50 / p99 / max.
//! 2. **push → dev healthy**: for the first 10 pushes, until the dev Deployment runs the
//!    pushed digest with every replica available (the PR auto-merges, baton reconciles, the
//!    stand-in's rollout takes 500 ms of that).
//! 3. **memory**: a generated config repo of `--apps` apps × 3 environments (one Deployment
//!    each); `baton run` until every environment is applied and healthy and a promotion pass
//!    has run; VmRSS and VmHWM of the process from /proc. With the stand-in cluster it goes on
//!    to #18's `scale:` line: once baton has reported every environment healthy and run two
//!    more promotion passes, a 40 s idle window (its writes, by route, go to stderr).
//!
//! `BATON_BENCH_WRAP="heaptrack -o FILE"` starts `baton run` under that command (a profiler);
//! the RSS figures are then the wrapper's, and the wrapped baton outlives the bench.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::sandbox::{OWNER, REPO, Sandbox, SandboxError, SandboxOptions, image_config};
use baton_test_support::net::{free_port, http_get, wait_for};

struct Baton(Child);

impl Drop for Baton {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Start `baton run` on the sandbox's config; returns it with its port once it listens.
async fn start_baton(sb: &Sandbox) -> (Baton, u16) {
    let port = free_port();
    let (program, mut args) = match std::env::var("BATON_BENCH_WRAP") {
        Ok(w) => {
            let mut w: Vec<String> = w.split_whitespace().map(String::from).collect();
            let p = w.remove(0);
            w.push(env!("CARGO_BIN_EXE_baton").to_string());
            (p, w)
        }
        Err(_) => (env!("CARGO_BIN_EXE_baton").to_string(), Vec::new()),
    };
    args.extend([
        "run".into(),
        "--config".into(),
        sb.config_file.display().to_string(),
    ]);
    let child = Command::new(program)
        .args(args)
        .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start baton run");
    let baton = Baton(child);
    let addr = format!("127.0.0.1:{port}");
    wait(
        "baton run to serve /healthz",
        Duration::from_secs(60),
        || std::net::TcpStream::connect(&addr).is_ok().then_some(()),
    )
    .await;
    sb.connect(addr.parse().unwrap());
    (baton, port)
}

/// Poll `probe` every 5 ms (the resolution of the latencies measured) until it yields; panics
/// after `timeout`.
async fn wait<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    wait_for(what, timeout, Duration::from_millis(5), probe, String::new).await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn dev_runs(sb: &Sandbox, digest: &str) -> bool {
    let Some(d) = sb.cluster.get("apps/v1", "Deployment", "shop-dev", "web") else {
        return false;
    };
    let image = d
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let n = |p: &str| d.pointer(p).and_then(|v| v.as_i64()).unwrap_or(0);
    image.ends_with(digest)
        && n("/status/observedGeneration") == n("/metadata/generation")
        && n("/status/availableReplicas") == n("/spec/replicas")
        && n("/status/updatedReplicas") == n("/spec/replicas")
        && rolled_out(&d)
}

/// The Deployment controller says the new ReplicaSet is available: the rollout of the current
/// template finished (not merely started).
fn rolled_out(d: &serde_json::Value) -> bool {
    d.pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable")
        })
}

async fn latency(pushes: usize) {
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let (_baton, _port) = start_baton(&sb).await;
    wait("the first apply", Duration::from_secs(60), || {
        dev_runs(&sb, &sb.initial["web"]).then_some(())
    })
    .await;
    let mut to_pr = Vec::new();
    let mut to_healthy = Vec::new();
    for i in 1..=pushes {
        let tag = format!("1.{i}.0");
        let pushed = Instant::now();
        let digest = sb.push("web", &tag);
        let short = &digest["sha256:".len().."sha256:".len() + 12];
        wait(
            &format!("a dev PR for {tag}"),
            Duration::from_secs(30),
            || {
                sb.forge
                    .pulls(OWNER, REPO)
                    .iter()
                    .any(|p| p.title.contains(short) && p.labels.iter().any(|l| l == "env:dev"))
                    .then_some(())
            },
        )
        .await;
        to_pr.push(pushed.elapsed());
        if i <= 10 {
            wait(
                &format!("dev healthy on {tag}"),
                Duration::from_secs(60),
                || dev_runs(&sb, &digest).then_some(()),
            )
            .await;
            to_healthy.push(pushed.elapsed());
        }
    }
    to_pr.sort();
    to_healthy.sort();
    println!(
        "push → dev PR (registry webhook), {} pushes: p50 {}, p99 {}, max {}",
        to_pr.len(),
        ms(percentile(&to_pr, 0.5)),
        ms(percentile(&to_pr, 0.99)),
        ms(*to_pr.last().unwrap())
    );
    println!(
        "push → dev healthy (PR, auto-merge, apply, 500 ms simulated rollout), {} pushes: p50 {}, max {}",
        to_healthy.len(),
        ms(percentile(&to_healthy, 0.5)),
        ms(*to_healthy.last().unwrap())
    );
}

/// A config repo of `apps` apps × dev/staging/prod, each app one Deployment.
fn fleet(apps: usize, registry: &sim::registry::Registry, seed: &Path) -> BTreeMap<String, String> {
    let host = registry.host();
    let write = |path: &str, text: String| {
        let p = seed.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let mut initial = BTreeMap::new();
    let mut pipeline = String::from("apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n");
    let created = chrono::Utc::now() - chrono::Duration::days(1);
    for i in 0..apps {
        let name = format!("app-{i:04}");
        let digest = registry.push_image(
            &format!("fleet/{name}"),
            "1.0.0",
            &image_config(&format!("fleet/{name}"), "1.0.0", created),
            &[name.as_bytes()],
        );
        initial.insert(name.clone(), digest);
        pipeline.push_str(&format!(
            "  {name}:\n    image: {host}/fleet/{name}\n    bless: {{ semver: \">=1.0.0\" }}\n"
        ));
        write(
            &format!("apps/{name}/kustomization.yaml"),
            "resources:\n  - deployment.yaml\n".into(),
        );
        write(
            &format!("apps/{name}/deployment.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{ app: {name} }}\n  template:\n    metadata:\n      labels: {{ app: {name} }}\n    spec:\n      containers:\n        - name: {name}\n          image: {host}/fleet/{name}\n"
            ),
        );
    }
    pipeline.push_str(
        "environments:\n  - name: dev\n    autoMerge: true\n  - name: staging\n    after: dev\n    soak: 1m\n  - name: prod\n    after: staging\n    soak: 1h\n    approvals: { count: 1 }\n",
    );
    write("policies/pipeline.yaml", pipeline);
    for env in ["dev", "staging", "prod"] {
        let mut k = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: fleet-{env}\nresources:\n  - namespace.yaml\n"
        );
        for name in initial.keys() {
            k.push_str(&format!("  - ../../apps/{name}\n"));
        }
        k.push_str("images:\n");
        for (name, digest) in &initial {
            k.push_str(&format!(
                "  - name: {host}/fleet/{name}\n    newTag: \"1.0.0\"\n    digest: {digest}\n"
            ));
        }
        write(&format!("environments/{env}/kustomization.yaml"), k);
        write(
            &format!("environments/{env}/namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet-{env}\n"),
        );
    }
    initial
}

fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// On the real control plane, baton runs as a ServiceAccount of its own (bound to
/// `cluster-admin`) instead of the administrator the controllers also use, so that the API
/// server's audit log tells its writes apart. Returns the audit username.
async fn own_identity(sb: &Sandbox) -> Option<String> {
    let cp = sb.cluster.control_plane()?;
    let (ns, name) = ("baton-bench", "baton");
    let kubeconfig = cp.service_account_kubeconfig(ns, name).await.unwrap();
    let admin = cp.client().await.unwrap();
    let gvk =
        kube::core::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding");
    let ar = kube::core::ApiResource::from_gvk_with_plural(&gvk, "clusterrolebindings");
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(admin, &ar);
    let binding: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "baton-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    }))
    .unwrap();
    api.patch(
        "baton-bench",
        &kube::api::PatchParams::apply("bench"),
        &kube::api::Patch::Apply(&binding),
    )
    .await
    .unwrap();
    // The sandbox's baton.yaml names this file for every cluster.
    std::fs::write(sb.dir.join("kubeconfig"), kubeconfig).unwrap();
    Some(format!("system:serviceaccount:{ns}:{name}"))
}

async fn memory(apps: usize, kube_assets: Option<std::path::PathBuf>) {
    let options = SandboxOptions {
        kube_assets,
        ..SandboxOptions::default()
    };
    let sb = Sandbox::start_with(&options, |registry, seed| {
        Ok::<_, SandboxError>(fleet(apps, registry, seed))
    })
    .await
    .unwrap();
    let identity = own_identity(&sb).await;
    let started = Instant::now();
    let (baton, port) = start_baton(&sb).await;
    let pid = baton.0.id();
    let want = apps * 3;
    // The stand-in answers a list in microseconds; on the real API server a list of 600
    // Deployments is megabytes, so it is polled once a second (the times below are ±1 s).
    let poll = if sb.cluster.is_real() {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(5)
    };
    let deadline = started + Duration::from_secs(1800);
    let mut all_created = None;
    let mut last_progress = Instant::now();
    let applied = loop {
        let deployments = sb.cluster.list("apps/v1", "Deployment", None);
        let created = deployments.len();
        let ready = deployments
            .iter()
            .filter(|d| {
                d.pointer("/status/availableReplicas")
                    .and_then(|v| v.as_i64())
                    == Some(1)
            })
            .count();
        if created == want && all_created.is_none() {
            all_created = Some(started.elapsed());
        }
        if ready == want {
            break started.elapsed();
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  {:>5.0}s: {created}/{want} Deployments created, {ready} available; baton VmRSS {}",
                started.elapsed().as_secs_f64(),
                proc_status(pid, "VmRSS:")
            );
            last_progress = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "not every Deployment available after 30 min: {created} created, {ready} available"
        );
        tokio::time::sleep(poll).await;
    };
    wait(
        "/readyz (a promotion pass done)",
        Duration::from_secs(120),
        || (http_get(port, "/readyz")?.0 == 200).then_some(()),
    )
    .await;
    let on = if sb.cluster.is_real() {
        "a real control plane"
    } else {
        "the stand-in"
    };
    println!(
        "baton run on {on}, {apps} apps × 3 environments ({want} Deployments): all created {:.1}s, applied and healthy in {:.1}s; VmRSS {}, VmHWM {}",
        all_created.unwrap_or(applied).as_secs_f64(),
        applied.as_secs_f64(),
        proc_status(pid, "VmRSS:"),
        proc_status(pid, "VmHWM:")
    );
    if let Some(cluster) = sb.cluster.sim() {
        scale_line(&sb, cluster, port, pid, apps, applied).await;
    }
    if let (Some(cp), Some(user)) = (sb.cluster.control_plane(), identity) {
        // Observe one whole resync interval (the sandbox's is 30 s) plus a margin.
        let before = cp.writes_by(&user).len();
        let window = Duration::from_secs(40);
        tokio::time::sleep(window).await;
        let writes = cp.writes_by(&user);
        println!(
            "real control plane: started in {:.1}s; baton's writes in all {}; idle writes by baton over {}s (a resync included): {}{}",
            cp.started_in().as_secs_f64(),
            before,
            window.as_secs(),
            writes.len() - before,
            writes[before..]
                .iter()
                .take(5)
                .map(|w| format!("\n  {w}"))
                .collect::<String>()
        );
        println!(
            "baton after the idle window: VmRSS {}, VmHWM {}",
            proc_status(pid, "VmRSS:"),
            proc_status(pid, "VmHWM:")
        );
    }
}

/// A metric's value from baton's `/metrics` (the first sample of `name`, labels ignored).
fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Writes in a stand-in's request counts: every verb that is not a read.
fn writes<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> u64 {
    counts
        .into_iter()
        .filter(|(k, _)| {
            let verb = k.split(' ').next().unwrap_or("");
            !matches!(verb, "GET" | "HEAD" | "get" | "list" | "watch") && !k.contains("upload-pack")
        })
        .map(|(_, n)| n)
        .sum()
}

/// The write routes whose counts grew from `before` to `after`, with by how much.
fn grown_writes(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(k, n)| writes([(*k, *n)]) > 0 && before.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, n)| {
            let was = before.get(k).copied().unwrap_or(0);
            format!("{k} +{} (was {was})", n - was)
        })
        .collect()
}

/// Wait until baton's status view shows all `cells` healthy, then for two more promotion
/// passes. Returns how long after the start of this wait each took.
async fn settle(port: u16, cells: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let healthy = || {
        let (code, body) = http_get(port, "/api/v1/state")?;
        let view: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        let all = view["apps"].as_array()?.iter().flat_map(|a| {
            a["cells"]
                .as_array()
                .map(|c| c.iter().collect::<Vec<_>>())
                .unwrap_or_default()
        });
        let (mut n, mut ok) = (0, 0);
        for c in all {
            n += 1;
            ok += usize::from(c["health"] == "healthy");
        }
        (n == cells && ok == cells).then_some(())
    };
    wait_for(
        "baton's status view: every cell healthy",
        Duration::from_secs(300),
        Duration::from_millis(200),
        healthy,
        String::new,
    )
    .await;
    let reported = started.elapsed();
    let passes = || metric(port, "baton_plan_passes_total").unwrap_or(0.0);
    let first = passes();
    wait(
        "two promotion passes after every cell is healthy",
        Duration::from_secs(120),
        || (passes() >= first + 2.0).then_some(()),
    )
    .await;
    (reported, started.elapsed())
}

/// #18's scale figures on the stand-ins, after the fleet is healthy: one idle window of 40 s
/// (a resync of every environment, and a registry scan every 5 s, included).
async fn scale_line(
    sb: &Sandbox,
    cluster: &sim::cluster::Cluster,
    port: u16,
    pid: u32,
    apps: usize,
    cold: Duration,
) {
    // Every Deployment is available, but baton has not necessarily seen it yet: each
    // environment's reconcile waits for health, then reports (commit status, state ConfigMap,
    // status view), and the next promotion pass updates the dashboard issue. The idle window
    // starts once baton is done with the cold start: every cell of its status view healthy, and
    // two promotion passes after that (one whole loop, the dashboard sync included).
    let settled = settle(port, apps * 3).await;
    eprintln!(
        "baton's view: every cell healthy {:.1} s after every Deployment was available; settled (two passes more) {:.1} s after",
        settled.0.as_secs_f64(),
        settled.1.as_secs_f64()
    );
    let registry_requests = || sb.registry.counts().values().sum::<u64>();
    let scans = || metric(port, "baton_registry_scans_total").unwrap_or(0.0);
    let (forge_calls, cluster_calls) = (sb.forge.calls(), cluster.counts().0);
    let (forge0, cluster0, registry0, scans0) = (
        writes(&forge_calls),
        writes(&cluster_calls),
        registry_requests(),
        scans(),
    );
    tokio::time::sleep(Duration::from_secs(40)).await;
    let grown: Vec<String> = grown_writes(&forge_calls, &sb.forge.calls())
        .into_iter()
        .chain(grown_writes(&cluster_calls, &cluster.counts().0))
        .collect();
    if !grown.is_empty() {
        eprintln!("writes in the idle window: {}", grown.join(", "));
    }
    // GitHub refuses an issue body over 65,536 characters, and so does the stand-in.
    let dashboard = sb
        .forge
        .issues(OWNER, REPO)
        .into_iter()
        .filter(|i| i.title == baton::service::dashboard::TITLE)
        .map(|i| i.body.chars().count())
        .max();
    eprintln!("dashboard issue body: {dashboard:?} characters (GitHub's limit: 65536)");
    eprintln!(
        "baton after the idle window: VmRSS {}, VmHWM {}",
        proc_status(pid, "VmRSS:"),
        proc_status(pid, "VmHWM:")
    );
    let idle_writes = writes(&sb.forge.calls()) - forge0 + writes(&cluster.counts().0) - cluster0;
    let scans_in_window = (scans() - scans0).max(1.0);
    let per_scan = (registry_requests() - registry0) as f64 / scans_in_window;
    let pass = metric(port, "baton_plan_pass_seconds").unwrap_or(f64::NAN);
    let rss_kib: f64 = proc_status(pid, "VmHWM:")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    println!(
        "scale: {apps} apps x 3 envs: rss {:.0} MiB, cold start to healthy {:.1} s, idle pass {:.0} ms, idle writes {idle_writes}, registry requests per idle scan {per_scan:.0}",
        rss_kib / 1024.0,
        cold.as_secs_f64(),
        pass * 1000.0,
    );

    // With registry webhooks: a push (of a tag no rule blesses, so nothing is promoted) makes
    // the registry notify baton, which from then on trusts its tag lists until a notification
    // says otherwise. Measured over a second idle window once that push's scan is done.
    let scans_before_push = scans();
    sb.registry.push_image(
        "fleet/app-0000",
        "scratch",
        &image_config("fleet/app-0000", "scratch", chrono::Utc::now()),
        &[b"scratch".as_slice()],
    );
    wait(
        "a scan after the registry's notification",
        Duration::from_secs(60),
        || (scans() > scans_before_push).then_some(()),
    )
    .await;
    let (registry1, scans1) = (registry_requests(), scans());
    tokio::time::sleep(Duration::from_secs(40)).await;
    println!(
        "scale: {apps} apps x 3 envs, registry webhooks: registry requests in a 40 s idle window {} ({:.0} scans)",
        registry_requests() - registry1,
        scans() - scans1
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    baton::tls::install_crypto_provider();
    let pushes: usize = arg("--pushes").and_then(|s| s.parse().ok()).unwrap_or(100);
    let apps: usize = arg("--apps").and_then(|s| s.parse().ok()).unwrap_or(200);
    let only = arg("--only");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if only.as_deref().is_none_or(|o| o == "latency") {
        rt.block_on(latency(pushes));
    }
    if only.as_deref().is_none_or(|o| o == "memory") {
        // `--kube-assets DIR`: the same on a real control plane.
        let assets = arg("--kube-assets");
        rt.block_on(memory(apps, assets.map(Into::into)));
    }
}
