//! `server.auth` through the real HTTP server of a running `baton run` (the service against
//! the stand-ins): the status page and the JSON API need the bearer token or a trusted proxy's
//! user header, `/healthz`, `/readyz` and `/metrics` stay open, webhooks keep answering by
//! their own signatures, and no page or API answer shows a secret.

use std::time::Duration;

use baton::config::runtime::{ServerAuth, TrustedProxy};
use baton::config::{RuntimeConfig, SecretRef};
use baton::sandbox::{Sandbox, SandboxOptions};
use baton::service::{RunOptions, Service};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TOKEN: &str = "status-token-5f1c2a9e";

const PROTECTED: [&str; 3] = ["/", "/api/v1/state", "/api/v1/history"];

struct Running {
    _sb: Sandbox,
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<baton::service::Exit>,
    _tmp: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

/// The sandbox's baton, with `auth` as its `server.auth`.
async fn start(auth: impl FnOnce(&std::path::Path) -> ServerAuth) -> Running {
    start_with(|dir, cfg| cfg.server.auth = Some(auth(dir))).await
}

/// The sandbox's baton, its `baton.yaml` changed by `edit` (given a directory for secrets).
async fn start_with(edit: impl FnOnce(&std::path::Path, &mut RuntimeConfig)) -> Running {
    let sb = Sandbox::start(&SandboxOptions::default()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg: RuntimeConfig = sb.config.clone();
    edit(tmp.path(), &mut cfg);
    let service = Service::start(cfg, RunOptions::default()).await.unwrap();
    let addr = service.local_addr();
    sb.connect(addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(service.run(async move {
        let _ = stopped.await;
    }));
    Running {
        _sb: sb,
        base: format!("http://{addr}"),
        stop,
        handle,
        _tmp: tmp,
    }
}

fn token_file(dir: &std::path::Path) -> SecretRef {
    let path = dir.join("status-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    SecretRef::from_file(path)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(path: &str, base: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client().get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_and_api_need_the_bearer_token_and_health_metrics_and_webhooks_stay_open() {
    let run = start(|dir| ServerAuth {
        token: Some(token_file(dir)),
        trusted_proxy: None,
    })
    .await;
    let base = run.base.clone();
    let bearer = format!("Bearer {TOKEN}");
    for path in PROTECTED {
        let (code, body) = get(path, &base, &[]).await;
        assert_eq!(code, 401, "{path} without a token: {body}");
        assert!(body.contains("bearer token"), "{path}: {body}");
        let (code, _) = get(path, &base, &[("Authorization", "Bearer not-the-token")]).await;
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _) = get(path, &base, &[("Authorization", TOKEN)]).await;
        assert_eq!(code, 401, "{path} with the token but no Bearer scheme");
        // Without a trusted proxy configured, a user header proves nothing.
        let (code, _) = get(path, &base, &[("X-Forwarded-User", "mallory")]).await;
        assert_eq!(code, 401, "{path} with only a user header");
        let (code, body) = get(path, &base, &[("Authorization", &bearer)]).await;
        assert!(
            code == 200 || (path == "/api/v1/history" && code == 503),
            "{path} with the token: {code} {body}"
        );
        let (code, _) = get(
            path,
            &base,
            &[("authorization", &format!("bearer {TOKEN}"))],
        )
        .await;
        assert_ne!(code, 401, "{path}: the scheme is case-insensitive");
    }
    assert_eq!(get("/healthz", &base, &[]).await.0, 200);
    assert_eq!(get("/metrics", &base, &[]).await.0, 200);
    let ready = get("/readyz", &base, &[]).await.0;
    assert!(
        ready == 200 || ready == 503,
        "/readyz answers without a token: {ready}"
    );

    // Webhooks: signed by the webhook secret they pass without any token; unsigned they fail.
    let secret = run
        ._sb
        .config
        .github
        .webhook_secret
        .clone()
        .unwrap()
        .resolve()
        .unwrap();
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let post = |sig: Option<String>, delivery: &'static str| {
        let mut req = client()
            .post(format!("{base}/webhooks/github"))
            .header("X-GitHub-Event", "ping")
            .header("X-GitHub-Delivery", delivery)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = sig {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send()
    };
    let signed = post(Some(signature), "d-1")
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!((200..300).contains(&signed), "a signed webhook: {signed}");
    let unsigned = post(None, "d-2").await.unwrap().status().as_u16();
    assert_eq!(unsigned, 401, "an unsigned webhook");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_header_is_believed_only_from_the_trusted_proxys_addresses() {
    // The test client connects from 127.0.0.1: here that is the proxy.
    let trusted = start(|_| ServerAuth {
        token: None,
        trusted_proxy: Some(TrustedProxy {
            header: "X-Forwarded-User".into(),
            from: vec!["127.0.0.1/32".into()],
        }),
    })
    .await;
    for path in PROTECTED {
        let (code, body) = get(path, &trusted.base, &[("X-Forwarded-User", "alice")]).await;
        assert!(
            code == 200 || code == 503,
            "{path} as alice via the proxy: {code} {body}"
        );
        assert_eq!(
            get(path, &trusted.base, &[]).await.0,
            401,
            "{path} without a user"
        );
        let (code, _) = get(path, &trusted.base, &[("X-Forwarded-User", "  ")]).await;
        assert_eq!(code, 401, "{path} with a blank user");
    }
    trusted.stop().await;

    // The same header from an address outside `from` is anyone's claim.
    let elsewhere = start(|_| ServerAuth {
        token: None,
        trusted_proxy: Some(TrustedProxy {
            header: "X-Forwarded-User".into(),
            from: vec!["10.0.0.0/8".into()],
        }),
    })
    .await;
    for path in PROTECTED {
        let (code, _) = get(path, &elsewhere.base, &[("X-Forwarded-User", "alice")]).await;
        assert_eq!(code, 401, "{path}: 127.0.0.1 is not in 10.0.0.0/8");
    }
    elsewhere.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_or_api_answer_shows_a_secret() {
    let run = start(|dir| ServerAuth {
        token: Some(token_file(dir)),
        trusted_proxy: None,
    })
    .await;
    let webhook = run
        ._sb
        .config
        .github
        .webhook_secret
        .clone()
        .unwrap()
        .resolve()
        .unwrap();
    let github_token = run
        ._sb
        .config
        .github
        .token
        .clone()
        .map(|t| t.resolve().unwrap());
    let mut secrets = vec![TOKEN.to_string(), webhook.expose().to_string()];
    secrets.extend(github_token.map(|t| t.expose().to_string()));
    let bearer = format!("Bearer {TOKEN}");
    // Let the service fill its view first, so the check covers a populated page.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, state) = get("/api/v1/state", &run.base, &[("Authorization", &bearer)]).await;
        if state.contains("\"updatedAt\":\"") || std::time::Instant::now() > deadline {
            assert!(
                state.contains("\"updatedAt\":\""),
                "the view never filled: {state}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in [
        "/",
        "/api/v1/state",
        "/api/v1/history",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        let (_, body) = get(path, &run.base, &[("Authorization", &bearer)]).await;
        for s in &secrets {
            assert!(!body.contains(s.as_str()), "{path} shows a secret");
        }
    }
    run.stop().await;
}

/// `server.registryWebhook.token`: a registry notification without the bearer token is refused
/// and wakes nothing; with it, it is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_notifications_need_the_configured_token() {
    let run = start_with(|dir, cfg| {
        let path = dir.join("registry-token");
        std::fs::write(&path, "reg-token-9c1e\n").unwrap();
        cfg.server.registry_webhook = Some(baton::config::runtime::RegistryWebhook {
            token: Some(SecretRef::from_file(path)),
            hmac_secret: None,
        });
    })
    .await;
    let body = br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"shop/web","tag":"9.9.9","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"},"request":{"host":"127.0.0.1:5000"}}]}"#;
    let post = |bearer: Option<&str>| {
        let mut req = client()
            .post(format!("{}/webhooks/registry", run.base))
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(body.to_vec());
        if let Some(b) = bearer {
            req = req.header("Authorization", format!("Bearer {b}"));
        }
        req.send()
    };
    for bearer in [None, Some("not-the-token")] {
        let code = post(bearer).await.unwrap().status().as_u16();
        assert_eq!(code, 401, "bearer {bearer:?}");
    }
    let code = post(Some("reg-token-9c1e"))
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!((200..300).contains(&code), "with the token: {code}");
    run.stop().await;
}
