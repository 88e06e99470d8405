//! `GitHubForge` against the GitHub stand-in (`sim::forge`) over real HTTP: every `Forge`
//! method, retries and rate limits, conditional reads, App auth, and the call counts the
//! benchmarks report.

use std::time::{Duration, Instant};

use baton::commands::Permission;
use baton::config::pipeline::MergeMethod;
use baton::config::runtime::{GitHubApp, GitHubConfig};
use baton::config::secret::{Secret, SecretRef};
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::forge::{
    Forge, ForgeError, NewPullRequest, PROMOTION_LABEL, PrState, StatusState, StatusUpdate,
    env_label,
};
use baton::promote::state::{CheckState, ReviewState};
use sim::forge::{Fault, Forge as Sim, Permission as SimPermission, ReviewState as SimReview};

const OWNER: &str = "shop";
const REPO: &str = "config";
const FILE: &str = "environments/dev/kustomization.yaml";
const APP_KEY: &str = include_str!("../sim/tests/fixtures/test-app-key.pem");

/// Small bounds so that faults resolve in milliseconds and waits stay within a few seconds.
fn options() -> GitHubOptions {
    GitHubOptions {
        max_retries: 2,
        backoff_base: Duration::from_millis(10),
        max_rate_limit_retries: 2,
        max_rate_limit_wait: Duration::from_secs(5),
        secondary_default_wait: Duration::from_millis(100),
        timeout: Duration::from_secs(10),
        ..GitHubOptions::default()
    }
}

fn client(sim: &Sim, options: GitHubOptions) -> GitHubForge {
    GitHubForge::new(
        &sim.url(),
        &format!("{OWNER}/{REPO}"),
        GitHubAuth::Token(Secret::new(sim.bot_token())),
        sim.bot_login(),
        options,
    )
    .unwrap()
}

/// The stand-in with `shop/config` and a promotion branch one commit ahead of `main`.
async fn setup() -> (Sim, GitHubForge) {
    let sim = Sim::start().await.unwrap();
    sim.create_repo_with_files(OWNER, REPO, "main", &[(FILE, "images: []\n")])
        .unwrap();
    branch(&sim, "baton/dev/web", "sha256:aa");
    let gh = client(&sim, options());
    (sim, gh)
}

/// Create `name` from `main` with one commit pinning `digest`; returns the head.
fn branch(sim: &Sim, name: &str, digest: &str) -> String {
    let repo = git2::Repository::open_bare(sim.repo_path(OWNER, REPO)).unwrap();
    let main = repo.refname_to_id("refs/heads/main").unwrap();
    repo.reference(&format!("refs/heads/{name}"), main, true, "test")
        .unwrap();
    sim.commit_files(
        OWNER,
        REPO,
        name,
        &[(FILE, &format!("images:\n- name: web\n  digest: {digest}\n"))],
        "bump web",
    )
    .unwrap()
}

