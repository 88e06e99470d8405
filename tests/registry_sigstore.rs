//! Keyless sigstore verification on real recorded bundles from sigstore's public test data
//! (`tests/registry_support/sigstore/README.md` says where each comes from): a keyless cosign
//! attestation over an OCI image, and the SLSA v1 provenance GitHub Actions signed for an npm
//! release. Offline: the trusted-root files are the only trust input.

use base64::Engine as _;
use baton::registry::sigstore::{self, BundleProblem, Identity, Keyless, Signer};
use baton::registry::x509::TrustedRoot;

const DIR: &str = "tests/registry_support/sigstore";
/// The image cosign's test attached the attestation to (go-containerregistry's empty image).
const IMAGE: &str = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";
const COSIGN_SUBJECT: &str = "cody@soyland.com";
const COSIGN_ISSUER: &str = "https://github.com/login/oauth";
const GHA_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap()
}

fn keyless(root: &str, issuer: &str, subject: &str) -> Keyless {
    Keyless {
        root: TrustedRoot::parse(&read(root)).unwrap(),
        identity: Identity::new(issuer, subject).unwrap(),
    }
}

fn cosign_keyless() -> Keyless {
    keyless(
        "cosign-trusted-root-pgi.json",
        COSIGN_ISSUER,
        &regex::escape(COSIGN_SUBJECT),
    )
}

