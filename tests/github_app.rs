//! baton as a GitHub App against the stricter stand-in: it learns its login from GitHub
//! (`GET /app` → `<slug>[bot]`, `GET /user` for a token), refuses a configured login GitHub
//! disagrees with, and uses the installation token, renewed before it expires, for REST and for
//! Git, without writing it anywhere. And GitHub's own branch rules: merges the stand-in refuses
//! as GitHub would, explained once on the PR and retried with backoff.

mod common;
use baton_test_support::promote as promote_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::config::runtime::{GitHubApp, GitHubConfig};
use baton::config::secret::SecretRef;
use baton::forge::github::{GitHubForge, GitHubOptions};
use baton::forge::{Forge, ForgeError};
use chrono::Duration as Age;
use promote_support::{APP_KEY, OWNER, REPO, World};
use sim::forge::{ForgeOptions, Permission, Protection, ReviewState};

const LOGIN: &str = "shipit[bot]";

/// Everything logged by any test of this binary, to look for tokens in.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn app_world() -> World {
    let options = ForgeOptions {
        bot_login: LOGIN.into(),
        ..ForgeOptions::default()
    };
    let mut w = World::with_forge(options, |t| t).await;
    w.app_auth = true;
    w
}

fn app_config(w: &World, bot_login: Option<&str>) -> GitHubConfig {
    let key = w.dir.path().join("key.pem");
    std::fs::write(&key, APP_KEY).unwrap();
    GitHubConfig {
        api_url: w.forge.url(),
        app: Some(GitHubApp {
            app_id: 4242,
            installation_id: 77,
            private_key: SecretRef::from_file(&key),
        }),
        bot_login: bot_login.map(Into::into),
        ..GitHubConfig::default()
    }
}