fn promotion(head: &str) -> NewPullRequest {
    NewPullRequest {
        head: head.to_owned(),
        base: "main".to_owned(),
        title: "promote web to dev: 1.2.3 (aa)".to_owned(),
        body: "from sha256:00 to sha256:aa".to_owned(),
        labels: vec![PROMOTION_LABEL.to_owned(), env_label("dev")],
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The stand-in's REST counts (it also counts Git traffic, which the forge does not make).
fn sim_rest_calls(sim: &Sim) -> std::collections::BTreeMap<String, u64> {
    sim.calls()
        .into_iter()
        .filter(|(k, _)| k.contains(" /repos/") || k.contains(" /orgs/") || k.contains(" /app"))
        .collect()
}

#[tokio::test]
async fn a_promotion_pr_is_opened_with_labels_listed_read_back_updated_and_closed() {
    let (sim, gh) = setup().await;
    branch(&sim, "feature/unrelated", "sha256:ff");
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let mut other = promotion("feature/unrelated");
    other.labels.clear();
    gh.open_pull_request(&other).await.unwrap();

    assert_eq!(pr.state, PrState::Open);
    assert_eq!(pr.head_ref, "baton/dev/web");
    assert_eq!(pr.base_ref, "main");
    assert_eq!(pr.author, "baton[bot]");
    assert_eq!(pr.labels, ["baton:promotion", "env:dev"]);
    assert_eq!(
        pr.head_sha,
        sim.pull(OWNER, REPO, pr.number).unwrap().head_sha
    );

    let listed = gh.open_promotion_prs().await.unwrap();
    assert_eq!(
        listed,
        std::slice::from_ref(&pr),
        "only baton/ branches are listed"
    );

    gh.update_pull_request(pr.number, "new title", "new body")
        .await
        .unwrap();
    let read = gh.pull_request(pr.number).await.unwrap();
    assert_eq!(
        (read.title.as_str(), read.body.as_str()),
        ("new title", "new body")
    );

    gh.close_pull_request(pr.number).await.unwrap();
    assert_eq!(
        gh.pull_request(pr.number).await.unwrap().state,
        PrState::Closed
    );
    assert!(gh.open_promotion_prs().await.unwrap().is_empty());
}

#[tokio::test]
async fn opening_a_pr_that_is_already_open_returns_the_open_one() {
    let (sim, gh) = setup().await;
    let first = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let again = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    assert_eq!(again.number, first.number);
    assert_eq!(sim.pulls(OWNER, REPO).len(), 1);
}

#[tokio::test]
async fn a_missing_pr_is_not_found() {
    let (_sim, gh) = setup().await;
    let err = gh.pull_request(99).await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn labels_are_added_and_removed_and_removing_an_absent_label_is_fine() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    gh.add_labels(pr.number, &["baton:hold".to_owned()])
        .await
        .unwrap();
    let mut labels = sim.pull(OWNER, REPO, pr.number).unwrap().labels;
    labels.sort();
    assert_eq!(labels, ["baton:hold", "baton:promotion", "env:dev"]);
    gh.remove_label(pr.number, "baton:hold").await.unwrap();
    gh.remove_label(pr.number, "baton:hold").await.unwrap();
    assert_eq!(
        sim.pull(OWNER, REPO, pr.number).unwrap().labels,
        ["baton:promotion", "env:dev"]
    );
}

#[tokio::test]
async fn comments_come_oldest_first_with_bots_marked_and_can_be_edited_and_reacted_to() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.add_user("alice", SimPermission::Write);
    let human = sim
        .comment_as("alice", OWNER, REPO, pr.number, "/promote dev")
        .unwrap();
    let status = gh
        .create_comment(pr.number, "status: waiting")
        .await
        .unwrap();
    gh.update_comment(status, "status: merged").await.unwrap();
    gh.react(human, "eyes").await.unwrap();
    gh.react(human, "eyes").await.unwrap();

    let comments = gh.comments(pr.number).await.unwrap();
    let got: Vec<_> = comments
        .iter()
        .map(|c| (c.id, c.author.as_str(), c.author_is_bot, c.body.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (human, "alice", false, "/promote dev"),
            (status, "baton[bot]", true, "status: merged"),
        ]
    );
    let reactions = &sim.comments(OWNER, REPO, pr.number)[0].reactions;
    assert_eq!(reactions, &[("baton[bot]".to_owned(), "eyes".to_owned())]);
}

#[tokio::test]
async fn reviews_carry_each_reviewers_permission_looked_up_once() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.add_user("alice", SimPermission::Maintain);
    sim.add_user("bob", SimPermission::Read);
    sim.review_as("alice", OWNER, REPO, pr.number, SimReview::Approved, "lgtm")
        .unwrap();
    sim.review_as(
        "bob",
        OWNER,
        REPO,
        pr.number,
        SimReview::ChangesRequested,
        "no",
    )
    .unwrap();
    sim.review_as("alice", OWNER, REPO, pr.number, SimReview::Commented, "hm")
        .unwrap();

    let reviews = gh.reviews(pr.number).await.unwrap();
    let got: Vec<_> = reviews
        .iter()
        .map(|r| (r.user.as_str(), r.state, r.permission, r.commit_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "alice",
                ReviewState::Approved,
                Permission::Maintain,
                pr.head_sha.as_str()
            ),
            (
                "bob",
                ReviewState::ChangesRequested,
                Permission::Read,
                pr.head_sha.as_str()
            ),
            (
                "alice",
                ReviewState::Commented,
                Permission::Maintain,
                pr.head_sha.as_str()
            ),
        ]
    );
    gh.reviews(pr.number).await.unwrap();
    assert_eq!(
        gh.calls().by_route["GET /repos/{owner}/{repo}/collaborators/{username}/permission"],
        2,
        "one lookup per reviewer, cached"
    );
}

