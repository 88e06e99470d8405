//! What an app's `verify:` asks of an image, and checking it on a registry: a signature (keyed
//! with `cosignKey`, or keyless against a trusted root with an expected identity) and, with
//! `attestations`, in-toto attestations of given predicate types signed the same way.
//!
//! Where cosign puts them ([`artifacts`]):
//! - the legacy `sha256-<hex>.sig` tag (cosign v2, or v3 with `--new-bundle-format=false`);
//! - OCI referrers of the image: through the referrers API, or, where the registry has none
//!   (it answers 400, 403, 404 or 405), the referrers fallback index tagged `sha256-<hex>`.
//!   A referrer is a sigstore bundle (cosign v3's default, artifact type
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`; `cosign sign` makes one whose predicate
//!   is `https://sigstore.dev/cosign/sign/v1`, `cosign attest` one per predicate) or a legacy
//!   cosign signature manifest.

use std::collections::HashSet;

use serde::Serialize;

use super::client::RegistryClient;
use super::copy::digest_tag;
use super::cosign::{self, CosignKey, SignatureStatus};
use super::error::RegistryError;
use super::manifest::{self, Manifest};
use super::repo::Repo;
use super::sigstore::{self, Identity, Keyless, Signer};
use super::x509::TrustedRoot;
use crate::config::pipeline::SignatureCheck;

/// Who must have signed.
#[derive(Debug, Clone)]
pub enum Trust {
    Key(CosignKey),
    Keyless(Keyless),
}

/// An app's verification requirements.
#[derive(Debug, Clone)]
pub struct Requirements {
    pub trust: Trust,
    /// Predicate types that need a verified attestation each.
    pub attestations: Vec<String>,
}

impl From<CosignKey> for Requirements {
    fn from(key: CosignKey) -> Self {
        Self {
            trust: Trust::Key(key),
            attestations: Vec::new(),
        }
    }
}

impl Requirements {
    /// Build from `pipeline.yaml`'s `verify:`; `read` reads a file of the config repo (the key
    /// or the trusted root) by its path there. The error names the file and what is wrong.
    pub fn from_config(
        check: &SignatureCheck,
        read: &dyn Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Self, String> {
        let trust = match (&check.cosign_key, &check.keyless) {
            (Some(path), None) => {
                let pem = read(path)?;
                Trust::Key(
                    CosignKey::from_pem(&String::from_utf8_lossy(&pem), path)
                        .map_err(|e| e.to_string())?,
                )
            }
            (None, Some(k)) => {
                let root = TrustedRoot::parse(&read(&k.trusted_root)?)
                    .map_err(|e| format!("trusted root {}: {e}", k.trusted_root))?;
                let subject = match (&k.subject, &k.subject_regex) {
                    (Some(s), None) => regex::escape(s),
                    (None, Some(r)) => r.clone(),
                    _ => return Err("keyless needs one of subject or subjectRegex".into()),
                };
                let identity = Identity::new(&k.issuer, &subject)
                    .map_err(|e| format!("keyless.subjectRegex: {e}"))?;
                Trust::Keyless(Keyless { root, identity })
            }
            _ => return Err("verify needs exactly one of cosignKey or keyless".into()),
        };
        Ok(Self {
            trust,
            attestations: check
                .attestations
                .iter()
                .map(|a| a.predicate_type.clone())
                .collect(),
        })
    }

    fn signer(&self) -> Signer<'_> {
        match &self.trust {
            Trust::Key(k) => Signer::Key(k),
            Trust::Keyless(k) => Signer::Keyless(k),
        }
    }

    /// A cache key: who signs, and which attestations are required.
    pub fn id(&self) -> String {
        format!("{}|{}", self.signer().id(), self.attestations.join(","))
    }
}

/// One required attestation, as found on the registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationStatus {
    pub predicate_type: String,
    #[serde(flatten)]
    pub result: AttestationResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum AttestationResult {
    /// Verified; `artifact` is the referrer that carried it, `predicate` what it says.
    Verified {
        artifact: String,
        predicate: serde_json::Value,
    },
    /// None of this type is attached.
    Missing,
    /// Found, and none verified: the last reason.
    Rejected { reason: String },
}