/// What the bot has written that an idle pass must not add to: its comments per PR, statuses
/// and check runs per commit, reactions.
fn footprint(w: &World) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (route, n) in w.write_calls() {
        // Minting a token is not a change on the repository.
        if !route.contains("/access_tokens") {
            out.insert(route, n);
        }
    }
    for pr in w.forge.pulls(OWNER, REPO) {
        out.insert(
            format!("comments on #{}", pr.number),
            w.bot_comments(pr.number).len() as u64,
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prod_promotion_as_an_app_with_its_own_login_repeats_nothing_over_ten_idle_passes() {
    let mut w = app_world().await;
    let (_, prod) = w.walk_to_prod().await;
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod.number, ReviewState::Approved, "")
            .unwrap();
    }
    w.comment("carol", prod.number, "/promote prod");
    w.now += Age::minutes(1);
    w.pass().await;
    let merged = w.forge.pull(OWNER, REPO, prod.number).unwrap();
    assert!(merged.merged, "the prod PR merged");
    let promotion = w.last_promotion();
    assert_eq!(promotion.environment, "prod");
    assert_eq!(promotion.promoted_by.as_deref(), Some("carol"));

    // Everything the bot wrote is under the login GitHub gave it.
    let comments = w.forge.comments(OWNER, REPO, prod.number);
    assert!(comments.iter().any(|c| c.user == LOGIN));
    assert!(comments.iter().all(|c| c.user != "baton[bot]"));
    assert_eq!(
        w.replies(prod.number).len(),
        1,
        "the /promote is answered once"
    );
    w.status_comment(prod.number);

    let before = footprint(&w);
    for _ in 0..10 {
        w.now += Age::minutes(5);
        let outcomes = w.pass().await;
        assert!(
            outcomes
                .iter()
                .all(|o| !matches!(o, baton::engine::Outcome::Answered { .. })),
            "{outcomes:?}"
        );
    }
    assert_eq!(
        footprint(&w),
        before,
        "idle passes wrote comments, statuses, check runs or answers again"
    );
    for pr in w.forge.pulls(OWNER, REPO) {
        w.status_comment(pr.number);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_learns_its_login_from_github_and_stops_when_the_configured_one_disagrees() {
    let w = app_world().await;
    let gh = GitHubForge::connect(&app_config(&w, None), "shop/config")
        .await
        .unwrap();
    assert_eq!(gh.bot_login(), LOGIN);
    assert_eq!(gh.calls().by_route["GET /app"], 1);

    let agreeing = GitHubForge::connect(&app_config(&w, Some("ShipIt[bot]")), "shop/config")
        .await
        .unwrap();
    assert_eq!(agreeing.bot_login(), LOGIN);

    let err = GitHubForge::connect(&app_config(&w, Some("baton[bot]")), "shop/config")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("baton[bot]") && text.contains(LOGIN) && text.contains("github.botLogin"),
        "{text}"
    );

    // A person's token: GET /user names them.
    let token = w.forge.add_user("deployer", Permission::Write);
    let file = w.dir.path().join("token");
    std::fs::write(&file, &token).unwrap();
    let person = GitHubConfig {
        api_url: w.forge.url(),
        token: Some(SecretRef::from_file(&file)),
        ..GitHubConfig::default()
    };
    let gh = GitHubForge::connect(&person, "shop/config").await.unwrap();
    assert_eq!(gh.bot_login(), "deployer");

    // An installation token given as a token: GitHub does not say whose; the login must be
    // configured, and is then taken as given.
    std::fs::write(&file, w.forge.bot_token()).unwrap();
    let err = GitHubForge::connect(&person, "shop/config")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("github.botLogin"), "{err}");
    let pinned = GitHubConfig {
        bot_login: Some(LOGIN.into()),
        ..person
    };
    let gh = GitHubForge::connect(&pinned, "shop/config").await.unwrap();
    assert_eq!(gh.bot_login(), LOGIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_uses_the_installation_token_renewed_as_it_expires_and_never_writes_it_down() {
    let logs = captured_logs();
    let mut w = app_world().await;
    // Tokens live 3 s here (an hour on GitHub); baton renews them 1 s before they expire.
    w.forge.set_installation_token_ttl(Duration::from_secs(3));
    w.options = GitHubOptions {
        token_refresh_margin: Duration::from_secs(1),
        ..GitHubOptions::default()
    };
    let engine = w.app_engine().await;
    let clone = w.dir.path().join(format!("clone-{}", w.workdirs));
    let v1 = w.release("web", "1.5.0");
    engine
        .run_once(&w.releases, &w.deployments, w.now)
        .await
        .unwrap();
    assert!(w.pr_for("dev", "web").open, "opened");

    // One long run: passes go on past two token lifetimes; each fetches with Git first.
    let start = Instant::now();
    let mut passes = 0;
    while start.elapsed() < Duration::from_secs(7) {
        assert!(passes < 2000, "bounded");
        engine
            .run_once(&w.releases, &w.deployments, w.now)
            .await
            .unwrap();
        passes += 1;
    }
    // A newer release is committed (through the Git data API, as an App) and fetched with
    // whatever token is current now.
    let fetches = w.forge.calls()["POST /{owner}/{repo}/git-upload-pack"];
    let v2 = w.release("web", "1.6.0");
    engine
        .run_once(&w.releases, &w.deployments, w.now)
        .await
        .unwrap();
    let pr = w.pr_for("dev", "web");
    assert_eq!(
        w.forge.calls()["POST /repos/{owner}/{repo}/git/commits"],
        2,
        "both releases committed by GitHub"
    );
    assert!(
        w.forge.calls()["POST /{owner}/{repo}/git-upload-pack"] > fetches,
        "fetched with the current token"
    );
    assert_ne!(v1, v2);
    let minted =
        engine.forge().calls().by_route["POST /app/installations/{installation_id}/access_tokens"];
    assert!(minted >= 3, "renewed as tokens expired: {minted} minted");
    assert_eq!(w.forge.minted_tokens() as u64, minted);
    assert!(pr.title.contains("1.6.0"), "{}", pr.title);

    // No token in the remote URL, the clone's config, or a log line.
    let config = std::fs::read_to_string(clone.join("config")).unwrap();
    assert!(config.contains(&w.forge.git_url(OWNER, REPO)), "{config}");
    assert!(
        !config.contains("ghs_") && !config.contains('@'),
        "{config}"
    );
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!logged.is_empty(), "logs were captured");
    assert!(!logged.contains("ghs_"), "a token was logged");
}

/// A GitHub rule on `main` the gates cannot settle: signed commits, where baton runs with a token
/// (its git2 commits are unsigned). The merge GitHub refuses is explained once in the status comment, the PR stays
/// open, and baton tries again after a minute, then two, not on every pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_github_refuses_is_explained_once_and_retried_with_backoff() {
    const MERGE: &str = "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge";
    let mut w = World::new().await;
    let (_, prod) = w.walk_to_prod().await;
    let merges_before = w.forge.calls().get(MERGE).copied().unwrap_or(0);
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                ruleset: true,
                required_signatures: true,
                ..Protection::default()
            },
        )
        .unwrap();
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod.number, ReviewState::Approved, "")
            .unwrap();
    }
    w.comment("carol", prod.number, "/promote prod");
    w.now += Age::minutes(1);
    let outcomes = w.pass().await;
    assert!(
        outcomes.iter().any(|o| matches!(o, baton::engine::Outcome::Waiting { blocking, .. } if blocking.contains("GitHub refused the merge"))),
        "{outcomes:?}"
    );
    let calls = |w: &World| w.forge.calls().get(MERGE).copied().unwrap_or(0) - merges_before;
    assert_eq!(calls(&w), 1);
    assert!(w.forge.pull(OWNER, REPO, prod.number).unwrap().open);
    let status = w.status_comment(prod.number);
    assert_eq!(
        status.matches("GitHub refused the merge of").count(),
        1,
        "{status}"
    );
    assert!(
        status.contains("Commits must have verified signatures"),
        "{status}"
    );
    assert!(
        status.contains("run baton as a GitHub App"),
        "says what to do: {status}"
    );
    assert!(
        status.contains("| github | ✅ passed | nothing required before merging; also requires signed commits (ruleset 42); could not read the branch protection of main"),
        "the gate table names the rule: {status}"
    );
    assert!(status.contains("(attempt 1)"), "{status}");

    // Within the backoff: no merge attempt, nothing written.
    let writes = w.writes();
    for _ in 0..3 {
        w.now += Age::seconds(15);
        w.pass().await;
    }
    assert_eq!(calls(&w), 1, "no retry on every pass");
    assert_eq!(w.writes(), writes, "nothing written while backing off");

    // After the minute: one more try, the same line updated, not a second one.
    w.now += Age::seconds(30);
    w.pass().await;
    assert_eq!(calls(&w), 2);
    let status = w.status_comment(prod.number);
    assert_eq!(
        status.matches("GitHub refused the merge of").count(),
        1,
        "{status}"
    );
    assert!(status.contains("(attempt 2)"), "{status}");
    w.now += Age::seconds(90);
    w.pass().await;
    assert_eq!(calls(&w), 2, "the second backoff is two minutes");

    // The rule is lifted: the next try merges, with the trailers.
    w.forge
        .protect_branch(OWNER, REPO, "main", Protection::default())
        .unwrap();
    w.now += Age::minutes(1);
    w.pass().await;
    assert!(w.forge.pull(OWNER, REPO, prod.number).unwrap().merged);
    assert_eq!(w.last_promotion().environment, "prod");
}

