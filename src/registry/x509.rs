//! The certificate side of keyless verification: sigstore's trusted-root file (Fulcio CAs and
//! Rekor log keys, each with a validity window), chain building to a Fulcio CA with
//! `rustls-webpki` at a given time, and reading a Fulcio leaf certificate's identity (its SAN
//! and the OIDC issuer extension) with a small DER reader. Pure.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Code signing, the extended key usage Fulcio certificates carry (1.3.6.1.5.5.7.3.3).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// subjectAltName (2.5.29.17).
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// Fulcio's OIDC issuer, v2 (1.3.6.1.4.1.57264.1.8, a DER UTF8String) and v1 (…1.1, raw bytes).
const OID_ISSUER_V2: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x08];
const OID_ISSUER_V1: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x01];

/// A sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`).
#[derive(Clone)]
pub struct TrustedRoot {
    cas: Vec<Authority>,
    tlogs: Vec<LogKey>,
    id: String,
}

impl fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TrustedRoot({}, {} CAs, {} logs)",
            self.id,
            self.cas.len(),
            self.tlogs.len()
        )
    }
}

#[derive(Clone)]
struct Authority {
    /// Leaf-most first, the root last.
    chain: Vec<Vec<u8>>,
    valid: Window,
}

#[derive(Clone)]
struct LogKey {
    key_id: Vec<u8>,
    key: Option<VerifyingKey>,
    valid: Window,
}

