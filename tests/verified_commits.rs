//! Verified commits. The config branch requires signed commits (`required_signatures`). As a
//! GitHub App, baton makes its promotion commits through GitHub's Git data API (blobs, tree,
//! commit, ref), which GitHub signs: the stand-in shows them `verification.verified: true`
//! and merges them. With a token, the same promotion's git2 commit is unsigned and GitHub
//! refuses the merge, unless `repo.signingKey` names an SSH key: then the commit carries an
//! SSHSIG that real `git verify-commit` accepts for that key (and refuses for another), and the
//! merge goes through. The trailers and `baton history` are the same every way.

use std::path::{Path, PathBuf};
use std::process::Command;

use baton::config::RuntimeConfig;
use baton::gitrepo::history::{self, Filter};
use baton::gitrepo::sign::CommitSigner;
use baton::gitrepo::trailers::Promotion;
use baton_test_support::promote::{OWNER, REPO, World};
use sim::forge::Protection;

const BLOBS: &str = "POST /repos/{owner}/{repo}/git/blobs";
const COMMITS: &str = "POST /repos/{owner}/{repo}/git/commits";
const PUSH: &str = "POST /{owner}/{repo}/git-receive-pack";

fn signed_commits_required(w: &World) {
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                required_signatures: true,
                ..Protection::default()
            },
        )
        .unwrap();
}