/// GitHub's own rules on `main` beside the pipeline's gates: a ruleset wants three approvals
/// and the check `ci`, where prod asks for two approvals. The `github` gate says what GitHub
/// still wants, in the status comment and in `baton plan`; baton does not ask GitHub for a merge
/// it would refuse, and merges once the rules are met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_required_reviews_and_checks_show_beside_the_pipelines_gates() {
    use baton::promote::plan::Action;
    use baton::promote::{Gate, Verdict};
    const MERGE: &str = "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge";
    let mut w = World::new().await;
    let (_, prod) = w.walk_to_prod().await;
    let merges_before = w.forge.calls().get(MERGE).copied().unwrap_or(0);
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                ruleset: true,
                required_approving_reviews: 3,
                dismiss_stale_reviews: true,
                required_status_checks: vec!["ci".into()],
                ..Protection::default()
            },
        )
        .unwrap();
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod.number, ReviewState::Approved, "")
            .unwrap();
    }
    w.comment("carol", prod.number, "/promote prod");
    w.now += Age::minutes(1);
    let outcomes = w.pass().await;
    assert!(
        outcomes.iter().any(|o| matches!(o, baton::engine::Outcome::Waiting { blocking, .. } if blocking.starts_with("github: 2/3 approving reviews"))),
        "{outcomes:?}"
    );
    let merges = |w: &World| w.forge.calls().get(MERGE).copied().unwrap_or(0) - merges_before;
    assert_eq!(merges(&w), 0, "no merge GitHub would refuse");
    let status = w.status_comment(prod.number);
    assert!(
        status.contains("| approvals | ✅ passed |"),
        "the pipeline's own gate is met: {status}"
    );
    assert!(
        status.contains("| github | ⛔ blocked | 2/3 approving reviews from people with write access, of the latest push (approved: alice, bob); waiting for required check ci (not reported) (ruleset 42); could not read the branch protection of main"),
        "{status}"
    );

    // `baton plan` (the engine's plan without writes) shows the same gate.
    let engine = w.engine();
    let actions = engine
        .plan_only(&w.releases, &w.deployments, w.now)
        .await
        .unwrap();
    let gate = actions
        .iter()
        .find_map(|a| match a {
            Action::Wait { pr, evaluation, .. } if *pr == prod.number => evaluation
                .results
                .iter()
                .find(|r| r.gate == Gate::GitHub)
                .cloned(),
            _ => None,
        })
        .expect("a github gate in the plan");
    assert_eq!(gate.verdict, Verdict::Blocked);

    // GitHub's rules met: the third approval and a green `ci` on the head; the next pass merges.
    w.forge
        .review_as("carol", OWNER, REPO, prod.number, ReviewState::Approved, "")
        .unwrap();
    let head = w.forge.pull(OWNER, REPO, prod.number).unwrap().head_sha;
    w.forge
        .set_check_conclusion(OWNER, REPO, &head, "ci", Some("success"))
        .unwrap();
    w.now += Age::minutes(1);
    w.pass().await;
    assert_eq!(merges(&w), 1);
    assert!(w.forge.pull(OWNER, REPO, prod.number).unwrap().merged);
    assert_eq!(w.last_promotion().environment, "prod");
}

