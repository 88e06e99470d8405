//! Scanning against a real `docker-registry`: blessing rules, pagination, manifest kinds,
//! metadata, cheap polling, webhook invalidation, and `baton registry scan`.

mod registry_support;

use std::time::Duration;

use baton::config::Pipeline;
use baton::registry::bless::Rejection;
use baton::registry::{
    AppScan, Detail, RegistryClient, RequestKind, ScanOptions, Scanner, SignatureStatus,
};
use registry_support::*;

fn pipeline(apps: &str) -> Pipeline {
    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n{apps}\nenvironments:\n  - name: dev\n"
    );
    Pipeline::parse("policies/pipeline.yaml", &text)
        .unwrap()
        .pipeline
}

fn full_scanner() -> Scanner {
    Scanner::new(
        RegistryClient::anonymous(),
        ScanOptions {
            detail: Detail::Full,
            ..ScanOptions::default()
        },
    )
}

async fn scan(scanner: &Scanner, p: &Pipeline, app: &str) -> AppScan {
    scanner
        .scan_app(app, p.app(app).unwrap(), None)
        .await
        .unwrap()
}

fn tags(scan: &AppScan) -> Vec<&str> {
    scan.candidates.iter().map(|c| c.tag.as_str()).collect()
}

fn rejection<'a>(scan: &'a AppScan, tag: &str) -> &'a Rejection {
    &scan
        .rejected
        .iter()
        .find(|r| r.tag == tag)
        .unwrap_or_else(|| panic!("{tag} not rejected: {:?}", scan.rejected))
        .rejection
}

#[tokio::test]
async fn a_semver_range_blesses_releases_picks_the_highest_and_explains_the_rest() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let mut digests = std::collections::HashMap::new();
    for tag in [
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "v1.9.0",
        "1.11.0-rc.1",
        "0.9.0",
        "latest",
    ] {
        let d = push
            .push("shop/web", tag, &image(tag, &ImageOpts::default()))
            .await;
        digests.insert(tag, d);
    }
    let p = pipeline(&format!(
        "  web:\n    image: {}\n    bless: {{ semver: \">=1.0.0\" }}\n",
        reg.image("shop/web")
    ));
    let s = scan(&full_scanner(), &p, "web").await;

    assert_eq!(tags(&s), ["1.10.0", "v1.9.0", "1.2.0", "1.0.0"]);
    let newest = s.newest.as_ref().unwrap();
    assert_eq!(newest.tag, "1.10.0");
    assert_eq!(newest.digest.as_deref(), Some(digests["1.10.0"].as_str()));
    assert_eq!(newest.signature, SignatureStatus::NotRequired);
    assert!(matches!(
        rejection(&s, "1.11.0-rc.1"),
        Rejection::PreRelease { .. }
    ));
    assert!(matches!(
        rejection(&s, "0.9.0"),
        Rejection::OutOfRange { .. }
    ));
    assert_eq!(rejection(&s, "latest"), &Rejection::NotSemver);
}

#[tokio::test]
async fn a_range_naming_a_pre_release_promotes_the_release_candidate() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    for tag in ["1.4.0", "1.5.0-rc.1", "1.5.0-rc.2", "1.6.0-rc.1"] {
        push.push("web", tag, &image(tag, &ImageOpts::default()))
            .await;
    }
    let p = pipeline(&format!(
        "  web:\n    image: {}\n    bless: {{ semver: \">=1.5.0-rc.0\" }}\n",
        reg.image("web")
    ));
    let s = scan(&full_scanner(), &p, "web").await;
    assert_eq!(tags(&s), ["1.5.0-rc.2", "1.5.0-rc.1"]);
    assert!(matches!(
        rejection(&s, "1.6.0-rc.1"),
        Rejection::PreRelease { .. }
    ));
    assert!(matches!(
        rejection(&s, "1.4.0"),
        Rejection::OutOfRange { .. }
    ));
}

#[tokio::test]
async fn a_regex_rule_with_newest_by_creation_time_uses_the_image_created_time() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    for (tag, created) in [
        ("main-101", "2026-03-01T10:00:00Z"),
        ("main-99", "2026-03-02T10:00:00Z"),
        ("main-100", "2026-02-01T10:00:00Z"),
        ("feature-7", "2026-04-01T10:00:00Z"),
    ] {
        let opts = ImageOpts {
            created: Some(created.into()),
            ..ImageOpts::default()
        };
        push.push("api", tag, &image(tag, &opts)).await;
    }
    let p = pipeline(&format!(
        "  api:\n    image: {}\n    bless: {{ regex: \"main-[0-9]+\", newest: created }}\n",
        reg.image("api")
    ));
    // Newest-only detail still reads every candidate when ordering by time.
    let scanner = Scanner::new(RegistryClient::anonymous(), ScanOptions::default());
    let s = scan(&scanner, &p, "api").await;
    assert_eq!(tags(&s), ["main-99", "main-101", "main-100"]);
    assert_eq!(s.newest.as_ref().unwrap().tag, "main-99");
    assert!(matches!(
        rejection(&s, "feature-7"),
        Rejection::NoMatch { .. }
    ));
}

