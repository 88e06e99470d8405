//! Sigstore bundles, the format cosign v3 writes by default: one JSON document
//! (`application/vnd.dev.sigstore.bundle.v0.3+json`, or the older `…bundle+json;version=0.1/0.2`)
//! with the signed content (a DSSE envelope, or a message signature) and what verifies it (a
//! public-key hint for keyed signing, or a Fulcio certificate plus Rekor log entries for keyless
//! signing). cosign attaches it to the image as an OCI referrer whose one layer is the bundle.
//!
//! `cosign sign` signs an in-toto statement whose predicate type is
//! `https://sigstore.dev/cosign/sign/v1` and whose subject is the image digest; `cosign attest`
//! signs the statement of the predicate it is given (SLSA provenance, a vulnerability scan, …).
//!
//! Verification is offline and pure ([`verify_bundle`]): with a key, the DSSE signature; keyless
//! ([`Keyless`]), the certificate chain to a Fulcio CA of the trusted-root file at the time the
//! Rekor log integrated the entry, the log's signed entry timestamp, the entry's body naming this
//! signature and certificate, and the certificate's identity (OIDC issuer and subject).
//! Not checked: certificate transparency SCTs, RFC 3161 timestamps, Merkle inclusion proofs
//! (the signed entry timestamp stands for the log), and Rekor v2 entries (which have no signed
//! entry timestamp).

use std::fmt;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::cosign::CosignKey;
use super::x509;

/// The media type (and referrer artifact type) of a v0.3 bundle.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The annotation cosign puts on a bundle referrer with the statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// The predicate type of `cosign sign`'s statement.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Whether a media type or artifact type names a sigstore bundle (any version).
pub fn is_bundle_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

fn b64(s: &str) -> Result<Vec<u8>, BundleProblem> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| BundleProblem::Malformed(format!("invalid base64 {:.16}…", s)))
}

/// Protobuf-JSON writes int64 as strings; accept both.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        N(i64),
    }
    match N::deserialize(d)? {
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
        N::N(n) => Ok(n),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: Material,
    #[serde(default)]
    dsse_envelope: Option<Envelope>,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    certificate: Option<RawBytes>,
    #[serde(default)]
    x509_certificate_chain: Option<Chain>,
    #[serde(default)]
    tlog_entries: Vec<TlogEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Chain {
    certificates: Vec<RawBytes>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntry {
    #[serde(deserialize_with = "int64")]
    log_index: i64,
    log_id: KeyId,
    kind_version: KindVersion,
    #[serde(deserialize_with = "int64")]
    integrated_time: i64,
    #[serde(default)]
    inclusion_promise: Option<Promise>,
    canonicalized_body: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyId {
    pub(crate) key_id: String,
}

#[derive(Debug, Clone, Deserialize)]
struct KindVersion {
    kind: String,
    version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: MessageDigest,
    signature: String,
}

#[derive(Debug, Clone, Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

/// An in-toto statement (v0.1 or v1).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// The identity a keyless certificate must carry: the OIDC issuer exactly, and the subject
/// (the SAN: an email, or a workflow URI) matching a regular expression over the whole value.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: regex::Regex,
}

impl Identity {
    /// `subject` is anchored at both ends.
    pub fn new(issuer: &str, subject: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            issuer: issuer.to_string(),
            subject: regex::Regex::new(&format!("^(?:{subject})$"))?,
        })
    }
}

/// Keyless verification material: the trusted root (Fulcio CAs, Rekor keys) and the identity.
#[derive(Debug, Clone)]
pub struct Keyless {
    pub root: x509::TrustedRoot,
    pub identity: Identity,
}

/// How a bundle must be signed.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    Key(&'a CosignKey),
    Keyless(&'a Keyless),
}

impl Signer<'_> {
    /// A cache key for results: the key's fingerprint, or the identity.
    pub fn id(&self) -> String {
        match self {
            Self::Key(k) => k.id().to_string(),
            Self::Keyless(k) => format!(
                "keyless:{}:{}:{}",
                k.root.id(),
                k.identity.issuer,
                k.identity.subject
            ),
        }
    }
}

/// What a verified bundle says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verified {
    /// The in-toto predicate type (`None` for a message signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub predicate: serde_json::Value,
    /// Keyless: the certificate's subject (SAN) and issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Keyless: when the transparency log integrated the entry (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrated_time: Option<i64>,
}