/// Classic branch protection needs admin rights to read: with them its rules are in the gate;
/// without (most Apps), baton says nothing of it and goes on, and asks again only later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_protection_is_read_when_github_shows_it_and_skipped_when_it_does_not() {
    const PROTECTION: &str = "GET /repos/{owner}/{repo}/branches/{branch}/protection";
    let w = World::new().await;
    w.forge
        .protect_branch(
            OWNER,
            REPO,
            "main",
            Protection {
                required_approving_reviews: 2,
                required_status_checks: vec!["ci".into()],
                strict: true,
                ..Protection::default()
            },
        )
        .unwrap();
    let gh = GitHubForge::new(
        &w.forge.url(),
        "shop/config",
        baton::forge::github::GitHubAuth::Token(baton::config::Secret::new(w.forge.bot_token())),
        w.forge.bot_login(),
        GitHubOptions::default(),
    )
    .unwrap();
    let hidden = gh.base_rules("main").await.unwrap();
    assert!(!hidden.requires_anything(), "{hidden:?}");
    assert!(
        hidden.unreadable[0].contains("branch protection of main"),
        "{hidden:?}"
    );
    gh.base_rules("main").await.unwrap();
    assert_eq!(
        gh.calls().by_route[PROTECTION],
        1,
        "a refusal is remembered, not asked on every pass"
    );

    w.forge
        .set_permission(&w.forge.bot_login(), Permission::Admin);
    let admin = GitHubForge::new(
        &w.forge.url(),
        "shop/config",
        baton::forge::github::GitHubAuth::Token(baton::config::Secret::new(w.forge.bot_token())),
        w.forge.bot_login(),
        GitHubOptions::default(),
    )
    .unwrap();
    let rules = admin.base_rules("main").await.unwrap();
    assert_eq!(rules.required_approvals, 2);
    assert_eq!(rules.required_checks, ["ci"]);
    assert!(rules.strict && rules.unreadable.is_empty(), "{rules:?}");
    assert_eq!(rules.sources, ["branch protection"]);
    let none = admin.base_rules("no-such-rules").await.unwrap();
    assert!(!none.requires_anything() && none.unreadable.is_empty());
}

/// A team GitHub will not list to the App (`403`: no *Members: read*) is one clear reason in
/// the approvals gate; the pass goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_github_will_not_list_is_a_gate_reason_not_a_failed_pass() {
    let mut w = app_world().await;
    let (_, prod) = w.walk_to_prod().await;
    w.forge.set_members_readable(false);
    w.forge
        .review_as("alice", OWNER, REPO, prod.number, ReviewState::Approved, "")
        .unwrap();
    w.now += Age::minutes(1);
    let outcomes = w.pass().await;
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, baton::engine::Outcome::Waiting { pr, .. } if *pr == prod.number)),
        "{outcomes:?}"
    );
    let status = w.status_comment(prod.number);
    assert!(
        status.contains("cannot count @shop/release-managers: GitHub refused to list its members")
            && status.contains("Members: read"),
        "{status}"
    );
    assert!(!w.forge.pull(OWNER, REPO, prod.number).unwrap().merged);
}

