//! The config-repo PR check (`baton/validate`) end to end against the GitHub stand-in over real
//! HTTP: people push branches with the `git` CLI and open PRs through the REST API; the checker
//! reads them with octocrab and git2. Every check runs on a fresh clone and client, as after a
//! restart.

mod common;

use std::collections::BTreeMap;

use baton::config::Secret;
use baton::engine::{Engine, Outcome};
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::forge::{CommitStatus, Forge as _, StatusState};
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::image::Digest;
use baton::prcheck::{CheckOutcome, Checker};
use baton::promote::plan::Release;
use baton::promote::state::{DeployState, Deployment};
use chrono::{Duration, TimeZone, Utc};
use common::{example_files, git, seed_repo};
use sim::forge::{Forge, Permission};

const OWNER: &str = "shop";
const REPO: &str = "config";

/// What one pass reports for a head it checked.
fn checked(pr: u64, sha: &str, passed: bool) -> Vec<CheckOutcome> {
    vec![CheckOutcome::Checked {
        pr,
        sha: sha.to_string(),
        passed,
    }]
}

struct World {
    forge: Forge,
    dir: tempfile::TempDir,
    clones: usize,
    tokens: BTreeMap<String, String>,
    /// Talk to GitHub as the App (installation tokens) instead of with the bot's token.
    as_app: bool,
}

impl World {
    async fn new() -> Self {
        Self::with_files(example_files()).await
    }

    /// A world whose config repo holds `files`.
    async fn with_files(files: Vec<(String, String)>) -> Self {
        let forge = Forge::start().await.unwrap();
        seed_repo(&forge, OWNER, REPO, &files);
        let mut tokens = BTreeMap::new();
        for (login, perm) in [("dana", Permission::Write), ("ci", Permission::Write)] {
            tokens.insert(login.to_string(), forge.add_user(login, perm));
        }
        Self {
            forge,
            dir: tempfile::tempdir().unwrap(),
            clones: 0,
            tokens,
            as_app: false,
        }
    }

    fn next_dir(&mut self, what: &str) -> std::path::PathBuf {
        self.clones += 1;
        self.dir.path().join(format!("{what}-{}", self.clones))
    }

    fn repo(&mut self) -> ConfigRepo {
        let dir = self.next_dir("clone");
        ConfigRepo::open(
            &dir,
            Remote {
                url: self.forge.git_url(OWNER, REPO),
                branch: "main".into(),
                auth: Auth::Token(Secret::new(self.forge.bot_token())),
            },
            Identity::default(),
        )
        .unwrap()
    }

    fn gh(&self) -> GitHubForge {
        GitHubForge::new(
            &self.forge.url(),
            "shop/config",
            if self.as_app {
                GitHubAuth::App {
                    app_id: 4242,
                    installation_id: 77,
                    private_key: Secret::new(include_str!(
                        "../sim/tests/fixtures/test-app-key.pem"
                    )),
                }
            } else {
                GitHubAuth::Token(Secret::new(self.forge.bot_token()))
            },
            self.forge.bot_login(),
            GitHubOptions::default(),
        )
        .unwrap()
    }

    /// A brand-new checker and client, as after a restart; one pass.
    async fn check(&mut self) -> Vec<CheckOutcome> {
        let checker = Checker::new(self.repo());
        checker.run_once(&self.gh()).await.unwrap()
    }