#[tokio::test]
async fn a_marker_tag_is_read_without_listing_tags_and_a_missing_one_is_explained() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let d = push
        .push("web", "blessed", &image("b", &ImageOpts::default()))
        .await;
    push.push("web", "1.0.0", &image("x", &ImageOpts::default()))
        .await;
    let p = pipeline(&format!(
        "  web:\n    image: {0}\n    bless: {{ tag: blessed }}\n  gone:\n    image: {1}\n    bless: {{ tag: blessed }}\n",
        reg.image("web"),
        reg.image("gone")
    ));
    let scanner = full_scanner();
    let s = scan(&scanner, &p, "web").await;
    assert_eq!(s.newest.unwrap().digest.as_deref(), Some(d.as_str()));

    // The marker moves by design, so every scan reads it: one HEAD, no tag listing.
    let before = scanner.client().stats();
    scan(&scanner, &p, "web").await;
    let delta = scanner.client().stats().since(&before);
    assert_eq!(delta.total(), 1, "{delta}");
    assert_eq!(delta.of_kind(RequestKind::ManifestHead), 1, "{delta}");

    // A registry 404 for a repository that does not exist is a rejection, not a failure.
    let s = scan(&scanner, &p, "gone").await;
    assert!(s.newest.is_none());
    assert_eq!(
        rejection(&s, "blessed"),
        &Rejection::MarkerMissing {
            marker: "blessed".into()
        }
    );
}

#[tokio::test]
async fn tags_are_listed_across_pages_following_link_headers() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let all: Vec<String> = (0..8).map(|i| format!("1.0.{i}")).collect();
    for tag in &all {
        push.push("paged", tag, &image(tag, &ImageOpts::default()))
            .await;
    }
    // Debian's distribution 2.8 returns every tag at once (it ignores `n` on tag lists), so
    // a proxy in front of it pages the real list the way GHCR, Harbor and distribution 3 do.
    let (proxy, addr) = FaultProxy::start(&reg.addr).await;
    proxy.page_tags(3);
    let p = pipeline(&format!(
        "  paged:\n    image: {addr}/paged\n    bless: {{ semver: \">=1.0.0\" }}\n"
    ));
    let scanner = full_scanner();
    let s = scan(&scanner, &p, "paged").await;
    assert_eq!(s.candidates.len(), 8);
    assert_eq!(s.newest.unwrap().tag, "1.0.7");
    assert_eq!(scanner.client().stats().of_kind(RequestKind::Tags), 3);
    assert_eq!(proxy.requests_to("last=1.0.5&n=3").len(), 1);
}

#[tokio::test]
async fn indexes_lists_and_both_manifest_kinds_resolve_with_their_metadata() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let oci_index = index(
        "oci",
        false,
        &[
            ("org.opencontainers.image.revision", "0123456789abcdef"),
            (
                "org.opencontainers.image.source",
                "https://github.com/shop/web",
            ),
        ],
    );
    let docker_list = index("docker", true, &[]);
    let docker = image(
        "docker-v2",
        &ImageOpts {
            docker: true,
            created: Some("2026-01-05T08:00:00Z".into()),
            labels: vec![(
                "org.opencontainers.image.revision".into(),
                "feedface".into(),
            )],
            ..ImageOpts::default()
        },
    );
    let oci = image(
        "oci-manifest",
        &ImageOpts {
            annotations: vec![(
                "org.opencontainers.image.created".into(),
                "2026-02-02T02:02:02Z".into(),
            )],
            created: Some("2020-01-01T00:00:00Z".into()),
            ..ImageOpts::default()
        },
    );
    push.push("multi", "2.0.0", &oci_index).await;
    push.push("multi", "2.1.0", &docker_list).await;
    push.push("multi", "2.2.0", &docker).await;
    push.push("multi", "2.3.0", &oci).await;
    let p = pipeline(&format!(
        "  multi:\n    image: {}\n    bless: {{ semver: \">=2.0.0\" }}\n",
        reg.image("multi")
    ));
    let s = scan(&full_scanner(), &p, "multi").await;
    let get = |tag: &str| s.candidates.iter().find(|c| c.tag == tag).unwrap();

    let c = get("2.0.0");
    assert_eq!(
        c.digest.as_deref(),
        Some(oci_index.digest.as_str()),
        "the index digest, not a child's"
    );
    let m = c.meta.as_ref().unwrap();
    assert_eq!(m.media_type, OCI_INDEX);
    assert_eq!(m.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(m.revision.as_deref(), Some("0123456789abcdef"));
    assert_eq!(m.source.as_deref(), Some("https://github.com/shop/web"));
    assert_eq!(
        m.created.unwrap().to_rfc3339(),
        "2026-03-01T12:00:00+00:00",
        "from the amd64 child's config"
    );

    let c = get("2.1.0");
    assert_eq!(c.digest.as_deref(), Some(docker_list.digest.as_str()));
    assert_eq!(c.meta.as_ref().unwrap().media_type, DOCKER_LIST);

    let m = get("2.2.0").meta.as_ref().unwrap();
    assert_eq!(m.media_type, DOCKER_MANIFEST);
    assert_eq!(
        m.revision.as_deref(),
        Some("feedface"),
        "from a config label"
    );
    assert_eq!(m.created.unwrap().to_rfc3339(), "2026-01-05T08:00:00+00:00");

    let m = get("2.3.0").meta.as_ref().unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(
        m.created.unwrap().to_rfc3339(),
        "2026-02-02T02:02:02+00:00",
        "the annotation wins over the config"
    );
}

