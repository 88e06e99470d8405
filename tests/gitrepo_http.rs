//! The config repo over Git smart HTTP with a token, the way the bot reaches GitHub: the
//! `sim::git` server runs the real `git http-backend` and checks `x-access-token:<token>`.

mod common;

use std::path::Path;

use baton::config::{Pipeline, Secret};
use baton::gitrepo::bump;
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Pushed, Remote};
use baton::image::{Digest, Pinned};
use common::{EXAMPLE_DIRS, copy_dir, git, project_root};
use sim::git::GitServer;

const TOKEN: &str = "ghs_test_token_0123456789";

async fn server_with_example() -> (tempfile::TempDir, GitServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = GitServer::start(dir.path().join("repos"), TOKEN)
        .await
        .unwrap();
    server.init_bare("shop", "config", "main").unwrap();
    let seed = dir.path().join("seed");
    for d in EXAMPLE_DIRS {
        copy_dir(&project_root().join(d), &seed.join(d));
    }
    let url = server.authenticated_repo_url("shop", "config");
    tokio::task::spawn_blocking(move || {
        git(&seed, &["init", "-q", "-b", "main"]);
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-qm", "seed"]);
        git(&seed, &["push", "-q", &url, "main"]);
    })
    .await
    .unwrap();
    (dir, server)
}

fn open(dir: &Path, url: String, auth: Auth) -> ConfigRepo {
    ConfigRepo::open(
        &dir.join("work.git"),
        Remote {
            url,
            branch: "main".into(),
            auth,
        },
        Identity::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_is_fetched_committed_and_pushed_over_https_with_a_token() {
    let (dir, server) = server_with_example().await;
    let url = server.repo_url("shop", "config");
    let root = dir.path().to_path_buf();
    let bare = server.root().join("shop/config.git");
    tokio::task::spawn_blocking(move || {
        let repo = open(&root, url, Auth::Token(Secret::new(TOKEN)));
        let pipeline = Pipeline::load(&project_root()).unwrap().pipeline;
        let pin = Pinned {
            tag: Some("2.0.0".into()),
            digest: Digest::of(b"http"),
        };
        let pushed = repo
            .commit_and_push("main", "promote web to dev: 2.0.0", 3, &mut |files| {
                Ok(vec![bump::plan(files, &pipeline, "dev", "web", &pin)?])
            })
            .unwrap();
        assert!(
            matches!(pushed, Pushed::Committed { attempts: 1, .. }),
            "{pushed:?}"
        );
        let log = git(&bare, &["log", "-1", "--format=%s", "main"]);
        assert_eq!(log.trim(), "promote web to dev: 2.0.0");
        let file = git(&bare, &["show", "main:environments/dev/kustomization.yaml"]);
        assert!(file.contains(Digest::of(b"http").as_str()), "{file}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_without_leaking_it() {
    let (dir, server) = server_with_example().await;
    let url = server.repo_url("shop", "config");
    let root = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let wrong = "ghs_wrong_token_secret_value";
        let repo = open(&root, url.clone(), Auth::Token(Secret::new(wrong)));
        let err = repo.fetch().unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(wrong), "token leaked: {text}");
        assert!(!err.is_transient(), "bad credentials need a person: {err}");
        let anonymous = open(&root.join("anon"), url, Auth::None);
        assert!(anonymous.fetch().is_err());
    })
    .await
    .unwrap();
}
