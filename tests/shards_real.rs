//! Three `baton run` replicas share six clusters (issue #18 part 2). Two are real control
//! planes (the sandbox's, which also holds the Leases and the state, and a second one); the
//! stand-in provides the other four. Each replica campaigns for the clusters' Leases
//! (`baton-reconcile-<cluster>`) and reconciles those it holds; one of them also leads the
//! engine. A change to every environment reaches every cluster while three, then two, then one
//! replica is left (each kill a SIGKILL), and a release promoted through the six environments
//! meanwhile opens exactly one PR per environment, with nothing said twice.
//!
//! GitHub and the registry are the `sim` stand-ins of a sandbox.

mod common;
mod state_support;

use std::collections::BTreeMap;
use std::time::Duration;

use baton::sandbox::{OWNER, REPO, Sandbox, SandboxCluster, SandboxOptions};
use state_support::*;

/// The environments added to the sandbox's three, each on a cluster of its own, promoted
/// straight after dev.
const EXTRA: [&str; 3] = ["qa", "perf", "uat"];
const LEASE: &str = "3s";
/// The sandbox's `intervals.resync`.
const RESYNC: Duration = Duration::from_secs(30);

struct Replica {
    name: String,
    baton: Baton,
    port: u16,
}

fn replica(sb: &Sandbox, name: &str) -> Replica {
    let port = common::free_port();
    let env = [
        ("BATON_LEADER_ELECTION", "true".to_string()),
        ("BATON_LEASE_DURATION", LEASE.to_string()),
        ("POD_NAME", name.to_string()),
        (
            "BATON_WORKDIR",
            sb.dir.join(format!("work-{name}")).display().to_string(),
        ),
    ];
    Replica {
        name: name.to_string(),
        baton: Baton::start_with(sb, port, name, &env),
        port,
    }
}

/// The pipeline with three more environments after dev, each on its own cluster.
fn add_environments(sb: &Sandbox) {
    // The files the sandbox seeded the config repo with.
    let seeded = |path: &str| std::fs::read_to_string(sb.dir.join("seed").join(path)).unwrap();
    let pipeline = seeded("policies/pipeline.yaml");
    let dev = seeded("environments/dev/kustomization.yaml");
    let mut files = Vec::new();
    let mut pipeline = pipeline.trim_end().to_string();
    for env in EXTRA {
        pipeline.push_str(&format!(
            "\n  - name: {env}\n    path: environments/{env}\n    cluster: {env}\n    after: dev\n    autoMerge: true\n"
        ));
        files.push((
            format!("environments/{env}/kustomization.yaml"),
            dev.replace("shop-dev", &format!("shop-{env}"))
                .replace("environment: dev", &format!("environment: {env}")),
        ));
        files.push((
            format!("environments/{env}/namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop-{env}\n"),
        ));
    }
    files.push(("policies/pipeline.yaml".into(), pipeline));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    sb.forge
        .commit_files(OWNER, REPO, "main", &refs, "three more environments")
        .unwrap();
}

