//! Keyed cosign verification, following cosign's published registry format so that images
//! signed by the real `cosign sign --key` verify:
//!
//! - The signature for image digest `sha256:<hex>` is an OCI image manifest tagged
//!   `sha256-<hex>.sig` in the image's repository (cosign's default), or a manifest whose
//!   `subject` is the image, found through the OCI referrers API (cosign's OCI 1.1 mode,
//!   artifact type `application/vnd.dev.cosign.artifact.sig.v1+json`).
//! - Each layer of media type `application/vnd.dev.cosign.simplesigning.v1+json` is a
//!   simple-signing payload whose `critical.image.docker-manifest-digest` names the image,
//!   and carries the base64 DER ECDSA signature over SHA-256 of the payload bytes in its
//!   `dev.cosignproject.cosign/signature` annotation.
//!
//! One layer that verifies with the configured P-256 public key is enough. cosign v3's sigstore
//! bundles are read by [`super::sigstore`]; [`super::verify`] finds both.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::client::RegistryClient;
use super::error::RegistryError;
use super::manifest::{self, Manifest};
use super::repo::Repo;

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `critical.type` of a cosign image signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// A cosign public key (ECDSA P-256, PEM `PUBLIC KEY`).
#[derive(Clone)]
pub struct CosignKey {
    key: VerifyingKey,
    id: String,
}

impl fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignKey({})", self.id)
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read cosign key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cosign key {path} is not a PEM ECDSA P-256 public key: {reason}")]
    Parse { path: String, reason: String },
}

impl CosignKey {
    /// Parse a PEM public key; `origin` names it in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError::Parse {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_key(key))
    }

    pub fn from_key(key: VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let id = hex::encode(&Sha256::digest(der)[..8]);
        Self { key, id }
    }

    /// Load `path`; `shown` is how errors name it (the path relative to the config repo).
    pub fn load(path: &Path, shown: &str) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.to_string(),
            source,
        })?;
        Self::from_pem(&pem, shown)
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// A short fingerprint (first 8 bytes of SHA-256 of the key's DER), for caches and logs.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The tag cosign stores the signature of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The simple-signing payload cosign writes for `digest` (for tests and the sandbox; real
/// payloads are verified as the bytes that were signed, never re-serialised).
pub fn simple_signing_payload(digest: &str, docker_reference: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    }))
    .expect("static JSON serialises")
}

/// Why one signature does not vouch for an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("the signature annotation is not base64 of an ECDSA signature")]
    Encoding,
    #[error("the signature does not verify with the configured key")]
    BadSignature,
    #[error("the signed payload is not a cosign simple-signing document")]
    Payload,
    #[error("the signature is for {signed}, not this image")]
    OtherImage { signed: String },
}

/// Verify one cosign signature: `signature_b64` over `payload` with `key`, and the payload
/// names `image_digest`. Pure: the bytes come from the registry.
pub fn verify_signature(
    key: &CosignKey,
    payload: &[u8],
    signature_b64: &str,
    image_digest: &str,
) -> Result<(), SignatureProblem> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| SignatureProblem::Encoding)?;
    let signature = Signature::from_der(&raw)
        .or_else(|_| Signature::from_slice(&raw))
        .map_err(|_| SignatureProblem::Encoding)?;
    key.key
        .verify(payload, &signature)
        .map_err(|_| SignatureProblem::BadSignature)?;
    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        image: Image,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    let p: Payload = serde_json::from_slice(payload).map_err(|_| SignatureProblem::Payload)?;
    if p.critical.kind != PAYLOAD_TYPE {
        return Err(SignatureProblem::Payload);
    }
    if p.critical.image.digest != image_digest {
        return Err(SignatureProblem::OtherImage {
            signed: p.critical.image.digest,
        });
    }
    Ok(())
}

/// The outcome of a signature check, kept for `registry scan` and PR bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SignatureStatus {
    /// The app does not ask for verification.
    NotRequired,
    /// Verified; `signature` is the digest of the signature manifest that did it.
    Verified { signature: String },
    /// No signature manifest was found (tag or referrers).
    Missing,
    /// Signatures were found and none verifies.
    Invalid { reason: String },
    /// Not looked at in this scan (a candidate below the newest acceptable one).
    Unchecked,
}

impl SignatureStatus {
    pub fn is_acceptable(&self) -> bool {
        matches!(self, Self::NotRequired | Self::Verified { .. })
    }
}