#[tokio::test]
async fn permissions_and_team_members_are_read() {
    let (sim, gh) = setup().await;
    sim.add_user("alice", SimPermission::Write);
    sim.add_user("tri", SimPermission::Triage);
    sim.add_user("root", SimPermission::Admin);
    sim.add_team("shop", "release-managers", &["alice", "root"]);
    assert_eq!(gh.permission("alice").await.unwrap(), Permission::Write);
    assert_eq!(gh.permission("tri").await.unwrap(), Permission::Triage);
    assert_eq!(gh.permission("root").await.unwrap(), Permission::Admin);
    assert_eq!(gh.permission("nobody").await.unwrap(), Permission::None);
    let mut members = gh.team_members("shop", "release-managers").await.unwrap();
    members.sort();
    assert_eq!(members, ["alice", "root"]);
    let err = gh.team_members("shop", "ghosts").await.unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn checks_merge_commit_statuses_and_check_runs_latest_per_name() {
    let (sim, gh) = setup().await;
    let head = sim
        .pull(OWNER, REPO, {
            gh.open_pull_request(&promotion("baton/dev/web"))
                .await
                .unwrap()
                .number
        })
        .unwrap()
        .head_sha;
    sim.add_user("ci", SimPermission::Write);
    sim.set_status_as("ci", OWNER, REPO, &head, "validate", "failure")
        .unwrap();
    sim.set_status_as("ci", OWNER, REPO, &head, "validate", "success")
        .unwrap();
    sim.set_check_conclusion(OWNER, REPO, &head, "lint", Some("neutral"))
        .unwrap();
    sim.set_check_conclusion(OWNER, REPO, &head, "e2e", None)
        .unwrap();
    sim.set_check_conclusion(OWNER, REPO, &head, "scan", Some("timed_out"))
        .unwrap();
    gh.set_status(
        &head,
        &StatusUpdate {
            context: "baton/dev".into(),
            state: StatusState::Pending,
            description: "x".repeat(300),
            target_url: Some("https://baton.example/dev".into()),
        },
    )
    .await
    .unwrap();

    let mut checks: Vec<_> = gh
        .checks(&head)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.context, c.state))
        .collect();
    checks.sort_by(|a, b| a.0.cmp(&b.0));
    let expect: Vec<(String, CheckState)> = [
        ("baton/dev", CheckState::Pending),
        ("e2e", CheckState::Pending),
        ("lint", CheckState::Success),
        ("scan", CheckState::Failure),
        ("validate", CheckState::Success),
    ]
    .into_iter()
    .map(|(c, s)| (c.to_owned(), s))
    .collect();
    assert_eq!(checks, expect);
}

#[tokio::test]
async fn a_merge_commit_carries_the_baton_trailers_in_git() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let message =
        "Baton-App: web\nBaton-Environment: dev\nBaton-To: sha256:aa\nBaton-Pull-Request: 1";
    let merged = gh
        .merge(
            pr.number,
            &pr.head_sha,
            MergeMethod::Merge,
            "promote web to dev",
            message,
        )
        .await
        .unwrap();

    let repo = sim.repo_path(OWNER, REPO);
    assert_eq!(git(&repo, &["rev-parse", "main"]).trim(), merged.sha);
    let parents = git(&repo, &["log", "-1", "--format=%P", "main"]);
    assert_eq!(parents.split_whitespace().count(), 2, "a merge commit");
    let trailers = git(
        &repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Baton-App,key=Baton-To,valueonly)",
            "main",
        ],
    );
    assert_eq!(trailers.trim(), "web\nsha256:aa");
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "main"]).trim(),
        "promote web to dev"
    );
    assert_eq!(
        gh.pull_request(pr.number).await.unwrap().state,
        PrState::Merged
    );
}

#[tokio::test]
async fn a_squash_merge_makes_one_commit_with_the_message() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    gh.merge(
        pr.number,
        &pr.head_sha,
        MergeMethod::Squash,
        "promote",
        "Baton-App: web",
    )
    .await
    .unwrap();
    let repo = sim.repo_path(OWNER, REPO);
    let parents = git(&repo, &["log", "-1", "--format=%P", "main"]);
    assert_eq!(parents.split_whitespace().count(), 1);
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%B", "main"]).trim(),
        "promote\n\nBaton-App: web"
    );
}

#[tokio::test]
async fn merging_a_stale_head_is_not_mergeable_and_changes_nothing() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let main_before = git(&sim.repo_path(OWNER, REPO), &["rev-parse", "main"]);
    sim.commit_files(
        OWNER,
        REPO,
        "baton/dev/web",
        &[(FILE, "images: [x]\n")],
        "newer",
    )
    .unwrap();
    let err = gh
        .merge(pr.number, &pr.head_sha, MergeMethod::Merge, "t", "m")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ForgeError::NotMergeable { pr: n, .. } if *n == pr.number),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(
        git(&sim.repo_path(OWNER, REPO), &["rev-parse", "main"]),
        main_before
    );
}