/// Why a bundle does not vouch for an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleProblem {
    #[error("not a sigstore bundle: {0}")]
    Malformed(String),
    #[error("the bundle's signature does not verify with the configured key")]
    BadSignature,
    #[error("the bundle is signed for {signed}, not this image")]
    OtherImage { signed: String },
    #[error("the bundle has no certificate (it was signed with a key, and keyless is configured)")]
    NoCertificate,
    #[error("the certificate does not chain to a trusted Fulcio CA: {0}")]
    Chain(String),
    #[error("transparency log: {0}")]
    Tlog(String),
    #[error("signed by {found}, expected {expected}")]
    Identity { found: String, expected: String },
    #[error("the certificate's signature does not verify")]
    CertificateSignature,
}

/// Verify a bundle (its JSON bytes) as a signature over `image_digest` (`sha256:<hex>`).
pub fn verify_bundle(
    bytes: &[u8],
    signer: Signer<'_>,
    image_digest: &str,
) -> Result<Verified, BundleProblem> {
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| BundleProblem::Malformed(e.to_string()))?;
    if !is_bundle_type(&bundle.media_type) {
        return Err(BundleProblem::Malformed(format!(
            "media type {}",
            bundle.media_type
        )));
    }
    let hex = image_digest
        .strip_prefix("sha256:")
        .ok_or_else(|| BundleProblem::Malformed(format!("digest {image_digest}")))?;
    // What was signed, and the bytes the log's `hashedrekord` would hash.
    let content = Content::of(&bundle)?;
    let (key, signer_name, integrated_time) = match signer {
        Signer::Key(k) => (*k.verifying_key(), None, None),
        Signer::Keyless(k) => {
            let (key, name, time) = check_keyless(&bundle, &content, k)?;
            (key, Some(name), Some(time))
        }
    };
    content.verify(&key)?;
    let mut verified = match &content {
        Content::Dsse { statement, .. } => {
            let st = statement.as_ref().ok_or_else(|| {
                BundleProblem::Malformed("the DSSE payload is not an in-toto statement".into())
            })?;
            if !st
                .subject
                .iter()
                .any(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
            {
                let signed = st
                    .subject
                    .iter()
                    .find_map(|s| s.digest.iter().next())
                    .map(|(alg, d)| format!("{alg}:{d}"))
                    .unwrap_or_else(|| "no subject".into());
                return Err(BundleProblem::OtherImage { signed });
            }
            Verified {
                predicate_type: Some(st.predicate_type.clone()),
                predicate: st.predicate.clone(),
                signer: None,
                integrated_time: None,
            }
        }
        Content::Message { digest, .. } => {
            if hex::encode(digest) != hex {
                return Err(BundleProblem::OtherImage {
                    signed: format!("sha256:{}", hex::encode(digest)),
                });
            }
            Verified {
                predicate_type: None,
                predicate: serde_json::Value::Null,
                signer: None,
                integrated_time: None,
            }
        }
    };
    verified.signer = signer_name;
    verified.integrated_time = integrated_time;
    Ok(verified)
}

/// Verify a keyless bundle's statement without an image: for recorded bundles over other
/// artifacts (an npm package's provenance). Returns the statement's subject digests too.
pub fn verify_keyless_statement(
    bytes: &[u8],
    keyless: &Keyless,
) -> Result<(Verified, Vec<String>), BundleProblem> {
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| BundleProblem::Malformed(e.to_string()))?;
    let content = Content::of(&bundle)?;
    let (key, name, time) = check_keyless(&bundle, &content, keyless)?;
    content.verify(&key)?;
    let Content::Dsse {
        statement: Some(st),
        ..
    } = content
    else {
        return Err(BundleProblem::Malformed("not an in-toto statement".into()));
    };
    let subjects = st
        .subject
        .iter()
        .flat_map(|s| s.digest.iter().map(|(a, d)| format!("{a}:{d}")))
        .collect();
    Ok((
        Verified {
            predicate_type: Some(st.predicate_type),
            predicate: st.predicate,
            signer: Some(name),
            integrated_time: Some(time),
        },
        subjects,
    ))
}

enum Content {
    Dsse {
        payload: Vec<u8>,
        payload_type: String,
        signatures: Vec<Vec<u8>>,
        statement: Option<Statement>,
    },
    Message {
        digest: Vec<u8>,
        signature: Vec<u8>,
    },
}