/// The stand-in enforces GitHub's branch rules on merges, with GitHub's wording, and answers
/// `mergeable: null` on the first read after a push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_refuses_merges_that_break_branch_rules() {
    use baton::config::pipeline::MergeMethod;
    let w = World::new().await;
    let gh = {
        baton::forge::github::GitHubForge::new(
            &w.forge.url(),
            "shop/config",
            baton::forge::github::GitHubAuth::Token(baton::config::Secret::new(
                w.forge.bot_token(),
            )),
            w.forge.bot_login(),
            GitHubOptions::default(),
        )
        .unwrap()
    };
    let repo = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO)).unwrap();
    let main = repo.refname_to_id("refs/heads/main").unwrap();
    repo.reference("refs/heads/feature", main, true, "t")
        .unwrap();
    let head = w
        .forge
        .commit_files(OWNER, REPO, "feature", &[("x.txt", "x")], "x")
        .unwrap();
    let pr = gh
        .open_pull_request(&baton::forge::NewPullRequest {
            head: "feature".into(),
            base: "main".into(),
            title: "t".into(),
            body: String::new(),
            labels: vec![],
        })
        .await
        .unwrap();
    // GitHub computes mergeability after a push: null first, then known.
    let raw = |n: u64| {
        let url = format!("{}/repos/{OWNER}/{REPO}/pulls/{n}", w.forge.url());
        let token = w.forge.bot_token();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(raw(pr.number).await["mergeable"], serde_json::Value::Null);
    assert_eq!(raw(pr.number).await["mergeable"], true);

    let refused = |rules: Protection, method: MergeMethod| {
        w.forge.protect_branch(OWNER, REPO, "main", rules).unwrap();
        let gh = &gh;
        let head = head.clone();
        async move {
            match gh.merge(pr.number, &head, method, "t", "m").await {
                Err(ForgeError::MergeRefused { reason, .. }) => reason,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    let queue = refused(
        Protection {
            ruleset: true,
            merge_queue: true,
            ..Protection::default()
        },
        MergeMethod::Merge,
    )
    .await;
    assert!(
        queue.contains("Repository rule violations found") && queue.contains("merge queue"),
        "{queue}"
    );
    let method = refused(
        Protection {
            allowed_merge_methods: vec!["squash".into()],
            ..Protection::default()
        },
        MergeMethod::Merge,
    )
    .await;
    assert_eq!(method, "Merge commits are not allowed on this repository.");
    let reviews = refused(
        Protection {
            required_approving_reviews: 1,
            dismiss_stale_reviews: true,
            ..Protection::default()
        },
        MergeMethod::Merge,
    )
    .await;
    assert!(
        reviews.contains("At least 1 approving review is required"),
        "{reviews}"
    );
    let checks = refused(
        Protection {
            required_status_checks: vec!["ci".into()],
            ..Protection::default()
        },
        MergeMethod::Merge,
    )
    .await;
    assert_eq!(checks, "Required status check \"ci\" is expected.");
    w.forge
        .set_status_as("baton[bot]", OWNER, REPO, &head, "ci", "failure")
        .unwrap();
    let failing = refused(
        Protection {
            required_status_checks: vec!["ci".into()],
            ..Protection::default()
        },
        MergeMethod::Merge,
    )
    .await;
    assert!(failing.contains("is failing"), "{failing}");
    let signed = refused(
        Protection {
            required_signatures: true,
            ..Protection::default()
        },
        MergeMethod::Squash,
    )
    .await;
    assert_eq!(signed, "Commits must have verified signatures.");
    // main moves on: with "up to date" required, the head is behind.
    w.forge
        .commit_files(OWNER, REPO, "main", &[("y.txt", "y")], "y")
        .unwrap();
    let behind = refused(
        Protection {
            strict: true,
            ..Protection::default()
        },
        MergeMethod::Merge,
    )
    .await;
    assert!(behind.contains("up to date"), "{behind}");
    // With the rules lifted, the merge goes through.
    w.forge
        .protect_branch(OWNER, REPO, "main", Protection::default())
        .unwrap();
    gh.merge(pr.number, &head, MergeMethod::Merge, "t", "m")
        .await
        .unwrap();
}

/// Wait until the wall clock is in a later second than `t` (GitHub's times are whole seconds),
/// bounded.
async fn next_second_after(t: chrono::DateTime<chrono::Utc>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while chrono::Utc::now().timestamp() <= t.timestamp() {
        assert!(Instant::now() < deadline, "the clock did not move");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A comment edited after it was posted is never taken as a command: a remark edited into
/// `/promote prod` is answered once, that edited commands are not accepted, and the command
/// gate stays blocked; the same command posted anew counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_comment_is_never_taken_as_a_command() {
    let mut w = World::new().await;
    let (_, prod) = w.walk_to_prod().await;
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod.number, ReviewState::Approved, "")
            .unwrap();
    }
    let posted = chrono::Utc::now();
    let id = w.comment("carol", prod.number, "looks fine to me");
    next_second_after(posted).await;
    w.forge
        .edit_comment_as("carol", id, "/promote prod")
        .unwrap();
    w.now += Age::minutes(1);
    w.pass().await;
    assert!(!w.forge.pull(OWNER, REPO, prod.number).unwrap().merged);
    let replies = w.replies(prod.number);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert!(
        replies[0].contains("edited comments are not taken as commands"),
        "{}",
        replies[0]
    );
    assert!(
        w.status_comment(prod.number)
            .contains("| command | ⛔ blocked |"),
        "{}",
        w.status_comment(prod.number)
    );
    for _ in 0..3 {
        w.now += Age::minutes(1);
        w.pass().await;
    }
    assert_eq!(w.replies(prod.number).len(), 1, "answered once");
    assert!(!w.forge.pull(OWNER, REPO, prod.number).unwrap().merged);

    w.comment("carol", prod.number, "/promote prod");
    w.now += Age::minutes(1);
    w.pass().await;
    assert!(w.forge.pull(OWNER, REPO, prod.number).unwrap().merged);
}

/// "After the latest push" is when GitHub saw the push, not the committer date the pusher
/// chose: a commit pushed onto the prod branch after carol's `/promote`, dated an hour earlier,
/// does not make her command count for the new head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backdated_push_does_not_make_earlier_commands_count() {
    let mut w = World::new().await;
    let (_, prod) = w.walk_to_prod().await;
    let posted = chrono::Utc::now();
    w.comment("carol", prod.number, "/promote prod");
    next_second_after(posted).await;

    // Someone with write access pushes to the bot's branch, dating the commit an hour back.
    let token = w.forge.add_user("mallory", Permission::Write);
    let url = w.forge.git_url(OWNER, REPO).replacen(
        "http://",
        &format!("http://x-access-token:{token}@"),
        1,
    );
    let clone = w.dir.path().join("mallory");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(if clone.exists() { &clone } else { w.dir.path() })
            .env("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z")
            .env("GIT_AUTHOR_NAME", "mallory")
            .env("GIT_AUTHOR_EMAIL", "mallory@example.com")
            .env("GIT_COMMITTER_NAME", "mallory")
            .env("GIT_COMMITTER_EMAIL", "mallory@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["clone", "-q", "-b", "baton/prod/web", &url, "mallory"]);
    std::fs::write(clone.join("NOTES"), "backdated\n").unwrap();
    git(&["add", "NOTES"]);
    git(&["commit", "-q", "-m", "notes"]);
    git(&["push", "-q", "origin", "baton/prod/web"]);
    let head = w.forge.pull(OWNER, REPO, prod.number).unwrap().head_sha;
    w.forge
        .review_as("alice", OWNER, REPO, prod.number, ReviewState::Approved, "")
        .unwrap();
    w.forge
        .review_as("bob", OWNER, REPO, prod.number, ReviewState::Approved, "")
        .unwrap();

    w.now += Age::minutes(1);
    w.pass().await;
    let pull = w.forge.pull(OWNER, REPO, prod.number).unwrap();
    assert_eq!(pull.head_sha, head, "the pushed head is the one judged");
    assert!(!pull.merged, "carol's command predates the push");
    let status = w.status_comment(prod.number);
    assert!(status.contains("| approvals | ✅ passed |"), "{status}");
    assert!(status.contains("| command | ⛔ blocked |"), "{status}");
}
