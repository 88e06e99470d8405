//! A failover in the middle of a soak, on a real control plane: two `baton run` replicas elect
//! a leader on a real Lease; the leader is killed with SIGKILL a third into dev's soak, and the
//! follower, which has never seen the release, takes over. It reads the soak clocks the leader
//! persisted, so staging's PR opens within one plan interval of when dev's soak ends (not a
//! whole soak later), prod's on time after staging's verification, which runs once, and
//! nothing is duplicated.
//!
//! GitHub and the registry are the `sim` stand-ins of a sandbox; Kubernetes is real.

mod common;
mod state_support;

use std::time::Duration;

use baton::sandbox::{Sandbox, SandboxOptions};
use chrono::Utc;
use state_support::*;

fn replica(sb: &Sandbox, name: &str) -> (Baton, u16) {
    let port = common::free_port();
    let env = [
        ("BATON_LEADER_ELECTION", "true".to_string()),
        ("BATON_LEASE_DURATION", "3s".to_string()),
        ("POD_NAME", name.to_string()),
        (
            "BATON_WORKDIR",
            sb.dir.join(format!("work-{name}")).display().to_string(),
        ),
    ];
    (Baton::start_with(sb, port, name, &env), port)
}

fn ready(port: u16) -> bool {
    common::http_get(port, "/readyz").is_some_and(|(code, _)| code == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_takes_over_mid_soak_opens_the_next_pr_on_time() {
    baton::tls::install_crypto_provider();
    let assets =
        controlplane::assets_dir(&common::project_root()).unwrap_or_else(|e| panic!("{e}"));
    let sb = Sandbox::start(&SandboxOptions {
        kube_assets: Some(assets),
        soak: SOAK,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let (leader, leader_port) = replica(&sb, "replica-a");
    sb.connect(format!("127.0.0.1:{leader_port}").parse().unwrap());
    until(
        "replica-a leads and is ready",
        Duration::from_secs(120),
        || ready(leader_port).then_some(()),
        || leader.log(),
    )
    .await;
    let (follower, follower_port) = replica(&sb, "replica-b");
    let initial = sb.initial["web"].clone();
    until(
        "dev runs web 1.0.0 healthy, per the persisted state",
        Duration::from_secs(180),
        || healthy_since(&sb, "dev", &initial),
        || leader.log(),
    )
    .await;
    until(
        "replica-b following and Ready (it serves the status page and passes webhooks on)",
        Duration::from_secs(60),
        || ready(follower_port).then_some(()),
        || follower.log(),
    )
    .await;

    let digest = sb.push("web", "1.1.0");
    let dev_since = until(
        "dev runs web 1.1.0 healthy",
        Duration::from_secs(120),
        || healthy_since(&sb, "dev", &digest),
        || format!("{}\n{}", pulls(&sb), leader.log()),
    )
    .await;
    until(
        "a third of dev's soak",
        SOAK,
        || (Utc::now() >= dev_since + SOAK / 3).then_some(()),
        String::new,
    )
    .await;
    assert!(
        open_pr(&sb, "baton/staging/web").is_none(),
        "{}",
        pulls(&sb)
    );
    let before = leader.kill9();
    // Webhooks are hints; the follower's plan interval does the work.
    sb.connect(format!("127.0.0.1:{follower_port}").parse().unwrap());

    opens_on_time(&sb, "baton/staging/web", dev_since + SOAK, || {
        format!("{before}\n--- the follower ---\n{}", follower.log())
    })
    .await;
    let staging_due = until(
        "staging's verification passed, per the persisted state",
        Duration::from_secs(180),
        || {
            let s = state(&sb, "staging")?;
            let v = &s["apps"]["web"]["verification"];
            let passed = v["digest"] == digest.as_str() && v["passed"] == true;
            let since = healthy_since(&sb, "staging", &digest)?;
            passed.then(|| since.max(time(&v["passedAt"]).unwrap_or(since)))
        },
        || follower.log(),
    )
    .await;
    opens_on_time(&sb, "baton/prod/web", staging_due + SOAK, || follower.log()).await;
    verified_once(&sb, &digest);
    nothing_duplicated(&sb);
}
