//! The Git smart HTTP stand-in, driven by the real `git` CLI and git2 as a bot would.

mod common;

use std::path::{Path, PathBuf};

use common::{git, git_output, work_repo};
use sim::git::GitServer;

const TOKEN: &str = "ghs_test_token";

/// A Git server storing its repositories under `root`, taking [`TOKEN`].
async fn start(root: PathBuf) -> GitServer {
    GitServer::start(root, TOKEN).await.unwrap()
}

/// A Git server in `tmp/srv` with an empty `shop/config`, and a working repository `tmp/work`
/// whose one commit on `main` holds `files`.
async fn server_and_work(tmp: &Path, files: &[(&str, &str)]) -> (GitServer, PathBuf) {
    let server = start(tmp.join("srv")).await;
    server.init_bare("shop", "config", "main").unwrap();
    let work = tmp.join("work");
    std::fs::create_dir(&work).unwrap();
    work_repo(&work, files).await;
    (server, work)
}

#[tokio::test]
async fn the_git_cli_pushes_and_clones_with_an_access_token() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, work) = server_and_work(
        tmp.path(),
        &[("environments/dev/kustomization.yaml", "resources: []\n")],
    )
    .await;
    let url = server.authenticated_repo_url("shop", "config");
    git(&work, &["push", "-q", &url, "main"]).await;
    let pushed = git(&work, &["rev-parse", "HEAD"]).await;

    let clone = tmp.path().join("clone");
    git(tmp.path(), &["clone", "-q", &url, clone.to_str().unwrap()]).await;
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).await, pushed);
    assert_eq!(
        std::fs::read_to_string(clone.join("environments/dev/kustomization.yaml")).unwrap(),
        "resources: []\n"
    );

    // A second push of a new commit fast-forwards the served branch.
    std::fs::write(clone.join("README"), "hi\n").unwrap();
    git(&clone, &["add", "README"]).await;
    git(&clone, &["commit", "-q", "-m", "readme"]).await;
    git(&clone, &["push", "-q", "origin", "main"]).await;
    let bare =
        git2::Repository::open_bare(sim::git::repo_path(server.root(), "shop", "config")).unwrap();
    let head = bare.refname_to_id("refs/heads/main").unwrap().to_string();
    assert_eq!(head, git(&clone, &["rev-parse", "HEAD"]).await);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_token_gets_a_basic_challenge_like_github() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path().to_path_buf()).await;
    server.init_bare("shop", "config", "main").unwrap();

    let client = reqwest::Client::new();
    let url = format!(
        "{}/info/refs?service=git-upload-pack",
        server.repo_url("shop", "config")
    );
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"GitHub\""
    );
    let wrong = client
        .get(&url)
        .basic_auth("x-access-token", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(&url)
        .basic_auth("someone", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        right.headers()["content-type"],
        "application/x-git-upload-pack-advertisement"
    );

    let bad_url = server
        .repo_url("shop", "config")
        .replace("http://", "http://x-access-token:nope@");
    let out = git_output(tmp.path(), &["ls-remote", &bad_url]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authentication failed"),
        "{out:?}"
    );
}

#[tokio::test]
async fn an_unknown_repository_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(tmp.path().to_path_buf()).await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/info/refs?service=git-upload-pack",
            server.repo_url("shop", "missing")
        ))
        .basic_auth("x-access-token", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn git2_fetches_and_pushes_with_userpass_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, work) = server_and_work(tmp.path(), &[("a.txt", "a\n")]).await;
    let url = server.repo_url("shop", "config");
    let pushed = git(&work, &["rev-parse", "HEAD"]).await;

    let work2 = work.clone();
    let url2 = url.clone();
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open(&work2).unwrap();
        let mut remote = repo.remote_anonymous(&url2).unwrap();
        let mut push_opts = git2::PushOptions::new();
        push_opts.remote_callbacks(callbacks());
        remote
            .push(&["refs/heads/main:refs/heads/main"], Some(&mut push_opts))
            .unwrap();
    })
    .await
    .unwrap();

    let dest = tmp.path().join("fetched");
    let fetched = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::init_bare(&dest).unwrap();
        let mut remote = repo.remote_anonymous(&url).unwrap();
        let mut fetch_opts = git2::FetchOptions::new();
        fetch_opts.remote_callbacks(callbacks());
        remote
            .fetch(
                &["refs/heads/main:refs/heads/main"],
                Some(&mut fetch_opts),
                None,
            )
            .unwrap();
        repo.refname_to_id("refs/heads/main").unwrap().to_string()
    })
    .await
    .unwrap();
    assert_eq!(fetched, pushed);
}

fn callbacks() -> git2::RemoteCallbacks<'static> {
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(|_, _, _| git2::Cred::userpass_plaintext("x-access-token", TOKEN));
    cb.push_update_reference(|name, status| {
        assert!(status.is_none(), "push of {name} rejected: {status:?}");
        Ok(())
    });
    cb
}
