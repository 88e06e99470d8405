//! `baton plan` through the real binary against the GitHub and registry stand-ins: it scans
//! the registry, reads the config repo and GitHub, and prints what it would do — and does
//! nothing.

mod common;

use common::{example_files, seed_repo};
use sim::forge::Forge;
use sim::registry::Registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_proposes_the_newest_blessed_release_for_dev_and_changes_nothing() {
    let registry = Registry::start().await.unwrap();
    let new = registry.push_image(
        "shop/web",
        "1.5.0",
        b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
        &[b"layer-1.5.0"],
    );
    registry.push_image(
        "shop/web",
        "2.0.0-rc.1",
        b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
        &[b"layer-rc"],
    );
    let forge = Forge::start().await.unwrap();
    // Point the example's images at the local registry.
    let files: Vec<(String, String)> = example_files()
        .into_iter()
        .map(|(p, t)| (p, t.replace("registry.example.com", &registry.host())))
        .collect();
    seed_repo(&forge, "shop", "config", &files);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("baton.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  branch: main\ngithub:\n  apiUrl: {}\n  repository: shop/config\n  token: {{ env: PLAN_TEST_TOKEN }}\n  botLogin: baton[bot]\nworkdir: {}\n",
            forge.git_url("shop", "config"),
            forge.url(),
            dir.path().join("work").display()
        ),
    )
    .unwrap();
    let token = forge.bot_token();
    let out = tokio::task::spawn_blocking(move || {
        common::output_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
                .args([
                    "plan",
                    "--config",
                    config.to_str().unwrap(),
                    "--at",
                    "2026-11-24T10:00:00+01:00",
                    "-o",
                    "json",
                ])
                .env("PLAN_TEST_TOKEN", token),
            common::COMMAND_LIMIT,
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let actions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let actions = actions.as_array().unwrap();
    assert_eq!(actions.len(), 1, "{stdout}");
    assert_eq!(actions[0]["action"], "open");
    assert_eq!(actions[0]["env"], "dev");
    assert_eq!(actions[0]["app"], "web");
    assert_eq!(actions[0]["to"]["tag"], "1.5.0");
    assert_eq!(actions[0]["to"]["digest"], new.as_str());
    // worker needs a cosign signature it does not have: reported, not promoted.
    assert!(
        stderr.contains("worker") || !stdout.contains("worker"),
        "{stderr}"
    );
    // A plan writes nothing.
    assert!(forge.pulls("shop", "config").is_empty());
    assert!(
        forge
            .calls()
            .keys()
            .all(|k| k.starts_with("GET ") || k.ends_with("git-upload-pack")),
        "{:?}",
        forge.calls()
    );
}
