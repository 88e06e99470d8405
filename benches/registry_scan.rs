//! Registry scan cost: 100 repositories × 50 tags on a real `docker-registry` (Debian's,
//! started on 127.0.0.1), scanned cold and then again with nothing changed. Reports requests
//! per scan and wall time, for the bot's default detail (`Newest`) and for the full listing
//! `baton registry scan` shows (`Full`). Run: `cargo bench --bench registry_scan`.
//! Sizes can be changed with `BATON_BENCH_REPOS` / `BATON_BENCH_TAGS`.

#[path = "../tests/registry_support/mod.rs"]
mod registry_support;

use std::time::Instant;

use baton::config::Pipeline;
use baton::registry::{Detail, RegistryClient, ScanOptions, Scanner};
use futures::StreamExt as _;
use registry_support::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn measure(label: &str, scanner: &Scanner, p: &Pipeline, repos: usize) {
    for round in ["cold", "unchanged"] {
        let before = scanner.client().stats();
        let start = Instant::now();
        let results = scanner
            .scan_pipeline(p, std::path::Path::new("."), None)
            .await;
        let took = start.elapsed();
        let delta = scanner.client().stats().since(&before);
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, repos, "every app scans");
        println!(
            "{label:<7} {round:<10} {:>6} requests  {:>6.2} per repo  {:>8.1} ms   ({delta})",
            delta.total(),
            delta.total() as f64 / repos as f64,
            took.as_secs_f64() * 1000.0,
        );
    }
}

#[tokio::main]
async fn main() {
    let repos = env_usize("BATON_BENCH_REPOS", 100);
    let tags = env_usize("BATON_BENCH_TAGS", 50);
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);

    let setup = Instant::now();
    let base = image("bench", &ImageOpts::default());
    let mut apps = String::new();
    for r in 0..repos {
        let name = format!("bench/app{r:03}");
        push.push_blobs(&name, &base).await;
        apps.push_str(&format!(
            "  app{r:03}:\n    image: {}\n    bless: {{ semver: \">=1.0.0\" }}\n",
            reg.image(&name)
        ));
    }
    // Every tag gets its own manifest (same blobs, different annotation), so digests differ.
    let jobs = (0..repos).flat_map(|r| (0..tags).map(move |t| (r, t)));
    futures::stream::iter(jobs)
        .for_each_concurrent(16, |(r, t)| {
            let push = &push;
            let base = &base;
            async move {
                let mut m: serde_json::Value = serde_json::from_slice(&base.manifest).unwrap();
                m["annotations"] = serde_json::json!({
                    "org.opencontainers.image.revision": format!("{r}-{t}"),
                });
                let tag = if t % 10 == 9 {
                    format!("1.{t}.0-rc.1")
                } else {
                    format!("1.{t}.0")
                };
                push.push_manifest(
                    &format!("bench/app{r:03}"),
                    &tag,
                    serde_json::to_vec(&m).unwrap().into(),
                    OCI_MANIFEST,
                )
                .await;
            }
        })
        .await;
    println!(
        "setup: {repos} repositories x {tags} tags pushed in {:.1}s",
        setup.elapsed().as_secs_f64()
    );
    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n{apps}environments:\n  - name: dev\n"
    );
    let p = Pipeline::parse("bench.yaml", &text).unwrap().pipeline;

    for (label, detail) in [("newest", Detail::Newest), ("full", Detail::Full)] {
        let scanner = Scanner::new(
            RegistryClient::anonymous(),
            ScanOptions {
                detail,
                ..ScanOptions::default()
            },
        );
        measure(label, &scanner, &p, repos).await;
    }
}