impl Content {
    fn of(bundle: &Bundle) -> Result<Self, BundleProblem> {
        if let Some(env) = &bundle.dsse_envelope {
            let payload = b64(&env.payload)?;
            let signatures = env
                .signatures
                .iter()
                .map(|s| b64(&s.sig))
                .collect::<Result<Vec<_>, _>>()?;
            let statement = (env.payload_type == IN_TOTO_PAYLOAD_TYPE)
                .then(|| serde_json::from_slice::<Statement>(&payload).ok())
                .flatten()
                .filter(|s| s.kind.starts_with("https://in-toto.io/Statement/"));
            return Ok(Self::Dsse {
                payload,
                payload_type: env.payload_type.clone(),
                signatures,
                statement,
            });
        }
        if let Some(m) = &bundle.message_signature {
            if m.message_digest.algorithm != "SHA2_256" {
                return Err(BundleProblem::Malformed(format!(
                    "message digest algorithm {}",
                    m.message_digest.algorithm
                )));
            }
            return Ok(Self::Message {
                digest: b64(&m.message_digest.digest)?,
                signature: b64(&m.signature)?,
            });
        }
        Err(BundleProblem::Malformed(
            "neither a DSSE envelope nor a message signature".into(),
        ))
    }

    /// DSSE's pre-authentication encoding: what a DSSE signature signs.
    fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .into_bytes();
        out.extend_from_slice(payload);
        out
    }

    /// One signature that verifies with `key` is enough.
    fn verify(&self, key: &VerifyingKey) -> Result<(), BundleProblem> {
        let parse = |raw: &[u8]| {
            Signature::from_der(raw)
                .or_else(|_| Signature::from_slice(raw))
                .ok()
        };
        let ok = match self {
            Self::Dsse {
                payload,
                payload_type,
                signatures,
                ..
            } => {
                let pae = Self::pae(payload_type, payload);
                signatures
                    .iter()
                    .filter_map(|s| parse(s))
                    .any(|s| key.verify(&pae, &s).is_ok())
            }
            Self::Message { digest, signature } => {
                parse(signature).is_some_and(|s| key.verify_prehash(digest, &s).is_ok())
            }
        };
        ok.then_some(()).ok_or(BundleProblem::BadSignature)
    }
}

/// The keyless checks: certificate chain at the log's time, the log's promise, the entry naming
/// this signature, and the identity. Returns the leaf's key, who signed, and when.
fn check_keyless(
    bundle: &Bundle,
    content: &Content,
    keyless: &Keyless,
) -> Result<(VerifyingKey, String, i64), BundleProblem> {
    let m = &bundle.verification_material;
    let leaf = match (&m.certificate, &m.x509_certificate_chain) {
        (Some(c), _) => b64(&c.raw_bytes)?,
        (None, Some(chain)) => b64(&chain
            .certificates
            .first()
            .ok_or(BundleProblem::NoCertificate)?
            .raw_bytes)?,
        (None, None) => return Err(BundleProblem::NoCertificate),
    };
    // The log entry fixes the time the certificate must have been valid at.
    let mut last = BundleProblem::Tlog("the bundle has no transparency-log entry".into());
    let mut time = None;
    for entry in &m.tlog_entries {
        match check_entry(entry, &keyless.root, content, &leaf) {
            Ok(()) => {
                time = Some(entry.integrated_time);
                break;
            }
            Err(e) => last = e,
        }
    }
    let time = time.ok_or(last)?;
    keyless
        .root
        .verify_chain(&leaf, time)
        .map_err(BundleProblem::Chain)?;
    let cert = x509::Leaf::parse(&leaf).map_err(BundleProblem::Chain)?;
    let id = &keyless.identity;
    let found = format!(
        "{} (issuer {})",
        cert.subjects.join(", "),
        cert.issuer.as_deref().unwrap_or("none")
    );
    let subject_ok = cert.subjects.iter().any(|s| id.subject.is_match(s));
    if cert.issuer.as_deref() != Some(id.issuer.as_str()) || !subject_ok {
        return Err(BundleProblem::Identity {
            found,
            expected: format!("{} (issuer {})", id.subject, id.issuer),
        });
    }
    let key = VerifyingKey::from_public_key_der(&cert.spki)
        .map_err(|_| BundleProblem::Chain("the certificate's key is not ECDSA P-256".into()))?;
    Ok((key, cert.subjects.join(", "), time))
}

