//! Keyed cosign verification against a real `docker-registry`: signatures the test makes in
//! cosign's registry layout, the real cosign signatures in `../shared/testdata/cosign`, and
//! signatures found through the OCI referrers API.

mod registry_support;

use std::path::{Path, PathBuf};

use baton::config::Pipeline;
use baton::registry::bless::Rejection;
use baton::registry::cosign::{self, CosignKey, simple_signing_payload};
use baton::registry::{
    ClientOptions, CredentialStore, RegistryClient, RequestKind, ScanOptions, Scanner,
    SignatureStatus,
};
use registry_support::*;

/// A config repo with `policies/pipeline.yaml` and `keys/ci.pub`.
fn config_repo(image: &str, public_pem: &str) -> (tempfile::TempDir, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/ci.pub"), public_pem).unwrap();
    let text = format!(
        "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {image}\n    bless: {{ semver: \">=1.0.0\" }}\n    verify: {{ cosignKey: keys/ci.pub }}\nenvironments:\n  - name: dev\n"
    );
    std::fs::write(dir.path().join("policies/pipeline.yaml"), &text).unwrap();
    let p = Pipeline::load(dir.path()).unwrap().pipeline;
    (dir, p)
}

#[tokio::test]
async fn only_images_signed_with_the_configured_key_are_blessed() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let key = signing_key("ci");
    let other = signing_key("someone else");
    let reference = reg.image("shop/web");
    let mut digests = std::collections::HashMap::new();
    for tag in ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"] {
        digests.insert(
            tag,
            push.push("shop/web", tag, &image(tag, &ImageOpts::default()))
                .await,
        );
    }
    let sign_as = |tag: &str, key: &p256::ecdsa::SigningKey, payload: Vec<u8>, tamper: bool| {
        let sig = cosign_sign(key, &payload);
        let mut payload = payload;
        if tamper {
            // Change the signed bytes after signing, keeping them valid JSON.
            let s = String::from_utf8(payload)
                .unwrap()
                .replace("shop/web", "shop/w3b");
            payload = s.into_bytes();
        }
        (tag.to_string(), signature_image(&payload, &sig, None))
    };
    let sigs = [
        // 1.0.0: properly signed.
        sign_as(
            "1.0.0",
            &key,
            simple_signing_payload(&digests["1.0.0"], &reference),
            false,
        ),
        // 1.1.0: unsigned.
        // 1.2.0: payload tampered with after signing.
        sign_as(
            "1.2.0",
            &key,
            simple_signing_payload(&digests["1.2.0"], &reference),
            true,
        ),
        // 1.3.0: signed by another key.
        sign_as(
            "1.3.0",
            &other,
            simple_signing_payload(&digests["1.3.0"], &reference),
            false,
        ),
        // 1.4.0: a valid signature of 1.0.0 copied to 1.4.0's signature tag.
        sign_as(
            "1.4.0",
            &key,
            simple_signing_payload(&digests["1.0.0"], &reference),
            false,
        ),
    ];
    for (tag, sig) in &sigs {
        push.push(
            "shop/web",
            &cosign::signature_tag(&digests[tag.as_str()]),
            sig,
        )
        .await;
    }
    let (dir, p) = config_repo(&reference, &public_pem(&key));
    let scanner = Scanner::new(
        RegistryClient::anonymous(),
        ScanOptions {
            detail: baton::registry::Detail::Full,
            ..ScanOptions::default()
        },
    );
    let s = scanner
        .scan_pipeline(&p, dir.path(), None)
        .await
        .pop()
        .unwrap()
        .unwrap();

    let newest = s.newest.as_ref().unwrap();
    assert_eq!(newest.tag, "1.0.0");
    assert!(matches!(newest.signature, SignatureStatus::Verified { .. }));
    assert_eq!(s.candidates.len(), 1);
    let reason = |tag: &str| {
        let r = s.rejected.iter().find(|r| r.tag == tag).unwrap();
        assert_eq!(r.digest.as_deref(), Some(digests[tag].as_str()));
        match &r.rejection {
            Rejection::Signature { detail } => detail.clone(),
            other => panic!("{tag}: {other:?}"),
        }
    };
    assert_eq!(reason("1.1.0"), "missing");
    assert_eq!(
        reason("1.2.0"),
        "invalid: the signature does not verify with the configured key"
    );
    assert_eq!(
        reason("1.3.0"),
        "invalid: the signature does not verify with the configured key"
    );
    assert_eq!(
        reason("1.4.0"),
        format!(
            "invalid: the signature is for {}, not this image",
            digests["1.0.0"]
        )
    );

    // Verification results are cached by digest: an unchanged scan is still one request.
    let before = scanner.client().stats();
    scanner.scan_pipeline(&p, dir.path(), None).await;
    assert_eq!(scanner.client().stats().since(&before).total(), 1);
}