#[tokio::test]
async fn an_unchanged_scan_costs_one_request_per_repository() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let mut apps = String::new();
    for r in ["a", "b", "c"] {
        for i in 0..5 {
            let tag = format!("1.{i}.0");
            push.push(r, &tag, &image(&format!("{r}{tag}"), &ImageOpts::default()))
                .await;
        }
        apps.push_str(&format!(
            "  {r}:\n    image: {}\n    bless: {{ semver: \">=1.0.0\" }}\n",
            reg.image(r)
        ));
    }
    let p = pipeline(&apps);
    let scanner = full_scanner();
    let first: Vec<_> = scanner
        .scan_pipeline(&p, std::path::Path::new("."), None)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let before = scanner.client().stats();
    let second: Vec<_> = scanner
        .scan_pipeline(&p, std::path::Path::new("."), None)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let delta = scanner.client().stats().since(&before);
    assert_eq!(first, second);
    assert_eq!(delta.total(), 3, "{delta}");
    assert_eq!(delta.get(&reg.addr, RequestKind::Tags), 3, "{delta}");
}

/// Once a registry's push notifications reach baton, an idle scan asks it nothing (each
/// notification invalidates its repository, which the next scan reads again, alone).
#[tokio::test]
async fn on_a_registry_that_notifies_an_unchanged_scan_costs_nothing_and_a_push_rereads_its_repository()
 {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let mut apps = String::new();
    for r in ["a", "b", "c"] {
        push.push(r, "1.0.0", &image(&format!("{r}1"), &ImageOpts::default()))
            .await;
        apps.push_str(&format!(
            "  {r}:\n    image: {}\n    bless: {{ semver: \">=1.0.0\" }}\n",
            reg.image(r)
        ));
    }
    let p = pipeline(&apps);
    let scanner = full_scanner();
    let scan_all = || async {
        scanner
            .scan_pipeline(&p, std::path::Path::new("."), None)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    scan_all().await;
    scanner.note_notifying(&reg.addr);
    let before = scanner.client().stats();
    scan_all().await;
    assert_eq!(scanner.client().stats().since(&before).total(), 0);

    // A push to b, and its notification: b is read again, a and c are not.
    let new = push
        .push("b", "1.1.0", &image("b2", &ImageOpts::default()))
        .await;
    scanner.invalidate(&reg.repo("b"), Some("1.1.0"));
    let before = scanner.client().stats();
    let scans = scan_all().await;
    let delta = scanner.client().stats().since(&before);
    assert_eq!(scans[1].newest.as_ref().unwrap().digest, Some(new));
    assert_eq!(delta.get(&reg.addr, RequestKind::Tags), 1, "{delta}");

    // A registry that never notified is still asked every time.
    let other = full_scanner();
    other
        .scan_pipeline(&p, std::path::Path::new("."), None)
        .await;
    let before = other.client().stats();
    other
        .scan_pipeline(&p, std::path::Path::new("."), None)
        .await;
    assert_eq!(other.client().stats().since(&before).total(), 3);
}

#[tokio::test]
async fn a_webhook_hint_makes_the_next_scan_read_a_moved_tag_again() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let old = push
        .push("web", "1.0.0", &image("old", &ImageOpts::default()))
        .await;
    let p = pipeline(&format!(
        "  web:\n    image: {}\n    bless: {{ semver: \"*\" }}\n",
        reg.image("web")
    ));
    let scanner = full_scanner();
    assert_eq!(
        scan(&scanner, &p, "web").await.newest.unwrap().digest,
        Some(old.clone())
    );

    // Someone re-pushes the release tag. Within `revalidate_after` the cache trusts it…
    let new = push
        .push("web", "1.0.0", &image("new", &ImageOpts::default()))
        .await;
    assert_eq!(
        scan(&scanner, &p, "web").await.newest.unwrap().digest,
        Some(old)
    );
    // …until the registry's webhook says the tag moved.
    let hint = baton::registry::PushHint {
        source: baton::registry::webhook::Source::Distribution,
        registry: Some(reg.addr.clone()),
        repository: "web".into(),
        tag: Some("1.0.0".into()),
        digest: Some(new.clone()),
    };
    let repo = reg.repo("web");
    assert!(hint.concerns(&repo));
    scanner.invalidate(&repo, hint.tag.as_deref());
    assert_eq!(
        scan(&scanner, &p, "web").await.newest.unwrap().digest,
        Some(new)
    );
}

