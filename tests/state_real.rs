//! What a restart must not lose, on a real control plane: `baton run` is killed with SIGKILL
//! in the middle of dev's soak, between staging's merge and its apply, and in the middle of
//! staging's verification Job, and started again each time. The persisted state
//! (`baton-state-<env>` ConfigMaps, docs/service.md) must keep the release on time: staging's
//! PR opens within one plan interval of when dev's soak ends, prod's within one plan interval
//! of when staging's soak (counted from its passed verification) ends; the verification Job
//! runs once; no PR or comment is duplicated. Then `baton plan`, a separate process, gives the
//! prod PR the same soak verdict as the bot's own status comment.
//!
//! GitHub and the registry are the `sim` stand-ins of a sandbox; Kubernetes is real.

mod common;
mod state_support;

use std::process::Command;
use std::time::Duration;

use baton::sandbox::{OWNER, REPO, Sandbox, SandboxOptions};
use chrono::Utc;
use serde_json::Value;
use state_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_stays_on_time_through_kill_9_mid_soak_mid_merge_and_mid_verification() {
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
    let port = common::free_port();
    sb.connect(format!("127.0.0.1:{port}").parse().unwrap());
    let mut baton = Baton::start(&sb, port, 1);
    let initial = sb.initial["web"].clone();
    until(
        "dev runs web 1.0.0 healthy, per the persisted state",
        Duration::from_secs(180),
        || healthy_since(&sb, "dev", &initial),
        || baton.log(),
    )
    .await;

    // A release: dev's PR merges, and dev's soak clock starts.
    let digest = sb.push("web", "1.1.0");
    let dev_since = until(
        "dev runs web 1.1.0 healthy",
        Duration::from_secs(120),
        || healthy_since(&sb, "dev", &digest),
        || format!("{}\n{}", pulls(&sb), baton.log()),
    )
    .await;

    // 1. Killed in the middle of dev's soak.
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
    let before = baton.kill9();
    baton = Baton::start(&sb, port, 2);
    let staging_pr = opens_on_time(&sb, "baton/staging/web", dev_since + SOAK, || {
        format!("{before}\n--- after the restart ---\n{}", baton.log())
    })
    .await;

    // 2. Killed between staging's merge and its apply.
    until(
        "staging's PR merged",
        Duration::from_secs(120),
        || {
            sb.forge
                .pull(OWNER, REPO, staging_pr.number)
                .filter(|p| p.merged)
        },
        || format!("{}\n{}", pulls(&sb), baton.log()),
    )
    .await;
    baton.kill9();
    baton = Baton::start(&sb, port, 3);

    // 3. Killed while staging's verification Job runs (or just after it was created).
    until(
        "staging's verification Job",
        Duration::from_secs(120),
        || (!smoke_jobs(&sb).is_empty()).then_some(()),
        || baton.log(),
    )
    .await;
    let before = baton.kill9();
    baton = Baton::start(&sb, port, 4);

    // Prod's soak counts from the passed verification of what staging runs healthy.
    let staging_due = until(
        "staging's verification passed, per the persisted state",
        Duration::from_secs(120),
        || {
            let s = state(&sb, "staging")?;
            let v = &s["apps"]["web"]["verification"];
            let passed = v["digest"] == digest.as_str() && v["passed"] == true;
            let since = healthy_since(&sb, "staging", &digest)?;
            passed.then(|| since.max(time(&v["passedAt"]).unwrap_or(since)))
        },
        || format!("{before}\n--- after the restart ---\n{}", baton.log()),
    )
    .await;
    let prod_pr = opens_on_time(&sb, "baton/prod/web", staging_due + SOAK, || baton.log()).await;

    // No verification ran twice: one Job for web 1.1.0, attempt 1.
    verified_once(&sb, &digest);

    // The bot's status comment on the prod PR shows soak passed; `baton plan`, another
    // process, says the same from the persisted state.
    let row = until(
        "the prod PR's gate table",
        Duration::from_secs(30),
        || {
            sb.forge
                .comments(OWNER, REPO, prod_pr.number)
                .into_iter()
                .find(|c| c.body.contains("<!-- baton:status -->"))
                .and_then(|c| {
                    c.body
                        .lines()
                        .find(|l| l.starts_with("| soak |"))
                        .map(String::from)
                })
        },
        || baton.log(),
    )
    .await;
    assert!(row.contains("passed"), "{row}");
    let out = common::output_within(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["plan", "-o", "json", "--config"])
            .arg(&sb.config_file)
            .env_remove("BATON_CONFIG"),
        common::COMMAND_LIMIT,
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let actions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let soak = actions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["env"] == "prod" && a["app"] == "web")
        .flat_map(|a| {
            a["evaluation"]["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|r| r["gate"] == "soak")
        .unwrap_or_else(|| panic!("no soak gate for prod/web in `baton plan`: {actions:#}"));
    assert_eq!(soak["verdict"], "passed", "{soak}");
    let reason = soak["reason"].as_str().unwrap();
    assert!(
        row.contains(reason),
        "`baton plan` says {reason:?}; the bot's status comment says {row:?}"
    );

    nothing_duplicated(&sb);
}