#[tokio::test]
async fn a_502_is_retried_and_every_attempt_is_counted() {
    let (sim, gh) = setup().await;
    sim.inject(Fault::server_error(502).on("/pulls"));
    assert!(gh.open_promotion_prs().await.unwrap().is_empty());
    let calls = gh.calls();
    assert_eq!(calls.by_route["GET /repos/{owner}/{repo}/pulls"], 2);
    assert_eq!(calls.retries, 1);
    assert_eq!(calls.by_route, sim_rest_calls(&sim));
}

#[tokio::test]
async fn server_errors_past_the_retry_bound_are_unavailable() {
    let (sim, gh) = setup().await;
    sim.inject(Fault::server_error(503).times(10));
    let err = gh.open_promotion_prs().await.unwrap_err();
    assert!(matches!(err, ForgeError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(gh.calls().total(), 3, "max_retries 2: three attempts");
}

#[tokio::test]
async fn a_failed_comment_post_is_retried_without_a_duplicate() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.inject(Fault::server_error(502).on("POST /repos/{owner}/{repo}/issues"));
    let id = gh.create_comment(pr.number, "status").await.unwrap();
    let comments = sim.comments(OWNER, REPO, pr.number);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].id, id);
    // The retry first looked whether the failed attempt had posted it.
    assert_eq!(
        gh.calls().by_route["GET /repos/{owner}/{repo}/issues/{issue_number}/comments"],
        1
    );
}

/// A front end between baton and the stand-in that passes every call through but, for the first
/// `times` calls whose `METHOD path` contains `lose`, answers `502` after the stand-in has done
/// the work: the ambiguous failure GitHub's proxies produce.
async fn lossy_gateway(sim: &Sim, lose: &'static str, times: usize) -> sim::Server {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, Response, StatusCode};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let upstream = sim.url();
    let left = Arc::new(AtomicUsize::new(times));
    let http = reqwest::Client::new();
    let router = axum::Router::new().fallback(move |req: Request<Body>| {
        let (upstream, left, http) = (upstream.clone(), left.clone(), http.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
            let mut forward = http.request(parts.method.clone(), format!("{upstream}{path}"));
            for (name, value) in &parts.headers {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            let answer = forward.body(body).send().await.unwrap();
            let lost = format!("{} {path}", parts.method).contains(lose)
                && left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lost {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::from(r#"{"message":"Server Error"}"#))
                    .unwrap();
            }
            let mut out = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if name != "transfer-encoding" && name != "content-length" {
                    out = out.header(name, value);
                }
            }
            out.body(Body::from(answer.bytes().await.unwrap())).unwrap()
        }
    });
    sim::Server::start(router).await.unwrap()
}

fn client_via(gateway: &sim::Server, sim: &Sim) -> GitHubForge {
    GitHubForge::new(
        &gateway.url(),
        &format!("{OWNER}/{REPO}"),
        GitHubAuth::Token(Secret::new(sim.bot_token())),
        sim.bot_login(),
        options(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_comment_whose_answer_was_lost_is_found_not_posted_twice() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let gateway = lossy_gateway(&sim, "POST /repos/shop/config/issues/1/comments", 1).await;
    let lossy = client_via(&gateway, &sim);
    let id = lossy.create_comment(pr.number, "status").await.unwrap();
    let comments = sim.comments(OWNER, REPO, pr.number);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0].id, id);
    assert_eq!(
        lossy.calls().by_route["POST /repos/{owner}/{repo}/issues/{issue_number}/comments"],
        1,
        "found by looking, not posted again"
    );
}

#[tokio::test]
async fn a_pr_whose_answer_was_lost_is_found_not_opened_twice() {
    let (sim, _) = setup().await;
    let gateway = lossy_gateway(&sim, "POST /repos/shop/config/pulls", 1).await;
    let lossy = client_via(&gateway, &sim);
    let pr = lossy
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    assert_eq!(sim.pulls(OWNER, REPO).len(), 1);
    assert_eq!(pr.labels, ["baton:promotion", "env:dev"]);
    assert_eq!(
        lossy.calls().by_route["POST /repos/{owner}/{repo}/pulls"],
        1
    );
}

#[tokio::test]
async fn a_merge_whose_answer_was_lost_is_reported_merged_once() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let gateway = lossy_gateway(&sim, "/merge", 1).await;
    let lossy = client_via(&gateway, &sim);
    let merged = lossy
        .merge(
            pr.number,
            &pr.head_sha,
            MergeMethod::Merge,
            "t",
            "Baton-App: web",
        )
        .await
        .unwrap();
    let repo = sim.repo_path(OWNER, REPO);
    assert_eq!(git(&repo, &["rev-parse", "main"]).trim(), merged.sha);
    assert_eq!(
        lossy.calls().by_route["PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge"],
        1
    );
}

