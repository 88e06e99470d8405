//! The sandbox's registry stand-in (`sim::registry`) read by the production scanner: the same
//! code path as against a real registry, so `baton sandbox` exercises it unchanged.

use std::time::Duration;

use baton::config::Pipeline;
use baton::registry::{Detail, RegistryClient, RequestKind, ScanOptions, Scanner};

#[tokio::test]
async fn the_scanner_reads_the_sim_registry_and_parses_its_notifications() {
    let (listener_tx, mut listener_rx) = tokio::sync::mpsc::unbounded_channel();
    let router =
        axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let tx = listener_tx.clone();
            async move {
                let _ = tx.send(baton::registry::webhook::parse(&headers, &body, None));
                axum::http::StatusCode::OK
            }
        });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhooks/registry", tcp.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(tcp, router).await.unwrap() });

    let reg = sim::registry::Registry::start().await.unwrap();
    reg.set_notify_url(Some(&hook));
    reg.push_image(
        "shop/web",
        "1.0.0",
        br#"{"created":"2026-01-01T00:00:00Z"}"#,
        &[b"a"],
    );
    let newest = reg.push_image(
        "shop/web",
        "1.1.0",
        br#"{"created":"2026-02-01T00:00:00Z"}"#,
        &[b"b"],
    );
    reg.push_image("shop/web", "1.2.0-rc.1", b"{}", &[b"c"]);

    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {}/shop/web\n    bless: {{ semver: \">=1.0.0\" }}\nenvironments:\n  - name: dev\n",
        reg.host()
    );
    let p = Pipeline::parse("p.yaml", &text).unwrap().pipeline;
    let scanner = Scanner::new(
        RegistryClient::anonymous(),
        ScanOptions {
            detail: Detail::Full,
            ..ScanOptions::default()
        },
    );
    let s = scanner
        .scan_app("web", p.app("web").unwrap(), None)
        .await
        .unwrap();
    let top = s.newest.unwrap();
    assert_eq!(
        (top.tag.as_str(), top.digest.as_deref()),
        ("1.1.0", Some(newest.as_str()))
    );
    assert_eq!(
        top.meta.unwrap().created.unwrap().to_rfc3339(),
        "2026-02-01T00:00:00+00:00"
    );
    let before = scanner.client().stats();
    scanner
        .scan_app("web", p.app("web").unwrap(), None)
        .await
        .unwrap();
    let delta = scanner.client().stats().since(&before);
    assert_eq!(
        (delta.total(), delta.of_kind(RequestKind::Tags)),
        (1, 1),
        "{delta}"
    );

    let mut hints = Vec::new();
    while hints.len() < 3 {
        let got = tokio::time::timeout(Duration::from_secs(10), listener_rx.recv())
            .await
            .expect("the sim registry notified")
            .unwrap()
            .expect("the notification parses");
        hints.extend(got);
    }
    let hint = hints
        .iter()
        .find(|h| h.tag.as_deref() == Some("1.1.0"))
        .unwrap();
    assert_eq!(hint.digest.as_deref(), Some(newest.as_str()));
    assert!(hint.concerns(&baton::registry::Repo::new(reg.host(), "shop/web")));
}
