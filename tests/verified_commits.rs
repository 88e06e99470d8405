//! Verified commits. The config branch requires signed commits (`required_signatures`). As a
//! GitHub App, baton makes its promotion commits through GitHub's Git data API (blobs, tree,
//! commit, ref), which GitHub signs: the stand-in shows them `verification.verified: true`
//! and merges them. With a token, the same promotion's git2 commit is unsigned and GitHub
//! refuses the merge. The trailers and `baton history` are the same either way.

use baton::gitrepo::history::{self, Filter};
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