/// A Rekor v1 entry: its signed entry timestamp verifies with a log key of the trusted root,
/// and its body records this signature, certificate and content.
fn check_entry(
    entry: &TlogEntry,
    root: &x509::TrustedRoot,
    content: &Content,
    leaf: &[u8],
) -> Result<(), BundleProblem> {
    let tlog = |why: String| BundleProblem::Tlog(why);
    let log_id = b64(&entry.log_id.key_id)?;
    let log_key = root
        .tlog_key(&log_id, entry.integrated_time)
        .ok_or_else(|| {
            tlog(format!(
                "log {} is not in the trusted root",
                hex::encode(&log_id)
            ))
        })?;
    let promise = entry
        .inclusion_promise
        .as_ref()
        .ok_or_else(|| tlog("no signed entry timestamp (inclusion promise)".into()))?;
    // Rekor signs the canonical JSON of these four fields (keys sorted, no spaces).
    let signed = format!(
        "{{\"body\":\"{}\",\"integratedTime\":{},\"logID\":\"{}\",\"logIndex\":{}}}",
        entry.canonicalized_body,
        entry.integrated_time,
        hex::encode(&log_id),
        entry.log_index
    );
    let set = Signature::from_der(&b64(&promise.signed_entry_timestamp)?)
        .map_err(|_| tlog("the signed entry timestamp is not an ECDSA signature".into()))?;
    log_key
        .verify(signed.as_bytes(), &set)
        .map_err(|_| tlog("the signed entry timestamp does not verify".into()))?;

    let body: serde_json::Value = serde_json::from_slice(&b64(&entry.canonicalized_body)?)
        .map_err(|e| tlog(format!("entry body: {e}")))?;
    let kind = (
        entry.kind_version.kind.as_str(),
        entry.kind_version.version.as_str(),
    );
    if body["kind"] != kind.0 || body["apiVersion"] != kind.1 {
        return Err(tlog(
            "the entry body's kind differs from the bundle's".into(),
        ));
    }
    let spec = &body["spec"];
    let str_at = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
    // The certificate in the entry, as the PEM Rekor stores (base64-encoded).
    let same_cert = |v: &serde_json::Value| -> bool {
        let Ok(pem) = b64(&str_at(v)) else {
            return false;
        };
        x509::pem_to_der(&String::from_utf8_lossy(&pem)).is_some_and(|der| der == leaf)
    };
    let sha_hex = |b: &[u8]| hex::encode(Sha256::digest(b));
    let bound = match (kind, content) {
        (
            ("hashedrekord", "0.0.1"),
            Content::Message {
                digest, signature, ..
            },
        ) => {
            str_at(&spec["data"]["hash"]["value"]) == hex::encode(digest)
                && b64(&str_at(&spec["signature"]["content"])).ok().as_ref() == Some(signature)
                && same_cert(&spec["signature"]["publicKey"]["content"])
        }
        (
            ("hashedrekord", "0.0.1"),
            Content::Dsse {
                payload,
                payload_type,
                signatures,
                ..
            },
        ) => {
            let sig = b64(&str_at(&spec["signature"]["content"])).ok();
            str_at(&spec["data"]["hash"]["value"]) == sha_hex(&Content::pae(payload_type, payload))
                && signatures.iter().any(|s| sig.as_ref() == Some(s))
                && same_cert(&spec["signature"]["publicKey"]["content"])
        }
        (
            ("dsse", "0.0.1"),
            Content::Dsse {
                payload,
                signatures,
                ..
            },
        ) => {
            str_at(&spec["payloadHash"]["value"]) == sha_hex(payload)
                && spec["signatures"].as_array().is_some_and(|sigs| {
                    sigs.iter().any(|s| {
                        let sig = b64(&str_at(&s["signature"])).ok();
                        signatures.iter().any(|mine| sig.as_ref() == Some(mine))
                            && same_cert(&s["verifier"])
                    })
                })
        }
        (
            ("intoto", "0.0.2"),
            Content::Dsse {
                payload,
                signatures,
                ..
            },
        ) => {
            // The envelope's payload and signatures are base64 of the base64 in the bundle.
            let twice = |v: &serde_json::Value| {
                b64(&str_at(v)).and_then(|b| b64(&String::from_utf8_lossy(&b)))
            };
            let env = &spec["content"]["envelope"];
            str_at(&spec["content"]["payloadHash"]["value"]) == sha_hex(payload)
                && env["signatures"].as_array().is_some_and(|sigs| {
                    sigs.iter().any(|s| {
                        let sig = twice(&s["sig"]).ok();
                        signatures.iter().any(|mine| sig.as_ref() == Some(mine))
                            && same_cert(&s["publicKey"])
                    })
                })
        }
        ((k, v), _) => {
            return Err(tlog(format!(
                "entry kind {k} {v} is not supported for this content"
            )));
        }
    };
    if !bound {
        return Err(tlog(
            "the log entry records another signature, certificate or content".into(),
        ));
    }
    Ok(())
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.predicate_type, &self.signer) {
            (Some(p), Some(s)) => write!(f, "{p} signed by {s}"),
            (Some(p), None) => write!(f, "{p}"),
            (None, Some(s)) => write!(f, "signed by {s}"),
            (None, None) => f.write_str("signed"),
        }
    }
}
