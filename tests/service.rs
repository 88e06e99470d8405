//! The service (`baton run`'s loops) against the stand-ins: what happens around a release that
//! the story in `tests/e2e.rs` does not show. A failing acceptance test in staging blocks prod,
//! is reported on the PR with its log tail, rolls staging back (`onFailure: rollback`), and
//! `/retry` runs it again; two `baton run` replicas with leader election hand over when
//! the leader dies; and `baton run` warns once at start when the config branch's rules and
//! CODEOWNERS do not make the gates bind people's PRs.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::sandbox::{OWNER, REPO, Sandbox, SandboxOptions};
use baton::service::RunOptions;
use baton_test_support::net::{http_get, wait_for};
use sim::forge::PullView;

/// Poll `probe` (every 50 ms) until it yields, at most `timeout`; `what` names the wait.
async fn wait<T>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> Option<T>,
    seen: impl Fn() -> String,
) -> T {
    wait_for(what, timeout, Duration::from_millis(50), probe, seen).await
}

/// The first merged PR of the config repo for which `pred` holds.
fn merged_pull(sb: &Sandbox, pred: impl Fn(&PullView) -> bool) -> Option<PullView> {
    sb.forge
        .pulls(OWNER, REPO)
        .into_iter()
        .find(|p| p.merged && pred(p))
}

fn labelled(p: &PullView, label: &str) -> bool {
    p.labels.iter().any(|l| l == label)
}