fn attestation() -> serde_json::Value {
    serde_json::from_slice(&read("cosign-oci-attestation.sigstore.json")).unwrap()
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn enc(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn a_recorded_keyless_cosign_attestation_verifies_for_its_image_and_identity() {
    let k = cosign_keyless();
    let v = sigstore::verify_bundle(
        &read("cosign-oci-attestation.sigstore.json"),
        Signer::Keyless(&k),
        IMAGE,
    )
    .unwrap();
    assert_eq!(
        v.predicate_type.as_deref(),
        Some("https://cosign.sigstore.dev/attestation/v1")
    );
    assert_eq!(v.signer.as_deref(), Some(COSIGN_SUBJECT));
    // 2025-02-28, inside the certificate's ten minutes.
    assert_eq!(v.integrated_time, Some(1_740_770_291));
}

#[test]
fn another_identity_or_issuer_is_rejected_and_named() {
    let bundle = read("cosign-oci-attestation.sigstore.json");
    for (issuer, subject) in [
        (COSIGN_ISSUER, "someone@soyland\\.com"),
        (GHA_ISSUER, "cody@soyland\\.com"),
        // The regex covers the whole subject, not a part of it.
        (COSIGN_ISSUER, "cody@soyland"),
    ] {
        let k = keyless("cosign-trusted-root-pgi.json", issuer, subject);
        let err = sigstore::verify_bundle(&bundle, Signer::Keyless(&k), IMAGE).unwrap_err();
        let BundleProblem::Identity { found, expected } = &err else {
            panic!("{issuer} {subject}: {err}");
        };
        assert!(
            found.contains(COSIGN_SUBJECT) && found.contains(COSIGN_ISSUER),
            "{found}"
        );
        assert!(expected.contains(issuer), "{expected}");
    }
}

#[test]
fn a_valid_bundle_for_another_image_is_rejected() {
    let k = cosign_keyless();
    let other = IMAGE.replace("7321", "7322");
    let err = sigstore::verify_bundle(
        &read("cosign-oci-attestation.sigstore.json"),
        Signer::Keyless(&k),
        &other,
    )
    .unwrap_err();
    assert_eq!(
        err,
        BundleProblem::OtherImage {
            signed: IMAGE.into()
        }
    );
}

#[test]
fn a_changed_payload_signature_or_log_promise_does_not_verify() {
    let k = cosign_keyless();
    let check = |v: &serde_json::Value| {
        sigstore::verify_bundle(&bytes(v), Signer::Keyless(&k), IMAGE).unwrap_err()
    };

    // The statement edited: the log entry records the original payload's hash.
    let mut v = attestation();
    let mut payload = b64(v["dsseEnvelope"]["payload"].as_str().unwrap());
    let at = payload.iter().position(|b| *b == b'{').unwrap() + 1;
    payload.insert(at, b' ');
    v["dsseEnvelope"]["payload"] = enc(&payload).into();
    assert!(matches!(check(&v), BundleProblem::Tlog(_)), "{}", check(&v));

    // The signature changed (still DER): the log entry names another signature.
    let mut v = attestation();
    let mut sig = b64(v["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap());
    let last = sig.len() - 1;
    sig[last] ^= 1;
    v["dsseEnvelope"]["signatures"][0]["sig"] = enc(&sig).into();
    assert!(matches!(check(&v), BundleProblem::Tlog(_)), "{}", check(&v));

    // The log's signed entry timestamp over another time.
    let mut v = attestation();
    let t = v["verificationMaterial"]["tlogEntries"][0]["integratedTime"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    v["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = (t + 1).to_string().into();
    let err = check(&v);
    assert_eq!(
        err,
        BundleProblem::Tlog("the signed entry timestamp does not verify".into())
    );
}

#[test]
fn a_log_entry_from_another_bundle_is_not_accepted() {
    // CVE-2022-36056's shape: a valid entry, signed by the log, for another signature.
    let k = cosign_keyless();
    let provenance: serde_json::Value =
        serde_json::from_slice(&read("sigstore-js-2.0.0-provenance.sigstore.json")).unwrap();
    let mut v = attestation();
    v["verificationMaterial"]["tlogEntries"] =
        provenance["verificationMaterial"]["tlogEntries"].clone();
    let err = sigstore::verify_bundle(&bytes(&v), Signer::Keyless(&k), IMAGE).unwrap_err();
    assert!(matches!(err, BundleProblem::Tlog(_)), "{err}");
}

#[test]
fn a_trusted_root_without_the_fulcio_ca_or_the_log_rejects_the_bundle() {
    let bundle = read("cosign-oci-attestation.sigstore.json");
    let mut root: serde_json::Value =
        serde_json::from_slice(&read("cosign-trusted-root-pgi.json")).unwrap();
    // Keep only the 2021 CA, which did not issue the 2025 certificate.
    let cas = root["certificateAuthorities"].as_array().unwrap().clone();
    root["certificateAuthorities"] = serde_json::Value::Array(
        cas.into_iter()
            .filter(|ca| ca["certChain"]["certificates"].as_array().unwrap().len() == 1)
            .collect(),
    );
    let k = Keyless {
        root: TrustedRoot::parse(&bytes(&root)).unwrap(),
        identity: cosign_keyless().identity,
    };
    let err = sigstore::verify_bundle(&bundle, Signer::Keyless(&k), IMAGE).unwrap_err();
    assert!(matches!(err, BundleProblem::Chain(_)), "{err}");

    let mut root: serde_json::Value =
        serde_json::from_slice(&read("cosign-trusted-root-pgi.json")).unwrap();
    root["tlogs"] = serde_json::json!([]);
    let k = Keyless {
        root: TrustedRoot::parse(&bytes(&root)).unwrap(),
        identity: cosign_keyless().identity,
    };
    let err = sigstore::verify_bundle(&bundle, Signer::Keyless(&k), IMAGE).unwrap_err();
    assert!(
        matches!(&err, BundleProblem::Tlog(why) if why.contains("not in the trusted root")),
        "{err}"
    );
}

#[test]
fn github_actions_slsa_provenance_verifies_with_the_workflow_identity() {
    let k = keyless(
        "sigstore-go-public-good.json",
        GHA_ISSUER,
        r"https://github\.com/sigstore/sigstore-js/\.github/workflows/release\.yml@refs/heads/main",
    );
    let (v, subjects) =
        sigstore::verify_keyless_statement(&read("sigstore-js-2.0.0-provenance.sigstore.json"), &k)
            .unwrap();
    assert_eq!(
        v.predicate_type.as_deref(),
        Some("https://slsa.dev/provenance/v1")
    );
    assert_eq!(
        v.predicate["buildDefinition"]["externalParameters"]["workflow"]["ref"],
        "refs/heads/main"
    );
    assert!(subjects[0].starts_with("sha512:46d4e2f7"), "{subjects:?}");

    // The same provenance, expected from another workflow, is refused.
    let k = keyless(
        "sigstore-go-public-good.json",
        GHA_ISSUER,
        r"https://github\.com/sigstore/sigstore-js/\.github/workflows/ci\.yml@.*",
    );
    let err =
        sigstore::verify_keyless_statement(&read("sigstore-js-2.0.0-provenance.sigstore.json"), &k)
            .unwrap_err();
    assert!(matches!(err, BundleProblem::Identity { .. }), "{err}");
}