#[tokio::test]
async fn a_short_revalidation_window_rereads_tags() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    push.push("web", "1.0.0", &image("old", &ImageOpts::default()))
        .await;
    let p = pipeline(&format!(
        "  web:\n    image: {}\n    bless: {{ semver: \"*\" }}\n",
        reg.image("web")
    ));
    let scanner = Scanner::new(
        RegistryClient::anonymous(),
        ScanOptions {
            revalidate_after: Duration::ZERO,
            ..ScanOptions::default()
        },
    );
    scan(&scanner, &p, "web").await;
    let new = push
        .push("web", "1.0.0", &image("new", &ImageOpts::default()))
        .await;
    assert_eq!(
        scan(&scanner, &p, "web").await.newest.unwrap().digest,
        Some(new)
    );
}

#[tokio::test]
async fn registry_notifications_are_parsed_into_push_hints() {
    let (listener, url) = Listener::start().await;
    let reg = TestRegistry::start_with(RegistryOptions {
        notify: Some(url),
        ..RegistryOptions::default()
    });
    let push = Pusher::new(&reg.addr);
    let d = push
        .push("shop/web", "1.4.2", &image("n", &ImageOpts::default()))
        .await;

    let found = |l: &Listener| {
        l.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(headers, body)| {
                baton::registry::webhook::parse(headers, body, None).unwrap_or_default()
            })
            .find(|h| h.tag.as_deref() == Some("1.4.2"))
    };
    assert!(
        eventually(Duration::from_secs(10), || found(&listener).is_some()).await,
        "no push notification for shop/web:1.4.2"
    );
    let hint = found(&listener).unwrap();
    assert_eq!(hint.repository, "shop/web");
    assert_eq!(hint.digest.as_deref(), Some(d.as_str()));
    assert_eq!(hint.source, baton::registry::webhook::Source::Distribution);
    assert!(hint.concerns(&reg.repo("shop/web")));
    // Blob pushes were sent too, and produced no hints.
    let (headers, _) = listener.received.lock().unwrap()[0].clone();
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/vnd.docker.distribution.events.v1+json")
    );
}

#[tokio::test]
async fn the_cli_lists_the_newest_blessed_digest_and_explains_rejections() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let d = push
        .push("shop/web", "1.4.2", &image("142", &ImageOpts::default()))
        .await;
    push.push(
        "shop/web",
        "1.5.0-rc.1",
        &image("rc", &ImageOpts::default()),
    )
    .await;
    push.push("shop/web", "latest", &image("142", &ImageOpts::default()))
        .await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("policies")).unwrap();
    std::fs::write(
        repo.path().join("policies/pipeline.yaml"),
        format!(
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {}\n    bless: {{ semver: \">=1.0.0\" }}\nenvironments:\n  - name: dev\n",
            reg.image("shop/web")
        ),
    )
    .unwrap();
    let baton = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--repo")
            .arg(repo.path())
            .args(args)
            .env("DOCKER_CONFIG", repo.path())
            .output()
            .unwrap()
    };

    let out = baton(&["registry", "scan", "--explain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("newest: 1.4.2 {d}")), "{text}");
    assert!(
        text.contains("pre-release not allowed by `>=1.0.0`"),
        "{text}"
    );
    assert!(
        text.contains("latest") && text.contains("not a semantic version"),
        "{text}"
    );

    let out = baton(&["registry", "scan", "--app", "web", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["apps"][0]["newest"]["digest"], d.as_str());
    assert_eq!(json["apps"][0]["rejected_count"], 2);
    assert!(json["requests"]["requests"].as_array().is_some());

    let out = baton(&["registry", "scan", "--app", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("apps: web"));
}
