//! The GitHub stand-in driven by octocrab over real HTTP, making the calls baton makes, and
//! checked against GitHub's documented behaviour: status codes, fields, merges visible in Git,
//! pagination, rate-limit headers, faults, and signed webhooks.

mod common;

use std::time::Duration;

use common::{git, git_output};
use octocrab::Octocrab;
use octocrab::models::webhook_events::{WebhookEvent, WebhookEventPayload};
use octocrab::models::{CommentId, StatusState};
use octocrab::params::checks::{CheckRunConclusion, CheckRunStatus};
use octocrab::params::pulls::MergeMethod;
use octocrab::params::repos::{Commitish, Reference};
use serde_json::Value;
use sim::forge::{Fault, Forge, Permission, ReviewState};
use tokio::sync::mpsc;

const OWNER: &str = "shop";
const REPO: &str = "config";
const BRANCH: &str = "baton/dev/web";

fn client(forge: &Forge, token: &str) -> Octocrab {
    Octocrab::builder()
        .base_uri(forge.url())
        .unwrap()
        .personal_token(token.to_owned())
        .build()
        .unwrap()
}

/// A forge with `shop/config` (one commit on `main`) and a promotion branch one commit ahead.
async fn setup() -> (Forge, Octocrab, String) {
    let forge = Forge::start().await.unwrap();
    forge
        .create_repo_with_files(
            OWNER,
            REPO,
            "main",
            &[("environments/dev/kustomization.yaml", "images: []\n")],
        )
        .unwrap();
    let head = branch_from_main(
        &forge,
        BRANCH,
        "environments/dev/kustomization.yaml",
        "images:\n- name: web\n  digest: sha256:aa\n",
    )
    .await;
    let gh = client(&forge, &forge.bot_token());
    (forge, gh, head)
}

/// Create `branch` from `main` with one commit changing `file`; returns the new head.
async fn branch_from_main(forge: &Forge, branch: &str, file: &str, content: &str) -> String {
    let repo = git2::Repository::open_bare(forge.repo_path(OWNER, REPO)).unwrap();
    let main = repo.refname_to_id("refs/heads/main").unwrap();
    repo.reference(&format!("refs/heads/{branch}"), main, true, "test")
        .unwrap();
    forge
        .commit_files(
            OWNER,
            REPO,
            branch,
            &[(file, content)],
            &format!("bump {file}"),
        )
        .unwrap()
}

fn status_of(err: octocrab::Error) -> (u16, String) {
    match err {
        octocrab::Error::GitHub { source, .. } => (source.status_code.as_u16(), source.message),
        other => panic!("expected a GitHub error, got {other:?}"),
    }
}

async fn open_pr(gh: &Octocrab) -> octocrab::models::pulls::PullRequest {
    gh.pulls(OWNER, REPO)
        .create("Promote web to dev", format!("{OWNER}:{BRANCH}"), "main")
        .body("Digest sha256:aa")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pull_request_is_opened_read_back_and_found_by_its_head_and_base() {
    let (forge, gh, head) = setup().await;
    let pr = open_pr(&gh).await;
    assert_eq!(pr.number, 1);
    assert_eq!(pr.head.ref_field, BRANCH);
    assert_eq!(pr.head.sha, head);
    assert_eq!(pr.base.ref_field, "main");
    assert_eq!(pr.user.as_ref().unwrap().login, "baton[bot]");
    assert_eq!(pr.user.as_ref().unwrap().r#type, "Bot");
    assert_eq!(pr.mergeable, Some(true));
    assert_eq!(pr.state, Some(octocrab::models::IssueState::Open));

    let got = gh.pulls(OWNER, REPO).get(1).await.unwrap();
    assert_eq!(got.body.as_deref(), Some("Digest sha256:aa"));

    let other = branch_from_main(&forge, "baton/prod/web", "environments/prod/k.yaml", "x\n").await;
    assert!(!other.is_empty());
    gh.pulls(OWNER, REPO)
        .create("Promote web to prod", "baton/prod/web", "main")
        .send()
        .await
        .unwrap();

    let by_head = gh
        .pulls(OWNER, REPO)
        .list()
        .head(format!("{OWNER}:{BRANCH}"))
        .base("main")
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_head.items.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![1]
    );
    // Like GitHub, a head filter without the owner is ignored.
    let unqualified = gh
        .pulls(OWNER, REPO)
        .list()
        .head(BRANCH)
        .send()
        .await
        .unwrap();
    assert_eq!(unqualified.items.len(), 2);
    let none = gh
        .pulls(OWNER, REPO)
        .list()
        .base("release")
        .send()
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let closed = gh
        .pulls(OWNER, REPO)
        .list()
        .state(octocrab::params::State::Closed)
        .send()
        .await
        .unwrap();
    assert!(closed.items.is_empty());
}

#[tokio::test]
async fn opening_a_second_pull_for_the_same_branch_or_a_missing_branch_is_422() {
    let (_forge, gh, _) = setup().await;
    open_pr(&gh).await;
    let dup = gh
        .pulls(OWNER, REPO)
        .create("again", format!("{OWNER}:{BRANCH}"), "main")
        .send()
        .await
        .unwrap_err();
    let (status, message) = status_of(dup);
    assert_eq!((status, message.as_str()), (422, "Validation Failed"));
    let missing = gh
        .pulls(OWNER, REPO)
        .create("x", "nope", "main")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(missing).0, 422);
    let same = gh
        .pulls(OWNER, REPO)
        .create("x", "main", "main")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(same).0, 422);
}

