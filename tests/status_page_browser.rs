//! The status page in a real browser: serve `/` on 127.0.0.1 with a seeded view and DORA
//! report, drive headless Chromium through chromedriver (Debian's `chromium` and
//! `chromium-driver`, installed by `.ci/run`), and assert on the DOM and layout the browser
//! built: the pipeline and the tiles at 1400 px and at 390 px (screenshots saved under
//! `target/screenshots/`), every link reachable by Tab alone, live updates without a reload,
//! and the dark color scheme. Escaped text stays text.

mod browser;
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use baton::config::Pipeline;
use baton::gitrepo::history::Entry;
use baton::gitrepo::trailers::Promotion;
use baton::image::{Digest, Pinned};
use baton::promote::state::{DeployState, Deployment};
use baton::server::view::{
    GateVerdict, Inputs, OpenPromotion, ReconcileSummary, RepoInfo, StatusView,
};
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

fn seeded() -> (StatusView, baton::dora::Report) {
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
        gates: vec![
            GateVerdict {
                gate: "soak".into(),
                verdict: "passed".into(),
                reason: "staging healthy for 1h of 1h".into(),
            },
            GateVerdict {
                gate: "approvals".into(),
                verdict: "blocked".into(),
                reason: "1 of 2 approvals <from release-managers>".into(),
            },
        ],
    }];
    let entry = |mins: i64, env: &str, to: u8, pr: u64, rollback_of: Option<u8>| Entry {
        time: now - chrono::Duration::minutes(mins),
        commit: format!("{:02x}", pr).repeat(20),
        promotion: Promotion {
            app: "web".into(),
            environment: env.into(),
            from: Some(digest(1)),
            to: digest(to),
            tag: Some(format!("1.{to}.0")),
            approved_by: vec![],
            promoted_by: Some("baton".into()),
            pull_request: Some(pr),
            rollback_of: rollback_of.map(digest),
        },
    };
    // Newest first: dev got 1.5.0 (#41) after rolling back a broken 1.6.0 (#40, #39).
    let history = vec![
        entry(30, "dev", 2, 41, None),
        entry(60, "dev", 1, 40, Some(6)),
        entry(70, "dev", 6, 39, None),
        entry(60 * 24, "staging", 1, 38, None),
        entry(60 * 26, "dev", 1, 37, None),
        entry(60 * 24 * 3, "prod", 3, 36, None),
    ];
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
    let start = |hours, source| baton::dora::ChangeStart {
        at: now - chrono::Duration::hours(hours),
        source,
    };
    let facts = baton::dora::Facts {
        starts: BTreeMap::from([
            (digest(2), start(2, baton::dora::StartSource::SourceCommit)),
            (digest(6), start(3, baton::dora::StartSource::ImageCreated)),
        ]),
        ..Default::default()
    };
    let report = baton::dora::compute(
        &history,
        &["dev".into(), "staging".into(), "prod".into()],
        &facts,
        &baton::dora::Window::last_days(30, now),
    );
    let view = StatusView::build(
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
    );
    (view, report)
}

/// The status page of a seeded state on 127.0.0.1, and a chromedriver; `None` (skipped, with
/// a message) only where chromium is not installed.
async fn serve() -> Option<(Arc<AppState>, String, browser::Driver)> {
    let (chromium, driver) = browser::binaries()?;
    let state = Arc::new(AppState::new(None, "baton[bot]"));
    let (view, report) = seeded();
    state.set_view(view);
    state.set_dora(report);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let driver = browser::Driver::start(chromium, driver, common::free_port()).await;
    Some((state, format!("http://{addr}/"), driver))
}

/// What the browser laid out: counts, and the boxes of web's environments, in page order.
const LAYOUT: &str = r#"
const q = (s, root) => Array.from((root || document).querySelectorAll(s));
const web = document.querySelector('.app[data-app="web"] .pipeline');
const box = e => { const r = e.getBoundingClientRect(); return { left: r.left, top: r.top, right: r.right }; };
return {
  width: window.innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
  pipelines: q('.pipeline').length,
  webEnvs: q('.env', web).map(e => e.dataset.env),
  webArrows: q('.arrow', web).map(e => e.dataset.env),
  envBoxes: q('.env', web).map(box),
  arrowVisible: q('.arrow', web).every(a => q('svg', a).some(s => s.getBoundingClientRect().width > 0)),
  panels: q('.envpanel').map(e => e.dataset.env),
  tiles: q('.tile').length,
  sparks: q('.tile svg.spark').length,
  sparkLines: q('.envpanel[data-env="dev"] .tile svg.spark').filter(s => s.querySelector('polyline, circle')).length,
  devHistory: q('.envpanel[data-env="dev"] .history li').length,
  rollbacks: q('.envpanel[data-env="dev"] .history .rollback').length,
  prodArrow: (web.querySelector('.arrow[data-env="prod"]') || {}).textContent || '',
  prodPr: (web.querySelector('.arrow[data-env="prod"] a.pr') || {}).href || '',
  gates: q('.arrow[data-env="prod"] .gate', web).map(g => g.className),
  devHealth: (web.querySelector('.env[data-env="dev"] .health') || {}).textContent || '',
  bands: q('.envpanel[data-env="dev"] .band').map(b => b.textContent),
  scripts: document.scripts.length,
  title: document.title,
};
"#;