/// `GET /repos/{owner}/{repo}/git/commits/{sha}` as a client sees it.
async fn git_commit(w: &World, sha: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!(
            "{}/repos/{OWNER}/{REPO}/git/commits/{sha}",
            w.forge.url()
        ))
        .bearer_auth(w.forge.bot_token())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn dev_history(w: &World) -> Vec<history::Entry> {
    let bare = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
    let tip = bare.refname_to_id("refs/heads/main").unwrap();
    history::read(
        &bare,
        tip,
        &Filter {
            app: Some("web".into()),
            environment: Some("dev".into()),
            ..Filter::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_an_app_promotion_commits_are_made_by_github_verified_and_merge_under_required_signatures()
 {
    let mut w = World::new().await;
    w.app_auth = true;
    signed_commits_required(&w);
    let v = w.release("web", "1.5.0");
    let pushes_before = w.forge.calls().get(PUSH).copied().unwrap_or(0);
    w.pass().await;
    let pr = w.pr_for("dev", "web");
    let calls = w.forge.calls();
    assert_eq!(calls.get(BLOBS), Some(&1), "one file changes: {calls:?}");
    assert_eq!(calls.get(COMMITS), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get(PUSH).copied().unwrap_or(0),
        pushes_before,
        "nothing pushed over Git"
    );
    let commit = git_commit(&w, &pr.head_sha).await;
    assert_eq!(commit["verification"]["verified"], true, "{commit}");
    assert_eq!(commit["verification"]["reason"], "valid");
    assert_eq!(commit["parents"].as_array().unwrap().len(), 1);
    // The promotion commit carries the trailers known before the PR exists.
    let on_branch = Promotion::parse(commit["message"].as_str().unwrap()).unwrap();
    assert_eq!((on_branch.app.as_str(), &on_branch.to), ("web", &v));

    w.pass().await;
    let merged = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(merged.merged, "GitHub accepts the verified commit");
    let entries = dev_history(&w);
    assert_eq!(entries.len(), 1, "{}", history::table(&entries));
    assert_eq!(entries[0].promotion.to, v);
    assert_eq!(entries[0].promotion.pull_request, Some(pr.number));

    // An idle pass makes no commit again.
    w.pass().await;
    assert_eq!(w.forge.calls().get(COMMITS), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_unsigned_git2_commit_is_refused_where_signatures_are_required() {
    let mut w = World::new().await;
    signed_commits_required(&w);
    w.release("web", "1.5.0");
    w.pass().await;
    let pr = w.pr_for("dev", "web");
    assert_eq!(w.forge.calls().get(COMMITS), None, "git2 made it");
    let commit = git_commit(&w, &pr.head_sha).await;
    assert_eq!(commit["verification"]["verified"], false, "{commit}");
    assert_eq!(commit["verification"]["reason"], "unsigned");
    w.pass().await;
    assert!(!w.forge.pull(OWNER, REPO, pr.number).unwrap().merged);
    let status = w.status_comment(pr.number);
    assert!(
        status.contains("Commits must have verified signatures"),
        "{status}"
    );
}

/// A new ed25519 key without a passphrase, made by `ssh-keygen` in `dir`: (private key file,
/// public key line).
fn ssh_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&file)
        .output()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    (file, public.trim().to_string())
}

/// Real `git verify-commit` of `sha` in the stand-in's repository, trusting only `public` for
/// the bot's committer email.
fn git_verify_commit(w: &World, sha: &str, public: &str) -> std::process::Output {
    let allowed = w
        .dir
        .path()
        .join(format!("allowed-signers-{}", &public[public.len() - 8..]));
    std::fs::write(
        &allowed,
        format!("baton[bot]@users.noreply.github.com {public}\n"),
    )
    .unwrap();
    Command::new("git")
        .arg("-C")
        .arg(w.forge.repo_path(OWNER, REPO))
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "--raw", sha])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_and_a_signing_key_the_commit_verifies_with_git_and_merges_under_required_signatures()
 {
    let mut w = World::new().await;
    signed_commits_required(&w);
    let (key, public) = ssh_keygen(w.dir.path(), "baton-signing");
    let (_, other) = ssh_keygen(w.dir.path(), "someone-else");
    // Configured as an operator would: baton.yaml names the key file.
    let cfg = RuntimeConfig::parse(
        "baton.yaml",
        &format!(
            "repo:\n  url: {}\n  signingKey: {{ file: {} }}\n",
            w.forge.git_url(OWNER, REPO),
            key.display()
        ),
        [],
    )
    .unwrap();
    let signer = CommitSigner::from_config(&cfg).unwrap().expect("a signer");
    assert_eq!(
        signer.public_key().split(' ').nth(1),
        public.split(' ').nth(1)
    );
    w.signer = Some(signer);

    let v = w.release("web", "1.5.0");
    w.pass().await;
    let pr = w.pr_for("dev", "web");
    assert_eq!(w.forge.calls().get(COMMITS), None, "git2 made it");

    let ok = git_verify_commit(&w, &pr.head_sha, &public);
    assert!(
        ok.status.success(),
        "git verify-commit accepts the bot's key: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stderr).contains("Good \"git\" signature"),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = git_verify_commit(&w, &pr.head_sha, &other);
    assert!(
        !wrong.status.success(),
        "another key does not verify it: {}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    // The stand-in, like GitHub, sees a signature (it does not know the key).
    let commit = git_commit(&w, &pr.head_sha).await;
    assert_eq!(commit["verification"]["reason"], "unknown_key", "{commit}");
    let on_branch = Promotion::parse(commit["message"].as_str().unwrap()).unwrap();
    assert_eq!((on_branch.app.as_str(), &on_branch.to), ("web", &v));

    w.pass().await;
    let merged = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(
        merged.merged,
        "the signed commit passes required_signatures"
    );
    let entries = dev_history(&w);
    assert_eq!(entries.len(), 1, "{}", history::table(&entries));
    assert_eq!(entries[0].promotion.to, v);
    assert_eq!(entries[0].promotion.tag.as_deref(), Some("1.5.0"));
    assert_eq!(entries[0].promotion.pull_request, Some(pr.number));
    assert_eq!(
        entries[0].promotion.promoted_by.as_deref(),
        Some(w.forge.bot_login().as_str())
    );
}

/// `baton run` checks the signing key at start: an encrypted one (or one that is not a key)
/// stops it with a configuration error naming `repo.signingKey`, never the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_that_cannot_sign_stops_the_service_at_start_naming_the_field() {
    use baton::sandbox::{Sandbox, SandboxOptions};
    use baton::service::{RunOptions, Service};
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("encrypted");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&file)
        .output()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(out.status.success(), "{out:?}");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
    for (key, says) in [
        (&file, "is encrypted"),
        (&garbage, "not an OpenSSH private key"),
    ] {
        let mut cfg = sb.config.clone();
        cfg.workdir = dir.path().join("work");
        cfg.repo.signing_key = Some(baton::config::SecretRef::from_file(key));
        let e = match Service::start(cfg, RunOptions::default()).await {
            Ok(_) => panic!("{} was accepted", key.display()),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("repo.signingKey") && e.contains(says), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
