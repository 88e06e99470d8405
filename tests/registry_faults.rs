//! Faults: a registry that is down, answers 5xx, rate-limits with `Retry-After`, or serves a
//! malformed manifest. Each ends in a retry or a clear error naming the repository (and tag),
//! never a panic. Faults are injected by a proxy in front of a real `docker-registry`.

mod registry_support;

use std::time::Duration;

use baton::config::Pipeline;
use baton::registry::bless::Rejection;
use baton::registry::{
    ClientOptions, CredentialStore, RegistryClient, RegistryError, RetryPolicy, ScanError,
    ScanOptions, Scanner,
};
use registry_support::*;

fn fast_client() -> RegistryClient {
    RegistryClient::new(
        CredentialStore::new(),
        ClientOptions {
            retry: RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_secs(5),
            },
            ..ClientOptions::default()
        },
    )
}

fn pipeline(image: &str, bless: &str) -> Pipeline {
    Pipeline::parse(
        "p.yaml",
        &format!(
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {image}\n    bless: {bless}\nenvironments:\n  - name: dev\n"
        ),
    )
    .unwrap()
    .pipeline
}

async fn scan(s: &Scanner, p: &Pipeline) -> Result<baton::registry::AppScan, ScanError> {
    s.scan_app("web", p.app("web").unwrap(), None).await
}

fn fault(path: &str, status: u16, headers: &[(&str, &str)], times: usize) -> Fault {
    Fault {
        path: path.into(),
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: bytes::Bytes::new(),
        times,
    }
}

/// A real registry with `web:1.0.0` and `web:1.1.0`, behind a fault proxy.
async fn setup() -> (TestRegistry, FaultProxy, String) {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    for tag in ["1.0.0", "1.1.0"] {
        push.push("web", tag, &image(tag, &ImageOpts::default()))
            .await;
    }
    let (proxy, addr) = FaultProxy::start(&reg.addr).await;
    (reg, proxy, addr)
}

#[tokio::test]
async fn a_registry_that_is_down_gives_a_transient_error_naming_what_was_read() {
    let reg = TestRegistry::start();
    let addr = reg.addr.clone();
    drop(reg);
    let s = Scanner::new(fast_client(), ScanOptions::default());

    let e = scan(
        &s,
        &pipeline(&format!("{addr}/shop/web"), "{ semver: \"*\" }"),
    )
    .await
    .unwrap_err();
    assert!(e.is_transient());
    assert!(
        e.to_string().starts_with(&format!(
            "app web: cannot reach registry {addr} while reading {addr}/shop/web:"
        )),
        "{e}"
    );
    assert_eq!(s.client().stats().retries(), 2, "3 attempts, 2 retries");

    let e = scan(
        &s,
        &pipeline(&format!("{addr}/shop/web"), "{ tag: blessed }"),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains(&format!("{addr}/shop/web:blessed")),
        "{e}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_reported_with_repo_and_tag_when_they_persist() {
    let (_reg, proxy, addr) = setup().await;
    let p = pipeline(&format!("{addr}/web"), "{ semver: \"*\" }");

    proxy.inject(fault("/v2/web/tags/list", 503, &[], 2));
    let s = Scanner::new(fast_client(), ScanOptions::default());
    assert_eq!(scan(&s, &p).await.unwrap().newest.unwrap().tag, "1.1.0");
    assert_eq!(s.client().stats().retries(), 2);

    proxy.inject(fault("/v2/web/manifests/1.1.0", 500, &[], 100));
    let s = Scanner::new(fast_client(), ScanOptions::default());
    let e = scan(&s, &p).await.unwrap_err();
    assert!(e.is_transient());
    let ScanError::Registry { source, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        matches!(source, RegistryError::Server { status: 500, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("{addr}/web:1.1.0")), "{e}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_per_retry_after_or_returned_when_too_long() {
    let (_reg, proxy, addr) = setup().await;
    let p = pipeline(&format!("{addr}/web"), "{ semver: \"*\" }");

    proxy.inject(fault("/v2/web/tags/list", 429, &[("retry-after", "1")], 1));
    let s = Scanner::new(fast_client(), ScanOptions::default());
    assert_eq!(scan(&s, &p).await.unwrap().newest.unwrap().tag, "1.1.0");
    let times = proxy.requests_to("/v2/web/tags/list");
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "retried after {:?}, before Retry-After",
        times[1] - times[0]
    );

    // Longer than the client is willing to block: surfaced at once, with the delay.
    proxy.inject(fault(
        "/v2/web/tags/list",
        429,
        &[("retry-after", "3600")],
        1,
    ));
    let s = Scanner::new(fast_client(), ScanOptions::default());
    let e = scan(&s, &p).await.unwrap_err();
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(
        e.to_string(),
        format!("app web: registry {addr} rate-limited {addr}/web; retry after 3600s")
    );
}

#[tokio::test]
async fn a_malformed_manifest_rejects_that_tag_and_the_scan_goes_on() {
    let (_reg, proxy, addr) = setup().await;
    let garbage = bytes::Bytes::from_static(b"{\"schemaVersion\": 2, \"layers\": 7");
    let bad = digest(&garbage);
    // The tag points at a manifest whose bytes hash correctly but are not a manifest.
    proxy.inject(fault(
        "/v2/web/manifests/1.1.0",
        200,
        &[
            ("docker-content-digest", &bad),
            ("content-type", OCI_MANIFEST),
        ],
        100,
    ));
    proxy.inject(Fault {
        body: garbage,
        ..fault(
            &format!("/v2/web/manifests/{bad}"),
            200,
            &[("content-type", OCI_MANIFEST)],
            100,
        )
    });
    let s = Scanner::new(fast_client(), ScanOptions::default());
    let result = scan(&s, &pipeline(&format!("{addr}/web"), "{ semver: \"*\" }"))
        .await
        .unwrap();
    assert_eq!(result.newest.unwrap().tag, "1.0.0");
    let r = &result.rejected[0];
    assert_eq!(
        (r.tag.as_str(), r.digest.as_deref()),
        ("1.1.0", Some(bad.as_str()))
    );
    let Rejection::Unreadable { detail } = &r.rejection else {
        panic!("{r:?}")
    };
    assert!(
        detail.starts_with(&format!(
            "malformed manifest for {addr}/web:1.1.0: not JSON"
        )),
        "{detail}"
    );
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    let (_reg, proxy, addr) = setup().await;
    let client = fast_client();
    let repo = baton::registry::Repo::new(&addr, "web");
    let real = client.head_manifest(&repo, "1.1.0").await.unwrap().digest;
    proxy.inject(Fault {
        body: bytes::Bytes::from_static(b"{\"schemaVersion\":2}"),
        ..fault(&format!("/v2/web/manifests/{real}"), 200, &[], 1)
    });
    let e = client.get_manifest(&repo, &real).await.unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .starts_with(&format!("digest mismatch for {addr}/web@{real}")),
        "{e}"
    );
}