#[tokio::test]
async fn merging_makes_a_real_merge_commit_with_the_given_message_that_git_can_fetch() {
    let (forge, gh, head) = setup().await;
    open_pr(&gh).await;
    let merge = gh
        .pulls(OWNER, REPO)
        .merge(1)
        .title("Promote web to dev")
        .message("Baton-App: web\nBaton-Environment: dev")
        .sha(head.clone())
        .method(MergeMethod::Merge)
        .send()
        .await
        .unwrap();
    assert!(merge.merged);
    let merge_sha = merge.sha.unwrap();

    let pr = gh.pulls(OWNER, REPO).get(1).await.unwrap();
    assert!(pr.merged_at.is_some());
    assert_eq!(pr.merge_commit_sha.as_deref(), Some(merge_sha.as_str()));
    assert_eq!(pr.state, Some(octocrab::models::IssueState::Closed));
    assert_eq!(pr.merged_by.unwrap().login, "baton[bot]");
    assert!(gh.pulls(OWNER, REPO).is_merged(1).await.unwrap());

    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("c");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            &forge.authenticated_git_url(OWNER, REPO),
            clone.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).await, merge_sha);
    assert_eq!(
        git(&clone, &["log", "-1", "--format=%B"]).await,
        "Promote web to dev\n\nBaton-App: web\nBaton-Environment: dev"
    );
    assert_eq!(
        git(&clone, &["log", "-1", "--format=%P"])
            .await
            .split(' ')
            .count(),
        2
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD^2"]).await, head);
    assert_eq!(
        git(
            &clone,
            &["log", "-1", "--format=%(trailers:key=Baton-App,valueonly)"]
        )
        .await,
        "web"
    );

    let again = gh.pulls(OWNER, REPO).merge(1).send().await.unwrap_err();
    assert_eq!(
        status_of(again),
        (405, "Pull Request is not mergeable".into())
    );
}

#[tokio::test]
async fn a_squash_merge_leaves_one_parent_and_a_default_title_naming_the_pull() {
    let (forge, gh, _) = setup().await;
    open_pr(&gh).await;
    let merged = gh
        .pulls(OWNER, REPO)
        .merge(1)
        .method(MergeMethod::Squash)
        .send()
        .await
        .unwrap();
    let repo = git2::Repository::open_bare(forge.repo_path(OWNER, REPO)).unwrap();
    let commit = repo
        .find_commit(git2::Oid::from_str(&merged.sha.unwrap()).unwrap())
        .unwrap();
    assert_eq!(commit.parent_count(), 1);
    assert_eq!(commit.summary().unwrap(), Some("Promote web to dev (#1)"));
    assert_eq!(commit.committer().name().unwrap(), "GitHub");
}

#[tokio::test]
async fn a_stale_head_sha_is_refused_with_409_and_a_conflict_with_405() {
    let (forge, gh, head) = setup().await;
    open_pr(&gh).await;
    let moved = forge
        .commit_files(
            OWNER,
            REPO,
            BRANCH,
            &[("environments/dev/kustomization.yaml", "images: [moved]\n")],
            "again",
        )
        .unwrap();
    let stale = gh
        .pulls(OWNER, REPO)
        .merge(1)
        .sha(head)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        status_of(stale),
        (
            409,
            "Head branch was modified. Review and try the merge again.".into()
        )
    );
    assert_eq!(gh.pulls(OWNER, REPO).get(1).await.unwrap().head.sha, moved);

    forge
        .commit_files(
            OWNER,
            REPO,
            "main",
            &[("environments/dev/kustomization.yaml", "images: [other]\n")],
            "conflict",
        )
        .unwrap();
    let pr = gh.pulls(OWNER, REPO).get(1).await.unwrap();
    assert_eq!(pr.mergeable, Some(false));
    assert_eq!(
        pr.mergeable_state,
        Some(octocrab::models::pulls::MergeableState::Dirty)
    );
    let conflict = gh
        .pulls(OWNER, REPO)
        .merge(1)
        .sha(moved)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(conflict).0, 405);
}