#[tokio::test]
async fn a_failed_merge_is_retried_once_and_merges_once() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.inject(Fault::server_error(502).on("/merge"));
    let merged = gh
        .merge(
            pr.number,
            &pr.head_sha,
            MergeMethod::Merge,
            "t",
            "Baton-App: web",
        )
        .await
        .unwrap();
    let repo = sim.repo_path(OWNER, REPO);
    assert_eq!(git(&repo, &["rev-parse", "main"]).trim(), merged.sha);
    assert_eq!(
        gh.calls().by_route["PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge"],
        2
    );
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out_for_its_retry_after() {
    let (sim, gh) = setup().await;
    sim.inject(Fault::secondary_rate_limit(1));
    let started = Instant::now();
    gh.open_promotion_prs().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "honoured retry-after"
    );
    assert_eq!(gh.calls().by_route["GET /repos/{owner}/{repo}/pulls"], 2);
}

#[tokio::test]
async fn a_secondary_rate_limit_past_the_wait_bound_is_rate_limited_at_once() {
    let (sim, gh) = setup().await;
    sim.inject(Fault::secondary_rate_limit(600));
    let started = Instant::now();
    let err = gh.open_promotion_prs().await.unwrap_err();
    let ForgeError::RateLimited {
        retry_after: Some(at),
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(started.elapsed() < Duration::from_secs(2));
    let wait = (at - chrono::Utc::now()).num_seconds();
    assert!((590..=600).contains(&wait), "{wait}");
    assert_eq!(gh.calls().total(), 1);
}

#[tokio::test]
async fn an_exhausted_primary_limit_is_waited_out_until_its_reset() {
    let (sim, gh) = setup().await;
    sim.exhaust_rate_limit(Duration::from_secs(1));
    gh.open_promotion_prs().await.unwrap();
    let calls = gh.calls();
    assert!(calls.retries >= 1);
    assert!(gh.rate_limit().unwrap().remaining > 0);
}

#[tokio::test]
async fn an_exhausted_primary_limit_with_a_distant_reset_stops_calling_until_then() {
    let (sim, gh) = setup().await;
    sim.exhaust_rate_limit(Duration::from_secs(3600));
    let err = gh.open_promotion_prs().await.unwrap_err();
    assert!(
        matches!(
            err,
            ForgeError::RateLimited {
                retry_after: Some(_)
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(gh.rate_limit().unwrap().remaining, 0);
    assert_eq!(gh.calls().total(), 1);
    // Known to be exhausted: the next call is refused without spending a request.
    let err = gh.pull_request(1).await.unwrap_err();
    assert!(matches!(err, ForgeError::RateLimited { .. }), "{err:?}");
    assert_eq!(gh.calls().total(), 1);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let (sim, _) = setup().await;
    let gh = client(
        &sim,
        GitHubOptions {
            timeout: Duration::from_millis(300),
            ..options()
        },
    );
    sim.inject(Fault::slow(Duration::from_secs(2)).on("/pulls"));
    assert!(gh.open_promotion_prs().await.unwrap().is_empty());
    assert_eq!(gh.calls().by_route["GET /repos/{owner}/{repo}/pulls"], 2);
}

#[tokio::test]
async fn an_unchanged_re_read_is_answered_not_modified_and_costs_no_rate_limit() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.add_user("alice", SimPermission::Write);
    sim.review_as("alice", OWNER, REPO, pr.number, SimReview::Approved, "")
        .unwrap();
    gh.create_comment(pr.number, "status").await.unwrap();

    let replan = || async {
        let prs = gh.open_promotion_prs().await.unwrap();
        for p in &prs {
            gh.reviews(p.number).await.unwrap();
            gh.comments(p.number).await.unwrap();
            gh.checks(&p.head_sha).await.unwrap();
        }
        prs
    };
    let first = replan().await;
    let before = gh.calls();
    let remaining = gh.rate_limit().unwrap().remaining;
    let second = replan().await;
    let after = gh.calls();
    assert_eq!(first, second);
    let reads = after.total() - before.total();
    assert_eq!(reads, 5, "pulls, reviews, comments, status, check-runs");
    assert_eq!(after.not_modified - before.not_modified, reads);
    assert_eq!(after.writes(), before.writes());
    assert_eq!(gh.rate_limit().unwrap().remaining, remaining);

    // A change shows through.
    gh.update_pull_request(pr.number, "changed", "body")
        .await
        .unwrap();
    assert_eq!(gh.open_promotion_prs().await.unwrap()[0].title, "changed");
}

#[tokio::test]
async fn a_promotion_from_open_to_merge_is_counted_like_the_stand_in_counts_it() {
    let (sim, gh) = setup().await;
    sim.add_user("alice", SimPermission::Write);
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let status = gh.create_comment(pr.number, "waiting").await.unwrap();
    sim.review_as("alice", OWNER, REPO, pr.number, SimReview::Approved, "")
        .unwrap();
    sim.set_check_conclusion(OWNER, REPO, &pr.head_sha, "validate", Some("success"))
        .unwrap();
    let listed = gh.open_promotion_prs().await.unwrap();
    assert_eq!(listed.len(), 1);
    gh.reviews(pr.number).await.unwrap();
    gh.comments(pr.number).await.unwrap();
    gh.checks(&pr.head_sha).await.unwrap();
    gh.merge(pr.number, &pr.head_sha, MergeMethod::Merge, "t", "m")
        .await
        .unwrap();
    gh.update_comment(status, "merged").await.unwrap();

    let calls = gh.calls();
    assert_eq!(calls.by_route, sim_rest_calls(&sim));
    println!("calls for one promotion (open → merge): {}", calls.total());
    for (route, n) in &calls.by_route {
        println!("  {n:>3}  {route}");
    }
    assert_eq!(calls.total(), 11);
    assert_eq!(calls.writes(), 5, "open, labels, comment, merge, edit");
}

#[tokio::test]
async fn app_auth_mints_an_installation_token_and_renews_it_before_expiry() {
    let sim = Sim::start().await.unwrap();
    sim.create_repo_with_files(OWNER, REPO, "main", &[(FILE, "images: []\n")])
        .unwrap();
    branch(&sim, "baton/dev/web", "sha256:aa");
    let app = |margin| {
        GitHubForge::new(
            &sim.url(),
            &format!("{OWNER}/{REPO}"),
            GitHubAuth::App {
                app_id: 4242,
                installation_id: 77,
                private_key: Secret::new(APP_KEY),
            },
            "baton[bot]",
            GitHubOptions {
                token_refresh_margin: margin,
                ..options()
            },
        )
        .unwrap()
    };
    const MINT: &str = "POST /app/installations/{installation_id}/access_tokens";

    let gh = app(Duration::from_secs(300));
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    assert_eq!(pr.author, "baton[bot]");
    gh.comments(pr.number).await.unwrap();
    assert_eq!(gh.calls().by_route[MINT], 1, "one token while it is fresh");
    assert_eq!(sim.calls()[MINT], 1);

    // Tokens live an hour; with a margin longer than that every call finds it about to expire.
    let renewing = app(Duration::from_secs(2 * 3600));
    renewing.comments(pr.number).await.unwrap();
    renewing.comments(pr.number).await.unwrap();
    assert_eq!(renewing.calls().by_route[MINT], 2);
    assert_eq!(sim.calls()[MINT], 3);
}

#[tokio::test]
async fn from_config_reads_the_token_from_its_secret_file_and_never_shows_it() {
    let (sim, _) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", sim.bot_token())).unwrap();
    let config = GitHubConfig {
        api_url: sim.url(),
        token: Some(SecretRef::from_file(&file)),
        ..GitHubConfig::default()
    };
    let gh = GitHubForge::from_config(&config, "shop/config", "baton[bot]").unwrap();
    assert!(gh.open_promotion_prs().await.unwrap().is_empty());
    assert!(!format!("{gh:?}").contains(&sim.bot_token()));

    // A reader may not label: the refusal names the call, not the credential.
    let reader = sim.add_user("reader", SimPermission::Read);
    std::fs::write(&file, &reader).unwrap();
    let gh = GitHubForge::from_config(&config, "shop/config", "baton[bot]").unwrap();
    let pr = client(&sim, options())
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let err = gh
        .add_labels(pr.number, &["x".to_owned()])
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    assert!(!err.to_string().contains(&reader), "{err}");
    assert!(!format!("{err:?}").contains(&reader));
}

#[tokio::test]
async fn from_config_refuses_missing_or_double_credentials_and_bad_keys() {
    let none = GitHubConfig::default();
    let err = GitHubForge::from_config(&none, "shop/config", "baton[bot]").unwrap_err();
    assert!(matches!(err, ForgeError::Config(_)), "{err:?}");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let bad_key = GitHubConfig {
        app: Some(GitHubApp {
            app_id: 1,
            installation_id: 2,
            private_key: SecretRef::from_file(&key),
        }),
        ..GitHubConfig::default()
    };
    let err = GitHubForge::from_config(&bad_key, "shop/config", "x[bot]").unwrap_err();
    assert!(err.to_string().contains("privateKey"), "{err}");
    assert!(!err.to_string().contains("not a key"));

    let both = GitHubConfig {
        token: Some(SecretRef::from_env("GITHUB_TOKEN")),
        ..bad_key
    };
    assert!(matches!(
        GitHubForge::from_config(&both, "shop/config", "x[bot]"),
        Err(ForgeError::Config(_))
    ));
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_x").unwrap();
    let tok = GitHubConfig {
        token: Some(SecretRef::from_file(&token)),
        ..GitHubConfig::default()
    };
    let err = GitHubForge::from_config(&tok, "no-slash", "x").unwrap_err();
    assert!(err.to_string().contains("owner/name"), "{err}");
}

#[tokio::test]
async fn long_lists_are_read_page_by_page_and_re_read_not_modified() {
    let (sim, gh) = setup().await;
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.add_user("alice", SimPermission::Write);
    for i in 0..150 {
        sim.comment_as("alice", OWNER, REPO, pr.number, &format!("comment {i}"))
            .unwrap();
    }
    let route = "GET /repos/{owner}/{repo}/issues/{issue_number}/comments";
    let comments = gh.comments(pr.number).await.unwrap();
    assert_eq!(comments.len(), 150);
    assert_eq!(comments[0].body, "comment 0");
    assert_eq!(comments[149].body, "comment 149");
    assert_eq!(gh.calls().by_route[route], 2, "two pages of 100");

    let again = gh.comments(pr.number).await.unwrap();
    assert_eq!(again, comments);
    let calls = gh.calls();
    assert_eq!(calls.by_route[route], 4);
    assert_eq!(
        calls.not_modified, 2,
        "both pages, with the next link remembered"
    );
}

#[tokio::test]
async fn approvers_are_requested_as_users_and_team_slugs_and_asking_again_changes_nothing() {
    let (sim, gh) = setup().await;
    sim.add_user("alice", SimPermission::Write);
    sim.add_team(OWNER, "release-managers", &["alice"]);
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    let approvers: Vec<String> = ["alice", "@shop/release-managers", "@elsewhere/ops"]
        .map(String::from)
        .into();
    const ROUTE: &str = "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers";

    gh.request_reviewers(pr.number, &approvers).await.unwrap();
    gh.request_reviewers(pr.number, &approvers).await.unwrap();
    let pull = sim.pull(OWNER, REPO, pr.number).unwrap();
    assert_eq!(pull.requested_reviewers, ["alice"]);
    assert_eq!(pull.requested_teams, ["release-managers"]);
    assert_eq!(gh.calls().by_route[ROUTE], 2);

    // Nobody GitHub could ask: no call at all.
    gh.request_reviewers(pr.number, &["@elsewhere/ops".to_owned()])
        .await
        .unwrap();
    gh.request_reviewers(pr.number, &[]).await.unwrap();
    assert_eq!(gh.calls().by_route[ROUTE], 2);

    // Someone who is not a collaborator: GitHub refuses the request, and says why.
    let err = gh
        .request_reviewers(pr.number, &["mallory".to_owned()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("collaborator"), "{err}");
}

fn app_client(sim: &Sim) -> GitHubForge {
    GitHubForge::new(
        &sim.url(),
        &format!("{OWNER}/{REPO}"),
        GitHubAuth::App {
            app_id: 4242,
            installation_id: 77,
            private_key: Secret::new(APP_KEY),
        },
        sim.bot_login(),
        options(),
    )
    .unwrap()
}

/// Every check run on `sha` as GitHub lists them with `filter=all`: `(name, status, conclusion)`.
async fn all_check_runs(sim: &Sim, sha: &str) -> Vec<(String, String, Option<String>)> {
    let url = format!(
        "{}/repos/{OWNER}/{REPO}/commits/{sha}/check-runs?filter=all&per_page=100",
        sim.url()
    );
    let page: serde_json::Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(sim.bot_token())
        .header("user-agent", "baton-test")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    page["check_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
                r["conclusion"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn as_an_app_set_status_keeps_one_check_run_per_name_and_reads_it_back() {
    let sim = Sim::start().await.unwrap();
    sim.create_repo_with_files(OWNER, REPO, "main", &[(FILE, "images: []\n")])
        .unwrap();
    let head = branch(&sim, "baton/dev/web", "sha256:aa");
    let gh = app_client(&sim);
    let status = |state, description: &str| StatusUpdate {
        context: "baton/dev".into(),
        state,
        description: description.into(),
        target_url: Some("https://baton.example/dev".into()),
    };
    const CREATE: &str = "POST /repos/{owner}/{repo}/check-runs";
    const UPDATE: &str = "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}";
    let count = |route: &str| gh.calls().by_route.get(route).copied().unwrap_or(0);
    let run = |status: &str, conclusion: Option<&str>| {
        vec![(
            "baton/dev".to_owned(),
            status.to_owned(),
            conclusion.map(str::to_owned),
        )]
    };

    gh.set_status(&head, &status(StatusState::Pending, "applying"))
        .await
        .unwrap();
    assert_eq!(all_check_runs(&sim, &head).await, run("in_progress", None));
    assert_eq!(count(CREATE), 1);

    // The same report again writes nothing.
    let writes = gh.calls().writes();
    gh.set_status(&head, &status(StatusState::Pending, "applying"))
        .await
        .unwrap();
    assert_eq!(gh.calls().writes(), writes);
    assert_eq!(all_check_runs(&sim, &head).await.len(), 1);

    // A changed state updates that run.
    gh.set_status(&head, &status(StatusState::Success, "healthy in 42s"))
        .await
        .unwrap();
    assert_eq!(
        all_check_runs(&sim, &head).await,
        run("completed", Some("success"))
    );
    assert_eq!((count(CREATE), count(UPDATE)), (1, 1));
    assert!(
        !gh.calls()
            .by_route
            .contains_key("POST /repos/{owner}/{repo}/statuses/{sha}"),
        "an App writes check runs, not commit statuses"
    );

    // Both readers see it: the gates' checks and the "already reported" statuses.
    let checks = gh.checks(&head).await.unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c.context == "baton/dev" && c.state == CheckState::Success),
        "{checks:?}"
    );
    let statuses = gh.statuses(&head).await.unwrap();
    let own = statuses
        .iter()
        .find(|s| s.context == "baton/dev")
        .expect("the check run reads back as a status");
    assert_eq!(own.state, StatusState::Success);
    assert_eq!(own.description, "healthy in 42s");
    assert_eq!(own.creator, "baton[bot]");
    assert_eq!(own.target_url.as_deref(), Some("https://baton.example/dev"));

    // Back to pending (a re-apply): a finished run cannot be reopened, so a new one becomes
    // the latest, and both readers follow it.
    gh.set_status(&head, &status(StatusState::Pending, "applying again"))
        .await
        .unwrap();
    assert_eq!(count(CREATE), 2);
    let checks = gh.checks(&head).await.unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c.context == "baton/dev" && c.state == CheckState::Pending),
        "{checks:?}"
    );
    let statuses = gh.statuses(&head).await.unwrap();
    let own = statuses.iter().find(|s| s.context == "baton/dev").unwrap();
    assert_eq!(
        (own.state, own.description.as_str()),
        (StatusState::Pending, "applying again")
    );
}

/// Content-creating writes go through one paced queue. With the stand-in enforcing a secondary
/// limit of 5 writes a second (GitHub: about 80 a minute and 500 an hour), 20 comments posted by
/// four tasks at once all land without one secondary-limit refusal; the same burst unpaced is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_paced_below_githubs_secondary_limit() {
    let (sim, _) = setup().await;
    let limit = (5, Duration::from_secs(1));
    let gh = client(
        &sim,
        GitHubOptions {
            write_limits: vec![limit],
            ..options()
        },
    );
    let pr = gh
        .open_pull_request(&promotion("baton/dev/web"))
        .await
        .unwrap();
    sim.set_write_limit(Some(limit));
    let gh = std::sync::Arc::new(gh);
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let gh = gh.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    gh.create_comment(pr.number, &format!("note {t}.{i}"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sim.secondary_refusals(), 0, "paced writes met the limit");
    let notes = sim
        .comments(OWNER, REPO, pr.number)
        .into_iter()
        .filter(|c| c.body.starts_with("note "))
        .count();
    assert_eq!(notes, 20);

    // Unpaced, the same burst is refused by the limit.
    let unpaced = client(
        &sim,
        GitHubOptions {
            write_limits: vec![],
            max_rate_limit_retries: 0,
            ..options()
        },
    );
    sim.set_write_limit(Some(limit));
    let mut refused = 0;
    for i in 0..10 {
        if unpaced
            .create_comment(pr.number, &format!("burst {i}"))
            .await
            .is_err()
        {
            refused += 1;
        }
    }
    assert!(refused > 0, "the stand-in enforces the limit");
    assert_eq!(sim.secondary_refusals(), refused);
}