/// Every environment's namespace annotated with `round` (a change only a reconcile applies).
fn annotate(sb: &Sandbox, envs: &[String], round: u32) {
    let mut files = Vec::new();
    for env in envs {
        let path = format!("environments/{env}/namespace.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop-{env}\n  annotations:\n    test.baton.dev/round: \"{round}\"\n"
        );
        files.push((path, text));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    sb.forge
        .commit_files(OWNER, REPO, "main", &refs, &format!("round {round}"))
        .unwrap();
}

fn round_of(cluster: &SandboxCluster, env: &str) -> Option<String> {
    let ns = cluster.get("v1", "Namespace", "", &format!("shop-{env}"))?;
    ns["metadata"]["annotations"]["test.baton.dev/round"]
        .as_str()
        .map(String::from)
}

/// Who holds each cluster's Lease now (live ones only: renewed within the lease duration).
fn holders(sb: &Sandbox) -> BTreeMap<String, String> {
    sb.cluster
        .list("coordination.k8s.io/v1", "Lease", None)
        .into_iter()
        .filter_map(|l| {
            let name = l["metadata"]["name"].as_str()?;
            let cluster = name.strip_prefix("baton-reconcile-")?;
            if cluster.starts_with("member-") {
                return None;
            }
            let holder = l["spec"]["holderIdentity"].as_str()?.to_string();
            let renewed: chrono::DateTime<chrono::Utc> =
                l["spec"]["renewTime"].as_str()?.parse().ok()?;
            let live = chrono::Utc::now() - renewed < chrono::Duration::seconds(3);
            (live && !holder.is_empty()).then(|| (cluster.to_string(), holder))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_six_clusters_and_keep_reconciling_them_as_two_die() {
    baton::tls::install_crypto_provider();
    let assets =
        controlplane::assets_dir(&common::project_root()).unwrap_or_else(|e| panic!("{e}"));
    let sb = Sandbox::start(&SandboxOptions {
        kube_assets: Some(assets.clone()),
        soak: SOAK,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let second = SandboxCluster::start(Some(&assets)).await.unwrap();
    let mut standins = Vec::new();
    for _ in 0..EXTRA.len() - 1 {
        standins.push(SandboxCluster::start(None).await.unwrap());
    }
    // dev, staging: the sandbox's control plane (also home to the Leases and the state);
    // prod, qa: a second real one; perf, uat: stand-ins.
    let mut clusters: BTreeMap<String, &SandboxCluster> = BTreeMap::new();
    clusters.insert("dev".into(), &sb.cluster);
    clusters.insert("staging".into(), &sb.cluster);
    clusters.insert("prod".into(), &second);
    clusters.insert("qa".into(), &second);
    clusters.insert("perf".into(), &standins[0]);
    clusters.insert("uat".into(), &standins[1]);
    add_environments(&sb);

    // baton.yaml with the six clusters, each with its own kubeconfig.
    let yaml = std::fs::read_to_string(&sb.config_file).unwrap();
    let (head, rest) = yaml.split_once("clusters:\n").unwrap();
    let (_, tail) = rest.split_once("listen:").unwrap();
    let mut entries = String::new();
    for (name, cluster) in &clusters {
        let path = sb.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, cluster.kubeconfig()).unwrap();
        entries.push_str(&format!("  {name}:\n    kubeconfig: {}\n", path.display()));
    }
    std::fs::write(
        &sb.config_file,
        format!("{head}clusters:\n{entries}listen:{tail}"),
    )
    .unwrap();
    let envs: Vec<String> = clusters.keys().cloned().collect();

    let mut replicas: Vec<Replica> = ["replica-a", "replica-b", "replica-c"]
        .iter()
        .map(|n| replica(&sb, n))
        .collect();
    sb.connect(format!("127.0.0.1:{}", replicas[0].port).parse().unwrap());
    let logs = |rs: &[Replica]| {
        rs.iter()
            .map(|r| format!("--- {} ---\n{}", r.name, r.baton.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // The six clusters spread over the three replicas: two each.
    let spread = until(
        "each replica holds two of the six clusters",
        Duration::from_secs(180),
        || {
            let h = holders(&sb);
            let mut per: BTreeMap<&str, usize> = BTreeMap::new();
            for holder in h.values() {
                *per.entry(holder.as_str()).or_default() += 1;
            }
            (h.len() == 6 && per.len() == 3 && per.values().all(|n| *n == 2)).then_some(h)
        },
        || {
            let raw: Vec<String> = sb
                .cluster
                .list("coordination.k8s.io/v1", "Lease", None)
                .iter()
                .map(|l| {
                    format!(
                        "{} {} {}",
                        l["metadata"]["name"], l["spec"]["holderIdentity"], l["spec"]["renewTime"]
                    )
                })
                .collect();
            format!("{raw:#?}\n{}", logs(&replicas))
        },
    )
    .await;
    println!("clusters held: {spread:?}");

    let initial = sb.initial["web"].clone();
    until(
        "dev runs web 1.0.0 healthy, per the persisted state",
        Duration::from_secs(180),
        || healthy_since(&sb, "dev", &initial),
        || logs(&replicas),
    )
    .await;

    // A follower's status page shows every environment, not just the clusters it holds: what
    // runs there (the persisted state) and what the branch pins.
    let followers: Vec<&Replica> = replicas
        .iter()
        .filter(|r| {
            common::http_get(r.port, "/metrics")
                .is_some_and(|(_, m)| m.lines().any(|l| l.trim() == "baton_leader 0"))
        })
        .collect();
    assert_eq!(followers.len(), 2, "{}", logs(&replicas));
    for f in followers {
        until(
            &format!(
                "{}'s status page shows web 1.0.0 running and pinned, and a healthy last reconcile, in all six environments",
                f.name
            ),
            Duration::from_secs(60),
            || {
                let (_, body) = common::http_get(f.port, "/api/v1/state")?;
                let state: serde_json::Value = serde_json::from_str(&body).ok()?;
                let web = state["apps"]
                    .as_array()?
                    .iter()
                    .find(|a| a["name"] == "web")?;
                let cells = web["cells"].as_array()?;
                let all = envs.iter().all(|env| {
                    cells.iter().any(|c| {
                        c["env"] == env.as_str()
                            && c["running"] == initial.as_str()
                            && c["pinned"]["digest"] == initial.as_str()
                    })
                });
                // And each environment's last reconcile, wherever it ran.
                let reconciled = state["environments"].as_array()?.iter().all(|e| {
                    e["lastReconcile"]["health"] == "healthy"
                        && e["lastReconcile"]["commit"].is_string()
                });
                (all && reconciled).then_some(())
            },
            || {
                let page = common::http_get(f.port, "/api/v1/state").map(|(_, b)| b);
                format!("{page:?}\n{}", logs(&replicas))
            },
        )
        .await;
    }

    // A release, promoted while replicas die: dev first, then qa, perf and uat.
    let digest = sb.push("web", "1.1.0");

    for (round, kill) in [(1u32, None), (2, Some(0usize)), (3, Some(0))] {
        if let Some(i) = kill {
            let dead = replicas.remove(i);
            let before = dead.baton.kill9();
            sb.connect(format!("127.0.0.1:{}", replicas[0].port).parse().unwrap());
            let alive: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
            until(
                &format!("{}'s clusters move to {alive:?}", dead.name),
                Duration::from_secs(60),
                || {
                    let h = holders(&sb);
                    (h.len() == 6 && h.values().all(|v| alive.contains(v))).then_some(())
                },
                || {
                    format!(
                        "{:?}\n--- {} (killed) ---\n{before}\n{}",
                        holders(&sb),
                        dead.name,
                        logs(&replicas)
                    )
                },
            )
            .await;
        }
        annotate(&sb, &envs, round);
        let pushed = std::time::Instant::now();
        for (env, cluster) in &clusters {
            // Sooner than a resync (30 s): the replica holding the cluster saw the branch move.
            until(
                &format!(
                    "round {round} applied to {env} with {} replica(s)",
                    replicas.len()
                ),
                RESYNC - Duration::from_secs(5),
                || (round_of(cluster, env).as_deref() == Some(&round.to_string())).then_some(()),
                || format!("{:?}\n{}", holders(&sb), logs(&replicas)),
            )
            .await;
        }
        println!(
            "round {round}: every cluster reconciled {:?} after the push, {} replica(s) alive",
            pushed.elapsed(),
            replicas.len()
        );
    }

    // The release reached dev and the three environments after it, each through one PR.
    for env in ["dev", "qa", "perf", "uat"] {
        until(
            &format!("{env} runs web 1.1.0 healthy"),
            Duration::from_secs(180),
            || healthy_since(&sb, env, &digest),
            || format!("{}\n{}", pulls(&sb), logs(&replicas)),
        )
        .await;
        let prs: Vec<_> = sb
            .forge
            .pulls(OWNER, REPO)
            .into_iter()
            .filter(|p| p.head_ref == format!("baton/{env}/web"))
            .collect();
        assert_eq!(prs.len(), 1, "{env}: {}", pulls(&sb));
        assert!(prs[0].merged, "{env}: {}", pulls(&sb));
    }
    no_duplicates(&sb);
}