#[tokio::test]
async fn newest_only_scans_fall_back_to_the_newest_signed_release() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let key = signing_key("ci");
    let reference = reg.image("web");
    let signed = push
        .push("web", "1.0.0", &image("a", &ImageOpts::default()))
        .await;
    push.push("web", "2.0.0", &image("b", &ImageOpts::default()))
        .await;
    let payload = simple_signing_payload(&signed, &reference);
    push.push(
        "web",
        &cosign::signature_tag(&signed),
        &signature_image(&payload, &cosign_sign(&key, &payload), None),
    )
    .await;
    let (dir, p) = config_repo(&reference, &public_pem(&key));
    let scanner = Scanner::new(RegistryClient::anonymous(), ScanOptions::default());
    let s = scanner
        .scan_pipeline(&p, dir.path(), None)
        .await
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(s.newest.unwrap().digest, Some(signed));
    assert_eq!(s.rejected[0].tag, "2.0.0");
    assert_eq!(s.rejected[0].reason, "signature: missing");
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/cosign")
}

/// Push a real cosign signature case in cosign's layout; returns the image digest it is for.
async fn push_fixture(push: &Pusher, repo: &str, case: &str) -> String {
    let dir = fixtures().join(case);
    let manifest = std::fs::read(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}: {e} (see the cosign fixtures README)", dir.display()));
    let payload = std::fs::read(dir.join("payload.json")).unwrap();
    let sig = std::fs::read_to_string(dir.join("signature.b64")).unwrap();
    let image_digest = digest(&manifest);
    push.push(
        repo,
        &cosign::signature_tag(&image_digest),
        &signature_image(&payload, sig.trim(), None),
    )
    .await;
    image_digest
}

#[tokio::test]
async fn real_cosign_signatures_verify_or_are_rejected_as_the_fixtures_say() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let key = CosignKey::load(&fixtures().join("cosign.pub"), "cosign.pub").unwrap();
    let client = RegistryClient::anonymous();
    let repo = reg.repo("cosign-signed-single-sample");

    let d = push_fixture(&push, &repo.repository, "valid").await;
    let status = cosign::verify_image(&client, &repo, &d, &key)
        .await
        .unwrap();
    assert!(
        matches!(status, SignatureStatus::Verified { .. }),
        "{status:?}"
    );

    let d = push_fixture(&push, "wrong-key", "wrong-key").await;
    let status = cosign::verify_image(&client, &reg.repo("wrong-key"), &d, &key)
        .await
        .unwrap();
    assert_eq!(
        status,
        SignatureStatus::Invalid {
            reason: "the signature does not verify with the configured key".into()
        }
    );

    let d = push_fixture(&push, "modified", "modified-manifest").await;
    let status = cosign::verify_image(&client, &reg.repo("modified"), &d, &key)
        .await
        .unwrap();
    let SignatureStatus::Invalid { reason } = status else {
        panic!("{status:?}")
    };
    assert!(
        reason.starts_with("the signature is for sha256:"),
        "{reason}"
    );

    let status = cosign::verify_image(&client, &reg.repo("unsigned"), &d, &key)
        .await
        .unwrap();
    assert_eq!(status, SignatureStatus::Missing);
}

#[tokio::test]
async fn signatures_are_found_through_the_referrers_api() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let key = signing_key("ci");
    let img = image("r", &ImageOpts::default());
    let d = push.push("web", "1.0.0", &img).await;
    let payload = simple_signing_payload(&d, &reg.image("web"));
    let sig = signature_image(&payload, &cosign_sign(&key, &payload), Some(&img));
    // Stored untagged, by digest, as cosign's OCI 1.1 mode does.
    push.push("web", &sig.digest.clone(), &sig).await;

    // distribution 2.8 has no referrers API; a proxy answers it with what a distribution 3
    // registry would return for this subject.
    let (proxy, addr) = FaultProxy::start(&reg.addr).await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": sig.digest,
            "size": sig.manifest.len(),
            "artifactType": cosign::SIGNATURE_ARTIFACT_TYPE,
        }],
    });
    proxy.inject(Fault {
        path: format!("/v2/web/referrers/{d}"),
        status: 200,
        headers: vec![("content-type".into(), OCI_INDEX.into())],
        body: serde_json::to_vec(&index).unwrap().into(),
        times: 1,
    });
    let client = RegistryClient::new(CredentialStore::new(), ClientOptions::default());
    let repo = baton::registry::Repo::new(&addr, "web");
    let status = cosign::verify_image(
        &client,
        &repo,
        &d,
        &CosignKey::from_pem(&public_pem(&key), "k").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        status,
        SignatureStatus::Verified {
            signature: sig.digest.clone()
        }
    );

    // The real registry answers 404 on the referrers endpoint: remembered, not asked again.
    let plain = reg.repo("web");
    let k = CosignKey::from_pem(&public_pem(&key), "k").unwrap();
    assert_eq!(
        cosign::verify_image(&client, &plain, &d, &k).await.unwrap(),
        SignatureStatus::Missing
    );
    cosign::verify_image(&client, &plain, &d, &k).await.unwrap();
    assert_eq!(client.stats().get(&reg.addr, RequestKind::Referrers), 1);
}
