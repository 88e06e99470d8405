//! Signatures and attestations as the real cosign v3 writes them (built by
//! `scripts/test-tools`), on a registry with the OCI referrers API (go-containerregistry's) and
//! on Debian's `docker-registry` without it (cosign then maintains the `sha256-<hex>` fallback
//! index): sigstore bundles, the legacy `.sig` tag, `cosign attest` attestations, referrers
//! endpoints that refuse, and a two-platform index copied to another registry where the real
//! `cosign verify` and `verify-attestation` pass on the copy.

mod registry_support;

use baton::config::Pipeline;
use baton::registry::bless::Rejection;
use baton::registry::copy::digest_tag;
use baton::registry::verify::{self, AttestationResult, Requirements};
use baton::registry::{
    CopyOptions, RegistryClient, ScanOptions, Scanner, SignatureStatus, copy_image,
};
use registry_support::*;

const SLSA: &str = "https://slsa.dev/provenance/v1";
const VULN: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

/// Both kinds of registry, each with a name for messages.
fn registries() -> Vec<(&'static str, TestRegistry)> {
    vec![
        ("with referrers API", TestRegistry::start_referrers()),
        ("docker-registry 2.8", TestRegistry::start()),
    ]
}

/// A config repo whose `web` app has `verify` (YAML flow mapping) and the key as keys/ci.pub.
fn config_repo(image: &str, verify: &str, public_pem: &str) -> (tempfile::TempDir, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/ci.pub"), public_pem).unwrap();
    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {image}\n    bless: {{ semver: \">=1.0.0\" }}\n    verify: {verify}\nenvironments:\n  - name: dev\n"
    );
    std::fs::write(dir.path().join("policies/pipeline.yaml"), &text).unwrap();
    let p = Pipeline::load(dir.path()).unwrap().pipeline;
    (dir, p)
}

async fn scan(p: &Pipeline, dir: &std::path::Path) -> baton::registry::AppScan {
    Scanner::new(RegistryClient::anonymous(), ScanOptions::default())
        .scan_pipeline(p, dir, None)
        .await
        .pop()
        .unwrap()
        .unwrap()
}

async fn tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let v: serde_json::Value = reqwest::get(format!("http://{}/v2/{repo}/tags/list", reg.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(v["tags"].clone()).unwrap_or_default()
}

async fn referrers_status(reg: &TestRegistry, repo: &str, digest: &str) -> u16 {
    reqwest::get(format!("http://{}/v2/{repo}/referrers/{digest}", reg.addr))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn cosign_v3_bundles_verify_with_and_without_the_referrers_api() {
    let cosign = Cosign::new();
    let stranger = Cosign::new();
    for (kind, reg) in registries() {
        let push = Pusher::new(&reg.addr);
        let signed = push
            .push("shop/web", "1.1.0", &image("signed", &ImageOpts::default()))
            .await;
        let foreign = push
            .push(
                "shop/web",
                "1.2.0",
                &image("foreign", &ImageOpts::default()),
            )
            .await;
        push.push(
            "shop/web",
            "1.3.0",
            &image("unsigned", &ImageOpts::default()),
        )
        .await;
        cosign.sign(&format!("{}@{signed}", reg.image("shop/web")));
        stranger.sign(&format!("{}@{foreign}", reg.image("shop/web")));

        // Where cosign put the bundle: the API, or the fallback index tagged sha256-<hex>.
        let listed = tags(&reg, "shop/web").await;
        if kind == "with referrers API" {
            assert_eq!(referrers_status(&reg, "shop/web", &signed).await, 200);
            assert!(!listed.contains(&digest_tag(&signed)), "{kind}: {listed:?}");
        } else {
            assert_eq!(referrers_status(&reg, "shop/web", &signed).await, 404);
            assert!(listed.contains(&digest_tag(&signed)), "{kind}: {listed:?}");
        }

        let (dir, p) = config_repo(
            &reg.image("shop/web"),
            "{ cosignKey: keys/ci.pub }",
            &cosign.public_key_pem(),
        );
        let s = scan(&p, dir.path()).await;
        let newest = s.newest.expect(kind);
        assert_eq!(newest.digest.as_deref(), Some(signed.as_str()), "{kind}");
        assert!(
            matches!(newest.signature, SignatureStatus::Verified { .. }),
            "{kind}"
        );
        let reason = |tag: &str| {
            s.rejected
                .iter()
                .find(|r| r.tag == tag)
                .map(|r| r.reason.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            reason("1.2.0"),
            "signature: invalid: the bundle's signature does not verify with the configured key",
            "{kind}"
        );
        assert_eq!(reason("1.3.0"), "signature: missing", "{kind}");
    }
}

#[tokio::test]
async fn the_legacy_sig_tag_cosign_writes_verifies() {
    let cosign = Cosign::new();
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let d = push
        .push("shop/web", "1.0.0", &image("legacy", &ImageOpts::default()))
        .await;
    cosign.sign_legacy(&format!("{}@{d}", reg.image("shop/web")));
    let listed = tags(&reg, "shop/web").await;
    assert!(
        listed.contains(&format!("{}.sig", digest_tag(&d))),
        "{listed:?}"
    );
    assert!(!listed.contains(&digest_tag(&d)), "{listed:?}");

    let (dir, p) = config_repo(
        &reg.image("shop/web"),
        "{ cosignKey: keys/ci.pub }",
        &cosign.public_key_pem(),
    );
    let s = scan(&p, dir.path()).await;
    assert_eq!(s.newest.unwrap().digest, Some(d.clone()));

    let (dir, p) = config_repo(
        &reg.image("shop/web"),
        "{ cosignKey: keys/ci.pub }",
        &Cosign::new().public_key_pem(),
    );
    let s = scan(&p, dir.path()).await;
    assert!(s.newest.is_none());
    assert!(
        matches!(&s.rejected[0].rejection, Rejection::Signature { detail } if detail.contains("does not verify with the configured key")),
        "{:?}",
        s.rejected
    );
}

#[tokio::test]
async fn a_referrers_endpoint_that_refuses_falls_back_to_the_tag_schemes() {
    let cosign = Cosign::new();
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let d = push
        .push(
            "shop/web",
            "1.0.0",
            &image("fallback", &ImageOpts::default()),
        )
        .await;
    // Docker-registry has no API, so cosign wrote the fallback index.
    cosign.sign(&format!("{}@{d}", reg.image("shop/web")));
    for status in [400u16, 403, 404, 405] {
        let (proxy, addr) = FaultProxy::start(&reg.addr).await;
        proxy.inject(Fault {
            path: "/referrers/".into(),
            status,
            headers: vec![],
            body: bytes::Bytes::from_static(b"{\"errors\":[{\"code\":\"UNSUPPORTED\"}]}"),
            times: usize::MAX,
        });
        let (dir, p) = config_repo(
            &format!("{addr}/shop/web"),
            "{ cosignKey: keys/ci.pub }",
            &cosign.public_key_pem(),
        );
        let s = scan(&p, dir.path()).await;
        assert_eq!(
            s.newest.map(|c| c.digest),
            Some(Some(d.clone())),
            "{status}"
        );
        assert!(
            !proxy.requests_to("/referrers/").is_empty(),
            "{status}: the API was asked first"
        );
        assert!(
            !proxy
                .requests_to(&format!("/manifests/{}", digest_tag(&d)))
                .is_empty(),
            "{status}: then the fallback tag"
        );
    }
}

fn short(d: &str) -> String {
    baton::registry::report::short_digest(d)
}

fn provenance(branch: &str) -> serde_json::Value {
    serde_json::json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": format!("refs/heads/{branch}"), "repository": "https://github.com/shop/web", "path": ".github/workflows/release.yml"}},
        },
        "runDetails": {"builder": {"id": "https://github.com/shop/web/.github/workflows/release.yml"}},
    })
}

fn scan_report(critical: u32) -> serde_json::Value {
    serde_json::json!({
        "scanner": {"uri": "pkg:github/aquasecurity/trivy@0.58.0", "version": "0.58.0", "result": {"critical": critical}},
        "metadata": {"scanStartedOn": "2026-03-01T12:00:00Z", "scanFinishedOn": "2026-03-01T12:01:00Z"},
    })
}

#[tokio::test]
async fn required_attestations_made_by_cosign_attest_are_verified_and_their_predicates_read() {
    let cosign = Cosign::new();
    let stranger = Cosign::new();
    let verify = format!(
        "{{ cosignKey: keys/ci.pub, attestations: [{{ predicateType: \"{SLSA}\" }}, {{ predicateType: \"{VULN}\" }}] }}"
    );
    for (kind, reg) in registries() {
        let push = Pusher::new(&reg.addr);
        let repo = reg.image("shop/web");
        let mut d = std::collections::BTreeMap::new();
        for tag in ["1.0.0", "1.1.0", "1.2.0"] {
            let digest = push
                .push(
                    "shop/web",
                    tag,
                    &image(&format!("att-{tag}"), &ImageOpts::default()),
                )
                .await;
            cosign.sign(&format!("{repo}@{digest}"));
            d.insert(tag, digest);
        }
        // 1.0.0: both attestations. 1.1.0: no vulnerability scan. 1.2.0: its scan attested by
        // someone else's key.
        for tag in ["1.0.0", "1.1.0", "1.2.0"] {
            cosign.attest(
                &format!("{repo}@{}", d[tag]),
                "slsaprovenance1",
                &provenance("main"),
            );
        }
        cosign.attest(&format!("{repo}@{}", d["1.0.0"]), "vuln", &scan_report(0));
        stranger.attest(&format!("{repo}@{}", d["1.2.0"]), "vuln", &scan_report(0));

        let (dir, p) = config_repo(&repo, &verify, &cosign.public_key_pem());
        let s = scan(&p, dir.path()).await;
        let newest = s.newest.clone().expect(kind);
        assert_eq!(newest.tag, "1.0.0", "{kind}");
        assert_eq!(newest.attestations.len(), 2, "{kind}");
        let AttestationResult::Verified { predicate, .. } = &newest.attestations[0].result else {
            panic!("{kind}: {:?}", newest.attestations);
        };
        assert_eq!(
            predicate["buildDefinition"]["externalParameters"]["workflow"]["ref"],
            "refs/heads/main"
        );
        let AttestationResult::Verified { predicate, .. } = &newest.attestations[1].result else {
            panic!("{kind}: {:?}", newest.attestations);
        };
        assert_eq!(predicate["scanner"]["result"]["critical"], 0);

        let reason = |tag: &str| {
            s.rejected
                .iter()
                .find(|r| r.tag == tag)
                .map(|r| r.reason.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            reason("1.1.0"),
            format!("attestation {VULN}: missing"),
            "{kind}"
        );
        // `baton registry scan --explain` shows what was found, and why tags were rejected.
        let table = baton::registry::report::render_table(&[Ok(s.clone())], true);
        assert!(
            table.contains(&format!("  1.0.0  {SLSA}"))
                && table.contains(&format!("  1.0.0  {VULN}")),
            "{table}"
        );
        assert!(
            table.contains(&format!("1.1.0  {}", short(&d["1.1.0"])))
                && table.contains(&format!("attestation {VULN}: missing")),
            "{table}"
        );
        assert_eq!(
            reason("1.2.0"),
            format!(
                "attestation {VULN}: rejected: the bundle's signature does not verify with the configured key"
            ),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_recorded_keyless_attestation_attached_to_its_image_is_verified_on_the_registry() {
    // cosign's own recorded keyless attestation over go-containerregistry's empty image,
    // attached the way `cosign attest` attaches bundles (a referrer with the bundle as layer).
    let reg = TestRegistry::start_referrers();
    let push = Pusher::new(&reg.addr);
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/registry_support/sigstore");
    let manifest = std::fs::read(dir.join("empty-image.manifest.json")).unwrap();
    let config = std::fs::read(dir.join("empty-image.config.json")).unwrap();
    let img = TestImage {
        digest: digest(&manifest),
        blobs: vec![config.into()],
        manifest: manifest.into(),
        media_type: DOCKER_MANIFEST,
        children: vec![],
    };
    let d = push.push("repo", "1.0.0", &img).await;
    assert_eq!(
        d,
        "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
    );
    let bundle = std::fs::read(dir.join("cosign-oci-attestation.sigstore.json")).unwrap();
    let referrer = bundle_referrer(
        &img,
        bundle.into(),
        "https://cosign.sigstore.dev/attestation/v1",
    );
    push.push("repo", &referrer.digest, &referrer).await;

    let root = std::fs::read(dir.join("cosign-trusted-root-pgi.json")).unwrap();
    let read = |path: &str| -> Result<Vec<u8>, String> {
        assert_eq!(path, "keys/trusted_root.json");
        Ok(root.clone())
    };
    let cfg = |subject: &str| -> baton::config::pipeline::SignatureCheck {
        yaml_serde::from_str(&format!(
            "keyless: {{ trustedRoot: keys/trusted_root.json, issuer: \"https://github.com/login/oauth\", subject: \"{subject}\" }}\nattestations: [{{ predicateType: \"https://cosign.sigstore.dev/attestation/v1\" }}]"
        ))
        .unwrap()
    };
    let client = RegistryClient::anonymous();
    let repo = reg.repo("repo");
    let req = Requirements::from_config(&cfg("cody@soyland.com"), &read).unwrap();
    let outcome = verify::check(&client, &repo, &d, &req, None).await.unwrap();
    assert!(
        outcome.attestations[0].is_verified(),
        "{:?}",
        outcome.attestations
    );
    // An attestation is not a signature of the image.
    assert_eq!(outcome.signature, SignatureStatus::Missing);

    let req = Requirements::from_config(&cfg("someone@soyland.com"), &read).unwrap();
    let outcome = verify::check(&client, &repo, &d, &req, None).await.unwrap();
    let AttestationResult::Rejected { reason } = &outcome.attestations[0].result else {
        panic!("{:?}", outcome.attestations);
    };
    assert!(
        reason.starts_with(
            "signed by cody@soyland.com (issuer https://github.com/login/oauth), expected"
        ),
        "{reason}"
    );
}

/// A referrer manifest in cosign's layout for a bundle (`WriteAttestationNewBundleFormat`).
fn bundle_referrer(subject: &TestImage, bundle: bytes::Bytes, predicate_type: &str) -> TestImage {
    let empty = bytes::Bytes::from_static(b"{}");
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": digest(&empty)},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "size": bundle.len(), "digest": digest(&bundle)}],
        "subject": {"mediaType": subject.media_type, "size": subject.manifest.len(), "digest": subject.digest},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate_type},
    });
    let manifest = bytes::Bytes::from(serde_json::to_vec(&m).unwrap());
    TestImage {
        digest: digest(&manifest),
        blobs: vec![empty, bundle],
        manifest,
        media_type: OCI_MANIFEST,
        children: vec![],
    }
}

#[tokio::test]
async fn a_signed_and_attested_two_platform_index_is_copied_and_verifies_on_the_copy() {
    let cosign = Cosign::new();
    // Both directions: from the registry without the referrers API to the one with it, and
    // back (baton then writes the target's fallback index itself).
    let without = TestRegistry::start();
    let with = TestRegistry::start_referrers();
    for (from, to) in [(&without, &with), (&with, &without)] {
        let push = Pusher::new(&from.addr);
        let idx = index(&format!("multi-{}", from.addr), false, &[]);
        let d = push.push("shop/web", "2.0.0", &idx).await;
        cosign.sign(&format!("{}@{d}", from.image("shop/web")));
        cosign.attest(
            &format!("{}@{d}", from.image("shop/web")),
            "slsaprovenance1",
            &provenance("main"),
        );

        let client = RegistryClient::anonymous();
        let report = copy_image(
            &client,
            &from.repo("shop/web"),
            &d,
            &to.repo("prod-shop/web"),
            &CopyOptions {
                tag: Some("2.0.0".into()),
                signatures: true,
            },
        )
        .await
        .unwrap();
        assert!(
            report.summary().contains("linux/arm64"),
            "{}",
            report.summary()
        );

        // The index is pinned by digest and every platform is there.
        let check = Pusher::new(&to.addr);
        let (_, copied) = check.pull_manifest("prod-shop/web", &d).await;
        assert_eq!(copied, d);
        for child in &idx.children {
            let (_, got) = check.pull_manifest("prod-shop/web", &child.digest).await;
            assert_eq!(got, child.digest);
            for blob in &child.blobs {
                assert!(check.blob_exists("prod-shop/web", &digest(blob)).await);
            }
        }

        // baton's check on the copy: the signature over the index, and the provenance.
        let req = Requirements {
            trust: verify::Trust::Key(cosign.key()),
            attestations: vec![SLSA.into()],
        };
        let outcome = verify::check(&client, &to.repo("prod-shop/web"), &d, &req, None)
            .await
            .unwrap();
        assert!(outcome.is_acceptable(), "{outcome:?}");

        // And the real cosign agrees on the copy.
        let copy = format!("{}@{d}", to.image("prod-shop/web"));
        let out = cosign.verify(&copy);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cosign.verify_attestation(&copy, "slsaprovenance1");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Someone else's key does not verify it (so the check can fail).
        let out = Cosign::new().verify(&copy);
        assert!(!out.status.success());
    }
}

#[tokio::test]
async fn the_copier_carries_attestations_along_and_checks_them_again_on_the_copy() {
    use baton::registry::copier::{Copier, Route};
    let cosign = Cosign::new();
    let from = TestRegistry::start();
    let to = TestRegistry::start_referrers();
    let push = Pusher::new(&from.addr);
    let attested = push
        .push(
            "shop/web",
            "1.0.0",
            &image("copier-attested", &ImageOpts::default()),
        )
        .await;
    let bare = push
        .push(
            "shop/web",
            "1.1.0",
            &image("copier-bare", &ImageOpts::default()),
        )
        .await;
    for d in [&attested, &bare] {
        cosign.sign(&format!("{}@{d}", from.image("shop/web")));
    }
    cosign.attest(
        &format!("{}@{attested}", from.image("shop/web")),
        "slsaprovenance1",
        &provenance("main"),
    );
    let route = Route {
        source: from.repo("shop/web"),
        target: to.repo("prod-shop/web"),
    };
    let req = Requirements {
        trust: verify::Trust::Key(cosign.key()),
        attestations: vec![SLSA.into()],
    };
    let copier = Copier::new(RegistryClient::anonymous());
    let report = copier
        .copy("prod", "web", &route, &attested, Some("1.0.0"), Some(&req))
        .await
        .unwrap();
    assert_eq!(
        report
            .artifacts
            .iter()
            .filter(|a| a.starts_with("referrer "))
            .count(),
        2,
        "the signature and the provenance: {:?}",
        report.artifacts
    );

    // Signed but without provenance: copied, and the check on the copy refuses it.
    let failure = copier
        .copy("prod", "web", &route, &bare, Some("1.1.0"), Some(&req))
        .await
        .unwrap_err();
    assert_eq!(
        failure.reason,
        format!("on the copy, attestation {SLSA}: missing")
    );
    assert!(!failure.transient);
}