#[tokio::test]
async fn updating_a_pull_changes_its_title_and_body_and_can_close_it() {
    let (_forge, gh, _) = setup().await;
    open_pr(&gh).await;
    let pr = gh
        .pulls(OWNER, REPO)
        .update(1)
        .title("Promote web 1.2.3 to dev")
        .body("new body")
        .send()
        .await
        .unwrap();
    assert_eq!(pr.title.as_deref(), Some("Promote web 1.2.3 to dev"));
    assert_eq!(pr.body.as_deref(), Some("new body"));
    let closed = gh
        .pulls(OWNER, REPO)
        .update(1)
        .state(octocrab::params::pulls::State::Closed)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.state, Some(octocrab::models::IssueState::Closed));
    assert_eq!(closed.merged_at, None);
    let merge = gh.pulls(OWNER, REPO).merge(1).send().await.unwrap_err();
    assert_eq!(status_of(merge).0, 405);
}

#[tokio::test]
async fn one_status_comment_is_created_then_edited_in_place_and_reacted_to() {
    let (forge, gh, _) = setup().await;
    open_pr(&gh).await;
    let alice = forge.add_user("alice", Permission::Write);
    let asked = forge
        .comment_as("alice", OWNER, REPO, 1, "/promote dev")
        .unwrap();

    let reaction = gh
        .issues(OWNER, REPO)
        .create_comment_reaction(
            CommentId(asked),
            octocrab::models::reactions::ReactionContent::Eyes,
        )
        .await
        .unwrap();
    assert_eq!(reaction.user.login, "baton[bot]");
    // Reacting twice with the same content answers with the existing reaction.
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/repos/{OWNER}/{REPO}/issues/comments/{asked}/reactions",
            forge.url()
        ))
        .bearer_auth(forge.bot_token())
        .json(&serde_json::json!({"content": "eyes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.json::<Value>().await.unwrap()["id"], reaction.id.0);

    let status = gh
        .issues(OWNER, REPO)
        .create_comment(1, "Rollout: pending")
        .await
        .unwrap();
    assert_eq!(status.user.login, "baton[bot]");
    let edited = gh
        .issues(OWNER, REPO)
        .update_comment(status.id, "Rollout: healthy")
        .await
        .unwrap();
    assert_eq!(edited.id, status.id);
    assert_eq!(edited.body.as_deref(), Some("Rollout: healthy"));

    let comments = gh
        .issues(OWNER, REPO)
        .list_comments(1)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = comments
        .items
        .iter()
        .map(|c| c.body.clone().unwrap())
        .collect();
    assert_eq!(bodies, vec!["/promote dev", "Rollout: healthy"]);
    assert_eq!(comments.items[0].user.login, "alice");
    assert_eq!(
        forge.comments(OWNER, REPO, 1)[0].reactions,
        vec![("baton[bot]".to_owned(), "eyes".to_owned())]
    );

    // Someone else's comment cannot be edited by a reader.
    let reader = forge.add_user("rita", Permission::Read);
    let denied = client(&forge, &reader)
        .issues(OWNER, REPO)
        .update_comment(status.id, "hacked")
        .await
        .unwrap_err();
    assert_eq!(status_of(denied).0, 403);
    let _ = alice;
}

#[tokio::test]
async fn labels_are_added_listed_and_removed_by_name() {
    let (_forge, gh, _) = setup().await;
    open_pr(&gh).await;
    let labels = gh
        .issues(OWNER, REPO)
        .add_labels(1, &["baton:promotion".to_owned(), "env:dev".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["baton:promotion", "env:dev"]
    );
    let left = gh
        .issues(OWNER, REPO)
        .remove_label(1, "env:dev")
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    let missing = gh
        .issues(OWNER, REPO)
        .remove_label(1, "baton:hold")
        .await
        .unwrap_err();
    assert_eq!(status_of(missing), (404, "Label does not exist".into()));
    let pr = gh.pulls(OWNER, REPO).get(1).await.unwrap();
    assert_eq!(pr.labels.unwrap()[0].name, "baton:promotion");
    let on_issue = gh
        .issues(OWNER, REPO)
        .list_labels_for_issue(1)
        .send()
        .await
        .unwrap();
    assert_eq!(on_issue.items.len(), 1);
    let repo_labels = gh
        .issues(OWNER, REPO)
        .list_labels_for_repo()
        .send()
        .await
        .unwrap();
    assert_eq!(repo_labels.items.len(), 2);
    let issue = gh.issues(OWNER, REPO).get(1).await.unwrap();
    assert!(issue.pull_request.is_some());
}

#[tokio::test]
async fn reviews_from_people_are_listed_and_answer_review_requests() {
    let (forge, gh, head) = setup().await;
    forge.add_user("alice", Permission::Write);
    forge.add_user("bob", Permission::Admin);
    forge.add_team(OWNER, "release-managers", &["alice", "bob"]);
    open_pr(&gh).await;

    // GitHub answers with the pull request (octocrab types the answer as a Review).
    gh.pulls(OWNER, REPO)
        .request_reviews(
            1,
            vec!["alice".to_owned()],
            vec!["release-managers".to_owned()],
        )
        .await
        .unwrap();
    let pr = gh.pulls(OWNER, REPO).get(1).await.unwrap();
    assert_eq!(pr.requested_reviewers.unwrap()[0].login, "alice");
    assert_eq!(pr.requested_teams.unwrap()[0].slug, "release-managers");
    let requested = gh
        .pulls(OWNER, REPO)
        .get_requested_reviewers(1)
        .await
        .unwrap();
    assert_eq!(requested.users.len(), 1);
    assert_eq!(requested.teams[0].slug, "release-managers");
    let stranger = gh
        .pulls(OWNER, REPO)
        .request_reviews(1, vec!["mallory".to_owned()], vec![])
        .await
        .unwrap_err();
    assert_eq!(status_of(stranger).0, 422);

    forge
        .review_as("alice", OWNER, REPO, 1, ReviewState::Approved, "")
        .unwrap();
    forge
        .review_as(
            "bob",
            OWNER,
            REPO,
            1,
            ReviewState::ChangesRequested,
            "not yet",
        )
        .unwrap();
    let reviews = gh.pulls(OWNER, REPO).list_reviews(1).send().await.unwrap();
    let states: Vec<_> = reviews
        .items
        .iter()
        .map(|r| (r.user.as_ref().unwrap().login.clone(), r.state.unwrap()))
        .collect();
    use octocrab::models::pulls::ReviewState as S;
    assert_eq!(
        states,
        vec![
            ("alice".to_owned(), S::Approved),
            ("bob".to_owned(), S::ChangesRequested)
        ]
    );
    assert_eq!(reviews.items[0].commit_id.as_deref(), Some(head.as_str()));
    assert!(
        gh.pulls(OWNER, REPO)
            .get_requested_reviewers(1)
            .await
            .unwrap()
            .users
            .is_empty()
    );

    // An author cannot approve their own pull request.
    let err = forge
        .review_as("baton[bot]", OWNER, REPO, 1, ReviewState::Approved, "")
        .unwrap_err();
    assert_eq!(err.status, 422);
}

#[tokio::test]
async fn commit_statuses_combine_the_newest_state_per_context() {
    let (forge, gh, head) = setup().await;
    let repos = gh.repos(OWNER, REPO);
    let created = repos
        .create_status(head.clone(), StatusState::Pending)
        .context("baton/dev".to_owned())
        .description("rolling out".to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(created.context.as_deref(), Some("baton/dev"));
    assert_eq!(created.creator.unwrap().login, "baton[bot]");
    forge
        .set_status_as("baton[bot]", OWNER, REPO, &head, "ci/validate", "success")
        .unwrap();

    let combined = repos
        .combined_status_for_ref(&Reference::Branch(BRANCH.to_owned()))
        .await
        .unwrap();
    assert_eq!(combined.state, StatusState::Pending);
    assert_eq!(combined.sha, head);
    assert_eq!(combined.total_count, 2);

    repos
        .create_status(head.clone(), StatusState::Success)
        .context("baton/dev".to_owned())
        .send()
        .await
        .unwrap();
    let combined = repos
        .combined_status_for_ref(&Reference::Branch(BRANCH.to_owned()))
        .await
        .unwrap();
    assert_eq!(combined.state, StatusState::Success);
    let all = repos.list_statuses(head.clone()).send().await.unwrap();
    assert_eq!(all.items.len(), 3);
    assert_eq!(all.items[0].state, StatusState::Success, "newest first");

    let bogus = repos
        .create_status(
            "0123456789012345678901234567890123456789".to_owned(),
            StatusState::Success,
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(bogus).0, 422);
}

#[tokio::test]
async fn check_runs_are_created_updated_and_listed_for_a_ref() {
    let (forge, gh, head) = setup().await;
    let checks = gh.checks(OWNER, REPO);
    let run = checks
        .create_check_run("baton/dev", head.clone())
        .status(CheckRunStatus::InProgress)
        .send()
        .await
        .unwrap();
    assert_eq!(run.head_sha, head);
    assert_eq!(run.conclusion, None);
    let done = checks
        .update_check_run(run.id)
        .status(CheckRunStatus::Completed)
        .conclusion(CheckRunConclusion::Success)
        .send()
        .await
        .unwrap();
    assert_eq!(done.conclusion.as_deref(), Some("success"));
    assert!(done.completed_at.is_some());

    forge
        .set_check_conclusion(OWNER, REPO, &head, "validate", Some("failure"))
        .unwrap();
    let listed = checks
        .list_check_runs_for_git_ref(Commitish(head.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.total_count, 2);
    let mut names: Vec<_> = listed
        .check_runs
        .iter()
        .map(|c| (c.name.clone(), c.conclusion.clone()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("baton/dev".to_owned(), Some("success".to_owned())),
            ("validate".to_owned(), Some("failure".to_owned()))
        ]
    );
    let by_branch = checks
        .list_check_runs_for_git_ref(Commitish(format!("heads/{BRANCH}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_branch.total_count, 2);

    // Check runs belong to GitHub Apps: a personal token cannot create one, and the bot
    // cannot edit the CI's run.
    let person = client(&forge, &forge.add_user("alice", Permission::Admin));
    let denied = person
        .checks(OWNER, REPO)
        .create_check_run("x", head.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(denied).0, 403);
    let ci_run = listed
        .check_runs
        .iter()
        .find(|c| c.name == "validate")
        .unwrap();
    let foreign = checks
        .update_check_run(ci_run.id)
        .conclusion(CheckRunConclusion::Success)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(foreign).0, 403);
}

#[tokio::test]
async fn collaborator_permission_and_team_membership_answer_like_github() {
    let (forge, gh, _) = setup().await;
    forge.add_user("alice", Permission::Maintain);
    forge.add_user("bob", Permission::Admin);
    forge.add_user("rita", Permission::Read);
    forge.add_team(OWNER, "release-managers", &["alice"]);

    let admin = gh
        .repos(OWNER, REPO)
        .get_contributor_permission("bob")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.permission, octocrab::params::teams::Permission::Admin);
    assert_eq!(admin.role_name, "admin");
    assert!(admin.user.permissions.push);

    // GitHub reports maintain as "write" (octocrab's typed enum lacks it; read it raw).
    let maintain: Value = gh
        .get(
            format!("/repos/{OWNER}/{REPO}/collaborators/alice/permission"),
            None::<&()>,
        )
        .await
        .unwrap();
    assert_eq!(maintain["permission"], "write");
    assert_eq!(maintain["role_name"], "maintain");
    let reader: Value = gh
        .get(
            format!("/repos/{OWNER}/{REPO}/collaborators/rita/permission"),
            None::<&()>,
        )
        .await
        .unwrap();
    assert_eq!(reader["permission"], "read");
    let nobody = gh
        .get::<Value, _, _>(
            format!("/repos/{OWNER}/{REPO}/collaborators/ghost/permission"),
            None::<&()>,
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(nobody).0, 404);

    let membership = gh
        .teams(OWNER)
        .memberships("release-managers")
        .get("alice")
        .await
        .unwrap();
    assert_eq!(
        membership.state,
        octocrab::models::memberships::State::Active
    );
    assert_eq!(membership.role, octocrab::models::memberships::Role::Member);
    let not_member = gh
        .teams(OWNER)
        .memberships("release-managers")
        .get("bob")
        .await
        .unwrap_err();
    assert_eq!(status_of(not_member).0, 404);
    let members = gh
        .teams(OWNER)
        .members("release-managers")
        .send()
        .await
        .unwrap();
    assert_eq!(members.items[0].login, "alice");
}

#[tokio::test]
async fn lists_paginate_with_link_headers_that_octocrab_follows() {
    let (forge, gh, _) = setup().await;
    open_pr(&gh).await;
    for i in 0..5 {
        forge
            .comment_as("baton[bot]", OWNER, REPO, 1, &format!("c{i}"))
            .unwrap();
    }
    let first = gh
        .issues(OWNER, REPO)
        .list_comments(1)
        .per_page(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(first.next.is_some());
    assert!(first.prev.is_none());
    assert_eq!(first.number_of_pages(), Some(3));
    let second: octocrab::Page<octocrab::models::issues::Comment> =
        gh.get_page(&first.next).await.unwrap().unwrap();
    assert_eq!(second.items[0].body.as_deref(), Some("c2"));
    assert!(second.prev.is_some());
    let all = gh.all_pages(first).await.unwrap();
    let bodies: Vec<_> = all.iter().map(|c| c.body.clone().unwrap()).collect();
    assert_eq!(bodies, ["c0", "c1", "c2", "c3", "c4"]);
}

#[tokio::test]
async fn every_answer_carries_rate_limit_headers_and_spends_the_limit() {
    let (forge, _gh, _) = setup().await;
    forge.set_rate_limit(100);
    let http = reqwest::Client::new();
    let url = format!("{}/repos/{OWNER}/{REPO}/pulls", forge.url());
    let ok = http
        .get(&url)
        .bearer_auth(forge.bot_token())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let h = ok.headers();
    assert_eq!(h["x-ratelimit-limit"], "100");
    assert_eq!(h["x-ratelimit-remaining"], "99");
    assert_eq!(h["x-ratelimit-used"], "1");
    assert_eq!(h["x-ratelimit-resource"], "core");
    let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > chrono::Utc::now().timestamp());
    let missing = http
        .get(format!("{}/repos/{OWNER}/{REPO}/pulls/99", forge.url()))
        .bearer_auth(forge.bot_token())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-ratelimit-remaining"], "98");
}

#[tokio::test]
async fn an_exhausted_primary_limit_answers_403_with_its_reset_time_until_it_resets() {
    let (forge, gh, _) = setup().await;
    forge.exhaust_rate_limit(Duration::from_secs(600));
    let err = gh.pulls(OWNER, REPO).get(1).await.unwrap_err();
    let octocrab::Error::GitHub { source, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(source.status_code, 403);
    assert!(
        source.message.starts_with("API rate limit exceeded"),
        "{}",
        source.message
    );
    let reset = source.rate_limit_reset.expect("x-ratelimit-reset is sent");
    assert!(reset as i64 >= chrono::Utc::now().timestamp() + 590);
    assert_eq!(source.headers.unwrap()["x-ratelimit-remaining"], "0");

    // Once the reset time has passed the limit refills.
    forge.exhaust_rate_limit(Duration::ZERO);
    let list = gh.pulls(OWNER, REPO).list().send().await.unwrap();
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn a_secondary_rate_limit_answers_with_retry_after() {
    let (forge, gh, _) = setup().await;
    forge.inject(Fault::secondary_rate_limit(30).on("/pulls"));
    // Other routes are not affected.
    gh.repos(OWNER, REPO).get().await.unwrap();
    let err = gh.pulls(OWNER, REPO).list().send().await.unwrap_err();
    let octocrab::Error::GitHub { source, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(source.status_code, 403);
    assert!(source.message.contains("secondary rate limit"));
    assert_eq!(source.headers.unwrap()["retry-after"], "30");
    // The fault is used up.
    gh.pulls(OWNER, REPO).list().send().await.unwrap();
}

#[tokio::test]
async fn an_injected_server_error_is_retried_by_octocrab_and_both_calls_are_counted() {
    let (forge, gh, _) = setup().await;
    open_pr(&gh).await;
    forge.reset_calls();
    forge.inject(Fault::server_error(502));
    let pr = gh.pulls(OWNER, REPO).get(1).await.unwrap();
    assert_eq!(pr.number, 1);
    let calls = forge.calls();
    assert_eq!(calls["GET /repos/{owner}/{repo}/pulls/{pull_number}"], 2);
    assert_eq!(forge.total_calls(), 2);

    forge.inject(Fault::server_error(503).times(10));
    let err = gh.pulls(OWNER, REPO).get(1).await.unwrap_err();
    assert_eq!(status_of(err).0, 503);
    forge.clear_faults();
}

#[tokio::test]
async fn a_slow_fault_delays_the_answer() {
    let (forge, gh, _) = setup().await;
    forge.inject(Fault::slow(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    gh.repos(OWNER, REPO).get().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn bad_or_missing_credentials_get_401_and_readers_cannot_write() {
    let (forge, _gh, _) = setup().await;
    let wrong = client(&forge, "ghs_wrong");
    let err = wrong.pulls(OWNER, REPO).list().send().await.unwrap_err();
    assert_eq!(status_of(err), (401, "Bad credentials".into()));
    let anonymous = reqwest::get(format!("{}/repos/{OWNER}/{REPO}", forge.url()))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let reader = client(&forge, &forge.add_user("rita", Permission::Read));
    let err = reader
        .pulls(OWNER, REPO)
        .create("x", BRANCH, "main")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(err).0, 403);
    // A private repository is invisible to people without access.
    let outsider = client(&forge, &forge.add_user("eve", Permission::None));
    let err = outsider.repos(OWNER, REPO).get().await.unwrap_err();
    assert_eq!(status_of(err).0, 404);
    // Installation tokens cannot read /user, as on GitHub.
    let err = client(&forge, &forge.bot_token())
        .current()
        .user()
        .await
        .unwrap_err();
    assert_eq!(status_of(err).0, 403);
}

#[tokio::test]
async fn git_over_the_forge_needs_a_token_and_write_access_to_push() {
    let (forge, _gh, _) = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("c");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            &forge.authenticated_git_url(OWNER, REPO),
            clone.to_str().unwrap(),
        ],
    )
    .await;
    assert!(clone.join("environments/dev/kustomization.yaml").exists());

    let token = forge.add_user("rita", Permission::Read);
    let url = forge
        .git_url(OWNER, REPO)
        .replace("http://", &format!("http://x-access-token:{token}@"));
    std::fs::write(clone.join("x"), "x").unwrap();
    git(&clone, &["add", "x"]).await;
    git(&clone, &["commit", "-q", "-m", "x"]).await;
    let out = git_output(&clone, &["push", &url, "HEAD:main"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
    assert!(forge.calls().contains_key("GET /{owner}/{repo}/info/refs"));
}

#[tokio::test]
async fn an_app_jwt_mints_installation_tokens_that_act_as_the_bot() {
    let forge = Forge::start().await.unwrap();
    forge
        .create_repo_with_files(OWNER, REPO, "main", &[("a", "a\n")])
        .unwrap();
    // A throwaway key made for this test only; the stand-in reads the JWT's claims, so any
    // RSA key works.
    let pem = include_bytes!("fixtures/test-app-key.pem");
    let key = octocrab::EncodingKey::from_rsa_pem(pem).unwrap();
    let app = Octocrab::builder()
        .base_uri(forge.url())
        .unwrap()
        .app(octocrab::models::AppId(4242), key)
        .build()
        .unwrap();
    let installation = app
        .apps()
        .get_repository_installation(OWNER, REPO)
        .await
        .unwrap();
    assert_eq!(installation.id.0, 77);
    let gh = app.installation(installation.id).unwrap();
    let repo = gh.repos(OWNER, REPO).get().await.unwrap();
    assert_eq!(repo.default_branch.as_deref(), Some("main"));
    let comment_target = gh
        .issues(OWNER, REPO)
        .list_labels_for_repo()
        .send()
        .await
        .unwrap();
    assert!(comment_target.items.is_empty());
}

/// A tiny receiver that forwards every delivery (event, signature, delivery id, body).
async fn hook_receiver() -> (
    sim::Server,
    mpsc::UnboundedReceiver<(String, String, String, Vec<u8>)>,
) {
    use axum::http::HeaderMap;
    let (tx, rx) = mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let _ = tx.send((
                    h("x-github-event"),
                    h("x-hub-signature-256"),
                    h("x-github-delivery"),
                    body.to_vec(),
                ));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    (sim::Server::start(router).await.unwrap(), rx)
}

const SECRET: &str = "It's a Secret to Everybody";

/// The next delivery of `event` (skipping others), verified and parsed by octocrab.
async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<(String, String, String, Vec<u8>)>,
    event: &str,
) -> (WebhookEvent, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (name, signature, delivery, body) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {event} delivery within 10s"))
            .expect("receiver open");
        if name != event {
            continue;
        }
        assert_eq!(delivery.len(), 36);
        let parsed =
            WebhookEvent::try_from_header_signature_and_body(&name, &signature, SECRET, &body)
                .unwrap_or_else(|e| {
                    panic!(
                        "{event} did not verify/parse: {e:?}\n{}",
                        String::from_utf8_lossy(&body)
                    )
                });
        return (parsed, serde_json::from_slice(&body).unwrap());
    }
}

#[tokio::test]
async fn webhooks_are_signed_and_parse_as_octocrab_events_for_each_bot_trigger() {
    let (forge, gh, head) = setup().await;
    let (receiver, mut rx) = hook_receiver().await;
    forge.add_webhook(&format!("{}/hook", receiver.url()), SECRET);
    forge.add_user("alice", Permission::Write);

    open_pr(&gh).await;
    let (ev, raw) = next_event(&mut rx, "pull_request").await;
    let WebhookEventPayload::PullRequest(p) = ev.specific else {
        panic!()
    };
    assert_eq!(p.number, 1);
    assert_eq!(raw["action"], "opened");
    assert_eq!(ev.sender.unwrap().login, "baton[bot]");
    assert_eq!(
        ev.repository.unwrap().full_name.as_deref(),
        Some("shop/config")
    );
    assert!(ev.installation.is_some());

    forge
        .comment_as("alice", OWNER, REPO, 1, "/promote dev")
        .unwrap();
    let (ev, _) = next_event(&mut rx, "issue_comment").await;
    let WebhookEventPayload::IssueComment(c) = ev.specific else {
        panic!()
    };
    assert_eq!(c.comment.body.as_deref(), Some("/promote dev"));
    assert_eq!(c.comment.user.login, "alice");
    assert_eq!(c.issue.number, 1);
    assert!(c.issue.pull_request.is_some());

    let id = forge.comments(OWNER, REPO, 1)[0].id;
    forge.edit_comment_as("alice", id, "/promote prod").unwrap();
    let (ev, _) = next_event(&mut rx, "issue_comment").await;
    let WebhookEventPayload::IssueComment(c) = ev.specific else {
        panic!()
    };
    assert_eq!(c.changes.unwrap().body.from, "/promote dev");

    forge
        .review_as("alice", OWNER, REPO, 1, ReviewState::Approved, "")
        .unwrap();
    let (ev, _) = next_event(&mut rx, "pull_request_review").await;
    let WebhookEventPayload::PullRequestReview(r) = ev.specific else {
        panic!()
    };
    assert_eq!(
        r.review.state,
        Some(octocrab::models::pulls::ReviewState::Approved)
    );
    assert_eq!(r.review.user.unwrap().login, "alice");

    gh.repos(OWNER, REPO)
        .create_status(head.clone(), StatusState::Success)
        .context("baton/dev".to_owned())
        .send()
        .await
        .unwrap();
    let (ev, _) = next_event(&mut rx, "status").await;
    let WebhookEventPayload::Status(s) = ev.specific else {
        panic!()
    };
    assert_eq!(
        (s.sha.as_str(), s.context.as_str()),
        (head.as_str(), "baton/dev")
    );

    forge
        .set_check_conclusion(OWNER, REPO, &head, "validate", Some("success"))
        .unwrap();
    let (_, raw) = next_event(&mut rx, "check_run").await;
    assert_eq!(raw["check_run"]["name"], "validate");
    let (_, raw) = next_event(&mut rx, "check_suite").await;
    assert_eq!(raw["action"], "completed");
    assert_eq!(raw["check_suite"]["conclusion"], "success");
    assert_eq!(raw["check_suite"]["pull_requests"][0]["number"], 1);

    let merged = gh
        .pulls(OWNER, REPO)
        .merge(1)
        .send()
        .await
        .unwrap()
        .sha
        .unwrap();
    let (ev, raw) = next_event(&mut rx, "pull_request").await;
    let WebhookEventPayload::PullRequest(p) = ev.specific else {
        panic!()
    };
    assert_eq!(raw["action"], "closed");
    assert_eq!(p.pull_request.merged, Some(true));
    let (ev, _) = next_event(&mut rx, "push").await;
    let WebhookEventPayload::Push(push) = ev.specific else {
        panic!()
    };
    assert_eq!(push.r#ref, "refs/heads/main");
    assert_eq!(push.after, merged);
    assert_eq!(push.head_commit.unwrap().id, merged);

    assert!(forge.flush_webhooks(Duration::from_secs(10)).await);
    let deliveries = forge.deliveries();
    assert!(
        deliveries.iter().all(|d| d.status == Some(204)),
        "{deliveries:?}"
    );
}

#[tokio::test]
async fn a_git_push_to_a_pull_branch_delivers_push_and_synchronize() {
    let (forge, gh, head) = setup().await;
    open_pr(&gh).await;
    let (receiver, mut rx) = hook_receiver().await;
    forge.add_webhook(&format!("{}/hook", receiver.url()), SECRET);

    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("c");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "-b",
            BRANCH,
            &forge.authenticated_git_url(OWNER, REPO),
            clone.to_str().unwrap(),
        ],
    )
    .await;
    std::fs::write(
        clone.join("environments/dev/kustomization.yaml"),
        "images: [bumped]\n",
    )
    .unwrap();
    git(&clone, &["commit", "-q", "-am", "bump again"]).await;
    git(&clone, &["push", "-q", "origin", BRANCH]).await;
    let new_head = git(&clone, &["rev-parse", "HEAD"]).await;

    let (ev, _) = next_event(&mut rx, "push").await;
    let WebhookEventPayload::Push(push) = ev.specific else {
        panic!()
    };
    assert_eq!(push.r#ref, format!("refs/heads/{BRANCH}"));
    assert_eq!(
        (push.before.as_str(), push.after.as_str()),
        (head.as_str(), new_head.as_str())
    );
    assert_eq!(push.commits.len(), 1);
    assert_eq!(
        push.commits[0].modified,
        vec!["environments/dev/kustomization.yaml".to_owned()]
    );
    assert_eq!(ev.sender.unwrap().login, "baton[bot]");

    let (_, raw) = next_event(&mut rx, "pull_request").await;
    assert_eq!(raw["action"], "synchronize");
    assert_eq!(raw["after"], new_head.as_str());
    assert_eq!(
        gh.pulls(OWNER, REPO).get(1).await.unwrap().head.sha,
        new_head
    );
}

#[tokio::test]
async fn the_control_api_over_http_drives_the_same_state() {
    let (forge, gh, head) = setup().await;
    open_pr(&gh).await;
    let http = reqwest::Client::new();
    let base = forge.url();
    let user: Value = http
        .post(format!("{base}/_sim/users"))
        .json(&serde_json::json!({"login": "carol", "permission": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(user["token"].as_str().unwrap().starts_with("ghp_"));
    let r = http
        .post(format!(
            "{base}/_sim/repos/{OWNER}/{REPO}/issues/1/comments"
        ))
        .json(&serde_json::json!({"user": "carol", "body": "/hold"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/_sim/repos/{OWNER}/{REPO}/pulls/1/reviews"))
        .json(&serde_json::json!({"user": "carol", "event": "APPROVE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/_sim/repos/{OWNER}/{REPO}/check-runs"))
        .json(&serde_json::json!({"sha": head, "name": "validate", "conclusion": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/_sim/faults"))
        .json(&serde_json::json!({"kind": "server_error", "status": 500, "times": 5, "route": "/reviews"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let comments = gh
        .issues(OWNER, REPO)
        .list_comments(1)
        .send()
        .await
        .unwrap();
    assert_eq!(comments.items[0].user.login, "carol");
    let err = gh
        .pulls(OWNER, REPO)
        .list_reviews(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(err).0, 500);
    http.delete(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        gh.pulls(OWNER, REPO)
            .list_reviews(1)
            .send()
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let calls: Value = http
        .get(format!("{base}/_sim/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        calls["calls"]["GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews"],
        5
    );
    assert!(calls["total"].as_u64().unwrap() >= 7);
}
