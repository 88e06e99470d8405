//! GitHub's merge queue, end to end against the stand-in: the config branch's ruleset requires
//! a merge queue (landing with merge, squash or rebase) and `baton/validate`. baton puts the dev
//! promotion into the queue (GraphQL `enqueuePullRequest`) instead of merging it, says so in the
//! status comment, answers the queue's `merge_group` webhook with `baton/validate` on the
//! group's head, and the queue merges. `baton history` lists the promotion, approvers included,
//! for every method (a queue that rebases gets a record commit first), and no pass queues or
//! merges twice.

use std::time::Duration;

use baton::config::Secret;
use baton::engine::Outcome;
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::gitrepo::history::{self, Filter};
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::prcheck::{CheckOutcome, Checker};
use baton::server::github::{self as hooks, Event};
use baton_test_support::promote::{OWNER, REPO, World, grouped_example};
use sim::forge::Protection;
use tokio::sync::mpsc;

const GRAPHQL: &str = "POST /graphql";
const MERGE: &str = "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge";

type Deliveries = mpsc::UnboundedReceiver<(String, Vec<u8>)>;

/// A webhook receiver: (event name, body) of every delivery.
async fn hook_receiver() -> (sim::Server, Deliveries) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let event = headers
                        .get("x-github-event")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send((event, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    (sim::Server::start(router).await.unwrap(), rx)
}

/// The next `merge_group` delivery that asks for checks, as baton's webhook parser reads it.
async fn next_merge_group(rx: &mut Deliveries) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (event, body) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("a merge_group delivery within 10 s")
            .expect("receiver open");
        if event != "merge_group" {
            continue;
        }
        match hooks::parse(&event, &body) {
            Ok(Event::MergeGroup { head_sha, head_ref }) => return (head_sha, head_ref),
            Ok(other) => panic!("merge_group parsed as {other:?}"),
            Err(_) => continue, // `destroyed` and other actions are not checks requests
        }
    }
}

fn bot_client(w: &World) -> GitHubForge {
    GitHubForge::new(
        &w.forge.url(),
        &format!("{OWNER}/{REPO}"),
        GitHubAuth::Token(Secret::new(w.forge.bot_token())),
        w.forge.bot_login(),
        GitHubOptions::default(),
    )
    .unwrap()
}

fn checker(w: &World, name: &str) -> Checker {
    let repo = ConfigRepo::open(
        &w.dir.path().join(name),
        Remote {
            url: w.forge.git_url(OWNER, REPO),
            branch: "main".into(),
            auth: Auth::Token(Secret::new(w.forge.bot_token())),
        },
        Identity::default(),
    )
    .unwrap();
    Checker::new(repo)
}

/// The config branch requires a merge queue landing with `method` and `baton/validate`; a
/// webhook receiver gets the queue's `merge_group` deliveries. The receiver, its deliveries and a
/// client as the bot.
async fn require_queue(w: &World, method: &str) -> (sim::Server, Deliveries, GitHubForge) {
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                ruleset: true,
                merge_queue: true,
                queue_merge_method: method.into(),
                required_status_checks: vec!["baton/validate".into()],
                ..Protection::default()
            },
        )
        .unwrap();
    let (receiver, rx) = hook_receiver().await;
    w.forge
        .add_webhook(&format!("{}/hook", receiver.url()), "secret");
    (receiver, rx, bot_client(w))
}

fn calls(w: &World, route: &str) -> u64 {
    w.forge.calls().get(route).copied().unwrap_or(0)
}

async fn a_dev_promotion_merges_through_the_queue(method: &str) {
    a_dev_promotion_merges_through_the_queue_as(method, false).await
}

/// `baton/validate` on the PR's head, as the service's checker reports it: it passed.
async fn validate_head(w: &World, gh: &GitHubForge, pr: u64) {
    let checked = checker(w, "check-1").run_once(gh).await.unwrap();
    assert!(
        checked
            .iter()
            .any(|c| matches!(c, CheckOutcome::Checked { pr: n, passed: true, .. } if *n == pr)),
        "{checked:?}"
    );
}

