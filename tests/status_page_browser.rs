//! The status page in a real browser: serve `/` on 127.0.0.1 with a seeded view, load it in
//! headless Chromium (Debian's `chromium`, installed by `.ci/run`), and find the expected
//! cells in the DOM the browser built — so the page is valid enough HTML for a browser to
//! lay out as a table, and escaped text stays text.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton::config::Pipeline;
use baton::gitrepo::history::Entry;
use baton::gitrepo::trailers::Promotion;
use baton::image::{Digest, Pinned};
use baton::promote::state::{DeployState, Deployment};
use baton::server::view::{Inputs, OpenPromotion, ReconcileSummary, RepoInfo, StatusView};
use baton::server::{AppState, app};
use chrono::{TimeZone, Utc};

const PIPELINE: &str = r#"apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web:
    image: registry.example.com/shop/web
    bless: { semver: ">=1.0.0" }
  api:
    image: registry.example.com/shop/api
    bless: { semver: ">=1.0.0" }
environments:
  - name: dev
    autoMerge: true
  - name: staging
    after: dev
  - name: prod
    after: staging
    approvals: { count: 2 }
"#;

fn digest(n: u8) -> Digest {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
        .parse()
        .unwrap()
}

fn key(env: &str, app: &str) -> (String, String) {
    (env.into(), app.into())
}

fn seeded_view() -> StatusView {
    let pipeline = Pipeline::parse("policies/pipeline.yaml", PIPELINE)
        .unwrap()
        .pipeline;
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    let pin = |tag: &str, n| Pinned {
        tag: Some(tag.into()),
        digest: digest(n),
    };
    let pinned = BTreeMap::from([
        (key("dev", "web"), pin("1.5.0", 2)),
        (key("staging", "web"), pin("1.4.0", 1)),
        (key("prod", "web"), pin("1.3.0", 3)),
        (key("dev", "api"), pin("2.0.1", 4)),
    ]);
    let dep = |env: &str, app: &str, n, state| Deployment {
        env: env.into(),
        app: app.into(),
        digest: digest(n),
        state,
        healthy_since: (state == DeployState::Healthy).then_some(now),
        restarted: None,
    };
    let deployments = BTreeMap::from([
        (
            key("dev", "web"),
            dep("dev", "web", 2, DeployState::Healthy),
        ),
        (
            key("staging", "web"),
            dep("staging", "web", 1, DeployState::Progressing),
        ),
        (
            key("prod", "web"),
            dep("prod", "web", 3, DeployState::Failed),
        ),
    ]);
    let open = vec![OpenPromotion {
        number: 42,
        url: Some("https://github.com/shop/config/pull/42".into()),
        env: "prod".into(),
        app: "web".into(),
        to: pin("1.4.0", 1),
        blocking: Some("approvals: 1 of 2 approvals <from release-managers>".into()),
        held: true,
        hold_reason: Some("<script>document.title='pwned'</script>".into()),
    }];
    let history = vec![Entry {
        time: now - chrono::Duration::minutes(30),
        commit: "ab".repeat(20),
        promotion: Promotion {
            app: "web".into(),
            environment: "dev".into(),
            from: Some(digest(1)),
            to: digest(2),
            tag: Some("1.5.0".into()),
            approved_by: vec![],
            promoted_by: Some("baton".into()),
            pull_request: Some(41),
            rollback_of: None,
        },
    }];
    let reconciles = BTreeMap::from([(
        "prod".to_string(),
        ReconcileSummary::failed(Some("ab".repeat(20)), now, "render: bad kustomization"),
    )]);
    let repo = RepoInfo {
        name: "shop/config".into(),
        branch: "main".into(),
        commit: Some("ab".repeat(20)),
        url: Some("https://github.com/shop/config".into()),
    };
    StatusView::build(
        &Inputs {
            repo: &repo,
            pipeline: &pipeline,
            pinned: &pinned,
            deployments: &deployments,
            open: &open,
            history: &history,
            reconciles: &reconciles,
            now,
        },
        None,
    )
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("BATON_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} not found: this test needs Debian's `chromium` (`apt-get install chromium`; .ci/run \
         installs it when run as root), or BATON_CHROMIUM pointing at a Chromium binary",
        path.display()
    );
    path
}

/// The DOM Chromium built for `url`.
async fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting chromium");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("chromium did not finish within 120 s")
        .expect("waiting for chromium");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("DOM is UTF-8")
}

/// The inner HTML of the `<td>` for (app, env) in the serialised DOM.
fn cell<'a>(dom: &'a str, app: &str, env: &str) -> &'a str {
    let open = format!(r#"data-app="{app}" data-env="{env}">"#);
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no cell for {app} in {env} in the DOM:\n{dom}"))
        + open.len();
    let end = dom[start..].find("</td>").expect("cell closed") + start;
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_status_table_with_the_expected_cells() {
    let state = Arc::new(AppState::new(None, "baton[bot]"));
    state.set_view(seeded_view());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });

    let dom = dump_dom(&format!("http://{addr}/")).await;
    server.abort();

    assert!(dom.contains("<title>baton · shop/config</title>"), "{dom}");
    // The browser built one table: a header with the environments in promotion order and a
    // row per app with one cell per environment.
    let header = dom
        .find("<thead>")
        .map(|i| &dom[i..i + dom[i..].find("</thead>").unwrap()])
        .expect("a table header");
    let (d, s, p) = (
        header.find(r#"data-env="dev""#).unwrap(),
        header.find(r#"data-env="staging""#).unwrap(),
        header.find(r#"data-env="prod""#).unwrap(),
    );
    assert!(d < s && s < p, "{header}");
    assert_eq!(dom.matches(r#"<td class="cell"#).count(), 6, "{dom}");

    let dev = cell(&dom, "web", "dev");
    assert!(dev.contains(r#"<span class="tag">1.5.0</span>"#), "{dev}");
    assert!(dev.contains(r#"<div class="health">healthy"#), "{dev}");
    assert!(dev.contains("deployed 2026-11-21 09:30 UTC (#41)"), "{dev}");
    assert!(dom.contains(r#"<td class="cell health-healthy" data-app="web" data-env="dev">"#));

    let staging = cell(&dom, "web", "staging");
    assert!(
        staging.contains(r#"<div class="health">progressing"#),
        "{staging}"
    );

    let prod = cell(&dom, "web", "prod");
    assert!(prod.contains(r#"<span class="tag">1.3.0</span>"#), "{prod}");
    assert!(prod.contains(r#"<div class="health">failed"#), "{prod}");
    assert!(
        prod.contains(r#"<a class="pr" href="https://github.com/shop/config/pull/42">#42</a>"#),
        "{prod}"
    );
    assert!(prod.contains(r#"<span class="tag">1.4.0</span>"#), "{prod}");
    assert!(
        prod.contains("waiting on approvals: 1 of 2 approvals &lt;from release-managers&gt;"),
        "{prod}"
    );
    // Escaped text stayed text: no script element was created, and it did not run.
    assert!(
        prod.contains("on hold: &lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{prod}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<title>pwned"), "{dom}");

    let api_dev = cell(&dom, "api", "dev");
    assert!(api_dev.contains(r#"<span class="tag">2.0.1</span>"#));
    assert!(
        api_dev.contains(r#"<div class="health">unknown"#),
        "{api_dev}"
    );
    assert!(cell(&dom, "api", "prod").contains("not pinned"));
    assert!(dom.contains("render: bad kustomization"), "{dom}");
}