fn png_width(png: &[u8]) -> u32 {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    u32::from_be_bytes(png[16..20].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_and_the_dora_tiles_are_laid_out_at_1400_and_390_px() {
    let Some((_state, url, driver)) = serve().await else {
        return;
    };
    for width in [1400u32, 390] {
        let s = driver.session(width, 900).await;
        s.goto(&url).await;
        let l = s.exec(LAYOUT, json!([])).await;
        assert_eq!(l["width"], width, "{l:#}");
        assert_eq!(l["pipelines"], 2, "one pipeline per app: {l:#}");
        assert_eq!(l["webEnvs"], json!(["dev", "staging", "prod"]), "{l:#}");
        assert_eq!(l["webArrows"], json!(["staging", "prod"]), "{l:#}");
        assert_eq!(l["arrowVisible"], true, "{l:#}");
        assert_eq!(l["panels"], json!(["dev", "staging", "prod"]), "{l:#}");
        assert_eq!(l["tiles"], 12, "four DORA tiles per environment: {l:#}");
        assert_eq!(l["sparks"], 12, "{l:#}");
        // dev's four sparklines each draw something: deployments, lead time, failures, restores.
        assert_eq!(l["sparkLines"], 4, "{l:#}");
        assert_eq!(l["devHistory"], 4, "{l:#}");
        assert_eq!(l["rollbacks"], 1, "{l:#}");
        assert!(
            l["devHealth"].as_str().unwrap().contains("healthy"),
            "{l:#}"
        );
        assert!(
            l["devHealth"].as_str().unwrap().contains("for "),
            "the time since the health began: {l:#}"
        );
        assert!(!l["bands"].as_array().unwrap().is_empty(), "{l:#}");
        // On the arrow into prod: the pending PR and each gate's verdict.
        assert_eq!(l["prodPr"], "https://github.com/shop/config/pull/42");
        assert_eq!(
            l["gates"],
            json!(["gate gate-passed", "gate gate-blocked"]),
            "{l:#}"
        );
        let arrow = l["prodArrow"].as_str().unwrap();
        assert!(
            arrow.contains("approvals: 1 of 2 approvals <from release-managers>"),
            "{arrow}"
        );
        // Escaped text stayed text: only the page's own script exists, and nothing ran.
        assert!(
            arrow.contains("<script>document.title='pwned'</script>"),
            "{arrow}"
        );
        assert_eq!(l["scripts"], 1, "{l:#}");
        assert_eq!(l["title"], "baton · shop/config");

        let boxes: Vec<(f64, f64, f64)> = l["envBoxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["left"].as_f64().unwrap(),
                    b["top"].as_f64().unwrap(),
                    b["right"].as_f64().unwrap(),
                )
            })
            .collect();
        if width == 1400 {
            // Left to right on one line.
            assert!(
                boxes
                    .windows(2)
                    .all(|w| w[0].2 < w[1].0 && (w[0].1 - w[1].1).abs() < 2.0),
                "{boxes:?}"
            );
        } else {
            // Stacked top to bottom, and nothing wider than the phone.
            assert!(boxes.windows(2).all(|w| w[0].1 < w[1].1), "{boxes:?}");
            assert!(
                l["scrollWidth"].as_u64().unwrap() <= u64::from(width),
                "the page scrolls sideways at {width} px: {l:#}"
            );
        }
        let png = s.screenshot().await;
        assert_eq!(png_width(&png), width);
        let path = browser::screenshot_dir().join(format!("status-page-{width}.png"));
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
        s.quit().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_is_reached_with_the_tab_key_alone() {
    let Some((_state, url, driver)) = serve().await else {
        return;
    };
    let s = driver.session(1400, 900).await;
    s.goto(&url).await;
    let links = s
        .exec(
            "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);",
            json!([]),
        )
        .await;
    let n = links.as_array().unwrap().len();
    assert!(
        n >= 10,
        "the seeded page has PR, commit and repo links: {links:#}"
    );
    let mut reached = std::collections::BTreeSet::new();
    // Bounded: twice the links, plus the browser's own stops.
    for _ in 0..(2 * n + 10) {
        s.press("\u{E004}").await;
        let at = s
            .exec(
                "const links = Array.from(document.querySelectorAll('a[href]'));\
                 return links.indexOf(document.activeElement);",
                json!([]),
            )
            .await
            .as_i64()
            .unwrap();
        if at >= 0 {
            reached.insert(at as usize);
        }
        if reached.len() == n {
            break;
        }
    }
    let missed: Vec<&Value> = (0..n)
        .filter(|i| !reached.contains(i))
        .map(|i| &links[i])
        .collect();
    assert!(missed.is_empty(), "not reached by Tab: {missed:#?}");
    s.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_updates_without_a_reload_and_follows_the_dark_color_scheme() {
    let Some((state, url, driver)) = serve().await else {
        return;
    };
    let s = driver.session(1400, 900).await;
    s.goto(&url).await;
    let background = "return getComputedStyle(document.body).backgroundColor;";
    let light = s.exec(background, json!([])).await;
    s.color_scheme("dark").await;
    let dark = s.exec(background, json!([])).await;
    assert_eq!(light, "rgb(255, 255, 255)");
    assert_eq!(
        dark, "rgb(13, 17, 23)",
        "dark background under prefers-color-scheme: dark"
    );

    // Mark this document; a reload would lose the mark.
    s.exec("window.__sameDocument = true; return true;", json!([]))
        .await;
    let (mut view, _) = seeded();
    view.updated_at = view.updated_at.map(|t| t + chrono::Duration::minutes(1));
    let cell = view.apps[0]
        .cells
        .iter_mut()
        .find(|c| c.env == "dev")
        .unwrap();
    cell.pinned.as_mut().unwrap().tag = Some("9.9.9".into());
    state.set_view(view);
    s.wait_for(
        "the new tag on the page",
        "return document.querySelector('.app[data-app=\"web\"] .env[data-env=\"dev\"] .tag').textContent === '9.9.9';",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        s.exec("return window.__sameDocument === true;", json!([]))
            .await,
        true,
        "the page was reloaded instead of updated in place"
    );
    s.quit().await;
}
