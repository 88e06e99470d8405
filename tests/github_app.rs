//! baton as a GitHub App against the stricter stand-in: it learns its login from GitHub
//! (`GET /app` → `<slug>[bot]`, `GET /user` for a token), refuses a configured login GitHub
//! disagrees with, and uses the installation token, renewed before it expires, for REST and for
//! Git, without writing it anywhere.

mod common;
mod promote_support;

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
use sim::forge::{ForgeOptions, Permission, ReviewState};

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
    let clone = w.dir.path().join(format!("clone-{}", w.passes));
    let v1 = w.release("web", "1.5.0");
    engine
        .run_once(&w.releases, &w.deployments, w.now)
        .await
        .unwrap();
    assert!(w.pr_for("dev", "web").open, "opened with a push");

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
    // A newer release is pushed with whatever token is current now.
    let v2 = w.release("web", "1.6.0");
    engine
        .run_once(&w.releases, &w.deployments, w.now)
        .await
        .unwrap();
    let pr = w.pr_for("dev", "web");
    assert!(
        w.forge.calls()["POST /{owner}/{repo}/git-receive-pack"] >= 2,
        "pushed twice"
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
