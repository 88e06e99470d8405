//! Copy by digest between two real `docker-registry` instances, and across repositories of
//! one registry (blob mounts). Copies are checked with `oci-client`, not with baton.

mod registry_support;

use baton::registry::cosign::{self, CosignKey, simple_signing_payload};
use baton::registry::{
    CopyOptions, RegistryClient, RegistryError, SignatureStatus, copy_destination, copy_image,
};
use registry_support::*;

#[tokio::test]
async fn a_multi_arch_image_and_its_signature_are_copied_to_another_registry_by_digest() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let push = Pusher::new(&src.addr);
    let img = index("copy-me", false, &[]);
    let d = push.push("team/web", "1.0.0", &img).await;
    let key = signing_key("ci");
    let payload = simple_signing_payload(&d, &src.image("team/web"));
    push.push(
        "team/web",
        &cosign::signature_tag(&d),
        &signature_image(&payload, &cosign_sign(&key, &payload), None),
    )
    .await;

    let client = RegistryClient::anonymous();
    let source = src.repo("team/web");
    let target = copy_destination(&format!("{}/prod", dst.addr), &source).unwrap();
    assert_eq!(target, dst.repo("prod/web"));
    let options = CopyOptions {
        tag: Some("1.0.0".into()),
        signatures: true,
    };
    let report = copy_image(&client, &source, &d, &target, &options)
        .await
        .unwrap();
    assert_eq!(report.digest, d);
    assert_eq!(
        report.manifests, 4,
        "two children, the index, the signature: {report:?}"
    );
    assert_eq!(report.blobs_copied, 6, "{report:?}");
    assert_eq!(report.blobs_mounted, 0);

    // Checked independently: the same bytes under the same digest, every blob present.
    let pull = Pusher::new(&dst.addr);
    let (bytes, digest_at_target) = pull.pull_manifest("prod/web", "1.0.0").await;
    assert_eq!(digest_at_target, d);
    assert_eq!(bytes, img.manifest);
    for child in &img.children {
        let (b, _) = pull.pull_manifest("prod/web", &child.digest).await;
        assert_eq!(b, child.manifest);
        for blob in &child.blobs {
            assert!(pull.blob_exists("prod/web", &digest(blob)).await);
        }
    }
    let k = CosignKey::from_pem(&public_pem(&key), "k").unwrap();
    assert!(matches!(
        cosign::verify_image(&client, &target, &d, &k)
            .await
            .unwrap(),
        SignatureStatus::Verified { .. }
    ));

    // Copying again transfers nothing.
    let again = copy_image(&client, &source, &d, &target, &options)
        .await
        .unwrap();
    assert_eq!(again.blobs_copied, 0);
    assert_eq!(again.blobs_present, 6);
}

#[tokio::test]
async fn within_one_registry_blobs_are_mounted_not_transferred() {
    let reg = TestRegistry::start();
    let push = Pusher::new(&reg.addr);
    let img = image(
        "mount",
        &ImageOpts {
            docker: true,
            ..ImageOpts::default()
        },
    );
    let d = push.push("team/web", "2.0.0", &img).await;
    let client = RegistryClient::anonymous();
    let report = copy_image(
        &client,
        &reg.repo("team/web"),
        &d,
        &reg.repo("mirror/web"),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.blobs_mounted, report.blobs_copied),
        (2, 0),
        "{report:?}"
    );
    let (_, at) = Pusher::new(&reg.addr).pull_manifest("mirror/web", &d).await;
    assert_eq!(at, d);
}

#[tokio::test]
async fn copying_a_digest_the_source_does_not_have_names_it() {
    let (src, dst) = (TestRegistry::start(), TestRegistry::start());
    let missing = digest(b"nothing");
    let e = copy_image(
        &RegistryClient::anonymous(),
        &src.repo("team/web"),
        &missing,
        &dst.repo("prod/web"),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}/team/web@{missing} not found on registry {}",
            src.addr, src.addr
        )
    );
}