async fn a_dev_promotion_merges_through_the_queue_as(method: &str, app_auth: bool) {
    let mut w = World::new().await;
    w.app_auth = app_auth;
    let (receiver, mut rx, gh) = require_queue(&w, method).await;

    let v = w.release("web", "1.5.0");
    w.pass().await;
    let pr = w.pr_for("dev", "web");
    // Dev needs no approval, but one given is recorded in the audit trail.
    w.approve("alice", pr.number);
    validate_head(&w, &gh, pr.number).await;
    let pr = if method == "rebase" {
        // The queue keeps the commits, not the PR body: baton first adds a commit that changes
        // no file and carries the whole record, and queues once that head is checked.
        w.pass().await;
        assert_eq!(
            calls(&w, GRAPHQL),
            0,
            "not queued before the record is in the branch"
        );
        let recorded = w.pr_for("dev", "web");
        assert_ne!(
            recorded.head_sha, pr.head_sha,
            "a record commit on the branch"
        );
        let bare = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
        let record = bare
            .find_commit(git2::Oid::from_str(&recorded.head_sha).unwrap())
            .unwrap();
        assert_eq!(record.parent_id(0).unwrap().to_string(), pr.head_sha);
        assert_eq!(
            record.tree_id(),
            record.parent(0).unwrap().tree_id(),
            "it changes no file"
        );
        let p = baton::gitrepo::trailers::Promotion::parse(record.message().unwrap()).unwrap();
        assert_eq!(p.approved_by, ["alice"]);
        assert_eq!(p.pull_request, Some(pr.number));
        if app_auth {
            // Both commits made by GitHub's Git data API; the record adds no tree.
            assert_eq!(calls(&w, "POST /repos/{owner}/{repo}/git/commits"), 2);
            assert_eq!(calls(&w, "POST /repos/{owner}/{repo}/git/trees"), 1);
        }
        let status = w.status_comment(pr.number);
        assert!(
            status.contains("recorded approvals and who promoted in `"),
            "{status}"
        );
        // An idle pass adds nothing more while the new head waits for its checks.
        w.pass().await;
        assert_eq!(w.pr_for("dev", "web").head_sha, recorded.head_sha);
        let checked = checker(&w, "check-1b").run_once(&gh).await.unwrap();
        assert!(
            checked.iter().any(|c| matches!(c, CheckOutcome::Checked { pr: n, passed: true, .. } if *n == pr.number)),
            "{checked:?}"
        );
        recorded
    } else {
        pr
    };

    // Every gate passed: baton queues instead of merging, and says so.
    let outcomes = w.pass().await;
    assert!(
        outcomes.iter().any(|o| matches!(o, Outcome::Waiting { pr: n, blocking, .. } if *n == pr.number && blocking.contains("merge queue"))),
        "{outcomes:?}"
    );
    assert_eq!(calls(&w, GRAPHQL), 1, "one enqueuePullRequest");
    assert_eq!(calls(&w, MERGE), 0, "no merge of its own");
    let view = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(view.open && !view.merged, "the queue waits for its checks");
    let status = w.status_comment(pr.number);
    assert!(
        status.contains("queued in GitHub's merge queue at `"),
        "{status}"
    );
    let body = view.body.unwrap_or_default();
    assert!(
        body.trim_end()
            .ends_with(&format!("Baton-Pull-Request: #{}", pr.number)),
        "the PR body ends with the trailers: {body}"
    );

    // An idle pass while queued queues nothing again.
    w.pass().await;
    assert_eq!(calls(&w, GRAPHQL), 1);

    // The queue asks for checks on its group; baton/validate answers there, and the queue
    // merges.
    let (group_sha, group_ref) = next_merge_group(&mut rx).await;
    assert!(
        group_ref.starts_with(&format!(
            "refs/heads/gh-readonly-queue/main/pr-{}-{}",
            pr.number, pr.head_sha
        )),
        "{group_ref}"
    );
    let answered = checker(&w, "check-2")
        .check_merge_group(&gh, &group_sha, &group_ref)
        .await
        .unwrap();
    assert!(
        matches!(answered, Some(CheckOutcome::Checked { passed: true, ref sha, .. }) if *sha == group_sha),
        "{answered:?}"
    );
    let view = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(view.merged, "the queue merged once its check passed");
    assert_eq!(view.merge_commit_sha.as_deref(), Some(group_sha.as_str()));
    assert!(
        w.main_file("environments/dev/kustomization.yaml")
            .contains(v.as_str()),
        "dev pins the release on main"
    );

    // baton takes the queue's merge as its own: no merge attempt, no second queueing.
    let outcomes = w.pass().await;
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Merged { pr: n, .. } if *n == pr.number)),
        "{outcomes:?}"
    );
    assert_eq!(calls(&w, GRAPHQL), 1);
    assert_eq!(calls(&w, MERGE), 0);

    // `baton history` lists it.
    let bare = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
    let tip = bare.refname_to_id("refs/heads/main").unwrap();
    let entries = history::read(
        &bare,
        tip,
        &Filter {
            app: Some("web".into()),
            environment: Some("dev".into()),
            ..Filter::default()
        },
    )
    .unwrap();
    assert_eq!(entries.len(), 1, "{}", history::table(&entries));
    let p = &entries[0].promotion;
    assert_eq!(p.to, v);
    assert_eq!(p.tag.as_deref(), Some("1.5.0"));
    // The whole record, for every method: from the queue's message (the PR's title and
    // description) for merge and squash, from the record commit for rebase.
    assert_eq!(p.pull_request, Some(pr.number));
    assert_eq!(p.promoted_by.as_deref(), Some(w.forge.bot_login().as_str()));
    assert_eq!(p.approved_by, ["alice"], "{}", history::table(&entries));
    assert_eq!(entries[0].commit, group_sha);
    assert!(
        history::table(&entries)
            .lines()
            .nth(1)
            .unwrap()
            .contains(" alice "),
        "{}",
        history::table(&entries)
    );
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_merges_through_a_merge_queue_that_merges() {
    a_dev_promotion_merges_through_the_queue("merge").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_merges_through_a_merge_queue_that_squashes() {
    a_dev_promotion_merges_through_the_queue("squash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_merges_through_a_merge_queue_that_rebases() {
    a_dev_promotion_merges_through_the_queue("rebase").await;
}

/// As a GitHub App, the record commit is made through the Git data API (no file, so no tree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_an_app_a_promotion_merges_through_a_merge_queue_that_rebases() {
    a_dev_promotion_merges_through_the_queue_as("rebase", true).await;
}

/// A release train's PR (`groups:`) goes through the queue as an app's does: queued once, never
/// merged by baton, and the queue's merge records one promotion per member, approvers and PR
/// included (from the PR body, or from the record commit where the queue rebases).
async fn a_group_promotion_merges_through_the_queue(method: &str) {
    let mut w = World::with_files(&grouped_example()).await;
    let (receiver, mut rx, gh) = require_queue(&w, method).await;

    let web = w.release("web", "1.5.0");
    let worker = w.release("worker", "release-2.2.0");
    w.pass().await;
    let pr = w.pr_for("dev", "shop");
    w.approve("alice", pr.number);
    validate_head(&w, &gh, pr.number).await;
    let pr = if method == "rebase" {
        w.pass().await;
        assert_eq!(
            calls(&w, GRAPHQL),
            0,
            "not queued before the record is in the branch"
        );
        let recorded = w.pr_for("dev", "shop");
        assert_ne!(recorded.head_sha, pr.head_sha, "a record commit");
        let bare = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
        let record = bare
            .find_commit(git2::Oid::from_str(&recorded.head_sha).unwrap())
            .unwrap();
        assert_eq!(record.parent_id(0).unwrap().to_string(), pr.head_sha);
        let members = baton::gitrepo::trailers::Promotion::parse_all(record.message().unwrap());
        assert_eq!(
            members.iter().map(|p| p.app.as_str()).collect::<Vec<_>>(),
            ["web", "worker"]
        );
        assert!(
            members
                .iter()
                .all(|p| p.approved_by == ["alice"] && p.pull_request == Some(pr.number)),
            "{members:?}"
        );
        w.pass().await;
        assert_eq!(w.pr_for("dev", "shop").head_sha, recorded.head_sha);
        checker(&w, "check-1b").run_once(&gh).await.unwrap();
        recorded
    } else {
        pr
    };

    let outcomes = w.pass().await;
    assert!(
        outcomes.iter().any(
            |o| matches!(o, Outcome::Waiting { pr: n, app, blocking, .. }
            if *n == pr.number && app == "shop" && blocking.contains("merge queue"))
        ),
        "{outcomes:?}"
    );
    assert_eq!(calls(&w, GRAPHQL), 1, "one enqueuePullRequest");
    assert_eq!(calls(&w, MERGE), 0, "no merge of its own");
    let status = w.status_comment(pr.number);
    assert!(
        status.contains("queued in GitHub's merge queue at `"),
        "{status}"
    );
    let view = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(view.open && !view.merged);
    let body = view.body.unwrap_or_default();
    assert_eq!(
        baton::gitrepo::trailers::Promotion::parse_all(&body).len(),
        2,
        "the body ends with both members' trailers: {body}"
    );
    assert!(body.contains("Baton-Group: shop\n"), "{body}");

    w.pass().await;
    assert_eq!(calls(&w, GRAPHQL), 1, "an idle pass queues nothing again");

    let (group_sha, group_ref) = next_merge_group(&mut rx).await;
    let answered = checker(&w, "check-2")
        .check_merge_group(&gh, &group_sha, &group_ref)
        .await
        .unwrap();
    assert!(
        matches!(answered, Some(CheckOutcome::Checked { passed: true, .. })),
        "{answered:?}"
    );
    let view = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(view.merged, "the queue merged the group's PR");
    let dev = w.main_file("environments/dev/kustomization.yaml");
    assert!(dev.contains(web.as_str()) && dev.contains(worker.as_str()));
    w.pass().await;
    assert_eq!(calls(&w, GRAPHQL), 1);
    assert_eq!(calls(&w, MERGE), 0);

    let bare = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
    let tip = bare.refname_to_id("refs/heads/main").unwrap();
    let entries = history::read(
        &bare,
        tip,
        &Filter {
            environment: Some("dev".into()),
            ..Filter::default()
        },
    )
    .unwrap();
    let grouped: Vec<_> = entries
        .iter()
        .filter(|e| e.promotion.pull_request == Some(pr.number))
        .collect();
    assert_eq!(
        grouped
            .iter()
            .map(|e| (e.promotion.app.as_str(), &e.promotion.to))
            .collect::<Vec<_>>(),
        [("web", &web), ("worker", &worker)],
        "{}",
        history::table(&entries)
    );
    assert!(
        grouped
            .iter()
            .all(|e| e.commit == group_sha && e.promotion.approved_by == ["alice"]),
        "{}",
        history::table(&entries)
    );
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_promotion_merges_through_a_merge_queue_that_squashes() {
    a_group_promotion_merges_through_the_queue("squash").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_promotion_merges_through_a_merge_queue_that_rebases() {
    a_group_promotion_merges_through_the_queue("rebase").await;
}

/// A group whose PR baton has not passed gets a failing `baton/validate`, and the queue drops
/// the PR instead of merging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_group_of_an_unchecked_head_fails_and_the_queue_drops_it() {
    let mut w = World::new().await;
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                ruleset: true,
                merge_queue: true,
                required_status_checks: vec!["baton/validate".into()],
                ..Protection::default()
            },
        )
        .unwrap();
    let (receiver, mut rx) = hook_receiver().await;
    w.forge
        .add_webhook(&format!("{}/hook", receiver.url()), "secret");
    let gh = bot_client(&w);
    w.release("web", "1.5.0");
    w.pass().await;
    let pr = w.pr_for("dev", "web");
    // CI (not baton) reports `baton/validate` on the head: the queue takes the PR, but baton
    // never passed that head.
    w.validate_passes(&pr.head_sha);
    w.pass().await;
    assert_eq!(calls(&w, GRAPHQL), 1);
    let (group_sha, group_ref) = next_merge_group(&mut rx).await;
    let answered = checker(&w, "check")
        .check_merge_group(&gh, &group_sha, &group_ref)
        .await
        .unwrap();
    assert!(
        matches!(answered, Some(CheckOutcome::Checked { passed: false, .. })),
        "{answered:?}"
    );
    let view = w.forge.pull(OWNER, REPO, pr.number).unwrap();
    assert!(
        view.open && !view.merged,
        "dropped from the queue, not merged"
    );
    receiver.stop().await;
}