impl fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRequired => f.write_str("not required"),
            Self::Verified { .. } => f.write_str("verified"),
            Self::Missing => f.write_str("missing"),
            Self::Invalid { reason } => write!(f, "invalid: {reason}"),
            Self::Unchecked => f.write_str("unchecked"),
        }
    }
}

/// Check every simple-signing layer of the signature manifest `sig_digest` against
/// `image_digest`. `Ok(Err(reason))` when the manifest was read and nothing verified.
pub async fn check_signature_manifest(
    client: &RegistryClient,
    repo: &Repo,
    sig_digest: &str,
    image_digest: &str,
    key: &CosignKey,
) -> Result<Result<(), String>, RegistryError> {
    let raw = client.get_manifest(repo, sig_digest).await?;
    let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|reason| {
        RegistryError::MalformedManifest {
            what: repo.at(sig_digest),
            reason,
        }
    })?;
    let Manifest::Image(_, m) = parsed else {
        return Ok(Err("the signature manifest is an index".into()));
    };
    let mut last = String::from("the signature manifest has no simple-signing layer");
    for layer in &m.layers {
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            continue;
        }
        let Some(sig) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            last = format!(
                "layer {} has no {SIGNATURE_ANNOTATION} annotation",
                layer.digest
            );
            continue;
        };
        let payload = client.get_blob(repo, &layer.digest).await?;
        match verify_signature(key, &payload, sig, image_digest) {
            Ok(()) => return Ok(Ok(())),
            Err(p) => last = p.to_string(),
        }
    }
    Ok(Err(last))
}

/// Verify the signature of `repo@image_digest` with `key`, without caches: the
/// `sha256-<hex>.sig` tag and the referrers (legacy signature manifests and cosign v3's sigstore
/// bundles; the referrers API, else its fallback tag). See [`super::verify::check`].
pub async fn verify_image(
    client: &RegistryClient,
    repo: &Repo,
    image_digest: &str,
    key: &CosignKey,
) -> Result<SignatureStatus, RegistryError> {
    let req = super::verify::Requirements::from(key.clone());
    Ok(super::verify::check(client, repo, image_digest, &req, None)
        .await?
        .signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    fn key_pair() -> (SigningKey, CosignKey) {
        let sk = SigningKey::from_slice(&Sha256::digest(b"baton unit test key")).unwrap();
        let pk = CosignKey::from_key(*sk.verifying_key());
        (sk, pk)
    }

    fn sign(sk: &SigningKey, payload: &[u8]) -> String {
        let sig: Signature = sk.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn a_signature_over_the_payload_naming_the_digest_verifies() {
        let (sk, pk) = key_pair();
        let payload = simple_signing_payload(DIGEST, "r.io/shop/web");
        assert_eq!(
            verify_signature(&pk, &payload, &sign(&sk, &payload), DIGEST),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_payload_or_another_key_does_not_verify() {
        let (sk, pk) = key_pair();
        let payload = simple_signing_payload(DIGEST, "r.io/shop/web");
        let sig = sign(&sk, &payload);
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        assert_eq!(
            verify_signature(&pk, &tampered, &sig, DIGEST),
            Err(SignatureProblem::BadSignature)
        );
        let other = SigningKey::from_slice(&Sha256::digest(b"another key")).unwrap();
        assert_eq!(
            verify_signature(&pk, &payload, &sign(&other, &payload), DIGEST),
            Err(SignatureProblem::BadSignature)
        );
        assert_eq!(
            verify_signature(&pk, &payload, "%%%", DIGEST),
            Err(SignatureProblem::Encoding)
        );
    }

    #[test]
    fn a_valid_signature_for_another_digest_is_rejected() {
        let (sk, pk) = key_pair();
        let other = DIGEST.replace("01", "02");
        let payload = simple_signing_payload(&other, "r.io/shop/web");
        assert_eq!(
            verify_signature(&pk, &payload, &sign(&sk, &payload), DIGEST),
            Err(SignatureProblem::OtherImage { signed: other })
        );
    }

    #[test]
    fn the_signature_tag_follows_cosign_naming() {
        assert_eq!(signature_tag("sha256:abcd"), "sha256-abcd.sig");
    }

    #[test]
    fn keys_are_read_from_pem_and_bad_keys_are_named() {
        let (_, pk) = key_pair();
        let pem = pk
            .key
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let again = CosignKey::from_pem(&pem, "keys/ci.pub").unwrap();
        assert_eq!(again.id(), pk.id());
        let err = CosignKey::from_pem("nope", "keys/ci.pub").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cosign key keys/ci.pub is not a PEM")
        );
    }
}