    /// As `who`, with the `git` CLI: branch `branch` off `main` (or continue it), replace text
    /// in files, commit and push. Returns the pushed commit.
    fn push(&mut self, who: &str, branch: &str, edits: &[(&str, &str, &str)]) -> String {
        let work = self.next_dir("work");
        let url = self.forge.git_url(OWNER, REPO).replacen(
            "http://",
            &format!("http://x-access-token:{}@", self.tokens[who]),
            1,
        );
        git(
            self.dir.path(),
            &["clone", "-q", &url, work.to_str().unwrap()],
        );
        let exists = git(&work, &["ls-remote", "--heads", "origin", branch]);
        if exists.trim().is_empty() {
            git(&work, &["checkout", "-q", "-b", branch]);
        } else {
            git(&work, &["checkout", "-q", branch]);
        }
        for (file, from, to) in edits {
            common::edit(&work, file, from, to);
        }
        git(&work, &["commit", "-q", "-am", &format!("{who} edits")]);
        git(&work, &["push", "-q", "origin", branch]);
        git(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Open a PR as `who` through the REST API.
    async fn open_pr(&self, who: &str, branch: &str, title: &str) -> u64 {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/repos/{OWNER}/{REPO}/pulls", self.forge.url()))
            .bearer_auth(&self.tokens[who])
            .header("user-agent", "test")
            .json(&serde_json::json!({"title": title, "head": branch, "base": "main"}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["number"].as_u64().unwrap()
    }

    /// Dana proposes 3 web replicas in staging (a PR from `dana/scale`) and one check pass
    /// passes it: the PR, its head and the head's `baton/validate` status.
    async fn passing_replica_change(&mut self) -> (u64, String, CommitStatus) {
        let head = self.push("dana", "dana/scale", &[(STAGING, "count: 2", "count: 3")]);
        let pr = self
            .open_pr("dana", "dana/scale", "staging: 3 web replicas")
            .await;
        assert_eq!(self.check().await, checked(pr, &head, true));
        let status = self.validate_status(&head).await;
        assert_eq!(status.state, StatusState::Success, "{status:?}");
        assert_eq!(status.description, "valid; staging +0 ~1 -0");
        (pr, head, status)
    }

    async fn validate_status(&self, sha: &str) -> CommitStatus {
        let all = self.gh().statuses(sha).await.unwrap();
        let mine: Vec<_> = all
            .into_iter()
            .filter(|s| s.context == "baton/validate")
            .collect();
        assert_eq!(mine.len(), 1, "one baton/validate status: {mine:?}");
        mine.into_iter().next().unwrap()
    }

    /// The newest `baton/validate` status of `sha` (GitHub lists every one, newest first).
    async fn latest_status(&self, sha: &str) -> CommitStatus {
        let all = self.gh().statuses(sha).await.unwrap();
        all.into_iter()
            .find(|s| s.context == "baton/validate")
            .expect("a baton/validate status")
    }

    fn bot_comments(&self, pr: u64) -> Vec<(u64, String)> {
        self.forge
            .comments(OWNER, REPO, pr)
            .into_iter()
            .filter(|c| c.user == self.forge.bot_login())
            .map(|c| (c.id, c.body))
            .collect()
    }

    /// Calls that change something (a Git fetch is a POST to git-upload-pack but reads).
    fn writes(&self) -> BTreeMap<String, u64> {
        self.forge
            .calls()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GET ") && !k.ends_with("/git-upload-pack"))
            .collect()
    }
}

const STAGING: &str = "environments/staging/kustomization.yaml";
const PROD: &str = "environments/prod/kustomization.yaml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_pr_that_breaks_a_kustomization_fails_naming_the_file_and_line() {
    let mut w = World::new().await;
    let sha = w.push(
        "dana",
        "dana/typo",
        &[(STAGING, "replicas:\n", "replicas: [\n")],
    );
    let pr = w
        .open_pr("dana", "dana/typo", "staging: more replicas")
        .await;

    let out = w.check().await;
    assert_eq!(out, checked(pr, &sha, false));
    let status = w.validate_status(&sha).await;
    assert_eq!(status.state, StatusState::Failure);
    assert_eq!(status.creator, w.forge.bot_login());
    assert!(
        status
            .description
            .starts_with("environments/staging/kustomization.yaml:"),
        "{status:?}"
    );
    let line: String = status.description["environments/staging/kustomization.yaml:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(
        line.parse::<usize>().is_ok_and(|l| (12..=16).contains(&l)),
        "the line of the broken `replicas:` is named: {status:?}"
    );
    assert!(status.description.chars().count() <= 140);

    // The comment carries the full detail.
    let comments = w.bot_comments(pr);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.starts_with("<!-- baton:validate -->"));
    assert!(
        comments[0].1.contains("failed at")
            && comments[0]
                .1
                .contains("- **staging**: environments/staging/kustomization.yaml:"),
        "{}",
        comments[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_change_passes_with_one_summary_comment_that_a_second_push_edits() {
    let mut w = World::new().await;
    let (pr, first, status) = w.passing_replica_change().await;
    let comments = w.bot_comments(pr);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let (id, body) = &comments[0];
    assert!(
        status
            .target_url
            .as_deref()
            .is_some_and(|u| u.ends_with(&format!("/pull/{pr}#issuecomment-{id}"))),
        "the status links to the summary comment: {status:?}"
    );
    assert!(
        body.contains("#### staging — 0 added, 1 changed, 0 removed")
            && body.contains("- changed `Deployment shop-staging/web`")
            && body.contains("#### dev — no change")
            && body.contains("#### prod — no change"),
        "{body}"
    );

    // A second push changes staging again: the same comment is edited, none is added. (A
    // change to prod would need prod's approvers: see the gate-integrity tests below.)
    let second = w.push("dana", "dana/scale", &[(STAGING, "count: 3", "count: 4")]);
    assert_ne!(first, second);
    let out = w.check().await;
    assert_eq!(out, checked(pr, &second, true));
    let comments = w.bot_comments(pr);
    assert_eq!(comments.len(), 1, "one comment, edited: {comments:?}");
    assert_eq!(comments[0].0, *id);
    let body = &comments[0].1;
    assert!(
        body.contains(&format!("passed at `{}`", &second[..7]))
            && body.contains("#### staging — 0 added, 1 changed, 0 removed")
            && body.contains("#### prod — no change")
            && !body.contains("Gated environments"),
        "{body}"
    );

    // Unchanged head, new process: read-only.
    w.forge.reset_calls();
    let out = w.check().await;
    assert_eq!(
        out,
        vec![CheckOutcome::AlreadyChecked {
            pr,
            sha: second.clone()
        }]
    );
    assert_eq!(
        w.forge.calls(),
        BTreeMap::from([
            ("GET /repos/{owner}/{repo}/pulls".to_string(), 1),
            (
                "GET /repos/{owner}/{repo}/commits/{ref}/statuses".to_string(),
                1
            ),
        ]),
        "an idle pass: one PR list, one status read per PR, no Git fetch, no writes"
    );
    assert_eq!(w.bot_comments(pr).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_github_app_the_result_is_a_check_run_that_a_restart_sees_as_already_checked() {
    let mut w = World::new().await;
    w.as_app = true;
    let (pr, head, status) = w.passing_replica_change().await;
    assert_eq!(status.creator, w.forge.bot_login());
    let writes = w.writes();
    assert_eq!(
        writes.get("POST /repos/{owner}/{repo}/check-runs"),
        Some(&1),
        "{writes:?}"
    );
    assert!(
        !writes.contains_key("POST /repos/{owner}/{repo}/statuses/{sha}"),
        "{writes:?}"
    );

    // Unchanged head, new process: the check run is found, nothing is written.
    w.forge.reset_calls();
    let out = w.check().await;
    assert_eq!(out, vec![CheckOutcome::AlreadyChecked { pr, sha: head }]);
    let writes: Vec<_> = w
        .writes()
        .into_keys()
        .filter(|k| !k.ends_with("/access_tokens"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_open_pr_is_listed_one_can_be_checked_by_number_and_pull_heads_are_fetchable() {
    let mut w = World::new().await;
    let sha = w.push("dana", "dana/a", &[(STAGING, "count: 2", "count: 4")]);
    let pr = w.open_pr("dana", "dana/a", "four").await;

    let listed = w.gh().open_pull_requests().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].number,
            listed[0].head_sha.as_str(),
            listed[0].head_ref.as_str(),
            listed[0].base_ref.as_str(),
            listed[0].author.as_str()
        ),
        (pr, sha.as_str(), "dana/a", "main", "dana")
    );

    // The service loop spawns the checker: its futures must be Send.
    fn assert_send<T: Send>(_: &T) {}
    let checker = Checker::new(w.repo());
    let gh = w.gh();
    assert_send(&checker.run_once(&gh));
    assert_send(&checker.check_pull_request(&gh, pr));
    let out = checker.check_pull_request(&gh, pr).await.unwrap();
    assert_eq!(
        out,
        Some(CheckOutcome::Checked {
            pr,
            sha: sha.clone(),
            passed: true
        })
    );

    let repo = w.repo();
    repo.fetch_pull_heads().unwrap();
    let oid = repo
        .git()
        .refname_to_id(&format!("refs/remotes/origin/pull/{pr}"))
        .unwrap();
    assert_eq!(oid.to_string(), sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_pr_gets_baton_validate_and_the_staging_gate_then_passes() {
    let mut w = World::new().await;
    let digest = Digest::of(b"web:1.5.0");
    let releases = BTreeMap::from([(
        "web".to_string(),
        Release {
            tag: Some("1.5.0".into()),
            digest: digest.clone(),
        },
    )]);
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    let mut deployments = BTreeMap::new();
    let pass = |w: &mut World, deployments: &BTreeMap<(String, String), Deployment>| {
        let engine = Engine::new(w.gh(), w.repo());
        let releases = releases.clone();
        let deployments = deployments.clone();
        async move { engine.run_once(&releases, &deployments, now).await.unwrap() }
    };
    pass(&mut w, &deployments).await; // dev PR
    pass(&mut w, &deployments).await; // dev merged (no required checks)
    deployments.insert(
        ("dev".to_string(), "web".to_string()),
        Deployment {
            env: "dev".into(),
            app: "web".into(),
            digest: digest.clone(),
            state: DeployState::Healthy,
            healthy_since: Some(now - Duration::minutes(15)),
            restarted: None,
        },
    );
    let out = pass(&mut w, &deployments).await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Opened { env, .. } if env == "staging")),
        "{out:?}"
    );
    let staging = w
        .forge
        .pulls(OWNER, REPO)
        .into_iter()
        .find(|p| p.open && p.head_ref == "baton/staging/web")
        .unwrap();
    // The body folds the rendered manifest diff of staging: the Deployment's image moves.
    let body = w
        .forge
        .pull(OWNER, REPO, staging.number)
        .unwrap()
        .body
        .unwrap_or_default();
    assert!(
        body.contains("<details><summary>Rendered manifests of staging")
            && body.contains("Deployment shop-staging/web")
            && body.contains(&format!(
                "+        image: registry.example.com/shop/web:1.5.0@{digest}"
            )),
        "{body}"
    );

    let out = pass(&mut w, &deployments).await;
    assert!(
        out.iter().any(|o| matches!(o, Outcome::Waiting { blocking, .. } if blocking.contains("baton/validate"))),
        "{out:?}"
    );

    let out = w.check().await;
    assert_eq!(out, checked(staging.number, &staging.head_sha, true));
    let status = w.validate_status(&staging.head_sha).await;
    assert_eq!(status.state, StatusState::Success);
    assert!(
        status.description.contains("staging +0 ~1 -0"),
        "{status:?}"
    );
    assert!(
        w.bot_comments(staging.number)
            .iter()
            .all(|(_, b)| !b.starts_with("<!-- baton:validate -->")),
        "a passing promotion PR gets no summary comment (its body has the diff)"
    );

    let out = pass(&mut w, &deployments).await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Merged { env, .. } if env == "staging")),
        "{out:?}"
    );
}

/// `baton check` (table output) on `w`'s repo: its stdout.
async fn baton_check_table(w: &World) -> String {
    let config = w.dir.path().join("baton-guard.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  branch: main\ngithub:\n  apiUrl: {}\n  repository: shop/config\n  token: {{ env: CHECK_TEST_TOKEN }}\n  botLogin: baton[bot]\nworkdir: {}\n",
            w.forge.git_url(OWNER, REPO),
            w.forge.url(),
            w.dir.path().join("guard-work").display()
        ),
    )
    .unwrap();
    let token = w.forge.bot_token();
    let out = tokio::task::spawn_blocking(move || {
        common::output_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["check", "--config", config.to_str().unwrap()])
                .env("CHECK_TEST_TOKEN", token),
            common::COMMAND_LIMIT,
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_check_says_what_to_set_when_the_branch_rule_and_codeowners_are_missing() {
    let w = World::new().await;
    // A rule that requires another check only, and no CODEOWNERS.
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            sim::forge::Protection {
                ruleset: true,
                required_status_checks: vec!["ci/test".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let out = baton_check_table(&w).await;
    for says in [
        "warning: people's PRs to main can skip the promotion gates; set:",
        "  - require the status check baton/validate on main (Settings → Rules → Rulesets",
        "  - add a CODEOWNERS file (.github/CODEOWNERS) with a line `/environments/ @<org>/<approvers>`",
        "  - add a CODEOWNERS file (.github/CODEOWNERS) with a line `/policies/ @<org>/<approvers>`",
        "  - require a review from Code Owners on main",
        "no open pull request to main",
    ] {
        assert!(out.contains(says), "expected {says:?} in:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_check_says_the_gates_bind_when_validate_is_required_and_codeowners_cover_the_config()
{
    let mut files = example_files();
    files.push((
        ".github/CODEOWNERS".into(),
        "* @shop/devs\n/environments/ @shop/release-managers\n/policies/ @shop/release-managers\n"
            .into(),
    ));
    let w = World::with_files(files).await;
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            sim::forge::Protection {
                ruleset: true,
                required_status_checks: vec!["baton/validate".into()],
                require_code_owner_reviews: true,
                ..Default::default()
            },
        )
        .unwrap();
    let out = baton_check_table(&w).await;
    assert!(
        out.starts_with("branch main requires baton/validate and a code owner's review, and .github/CODEOWNERS owns environments/ and policies/: gates bind people's PRs too\n"),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");

    // A CODEOWNERS line that unowns prod is named.
    let mut w = w;
    w.push(
        "dana",
        "main",
        &[(
            ".github/CODEOWNERS",
            "/policies/ @shop/release-managers\n",
            "/policies/ @shop/release-managers\n/environments/prod/\n",
        )],
    );
    let out = baton_check_table(&w).await;
    assert!(
        out.contains("  - .github/CODEOWNERS leaves environments/prod/"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_check_runs_the_check_from_the_command_line() {
    let mut w = World::new().await;
    let sha = w.push("dana", "dana/cli", &[(STAGING, "count: 2", "count: 5")]);
    let pr = w.open_pr("dana", "dana/cli", "five").await;
    let config = w.dir.path().join("baton.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {}\n  branch: main\ngithub:\n  apiUrl: {}\n  repository: shop/config\n  token: {{ env: CHECK_TEST_TOKEN }}\n  botLogin: baton[bot]\nworkdir: {}\n",
            w.forge.git_url(OWNER, REPO),
            w.forge.url(),
            w.dir.path().join("work").display()
        ),
    )
    .unwrap();
    let token = w.forge.bot_token();
    let run = move |args: Vec<String>| {
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            common::output_within(
                std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
                    .args(&args)
                    .env("CHECK_TEST_TOKEN", token),
                common::COMMAND_LIMIT,
            )
        })
    };
    let args = vec![
        "check".to_string(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--pr".into(),
        pr.to_string(),
        "-o".into(),
        "json".into(),
    ];
    let out = run(args.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"kind": "checked", "pr": pr, "sha": sha, "passed": true}])
    );
    assert_eq!(w.validate_status(&sha).await.state, StatusState::Success);

    let out = run(args).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["kind"], "alreadyChecked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_dies_between_comment_and_status_finishes_without_a_second_comment() {
    let mut w = World::new().await;
    let sha = w.push("dana", "dana/crash", &[(STAGING, "count: 2", "count: 6")]);
    let pr = w.open_pr("dana", "dana/crash", "six").await;

    // The status write fails for good: the pass ends after the comment was posted.
    w.forge.inject(
        sim::forge::Fault::server_error(502)
            .on("POST /repos/{owner}/{repo}/statuses/{sha}")
            .times(100),
    );
    let quick = GitHubForge::new(
        &w.forge.url(),
        "shop/config",
        GitHubAuth::Token(Secret::new(w.forge.bot_token())),
        w.forge.bot_login(),
        GitHubOptions {
            max_retries: 0,
            ..GitHubOptions::default()
        },
    )
    .unwrap();
    let err = Checker::new(w.repo()).run_once(&quick).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(w.bot_comments(pr).len(), 1);
    w.forge.clear_faults();

    w.forge.reset_calls();
    let out = w.check().await;
    assert_eq!(out, checked(pr, &sha, true));
    assert_eq!(w.bot_comments(pr).len(), 1, "still one comment");
    assert_eq!(
        w.writes(),
        BTreeMap::from([("POST /repos/{owner}/{repo}/statuses/{sha}".to_string(), 1)]),
        "only the status is written; the comment already says the same"
    );
    assert_eq!(w.validate_status(&sha).await.state, StatusState::Success);
}

/// Release managers alice and bob (the team prod's approvals name) and their tokens.
fn with_release_managers(w: &mut World) {
    for who in ["alice", "bob"] {
        let token = w.forge.add_user(who, Permission::Write);
        w.tokens.insert(who.to_string(), token);
    }
    w.forge
        .add_team(OWNER, "release-managers", &["alice", "bob"]);
}

fn approve(w: &World, who: &str, pr: u64) {
    w.forge
        .review_as(who, OWNER, REPO, pr, sim::forge::ReviewState::Approved, "")
        .unwrap();
}

/// A person's PR that moves prod, or weakens prod's gates, fails `baton/validate` until two
/// of prod's approvers (by the base branch's pipeline) approve its head; each review re-checks
/// it, and a pass with no new review reads and writes nothing more.
async fn fails_until_two_release_managers_approve(
    w: &mut World,
    branch: &str,
    edits: &[(&str, &str, &str)],
    reason: &str,
) {
    with_release_managers(w);
    let head = w.push("dana", branch, edits);
    let pr = w.open_pr("dana", branch, "prod change").await;
    assert_eq!(w.check().await, checked(pr, &head, false));
    let status = w.latest_status(&head).await;
    assert_eq!(status.state, StatusState::Failure);
    assert!(
        status
            .description
            .starts_with("needs approval in prod (0 of 2 from @shop/release-managers at "),
        "{status:?}"
    );
    let body = &w.bot_comments(pr)[0].1;
    assert!(
        body.contains("| prod |")
            && body.contains(reason)
            && body.contains("2 of @shop/release-managers")
            && body.contains("waiting for approval (0 of 2)"),
        "{body}"
    );

    // Dana's own approval cannot count (GitHub refuses it; she is no release manager either).
    approve(w, "alice", pr);
    assert_eq!(w.check().await, checked(pr, &head, false));
    assert!(
        w.latest_status(&head)
            .await
            .description
            .starts_with("needs approval in prod (1 of 2 ")
    );
    // No new review: the verdict stands without a fetch, a render or a write.
    w.forge.reset_calls();
    assert_eq!(
        w.check().await,
        vec![CheckOutcome::AlreadyChecked {
            pr,
            sha: head.clone()
        }]
    );
    assert!(w.writes().is_empty(), "{:?}", w.writes());
    assert!(
        !w.forge
            .calls()
            .keys()
            .any(|k| k.ends_with("git-upload-pack")),
        "no fetch: {:?}",
        w.forge.calls()
    );

    approve(w, "bob", pr);
    assert_eq!(w.check().await, checked(pr, &head, true));
    assert_eq!(w.latest_status(&head).await.state, StatusState::Success);
    let body = &w.bot_comments(pr)[0].1;
    assert!(body.contains("approved by alice, bob"), "{body}");

    // A new push needs new approvals: they were of the old head.
    let next = w.push("dana", branch, &[(STAGING, "count: 2", "count: 3")]);
    assert_eq!(w.check().await, checked(pr, &next, false));
    assert!(
        w.latest_status(&next)
            .await
            .description
            .starts_with("needs approval in prod (0 of 2 "),
    );
    let body = &w.bot_comments(pr)[0].1;
    assert!(
        body.contains("approvals by alice, bob are of an older head"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_pr_bumping_prods_digest_fails_validate_until_two_release_managers_approve() {
    let mut w = World::new().await;
    fails_until_two_release_managers_approve(
        &mut w,
        "dana/prod-web",
        &[(
            PROD,
            "sha256:b00496a095e0a021d9241ceb294e6b341590dae5e813ce57e07edd7b9d463fc5",
            "sha256:4c58c90f14978d5f4dd361f5347b51ca8aa93e55e46c5e39dbb11ccdb91a7c2c",
        )],
        "runs something else: +0 ~1 -0; image(s) web move",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_pr_lowering_prods_approval_count_fails_validate_the_same_way() {
    let mut w = World::new().await;
    fails_until_two_release_managers_approve(
        &mut w,
        "dana/fewer-approvals",
        &[(
            "policies/pipeline.yaml",
            "approvals: { count: 2, from: [\"@shop/release-managers\"] }",
            "approvals: { count: 1, from: [\"@shop/release-managers\"] }",
        )],
        "approvals 2 → 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_only_change_passes_without_prods_approvers() {
    let mut w = World::new().await;
    with_release_managers(&mut w);
    let head = w.push(
        "dana",
        "dana/dev",
        &[(
            "environments/dev/kustomization.yaml",
            "count: 1",
            "count: 2",
        )],
    );
    let pr = w.open_pr("dana", "dana/dev", "dev: 2 web replicas").await;
    assert_eq!(w.check().await, checked(pr, &head, true));
    let body = &w.bot_comments(pr)[0].1;
    assert!(!body.contains("Gated environments"), "{body}");
}