impl AttestationStatus {
    pub fn is_verified(&self) -> bool {
        matches!(self.result, AttestationResult::Verified { .. })
    }

    /// `https://slsa.dev/provenance/v1: verified`, for tables.
    pub fn summary(&self) -> String {
        match &self.result {
            AttestationResult::Verified { .. } => format!("{}: verified", self.predicate_type),
            AttestationResult::Missing => format!("{}: missing", self.predicate_type),
            AttestationResult::Rejected { reason } => {
                format!("{}: rejected: {reason}", self.predicate_type)
            }
        }
    }
}

/// The result of checking one image against its requirements.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub signature: SignatureStatus,
    pub attestations: Vec<AttestationStatus>,
}

impl Outcome {
    pub fn is_acceptable(&self) -> bool {
        self.signature.is_acceptable() && self.attestations.iter().all(|a| a.is_verified())
    }

    /// Why it is not acceptable, in words (`signature: missing`, `attestation …: missing`).
    pub fn problem(&self) -> Option<String> {
        if !self.signature.is_acceptable() {
            return Some(format!("signature: {}", self.signature));
        }
        self.attestations
            .iter()
            .find(|a| !a.is_verified())
            .map(|a| format!("attestation {}", a.summary()))
    }
}

/// An artifact attached to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub digest: String,
    pub artifact_type: Option<String>,
    /// The predicate type a bundle referrer announces (`dev.sigstore.bundle.predicateType`).
    pub predicate_type: Option<String>,
}