/// Prod under a queue that rebases: the approvals and the `/promote` given at the promotion
/// commit still count at its record commit (same content), so nobody approves or commands
/// twice, and history names the approvers and who promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prod_promotion_keeps_its_approvals_and_promote_command_across_the_record_commit() {
    let mut w = World::new().await;
    let (v, prod) = w.walk_to_prod().await;
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                ruleset: true,
                merge_queue: true,
                queue_merge_method: "rebase".into(),
                ..Protection::default()
            },
        )
        .unwrap();
    w.team_approves(prod.number);
    w.comment("carol", prod.number, "/promote prod");
    w.pass().await;
    assert_eq!(calls(&w, GRAPHQL), 0);
    let recorded = w.pr_for("prod", "web");
    assert_ne!(recorded.head_sha, prod.head_sha, "the record commit");
    // CI reports on the new head; nobody approves or comments again.
    w.validate_passes(&recorded.head_sha);
    let outcomes = w.pass().await;
    assert_eq!(
        calls(&w, GRAPHQL),
        1,
        "queued at the record commit: {outcomes:?}"
    );
    let view = w.forge.pull(OWNER, REPO, prod.number).unwrap();
    assert!(
        view.merged,
        "the queue landed it (no checks required on the group)"
    );
    assert_eq!(view.head_sha, recorded.head_sha, "no second record commit");
    let bare = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
    let tip = bare.refname_to_id("refs/heads/main").unwrap();
    let entries = history::read(
        &bare,
        tip,
        &Filter {
            app: Some("web".into()),
            environment: Some("prod".into()),
            ..Filter::default()
        },
    )
    .unwrap();
    let p = &entries
        .first()
        .unwrap_or_else(|| panic!("landed: {}", history::table(&entries)))
        .promotion;
    assert_eq!(p.to, v);
    assert_eq!(
        p.approved_by,
        ["alice", "bob"],
        "{}",
        history::table(&entries)
    );
    assert_eq!(p.promoted_by.as_deref(), Some("carol"));
    assert_eq!(p.pull_request, Some(prod.number));
}