#[derive(Clone, Copy)]
struct Window {
    start: Option<i64>,
    end: Option<i64>,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootFile {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<TlogFile>,
    #[serde(default)]
    certificate_authorities: Vec<CaFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogFile {
    public_key: KeyFile,
    log_id: super::sigstore::KeyId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyFile {
    #[serde(default)]
    raw_bytes: Option<String>,
    #[serde(default)]
    key_details: Option<String>,
    #[serde(default)]
    valid_for: Option<ValidFor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaFile {
    cert_chain: ChainFile,
    #[serde(default)]
    valid_for: Option<ValidFor>,
}

#[derive(Deserialize)]
struct ChainFile {
    certificates: Vec<RawFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFile {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct ValidFor {
    #[serde(default)]
    start: Option<DateTime<Utc>>,
    #[serde(default)]
    end: Option<DateTime<Utc>>,
}

fn window(v: Option<&ValidFor>) -> Window {
    Window {
        start: v.and_then(|v| v.start).map(|t| t.timestamp()),
        end: v.and_then(|v| v.end).map(|t| t.timestamp()),
    }
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("invalid base64: {e}"))
}

impl TrustedRoot {
    /// Parse a trusted-root file. Log keys that are not ECDSA P-256 are kept as unusable (an
    /// entry from such a log does not verify).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let file: RootFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !file
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(format!(
                "media type {} is not a trusted root",
                file.media_type
            ));
        }
        let mut cas = Vec::new();
        for ca in &file.certificate_authorities {
            let chain = ca
                .cert_chain
                .certificates
                .iter()
                .map(|c| b64(&c.raw_bytes))
                .collect::<Result<Vec<_>, _>>()?;
            if chain.is_empty() {
                return Err("a certificate authority without certificates".into());
            }
            cas.push(Authority {
                chain,
                valid: window(ca.valid_for.as_ref()),
            });
        }
        let mut tlogs = Vec::new();
        for t in &file.tlogs {
            let key = match (&t.public_key.raw_bytes, t.public_key.key_details.as_deref()) {
                (Some(raw), Some("PKIX_ECDSA_P256_SHA_256")) => {
                    Some(VerifyingKey::from_public_key_der(&b64(raw)?).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            tlogs.push(LogKey {
                key_id: b64(&t.log_id.key_id)?,
                key,
                valid: window(t.public_key.valid_for.as_ref()),
            });
        }
        if cas.is_empty() {
            return Err("the trusted root lists no certificate authority".into());
        }
        Ok(Self {
            cas,
            tlogs,
            id: hex::encode(&Sha256::digest(bytes)[..8]),
        })
    }

    /// A short fingerprint of the file, for caches.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key of log `key_id`, when the root trusts it at `time`.
    pub(crate) fn tlog_key(&self, key_id: &[u8], time: i64) -> Option<&VerifyingKey> {
        self.tlogs
            .iter()
            .find(|t| t.key_id == key_id && t.valid.contains(time))
            .and_then(|t| t.key.as_ref())
    }

    /// The certificate `leaf` (DER) chains to one of the root's CAs that was valid at `time`,
    /// every certificate on the path valid at `time`, for code signing.
    pub(crate) fn verify_chain(&self, leaf: &[u8], time: i64) -> Result<(), String> {
        let leaf_der = CertificateDer::from(leaf);
        let ee = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|e| format!("unreadable certificate: {e:?}"))?;
        let algs = [
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P256_SHA384,
            webpki::ring::ECDSA_P384_SHA256,
            webpki::ring::ECDSA_P384_SHA384,
        ];
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(time).map_err(|_| "a time before 1970".to_string())?,
        ));
        let mut last = "no certificate authority in the trusted root was valid then".to_string();
        for ca in self.cas.iter().filter(|ca| ca.valid.contains(time)) {
            let (root, intermediates) = ca.chain.split_last().expect("chains are not empty");
            let root = CertificateDer::from(root.as_slice());
            let anchor = match webpki::anchor_from_trusted_cert(&root) {
                Ok(a) => a,
                Err(e) => {
                    last = format!("unusable CA certificate: {e:?}");
                    continue;
                }
            };
            let intermediates: Vec<CertificateDer<'_>> = intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_slice()))
                .collect();
            match ee.verify_for_usage(
                &algs,
                &[anchor],
                &intermediates,
                at,
                webpki::KeyUsage::required(EKU_CODE_SIGNING),
                None,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{e:?}"),
            }
        }
        Err(last)
    }
}

/// What baton reads from a Fulcio leaf certificate.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    /// SAN values: emails and URIs (and other names as text).
    pub(crate) subjects: Vec<String>,
    /// The OIDC issuer extension.
    pub(crate) issuer: Option<String>,
    /// The subjectPublicKeyInfo, DER.
    pub(crate) spki: Vec<u8>,
}

impl Leaf {
    pub(crate) fn parse(der: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| format!("malformed certificate ({what})");
        let (cert, _) = Der::read(der).ok_or_else(|| bad("certificate"))?;
        let (tbs, _) = Der::read(cert.body).ok_or_else(|| bad("tbsCertificate"))?;
        let mut fields = Der::all(tbs.body).ok_or_else(|| bad("fields"))?.into_iter();
        // [0] version, serial, signature algorithm, issuer, validity, subject, SPKI.
        let mut first = fields.next().ok_or_else(|| bad("version"))?;
        if first.tag == 0xa0 {
            first = fields.next().ok_or_else(|| bad("serial"))?;
        }
        let _serial = first;
        let spki = fields.nth(4).ok_or_else(|| bad("subjectPublicKeyInfo"))?;
        let mut leaf = Leaf {
            subjects: Vec::new(),
            issuer: None,
            spki: spki.raw.to_vec(),
        };
        let Some(exts) = fields.find(|f| f.tag == 0xa3) else {
            return Ok(leaf);
        };
        let (list, _) = Der::read(exts.body).ok_or_else(|| bad("extensions"))?;
        for ext in Der::all(list.body).ok_or_else(|| bad("extension"))? {
            let parts = Der::all(ext.body).ok_or_else(|| bad("extension"))?;
            let (Some(oid), Some(value)) = (parts.first(), parts.last()) else {
                continue;
            };
            match oid.body {
                OID_SAN => {
                    let (names, _) = Der::read(value.body).ok_or_else(|| bad("SAN"))?;
                    for name in Der::all(names.body).ok_or_else(|| bad("SAN"))? {
                        // [1] rfc822Name, [6] URI (IA5 strings); other kinds are not identities.
                        if name.tag == 0x81 || name.tag == 0x86 {
                            leaf.subjects
                                .push(String::from_utf8_lossy(name.body).into_owned());
                        }
                    }
                }
                OID_ISSUER_V2 => {
                    let (s, _) = Der::read(value.body).ok_or_else(|| bad("issuer"))?;
                    leaf.issuer = Some(String::from_utf8_lossy(s.body).into_owned());
                }
                OID_ISSUER_V1 if leaf.issuer.is_none() => {
                    leaf.issuer = Some(String::from_utf8_lossy(value.body).into_owned());
                }
                _ => {}
            }
        }
        Ok(leaf)
    }
}

/// One DER element: tag, content, and the whole encoding.
struct Der<'a> {
    tag: u8,
    body: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Der<'a> {
    /// Read one element from the front of `input`; returns it and the rest.
    fn read(input: &'a [u8]) -> Option<(Self, &'a [u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |l, b| (l << 8) | *b as usize);
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let header = input.len() - rest.len();
        Some((
            Der {
                tag,
                body: &rest[..len],
                raw: &input[..header + len],
            },
            &rest[len..],
        ))
    }

    /// Every element of a constructed value's content.
    fn all(mut input: &'a [u8]) -> Option<Vec<Self>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (el, rest) = Self::read(input)?;
            out.push(el);
            input = rest;
        }
        Some(out)
    }
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
pub(crate) fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_in_long_form_are_read() {
        let mut long = vec![0x04, 0x81, 200];
        long.extend(std::iter::repeat_n(7u8, 200));
        long.push(0x05);
        let (el, rest) = Der::read(&long).unwrap();
        assert_eq!((el.tag, el.body.len(), rest), (0x04, 200, &[0x05u8][..]));
        assert!(Der::read(&[0x04, 0x05, 1, 2]).is_none(), "a short body");
    }

    #[test]
    fn a_window_without_an_end_is_open() {
        let w = Window {
            start: Some(10),
            end: None,
        };
        assert!(!w.contains(9) && w.contains(10) && w.contains(i64::MAX));
    }
}