/// The signature tag and the referrers of `repo@digest`. `listed`, when the repository's tags
/// are known, saves requests for tags that are not there.
pub async fn artifacts(
    client: &RegistryClient,
    repo: &Repo,
    digest: &str,
    listed: Option<&HashSet<String>>,
) -> Result<Vec<Artifact>, RegistryError> {
    let mut found = Vec::new();
    let exists = |tag: &str| listed.is_none_or(|t| t.contains(tag));
    let sig_tag = cosign::signature_tag(digest);
    if exists(&sig_tag) {
        match client.head_manifest(repo, &sig_tag).await {
            Ok(head) => found.push(Artifact {
                digest: head.digest,
                artifact_type: Some(cosign::SIGNATURE_ARTIFACT_TYPE.into()),
                predicate_type: None,
            }),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    let index = match client.referrers(repo, digest, None).await? {
        Some(index) => Some(index),
        // No referrers API: the fallback index clients maintain under `sha256-<hex>`.
        None if exists(&digest_tag(digest)) => {
            match client.get_manifest(repo, &digest_tag(digest)).await {
                Ok(raw) => match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
                    Ok(Manifest::Index(_, index)) => Some(index),
                    _ => None,
                },
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            }
        }
        None => None,
    };
    for entry in index.map(|i| i.manifests).unwrap_or_default() {
        if found.iter().any(|a| a.digest == entry.digest) {
            continue;
        }
        found.push(Artifact {
            predicate_type: entry
                .annotations
                .as_ref()
                .and_then(|a| a.get(sigstore::PREDICATE_TYPE_ANNOTATION))
                .cloned(),
            artifact_type: entry.artifact_type,
            digest: entry.digest,
        });
    }
    Ok(found)
}

/// What one artifact turned out to be.
enum Finding {
    Signature(Result<(), String>),
    Attestation {
        predicate_type: String,
        result: Result<serde_json::Value, String>,
    },
    /// Not a signature or a bundle (an SBOM, another tool's artifact).
    Other,
}

/// Check `repo@digest` against `req`: read its artifacts and verify what they carry.
pub async fn check(
    client: &RegistryClient,
    repo: &Repo,
    digest: &str,
    req: &Requirements,
    listed: Option<&HashSet<String>>,
) -> Result<Outcome, RegistryError> {
    let mut signature: Option<SignatureStatus> = None;
    let mut invalid: Option<String> = None;
    let mut attestations: Vec<AttestationStatus> = req
        .attestations
        .iter()
        .map(|p| AttestationStatus {
            predicate_type: p.clone(),
            result: AttestationResult::Missing,
        })
        .collect();
    for art in artifacts(client, repo, digest, listed).await? {
        // An attestation nobody asked for is not read.
        if let Some(p) = &art.predicate_type
            && p != sigstore::COSIGN_SIGN_PREDICATE
            && !req.attestations.contains(p)
        {
            continue;
        }
        let finding = match examine(client, repo, &art, digest, req).await {
            Ok(f) => f,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => Finding::Signature(Err(e.to_string())),
        };
        match finding {
            Finding::Signature(Ok(())) => {
                if signature.is_none() {
                    signature = Some(SignatureStatus::Verified {
                        signature: art.digest.clone(),
                    });
                }
            }
            Finding::Signature(Err(reason)) => invalid = Some(reason),
            Finding::Attestation {
                predicate_type,
                result,
            } => {
                let Some(slot) = attestations
                    .iter_mut()
                    .find(|a| a.predicate_type == predicate_type)
                else {
                    continue;
                };
                match (result, &slot.result) {
                    (_, AttestationResult::Verified { .. }) => {}
                    (Ok(predicate), _) => {
                        slot.result = AttestationResult::Verified {
                            artifact: art.digest.clone(),
                            predicate,
                        }
                    }
                    (Err(reason), _) => slot.result = AttestationResult::Rejected { reason },
                }
            }
            Finding::Other => {}
        }
    }
    let signature = signature.unwrap_or(match invalid {
        Some(reason) => SignatureStatus::Invalid { reason },
        None => SignatureStatus::Missing,
    });
    Ok(Outcome {
        signature,
        attestations,
    })
}

async fn examine(
    client: &RegistryClient,
    repo: &Repo,
    art: &Artifact,
    digest: &str,
    req: &Requirements,
) -> Result<Finding, RegistryError> {
    let raw = client.get_manifest(repo, &art.digest).await?;
    let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|reason| {
        RegistryError::MalformedManifest {
            what: repo.at(&art.digest),
            reason,
        }
    })?;
    let Manifest::Image(_, m) = parsed else {
        return Ok(Finding::Other);
    };
    // A bundle is known by its layer: registries report a referrer's artifact type as its
    // `artifactType` or, when it has none, its config's media type (the empty descriptor).
    if let Some(layer) = m
        .layers
        .iter()
        .find(|l| sigstore::is_bundle_type(&l.media_type))
    {
        let bytes = client.get_blob(repo, &layer.digest).await?;
        let announced = art.predicate_type.clone().or_else(|| {
            layer
                .annotations
                .as_ref()
                .or(m.annotations.as_ref())
                .and_then(|a| a.get(sigstore::PREDICATE_TYPE_ANNOTATION))
                .cloned()
        });
        return Ok(
            match sigstore::verify_bundle(&bytes, req.signer(), digest) {
                Ok(v) => match v.predicate_type {
                    None => Finding::Signature(Ok(())),
                    Some(p) if p == sigstore::COSIGN_SIGN_PREDICATE => Finding::Signature(Ok(())),
                    Some(p) => Finding::Attestation {
                        predicate_type: p,
                        result: Ok(v.predicate),
                    },
                },
                Err(problem) => match announced {
                    Some(p) if p != sigstore::COSIGN_SIGN_PREDICATE => Finding::Attestation {
                        predicate_type: p,
                        result: Err(problem.to_string()),
                    },
                    _ => Finding::Signature(Err(problem.to_string())),
                },
            },
        );
    }
    let simple_signing = m
        .layers
        .iter()
        .any(|l| l.media_type == cosign::SIMPLE_SIGNING_MEDIA_TYPE);
    if !simple_signing {
        return Ok(Finding::Other);
    }
    Ok(match &req.trust {
        Trust::Key(key) => Finding::Signature(
            cosign::check_signature_manifest(client, repo, &art.digest, digest, key).await?,
        ),
        Trust::Keyless(_) => Finding::Signature(Err(
            "a legacy cosign signature; keyless verification reads sigstore bundles".into(),
        )),
    })
}