fn pulls(sb: &Sandbox) -> String {
    sb.forge
        .pulls(OWNER, REPO)
        .iter()
        .map(|p| {
            format!(
                "#{} {} [{}] merged={}",
                p.number,
                p.title,
                p.labels.join(","),
                p.merged
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_test_blocks_prod_reports_its_log_tail_rolls_staging_back_and_retry_runs_it_again()
 {
    baton::tls::install_crypto_provider();
    let sb = common::failing_smoke_sandbox().await;
    let service = sb.start_baton(RunOptions::sandbox()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.run(async {
        let _ = stop_rx.await;
    }));

    let good = sb.push("web", "1.1.0");
    let short = &good["sha256:".len().."sha256:".len() + 12];
    let staging = wait(
        "the staging promotion merged",
        Duration::from_secs(60),
        || {
            merged_pull(&sb, |p| {
                labelled(p, "env:staging")
                    && p.title.contains(short)
                    && !labelled(p, "baton:rollback")
            })
        },
        || pulls(&sb),
    )
    .await;

    // The failure and its log tail are on the staging PR, once.
    let tail = wait(
        "the verification failure comment on the staging PR",
        Duration::from_secs(60),
        || {
            sb.forge
                .comments(OWNER, REPO, staging.number)
                .into_iter()
                .find(|c| c.body.contains("baton:verify staging web"))
        },
        || format!("{:?}", sb.forge.comments(OWNER, REPO, staging.number)),
    )
    .await;
    assert!(
        tail.body.contains("503 Service Unavailable"),
        "the comment carries the Job's log tail: {}",
        tail.body
    );

    // staging is rolled back to 1.0.0 and prod never gets a PR for 1.1.0.
    let rollback = wait(
        "a staging rollback PR, merged",
        Duration::from_secs(60),
        || {
            merged_pull(&sb, |p| {
                labelled(p, "env:staging") && labelled(p, "baton:rollback")
            })
        },
        || pulls(&sb),
    )
    .await;
    assert!(rollback.number > staging.number);
    assert!(
        !sb.forge
            .pulls(OWNER, REPO)
            .iter()
            .any(|p| labelled(p, "env:prod")),
        "prod got a PR although staging's verification failed: {}",
        pulls(&sb)
    );

    // `/retry` on the staging PR by a release manager runs attempt 2 (a new Job).
    let jobs = |attempt: &str| {
        sb.cluster
            .list("batch/v1", "Job", Some("shop-staging"))
            .into_iter()
            .filter(|j| {
                j.pointer("/metadata/labels/baton.dev~1verify-attempt")
                    .and_then(|v| v.as_str())
                    == Some(attempt)
            })
            .count()
    };
    assert_eq!(jobs("2"), 0);
    // Retry needs staging to run the verified digest again; it runs 1.0.0 after the
    // rollback, whose verification is attempt 1 of that digest. Retry it.
    sb.forge
        .comment_as("alice", OWNER, REPO, rollback.number, "/retry")
        .unwrap();
    wait(
        "a second verification attempt in staging",
        Duration::from_secs(60),
        || (jobs("2") > 0).then_some(()),
        || {
            format!(
                "{} Jobs; comments on #{}: {:?}",
                sb.cluster
                    .list("batch/v1", "Job", Some("shop-staging"))
                    .len(),
                rollback.number,
                sb.forge.comments(OWNER, REPO, rollback.number)
            )
        },
    )
    .await;
    let _ = stop_tx.send(());
    running.await.unwrap();
}

/// A `baton run` child process, killed when dropped.
struct Replica {
    child: Child,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(sb: &Sandbox, identity: &str) -> Replica {
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            "--config",
            sb.config_file.to_str().unwrap(),
            "--leader-election",
            "--lease-duration",
            "3s",
            "--identity",
            identity,
        ])
        .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
        .env("BATON_WORKDIR", sb.dir.join(format!("work-{identity}")))
        .env("RUST_LOG", "warn")
        .env_remove("POD_NAMESPACE")
        .env_remove("BATON_LEASE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Replica { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_run_warns_once_at_start_what_to_set_so_the_gates_bind_peoples_prs() {
    baton::tls::install_crypto_provider();
    // The sandbox's config branch has no rules and no CODEOWNERS.
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let log = sb.dir.join("run.log");
    let port = common::free_port();
    let _run = Replica {
        child: Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["run", "--config", sb.config_file.to_str().unwrap()])
            .env("BATON_LISTEN", format!("127.0.0.1:{port}"))
            .env("BATON_WORKDIR", sb.dir.join("work-guard"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        port,
    };
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let pulls = || {
        sb.forge
            .calls()
            .get("GET /repos/{owner}/{repo}/pulls")
            .copied()
            .unwrap_or(0)
    };
    let missing = [
        "set this: require the status check baton/validate on main",
        "set this: add a CODEOWNERS file (.github/CODEOWNERS) with a line `/environments/ @<org>/<approvers>`",
        "set this: add a CODEOWNERS file (.github/CODEOWNERS) with a line `/policies/ @<org>/<approvers>`",
        "set this: require a review from Code Owners on main",
    ];
    let listed = wait(
        "the start-up warning",
        Duration::from_secs(60),
        || missing.iter().all(|m| read().contains(m)).then(pulls),
        read,
    )
    .await;
    // Several passes later (each lists the open PRs), each line is still there once.
    wait(
        "three more passes",
        Duration::from_secs(60),
        || (pulls() >= listed + 3).then_some(()),
        || format!("{} PR lists", pulls()),
    )
    .await;
    let text = read();
    for m in missing {
        assert_eq!(text.matches(m).count(), 1, "{m:?} in:\n{text}");
    }
}

/// `/readyz` status code, or `None` when nothing answers.
fn readyz(port: u16) -> Option<u16> {
    common::http_get(port, "/readyz").map(|(code, _)| code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_both_are_ready_the_follower_passes_webhooks_on_and_takes_over_when_the_leader_dies()
 {
    baton::tls::install_crypto_provider();
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let a = replica(&sb, "replica-a");
    let b = replica(&sb, "replica-b");
    let holder = || {
        sb.cluster
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                "baton-system",
                "baton-leader",
            )
            .and_then(|l| {
                l.pointer("/spec/holderIdentity")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
    };
    let ready = |r: &Replica| readyz(r.port) == Some(200);
    let leader = wait(
        "one replica leading and ready",
        Duration::from_secs(60),
        || holder().filter(|_| ready(&a) || ready(&b)),
        || {
            format!(
                "lease {:?}, readyz a {:?} b {:?}",
                holder(),
                readyz(a.port),
                readyz(b.port)
            )
        },
    )
    .await;
    let (mut leading, following) = if leader == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    assert!(ready(&leading), "the lease holder {leader} is not ready");
    // A follower is Ready: it serves the status page and passes webhooks on (once it has
    // started; it may still be cloning the config repo).
    wait(
        "the follower ready",
        Duration::from_secs(30),
        || (readyz(following.port) == Some(200)).then_some(()),
        || format!("follower readyz {:?}", readyz(following.port)),
    )
    .await;
    // A webhook that reaches the follower nudges the lease holder through the Lease.
    let nudge = || {
        sb.cluster
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                "baton-system",
                "baton-leader",
            )
            .and_then(|l| {
                l.pointer("/metadata/annotations/baton.dev~1nudge")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
    };
    let before = nudge();
    sb.connect(format!("127.0.0.1:{}", following.port).parse().unwrap());
    sb.push("web", "1.1.0");
    wait(
        "the follower passing a webhook on",
        Duration::from_secs(30),
        || nudge().filter(|n| Some(n) != before.as_ref()),
        || format!("nudge annotation {:?}", nudge()),
    )
    .await;

    // The leader dies without releasing its lease (SIGKILL).
    let _ = leading.child.kill();
    let _ = leading.child.wait();
    let died = Instant::now();
    wait(
        "the follower taking over",
        Duration::from_secs(30),
        || (holder().as_deref() != Some(leader.as_str()) && ready(&following)).then_some(()),
        || format!("lease {:?}, readyz {:?}", holder(), readyz(following.port)),
    )
    .await;
    let took = died.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "takeover took {took:?} with a 3 s lease"
    );
}

/// What a replica's status page (`/api/v1/state`) shows: per environment its last reconcile,
/// and the PR number and gates of `app`'s pending promotion into `env`.
fn page(port: u16) -> Option<serde_json::Value> {
    let (status, body) = http_get(port, "/api/v1/state")?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn pending(page: &serde_json::Value, app: &str, env: &str) -> Option<serde_json::Value> {
    let cell = page["apps"].as_array()?.iter().find(|a| a["name"] == app)?["cells"]
        .as_array()?
        .iter()
        .find(|c| c["env"] == env)?
        .clone();
    let p = &cell["pending"];
    (!p.is_null()).then(|| serde_json::json!({"number": p["number"], "gates": p["gates"]}))
}

fn reconciled_everywhere(page: &serde_json::Value) -> bool {
    page["environments"].as_array().is_some_and(|envs| {
        !envs.is_empty()
            && envs
                .iter()
                .all(|e| e["lastReconcile"]["commit"].is_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replicas_status_page_shows_the_leaders_open_prs_and_every_environments_last_reconcile()
 {
    baton::tls::install_crypto_provider();
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    // Four replicas for the sandbox's three clusters: one of them reconciles none.
    let replicas: Vec<Replica> = ["replica-a", "replica-b", "replica-c", "replica-d"]
        .iter()
        .map(|n| replica(&sb, n))
        .collect();
    sb.connect(format!("127.0.0.1:{}", replicas[0].port).parse().unwrap());
    sb.push("web", "1.1.0");
    // Through dev and staging; prod's PR then waits for its approvals.
    let prod = wait(
        "prod's PR for web 1.1.0 open",
        Duration::from_secs(180),
        || {
            sb.forge
                .pulls(OWNER, REPO)
                .into_iter()
                .find(|p| p.head_ref == "baton/prod/web" && p.open)
        },
        || pulls(&sb),
    )
    .await;
    // Only the engine's leader reads the PRs and fetches for the engine, and each cluster is
    // reconciled by one replica; every page shows all of it, the same: the branch tip, what it
    // pins, prod's PR with its gates, and every environment's last reconcile.
    let tip = branch_tip(&sb);
    let shown = wait(
        "every status page showing the tip, staging's new pin, prod's PR with the same gates, and every environment's last reconcile",
        Duration::from_secs(60),
        || {
            let pages: Vec<serde_json::Value> =
                replicas.iter().map(|r| page(r.port)).collect::<Option<_>>()?;
            let prs: Vec<serde_json::Value> = pages
                .iter()
                .map(|p| pending(p, "web", "prod"))
                .collect::<Option<_>>()?;
            let first = prs[0].clone();
            let agree = prs.iter().all(|w| *w == first);
            let whole = pages.iter().all(|p| {
                p["repo"]["commit"] == tip.as_str()
                    && p["apps"][0]["cells"][1]["env"] == "staging"
                    && p["apps"][0]["cells"][1]["pinned"]["tag"] == "1.1.0"
                    && reconciled_everywhere(p)
            });
            (agree
                && whole
                && first["number"] == prod.number
                && first["gates"].as_array().is_some_and(|g| !g.is_empty()))
            .then_some(first)
        },
        || {
            replicas
                .iter()
                .map(|r| format!("{}: {:?}", r.port, page(r.port)))
                .collect::<Vec<_>>()
                .join("\n")
        },
    )
    .await;
    assert!(
        shown["gates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["gate"] == "approvals" && g["verdict"] != "passed"),
        "prod waits for its approvals: {shown}"
    );
}

/// The config branch's tip commit, from the stand-in's bare repository.
fn branch_tip(sb: &Sandbox) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(sb.forge.repo_path(OWNER, REPO))
        .args(["rev-parse", "main"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The config branch's `path` at its tip, from the stand-in's bare repository.
fn file_at_tip(sb: &Sandbox, path: &str) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(sb.forge.repo_path(OWNER, REPO))
        .args(["show", &format!("main:{path}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_drops_most_of_dev_holds_its_deletions_until_an_approver_comments_prune() {
    baton::tls::install_crypto_provider();
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let service = sb.start_baton(RunOptions::sandbox()).await.unwrap();
    let port = service.local_addr().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.run(async {
        let _ = stop_rx.await;
    }));
    let web = || sb.cluster.get("apps/v1", "Deployment", "shop-dev", "web");

    let digest = sb.push("web", "1.1.0");
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    let dev = wait(
        "the dev promotion merged",
        Duration::from_secs(60),
        || merged_pull(&sb, |p| labelled(p, "env:dev") && p.title.contains(short)),
        || pulls(&sb),
    )
    .await;
    wait(
        "dev runs the new web",
        Duration::from_secs(60),
        || web().filter(|d| d.to_string().contains(&digest)),
        || format!("{:?}", web()),
    )
    .await;

    // Someone drops web from dev's overlay: its Deployment, Service and generated ConfigMap
    // are 3 of the 5 objects baton manages there (the namespace and worker stay), more than
    // the default 30 %.
    let overlay = "environments/dev/kustomization.yaml";
    let text = file_at_tip(&sb, overlay);
    let dropped = text
        .replace("  - ../../apps/web\n", "")
        .replace("replicas:\n  - name: web\n    count: 1\n", "");
    assert_ne!(dropped, text, "the overlay lists web");
    sb.forge
        .commit_files(OWNER, REPO, "main", &[(overlay, &dropped)], "dev: drop web")
        .unwrap();
    let state = || http_get(port, "/api/v1/state").map(|(_, body)| body);
    wait(
        "the status says the deletions are held",
        Duration::from_secs(60),
        || state().filter(|s| s.contains("deletions held: 3 of 5 objects")),
        || state().unwrap_or_default(),
    )
    .await;
    assert!(
        state().unwrap().contains("`/prune dev`"),
        "the status says how to let them go"
    );
    assert!(web().is_some(), "nothing deleted while held");

    // Read access is not enough.
    sb.forge
        .comment_as("carol", OWNER, REPO, dev.number, "/prune dev")
        .unwrap();
    wait(
        "carol's /prune refused",
        Duration::from_secs(60),
        || {
            sb.forge
                .comments(OWNER, REPO, dev.number)
                .into_iter()
                .find(|c| c.body.contains("@carol, `/prune dev` needs"))
        },
        || format!("{:?}", sb.forge.comments(OWNER, REPO, dev.number)),
    )
    .await;
    assert!(web().is_some(), "a refused /prune deletes nothing");

    sb.forge
        .comment_as("alice", OWNER, REPO, dev.number, "/prune dev")
        .unwrap();
    // The prune deletes workloads first, then the rest: wait for both.
    wait(
        "web's Deployment and Service deleted after alice's /prune",
        Duration::from_secs(60),
        || {
            (web().is_none() && sb.cluster.get("v1", "Service", "shop-dev", "web").is_none())
                .then_some(())
        },
        || state().unwrap_or_default(),
    )
    .await;
    assert!(
        sb.cluster
            .get("apps/v1", "Deployment", "shop-dev", "worker")
            .is_some(),
        "what dev still renders stays"
    );
    let answers = sb
        .forge
        .comments(OWNER, REPO, dev.number)
        .into_iter()
        .filter(|c| c.body.contains("`/prune dev` by @alice"))
        .count();
    assert_eq!(answers, 1, "one answer");

    let _ = stop_tx.send(());
    let _ = running.await;
}

/// `kill -<signal> <pid>`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// The fence, on a real control plane: the leader is frozen (SIGSTOP) past its lease's expiry,
/// the follower takes over and promotes a release, then the old leader is resumed (SIGCONT).
/// Whatever it was doing when frozen, it finds its lease gone before its next write: it writes
/// nothing to GitHub, and follows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_and_resumed_after_the_follower_acted_duplicates_nothing() {
    baton::tls::install_crypto_provider();
    let assets =
        controlplane::assets_dir(&common::project_root()).unwrap_or_else(|e| panic!("{e}"));
    let sb = Sandbox::start(&SandboxOptions {
        kube_assets: Some(assets),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let a = replica(&sb, "replica-a");
    let b = replica(&sb, "replica-b");
    let holder = || {
        sb.cluster
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                "baton-system",
                "baton-leader",
            )
            .and_then(|l| {
                l.pointer("/spec/holderIdentity")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
    };
    let leader = wait(
        "one replica leading",
        Duration::from_secs(60),
        holder,
        || format!("lease {:?}", holder()),
    )
    .await;
    let (mut frozen, acting, acting_id) = if leader == "replica-a" {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    // The release arrives while the leader is frozen mid-flight.
    sb.connect(format!("127.0.0.1:{}", frozen.port).parse().unwrap());
    let digest = sb.push("web", "1.1.0");
    signal(&frozen.child, "STOP");
    wait(
        "the follower taking the lease",
        Duration::from_secs(30),
        || (holder().as_deref() == Some(acting_id)).then_some(()),
        || format!("lease {:?}", holder()),
    )
    .await;
    sb.connect(format!("127.0.0.1:{}", acting.port).parse().unwrap());
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    let dev = wait(
        "the new leader merging dev's promotion",
        Duration::from_secs(90),
        || merged_pull(&sb, |p| labelled(p, "env:dev") && p.title.contains(short)),
        || pulls(&sb),
    )
    .await;
    let before_comments = sb.forge.comments(OWNER, REPO, dev.number).len();

    signal(&frozen.child, "CONT");
    // It steps down to following (its metrics say it no longer leads) and stays up: it still
    // serves, and reconciles whichever clusters it holds.
    wait(
        "the resumed leader stepping down to follow",
        Duration::from_secs(30),
        || {
            let (_, metrics) = common::http_get(frozen.port, "/metrics")?;
            metrics
                .lines()
                .any(|l| l.trim() == "baton_leader 0")
                .then_some(())
        },
        || format!("lease {:?}", holder()),
    )
    .await;
    assert!(
        frozen.child.try_wait().unwrap().is_none(),
        "it follows instead of exiting"
    );
    assert_eq!(
        holder().as_deref(),
        Some(acting_id),
        "the lease stays with the replica that acted"
    );
    // No duplicate: one PR per title (environment, app, release), one status comment on dev's.
    let all = sb.forge.pulls(OWNER, REPO);
    let mut titles: Vec<&str> = all.iter().map(|p| p.title.as_str()).collect();
    titles.sort();
    let before = titles.len();
    titles.dedup();
    assert_eq!(before, titles.len(), "a duplicate PR: {}", pulls(&sb));
    assert!(
        all.iter()
            .filter(|p| labelled(p, "env:dev") && p.title.contains(short))
            .count()
            == 1,
        "one dev PR for the release: {}",
        pulls(&sb)
    );
    let comments = sb.forge.comments(OWNER, REPO, dev.number);
    let status_comments = comments
        .iter()
        .filter(|c| c.body.contains("<!-- baton:status -->"))
        .count();
    assert_eq!(
        status_comments, 1,
        "one status comment on the dev PR: {comments:?}"
    );
    assert!(
        comments.len() >= before_comments,
        "nothing removed: {comments:?}"
    );
}

/// Requests that change something, by route: GitHub's (a Git fetch is a POST to
/// git-upload-pack, but reads) and the cluster's (every verb but get, list and watch).
fn writes(sb: &Sandbox) -> std::collections::BTreeMap<String, u64> {
    let cluster = sb.cluster.sim().expect("the stand-in cluster");
    let github = sb
        .forge
        .calls()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("GET ") && !k.ends_with("/git-upload-pack"))
        .map(|(k, n)| (format!("github {k}"), n));
    let kube = cluster
        .counts()
        .0
        .into_iter()
        .filter(|(k, _)| !matches!(k.split(' ').next(), Some("get" | "list" | "watch")))
        .map(|(k, n)| (format!("cluster {k}"), n));
    github.chain(kube).collect()
}

/// A metric's samples whose line starts with `prefix`, summed.
fn metric_sum(port: u16, prefix: &str) -> u64 {
    common::http_get(port, "/metrics")
        .map(|(_, text)| {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .unwrap_or(0)
}

/// Successful reconciles so far, per environment.
fn reconciles(port: u16, envs: &[&str]) -> Vec<u64> {
    envs.iter()
        .map(|env| {
            metric_sum(
                port,
                &format!("baton_reconciles_total{{env=\"{env}\",result=\"ok\"}}"),
            )
        })
        .collect()
}

/// Wait until every environment has been reconciled again and two more promotion passes have
/// run (the dashboard is synced at the end of a pass). Returns the writes made meanwhile.
async fn idle_round(sb: &Sandbox, port: u16, envs: &[&str]) -> Vec<String> {
    let before = writes(sb);
    let (reconciled, passes) = (
        reconciles(port, envs),
        metric_sum(port, "baton_plan_passes_total "),
    );
    wait(
        "a resync of every environment and two promotion passes",
        Duration::from_secs(60),
        || {
            let now = reconciles(port, envs);
            (now.iter().zip(&reconciled).all(|(n, b)| n > b)
                && metric_sum(port, "baton_plan_passes_total ") >= passes + 2)
                .then_some(())
        },
        || format!("reconciles {:?}", reconciles(port, envs)),
    )
    .await;
    writes(sb)
        .into_iter()
        .filter_map(|(k, n)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (n > was).then(|| format!("{k} +{}", n - was))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_settled_the_service_writes_nothing_over_promotion_passes_and_resyncs_of_every_environment()
 {
    baton::tls::install_crypto_provider();
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let mut cfg = sb.config.clone();
    // A resync every 2 s (the sandbox's is 30 s), so that each round below holds one of every
    // environment: a reconcile of an unchanged environment must not write its inventory, its
    // state ConfigMap, its commit status or the dashboard again.
    cfg.intervals.resync.0 = Duration::from_secs(2);
    let service = baton::service::Service::start(cfg, RunOptions::sandbox())
        .await
        .unwrap();
    sb.connect(service.local_addr());
    let port = service.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(service.run(async {
        let _ = stopped.await;
    }));
    let envs = ["dev", "staging", "prod"];

    // The start writes (the first apply, statuses, state, the dashboard, staging's smoke
    // test); it has settled once a whole round writes nothing. Bounded: a service that keeps
    // writing fails here, naming what it wrote last.
    let mut last = Vec::new();
    let mut settled = false;
    for _ in 0..20 {
        last = idle_round(&sb, port, &envs).await;
        if last.is_empty() {
            settled = true;
            break;
        }
    }
    assert!(settled, "still writing after 20 rounds: {last:?}");
    let dashboard = sb
        .forge
        .calls()
        .get("POST /repos/{owner}/{repo}/issues")
        .copied();
    assert_eq!(dashboard, Some(1), "the dashboard issue was opened once");

    // Settled: three more rounds (each a resync of every environment and two promotion passes)
    // write nothing at all.
    for round in 1..=3 {
        let wrote = idle_round(&sb, port, &envs).await;
        assert!(wrote.is_empty(), "idle round {round} wrote: {wrote:?}");
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), run).await;
}
