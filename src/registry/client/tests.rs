use super::bearer::scopes;
use super::*;
use reqwest::header::HeaderValue;

#[test]
fn link_headers_yield_the_next_page() {
    let mut h = HeaderMap::new();
    h.insert(
        header::LINK,
        HeaderValue::from_static("</v2/shop/web/tags/list?last=b&n=2>; rel=\"next\""),
    );
    assert_eq!(
        next_link(&h).as_deref(),
        Some("/v2/shop/web/tags/list?last=b&n=2")
    );
    assert_eq!(next_link(&HeaderMap::new()), None);
}

#[test]
fn retry_after_accepts_seconds_and_dates() {
    let mut h = HeaderMap::new();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&h), Some(Duration::ZERO));
}

#[test]
fn backoff_doubles_and_is_capped() {
    let p = RetryPolicy {
        attempts: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    assert_eq!(p.backoff(1), Duration::from_millis(100));
    assert_eq!(p.backoff(3), Duration::from_millis(400));
    assert_eq!(p.backoff(9), Duration::from_secs(1));
}

#[test]
fn scopes_cover_mount_sources_and_challenge_extras() {
    let repo = Repo::new("r", "shop/web");
    assert_eq!(
        scopes(&repo, &Access::PushMountFrom("shop/src"), None),
        "repository:shop/web:pull,push repository:shop/src:pull"
    );
    assert_eq!(
        scopes(
            &repo,
            &Access::Pull,
            Some("repository:shop/web:pull registry:catalog:*")
        ),
        "repository:shop/web:pull registry:catalog:*"
    );
}

#[test]
fn loopback_registries_are_plain_http_others_https() {
    let c = RegistryClient::anonymous();
    assert_eq!(c.base("127.0.0.1:5000"), "http://127.0.0.1:5000");
    assert_eq!(c.base("localhost:5000"), "http://localhost:5000");
    assert_eq!(c.base("ghcr.io"), "https://ghcr.io");
    assert_eq!(c.base("docker.io"), "https://registry-1.docker.io");
}

#[test]
fn registry_error_json_is_condensed() {
    assert_eq!(
        error_message(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
                .into()
        ),
        "MANIFEST_UNKNOWN manifest unknown"
    );
}
