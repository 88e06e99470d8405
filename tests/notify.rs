//! Notifications (`notify:` in baton.yaml) against local webhook receivers: an axum server on
//! 127.0.0.1 in the test, recording every request. baton runs in-process against the
//! stand-ins, as in tests/service.rs; the release is driven by the sandbox's story
//! (`sandbox::demo`), the same one `baton sandbox --demo` tells.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use baton::config::notify::{EventKind, NotifyConfig, SlackSink, WebhookSink};
use baton::config::{RuntimeConfig, Secret, SecretRef};
use baton::sandbox::{Sandbox, SandboxError, SandboxOptions, push_initial_images, seed_files};
use baton::service::RunOptions;
use baton_test_support::net::{http_get, wait_for};

/// One request a receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    delivery: String,
    event: String,
    signature: Option<String>,
    body: Vec<u8>,
    status: u16,
}

impl Hit {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver: answers 500 to its first `fail_first` requests (and to every one while
/// `down`), 200 to the others.
#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    fail_first: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(self) -> SocketAddr {
        async fn hook(
            State(r): State<Receiver>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let fail = r.down.load(Ordering::SeqCst)
                || r.fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            let status = if fail {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            r.hits.lock().unwrap().push(Hit {
                delivery: header("x-baton-delivery").unwrap_or_default(),
                event: header("x-baton-event").unwrap_or_default(),
                signature: header("x-baton-signature-256"),
                body: body.to_vec(),
                status: status.as_u16(),
            });
            status
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The deliveries answered 200.
    fn accepted(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200)
            .collect()
    }

    fn describe(&self) -> String {
        self.hits()
            .iter()
            .map(|h| {
                let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap_or_default();
                format!(
                    "{} {} {} {} -> {}",
                    h.event,
                    v["environment"].as_str().unwrap_or("?"),
                    v["tag"].as_str().unwrap_or("?"),
                    &h.delivery[..h.delivery.len().min(8)],
                    h.status
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> SecretRef {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    SecretRef::from_file(p)
}

fn webhook(
    name: &str,
    addr: SocketAddr,
    secret: SecretRef,
    envs: &[&str],
    events: &[EventKind],
) -> NotifyConfig {
    NotifyConfig {
        name: name.into(),
        webhook: Some(WebhookSink {
            url: Some(format!("http://{addr}/hook")),
            url_from: None,
            secret,
        }),
        slack: None,
        environments: envs.iter().map(|e| e.to_string()).collect(),
        events: events.to_vec(),
    }
}

/// Start baton with `cfg`, connected to the stand-ins; returns its address, a stop switch and
/// its task.
async fn start(
    sb: &Sandbox,
    cfg: RuntimeConfig,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<baton::service::Exit>,
) {
    let service = baton::service::Service::start(cfg, RunOptions::sandbox())
        .await
        .unwrap();
    let addr = service.local_addr();
    sb.connect(addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service.run(async {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx, running)
}

fn metrics(addr: SocketAddr) -> String {
    http_get(addr.port(), "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

/// The value of the metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_through_dev_and_prod_notifies_each_receiver_once_per_event_it_asked_for() {
    baton::tls::install_crypto_provider();
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();

    let all = Receiver::default();
    let prod_slack = Receiver::default();
    // 500 to its first request, then 200.
    let flaky = Receiver {
        fail_first: Arc::new(AtomicUsize::new(1)),
        ..Default::default()
    };
    let all_addr = all.clone().start().await;
    let slack_addr = prod_slack.clone().start().await;
    let flaky_addr = flaky.clone().start().await;
    // Nothing listens there: every attempt fails to connect.
    let dead_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };

    let hmac = "notify-hmac-secret-0f9e";
    let mut cfg = sb.config.clone();
    let key = secret_file(&sb.dir, "notify-hmac", hmac);
    cfg.notify = vec![
        webhook("everything", all_addr, key.clone(), &[], &[]),
        NotifyConfig {
            name: "prod-channel".into(),
            webhook: None,
            slack: Some(SlackSink {
                url: secret_file(&sb.dir, "slack-url", &format!("http://{slack_addr}/hook")),
            }),
            environments: vec!["prod".into()],
            events: vec![
                EventKind::WaitingForApproval,
                EventKind::Merged,
                EventKind::RolledOutHealthy,
            ],
        },
        webhook(
            "flaky",
            flaky_addr,
            key.clone(),
            &["dev"],
            &[EventKind::Merged],
        ),
        webhook("dead", dead_addr, key.clone(), &[], &[]),
    ];
    let (addr, stop, running) = start(&sb, cfg).await;

    // The whole story, dead receiver and all: it completes within the story's own waits.
    let mut story = Vec::new();
    let result = baton::sandbox::demo::run(&sb, &mut story).await;
    let story = String::from_utf8_lossy(&story).into_owned();
    assert!(result.is_ok(), "{}\n{story}", result.unwrap_err());

    // What `everything` must have heard, by (event, environment, tag).
    let expected: BTreeSet<(&str, &str, &str)> = [
        ("merged", "dev", "1.1.0"),
        ("rolledOutHealthy", "dev", "1.1.0"),
        ("merged", "staging", "1.1.0"),
        ("rolledOutHealthy", "staging", "1.1.0"),
        ("waitingForApproval", "prod", "1.1.0"),
        ("merged", "prod", "1.1.0"),
        ("rolledOutHealthy", "prod", "1.1.0"),
        ("merged", "dev", "1.2.0"),
        ("rolloutFailed", "dev", "1.2.0"),
        ("rolledBack", "dev", "1.1.0"),
    ]
    .into_iter()
    .collect();
    let key_of = |h: &Hit| {
        let v = h.json();
        (
            h.event.clone(),
            v["environment"].as_str().unwrap_or_default().to_string(),
            v["tag"].as_str().unwrap_or_default().to_string(),
        )
    };
    // An event is a decision about one PR (the rollback's own rollout is another event).
    let event_of = |h: &Hit| (key_of(h), h.json()["pullRequest"]["number"].as_u64());
    wait_for(
        "every event of the story at the `everything` receiver",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let got: BTreeSet<(String, String, String)> =
                all.accepted().iter().map(key_of).collect();
            expected
                .iter()
                .all(|(e, env, t)| got.contains(&(e.to_string(), env.to_string(), t.to_string())))
                .then_some(())
        },
        || all.describe(),
    )
    .await;

    // Once each: no delivery id twice, and no event twice under different ids.
    let accepted = all.accepted();
    let ids: BTreeSet<&str> = accepted.iter().map(|h| h.delivery.as_str()).collect();
    assert_eq!(ids.len(), accepted.len(), "{}", all.describe());
    let mut per_key: BTreeMap<_, usize> = BTreeMap::new();
    for h in &accepted {
        *per_key.entry(event_of(h)).or_default() += 1;
    }
    assert!(
        per_key.values().all(|n| *n == 1),
        "an event arrived twice: {per_key:?}"
    );
    // Each is signed with the secret, carries its event header, and says what happened.
    let secret = Secret::new(hmac);
    for h in &accepted {
        assert!(
            baton::notify::payload::verify(&secret, &h.body, h.signature.as_deref()),
            "bad signature on {}",
            h.event
        );
        assert!(!baton::notify::payload::verify(
            &Secret::new("wrong"),
            &h.body,
            h.signature.as_deref()
        ));
        let v = h.json();
        assert_eq!(v["event"], h.event.as_str());
        assert_eq!(v["id"], h.delivery.as_str());
        assert_eq!(v["app"], "web");
        assert_eq!(v["repository"], "shop/config");
        assert!(
            v["digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "{v}"
        );
        assert!(v["pullRequest"]["number"].as_u64().is_some(), "{v}");
    }
    let rolled_back = accepted
        .iter()
        .find(|h| h.event == "rolledBack")
        .unwrap()
        .json();
    assert!(
        rolled_back["summary"]
            .as_str()
            .unwrap()
            .starts_with("dev rolled back to web 1.1.0"),
        "{rolled_back}"
    );

    // The Slack receiver: prod only, the three events it asked for, once each, as Slack text.
    let slack = prod_slack.accepted();
    let kinds: Vec<&str> = slack.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(
        kinds.iter().copied().collect::<BTreeSet<_>>(),
        ["merged", "rolledOutHealthy", "waitingForApproval"]
            .into_iter()
            .collect(),
        "{}",
        prod_slack.describe()
    );
    assert_eq!(kinds.len(), 3, "{}", prod_slack.describe());
    for h in &slack {
        let v = h.json();
        let text = v["text"].as_str().unwrap();
        assert!(
            text.contains("in prod") || text.contains("into prod") || text.contains("reach prod"),
            "{text}"
        );
        assert!(v["blocks"].is_array());
        assert!(h.signature.is_none(), "Slack deliveries are not signed");
    }

    // The flaky receiver: dev merges only; the first was refused with 500 and came again,
    // under the same delivery id, and was taken once.
    let hits = flaky.hits();
    assert!(
        hits.iter().all(|h| h.event == "merged"),
        "{}",
        flaky.describe()
    );
    assert_eq!(hits[0].status, 500);
    assert_eq!(hits[1].status, 200, "{}", flaky.describe());
    assert_eq!(
        hits[0].delivery, hits[1].delivery,
        "a retry is the same delivery"
    );
    let taken: Vec<&Hit> = hits.iter().filter(|h| h.status == 200).collect();
    let tags: BTreeSet<String> = taken
        .iter()
        .map(|h| h.json()["tag"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(taken.len(), 2, "{}", flaky.describe());
    assert_eq!(
        tags,
        ["1.1.0".to_string(), "1.2.0".to_string()]
            .into_iter()
            .collect()
    );

    // The metrics count deliveries by receiver and result; the dead receiver is retrying and
    // the Slack URL (a secret) is nowhere in the output.
    let m = metrics(addr);
    assert_eq!(
        metric(
            &m,
            "baton_notification_deliveries_total{receiver=\"flaky\",result=\"retrying\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "baton_notification_deliveries_total{receiver=\"dead\",result=\"retrying\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "baton_notification_deliveries_total{receiver=\"everything\",result=\"delivered\"}"
        )
        .is_some_and(|n| n >= expected.len() as f64),
        "{m}"
    );
    assert_eq!(metric(&m, "baton_leader "), Some(1.0), "{m}");
    assert!(!m.contains(&slack_addr.to_string()), "{m}");

    let _ = stop.send(());
    running.await.unwrap();
}

/// The example with dev waiting for one approval (nobody gives it): its PR waits pass after
/// pass, and the engine says so every time.
async fn dev_waits_for_approval_sandbox() -> Sandbox {
    Sandbox::start_with(&SandboxOptions::default(), |registry, seed| {
        let initial = push_initial_images(registry);
        seed_files(seed, &registry.host(), Duration::from_secs(2), &initial)?;
        let p = seed.join("policies/pipeline.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        let from = "    cluster: dev\n    autoMerge: true\n";
        assert!(text.contains(from), "the example's dev moved: {text}");
        std::fs::write(
            &p,
            text.replacen(from, "    cluster: dev\n    approvals: { count: 1 }\n", 1),
        )
        .map_err(|e| SandboxError::Seed(e.to_string()))?;
        Ok(initial)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_resends_what_was_delivered_nor_loses_what_was_pending() {
    baton::tls::install_crypto_provider();
    let sb = dev_waits_for_approval_sandbox().await;
    let ok = Receiver::default();
    let down = Receiver::default();
    down.down.store(true, Ordering::SeqCst);
    let ok_addr = ok.clone().start().await;
    let down_addr = down.clone().start().await;
    let hmac = "restart-hmac-secret-77aa";
    let key = secret_file(&sb.dir, "notify-hmac", hmac);
    let mut cfg = sb.config.clone();
    cfg.notify = vec![
        webhook(
            "ok",
            ok_addr,
            key.clone(),
            &["dev"],
            &[EventKind::WaitingForApproval],
        ),
        webhook(
            "down",
            down_addr,
            key.clone(),
            &["dev"],
            &[EventKind::WaitingForApproval],
        ),
    ];

    let (_, stop, running) = start(&sb, cfg.clone()).await;
    sb.push("web", "1.1.0");
    let first = wait_for(
        "dev's PR waiting for approval, told to `ok`",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || ok.accepted().first().cloned(),
        || ok.describe(),
    )
    .await;
    assert_eq!(first.event, "waitingForApproval");
    wait_for(
        "`down` refusing it twice",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || (down.hits().len() >= 2).then_some(()),
        || down.describe(),
    )
    .await;
    let _ = stop.send(());
    running.await.unwrap();

    // What is kept across the restart: in dev's state ConfigMap, `ok`'s delivery is done and
    // `down`'s pending, and neither a URL nor the HMAC key is written there.
    let cm = sb
        .cluster
        .get("v1", "ConfigMap", "baton-system", "baton-state-dev")
        .expect("dev's state ConfigMap");
    let text = cm["data"]["state.json"].as_str().unwrap().to_string();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    let done = state["notify"]["done"].as_object().unwrap();
    assert!(
        done.contains_key(&format!("{}/ok", first.delivery)),
        "{text}"
    );
    let pending = state["notify"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{text}");
    assert_eq!(pending[0]["sink"], "down");
    assert!(
        !text.contains(hmac)
            && !text.contains(&ok_addr.to_string())
            && !text.contains(&down_addr.to_string()),
        "{text}"
    );

    // Restart with `down` back up: it gets the pending delivery; `ok` hears nothing again
    // although the engine keeps saying the PR waits.
    down.down.store(false, Ordering::SeqCst);
    let before = ok.hits().len();
    let (addr, stop, running) = start(&sb, cfg).await;
    let taken = wait_for(
        "the pending delivery to `down` after the restart",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || down.accepted().first().cloned(),
        || down.describe(),
    )
    .await;
    assert_eq!(
        taken.delivery, first.delivery,
        "the same event, the same id"
    );
    assert!(baton::notify::payload::verify(
        &Secret::new(hmac),
        &taken.body,
        taken.signature.as_deref()
    ));
    // Several passes of the restarted engine, each seeing the waiting PR again.
    wait_for(
        "three promotion passes after the restart",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || metric(&metrics(addr), "baton_plan_passes_total ").filter(|n| *n >= 3.0),
        || metrics(addr),
    )
    .await;
    assert_eq!(
        ok.hits().len(),
        before,
        "resent after the restart: {}",
        ok.describe()
    );
    assert_eq!(down.accepted().len(), 1, "{}", down.describe());
    let _ = stop.send(());
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_its_rollback_and_a_merge_github_refuses_are_told() {
    baton::tls::install_crypto_provider();
    let sb = common::failing_smoke_sandbox().await;
    let r = Receiver::default();
    let addr = r.clone().start().await;
    let hmac = "verify-hmac-secret-19c3";
    let mut cfg = sb.config.clone();
    cfg.notify = vec![webhook(
        "incidents",
        addr,
        secret_file(&sb.dir, "notify-hmac", hmac),
        &[],
        &[
            EventKind::VerificationFailed,
            EventKind::RolledBack,
            EventKind::MergeRefused,
        ],
    )];
    let (_, stop, running) = start(&sb, cfg).await;

    sb.push("web", "1.1.0");
    let find = |event: &'static str, env: &'static str| {
        let r = r.clone();
        move || {
            r.accepted()
                .into_iter()
                .find(|h| h.event == event && h.json()["environment"] == env)
        }
    };
    let failed = wait_for(
        "staging's failed verification, told",
        Duration::from_secs(90),
        Duration::from_millis(100),
        find("verificationFailed", "staging"),
        || r.describe(),
    )
    .await;
    let v = failed.json();
    assert_eq!(v["tag"], "1.1.0", "{v}");
    assert_eq!(
        v["summary"],
        format!(
            "web 1.1.0 failed verification in staging (#{})",
            v["pullRequest"]["number"]
        )
    );
    let back = wait_for(
        "staging's rollback, told",
        Duration::from_secs(60),
        Duration::from_millis(100),
        find("rolledBack", "staging"),
        || r.describe(),
    )
    .await;
    assert_eq!(back.json()["tag"], "1.0.0");

    // GitHub now wants signed commits, which a token's git2 commits are not: dev's next
    // promotion is refused, and that is told once.
    sb.forge
        .protect_branch(
            baton::sandbox::OWNER,
            baton::sandbox::REPO,
            "main",
            sim::forge::Protection {
                required_signatures: true,
                ..Default::default()
            },
        )
        .unwrap();
    sb.push("web", "1.2.0");
    let refused = wait_for(
        "dev's refused merge, told",
        Duration::from_secs(60),
        Duration::from_millis(100),
        find("mergeRefused", "dev"),
        || r.describe(),
    )
    .await;
    let v = refused.json();
    assert_eq!(v["tag"], "1.2.0");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("verified signatures"),
        "{v}"
    );
    assert!(baton::notify::payload::verify(
        &Secret::new(hmac),
        &refused.body,
        refused.signature.as_deref()
    ));
    let accepted = r.accepted();
    let ids: BTreeSet<&str> = accepted.iter().map(|h| h.delivery.as_str()).collect();
    assert_eq!(ids.len(), accepted.len(), "{}", r.describe());
    assert!(
        accepted
            .iter()
            .all(|h| ["verificationFailed", "rolledBack", "mergeRefused"]
                .contains(&h.event.as_str())),
        "{}",
        r.describe()
    );
    let _ = stop.send(());
    running.await.unwrap();
}
