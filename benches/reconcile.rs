//! Bench: reconcile an environment of 1,000 objects against the `sim` Kubernetes stand-in.
//!
//! Run: `cargo bench --bench reconcile` (optionally `-- 3000` for another size). The stand-in
//! runs in a child process (this binary with `--serve-sim`), so the memory figures are the
//! reconciler's alone. Measures the cold apply (every object created, then the rollouts
//! waited for), an unchanged resync (median of 7), a resync with one changed Deployment, the
//! API calls each makes (from the stand-in's counters), and VmRSS / VmHWM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton::reconcile::{Context, Env, Options, reconcile};
use serde_json::{Value, json};

const NAMESPACES: usize = 10;

fn main() {
    if std::env::args().any(|a| a == "--serve-sim") {
        serve_sim();
        return;
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--serve-sim")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the stand-in");
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .expect("the stand-in prints its URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(url.trim(), n));
    drop(child.stdin.take());
    let _ = child.wait();
}

/// Child process: serve a cluster until stdin closes.
fn serve_sim() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cluster = sim::cluster::Cluster::start().await.expect("start");
        println!("{}", cluster.url());
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .unwrap();
    });
}

/// `n` objects: NAMESPACES namespaces, then Deployment + Service + ConfigMap per app.
fn environment(n: usize, digest_of: impl Fn(usize) -> String) -> Vec<Value> {
    let mut out: Vec<Value> = (0..NAMESPACES)
        .map(|i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{i}")}}))
        .collect();
    let mut app = 0;
    while out.len() < n {
        let ns = format!("team-{}", app % NAMESPACES);
        let name = format!("app-{app}");
        let labels = json!({"app": name});
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
                "data": {"LOG_LEVEL": "info", "FEATURES": "a,b,c"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                        "name": "app", "image": format!("registry.example.com/shop/{name}:1.0.0@{}", digest_of(app)),
                        "envFrom": [{"configMapRef": {"name": name}}],
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}}),
        ];
        for o in objects {
            if out.len() < n {
                out.push(o);
            }
        }
        app += 1;
    }
    out
}

fn digest(i: usize, version: u8) -> String {
    format!("sha256:{:0>62}{version:02x}", format!("{i:x}"))
}

async fn sim_call(client: &kube::Client, method: &str) -> Value {
    let request = http::Request::builder()
        .method(method)
        .uri("/_sim/requests")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(request).await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

fn calls(counts: &Value) -> String {
    format!(
        "{} reads, {} writes, {} total",
        counts["reads"], counts["writes"], counts["total"]
    )
}

async fn bench(url: &str, n: usize) {
    let ctx = Context::for_url(url, Options::default()).expect("client");
    let env = Env::new("bench");
    let v1 = environment(n, |i| digest(i, 1));
    let (rss0, _) = memory();
    println!(
        "reconcile bench: {} objects ({} namespaces, Deployment + Service + ConfigMap per app)",
        v1.len(),
        NAMESPACES
    );

    sim_call(&ctx.client, "DELETE").await;
    let t = Instant::now();
    let cold = reconcile(&env, &v1, "c1", &ctx).await.expect("cold apply");
    let cold_total = t.elapsed();
    let cold_calls = sim_call(&ctx.client, "GET").await;
    let (rss1, hwm1) = memory();
    println!(
        "cold apply:        {:>8.1} ms apply phase, {:>8.1} ms with health ({:?}); {}",
        cold.durations.apply.as_secs_f64() * 1e3,
        cold_total.as_secs_f64() * 1e3,
        cold.health.state,
        calls(&cold_calls)
    );

    let mut times = Vec::new();
    let mut resync_calls = Value::Null;
    let mut last = None;
    for _ in 0..7 {
        sim_call(&ctx.client, "DELETE").await;
        let t = Instant::now();
        let r = reconcile(&env, &v1, "c1", &ctx).await.expect("resync");
        times.push(t.elapsed());
        assert_eq!(r.writes(), 0, "an unchanged resync writes nothing");
        resync_calls = sim_call(&ctx.client, "GET").await;
        last = Some(r);
    }
    let (rss_resync, _) = memory();
    let d = last.unwrap().durations;
    println!(
        "  phases (last):   {:.1} ms validate + read + decide, {:.1} ms prune, {:.1} ms health; VmRSS {rss_resync} KiB after 7 resyncs",
        d.apply.as_secs_f64() * 1e3,
        d.prune.as_secs_f64() * 1e3,
        d.health.as_secs_f64() * 1e3
    );
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "unchanged resync:  {:>8.1} ms median of 7 (min {:.1}, max {:.1}); {}",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        calls(&resync_calls)
    );
    println!(
        "  by verb and resource: {}",
        resync_calls["byVerbAndResource"]
    );

    // Where a resync's time goes: validation + hashing, and the lists.
    {
        let t = Instant::now();
        let desired = baton::reconcile::object::prepare("bench", &v1).unwrap();
        let prepare_took = t.elapsed();
        let planned = baton::reconcile::apply::resolve(&ctx, "bench", desired)
            .await
            .unwrap();
        let t = Instant::now();
        let live = baton::reconcile::apply::list_live(&ctx, "bench", &planned)
            .await
            .unwrap();
        let list_took = t.elapsed();
        let t = Instant::now();
        let drifted = planned
            .iter()
            .filter(|p| {
                !baton::reconcile::diff::differences(&p.object.object, &live[&p.object.id()])
                    .is_empty()
            })
            .count();
        let diff_took = t.elapsed();
        println!(
            "  resync parts:    {:.1} ms validate + hash, {:.1} ms list {} live objects, {:.1} ms compare ({drifted} drifted)",
            prepare_took.as_secs_f64() * 1e3,
            list_took.as_secs_f64() * 1e3,
            live.len(),
            diff_took.as_secs_f64() * 1e3,
        );
    }

    let v2 = environment(n, |i| digest(i, if i == 0 { 2 } else { 1 }));
    sim_call(&ctx.client, "DELETE").await;
    let t = Instant::now();
    let one = reconcile(&env, &v2, "c2", &ctx).await.expect("one change");
    let one_total: Duration = t.elapsed();
    let one_calls = sim_call(&ctx.client, "GET").await;
    println!(
        "one image bumped:  {:>8.1} ms with health ({} written); {}",
        one_total.as_secs_f64() * 1e3,
        one.writes(),
        calls(&one_calls)
    );
    let (rss2, hwm2) = memory();
    println!(
        "memory (KiB):      VmRSS {rss0} before, {rss1} after cold apply (VmHWM {hwm1}), {rss2} at the end (VmHWM {hwm2})"
    );
}
