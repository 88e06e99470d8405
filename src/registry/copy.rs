//! Copy an image by digest to another repository (an environment's `copyTo`): every blob and
//! every manifest, index children first, so the copy has exactly the same digest. Blobs the
//! target already has are skipped; on the same registry they are mounted across repositories
//! instead of transferred. Layers are streamed, never held in memory. The digest is read back
//! from the target at the end and must match.
//!
//! With [`CopyOptions::signatures`], what vouches for the image travels with it, for the index
//! and every platform manifest: cosign's `sha256-<hex>.sig` / `.att` / `.sbom` tags, and OCI
//! referrers (read through the referrers API, or the `sha256-<hex>` fallback tag where the
//! source has no API). On a target without the referrers API, the copied referrers are listed
//! in its `sha256-<hex>` fallback index, as the OCI distribution spec asks of clients.

use std::future::Future;
use std::pin::Pin;

use futures::TryStreamExt as _;
use oci_client::manifest::{ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OciImageIndex};
use serde::Serialize;

use super::client::{Mount, RegistryClient};
use super::error::RegistryError;
use super::manifest::{self, Manifest};
use super::repo::Repo;

/// Cosign's artifact tag suffixes: signatures, attestations, SBOMs.
pub const ARTIFACT_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// What to copy besides the image.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Also tag the copy (the digest is what is pinned; the tag is for people).
    pub tag: Option<String>,
    /// Also copy cosign signatures, attestations and SBOMs (`sha256-<hex>.sig|.att|.sbom`) and
    /// OCI referrers of the image and of each platform manifest, so the copy verifies with the
    /// same key.
    pub signatures: bool,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub target: String,
    pub digest: String,
    /// Manifests written (image manifests, index children, the index, signatures).
    pub manifests: usize,
    /// Blobs transferred through baton.
    pub blobs_copied: usize,
    /// Blobs mounted from the source repository (same registry).
    pub blobs_mounted: usize,
    /// Blobs the target already had.
    pub blobs_present: usize,
    pub bytes_copied: u64,
    /// Platforms of an index's children (`linux/amd64`), each copied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Digest of the copied signature manifest of the image (`.sig`), when one was copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Every artifact copied along: `sha256-<hex>.sig`, `.att`, `.sbom` tags and referrers
    /// (`referrer <artifactType> <digest>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
}

impl CopyReport {
    /// One line for PR bodies and logs: `3 manifests, 2 blobs copied (1.2 kB), 4 mounted, …`.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} manifest{}",
            self.manifests,
            if self.manifests == 1 { "" } else { "s" }
        )];
        parts.push(format!(
            "{} blob{} copied ({} bytes)",
            self.blobs_copied,
            if self.blobs_copied == 1 { "" } else { "s" },
            self.bytes_copied
        ));
        if self.blobs_mounted > 0 {
            parts.push(format!("{} mounted", self.blobs_mounted));
        }
        if self.blobs_present > 0 {
            parts.push(format!("{} already there", self.blobs_present));
        }
        if !self.platforms.is_empty() {
            parts.push(format!("platforms {}", self.platforms.join(", ")));
        }
        if !self.artifacts.is_empty() {
            parts.push(format!(
                "{} signature/attestation artifact{}",
                self.artifacts.len(),
                if self.artifacts.len() == 1 { "" } else { "s" }
            ));
        }
        parts.join(", ")
    }
}

/// Layer media types that registries do not store (Windows foreign layers).
fn non_distributable(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

/// `sha256-<hex>`: the referrers fallback tag of a digest, and the stem of cosign's tags.
pub fn digest_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Copy `source@digest` to `target` (same digest), then verify it.
pub async fn copy_image(
    client: &RegistryClient,
    source: &Repo,
    digest: &str,
    target: &Repo,
    options: &CopyOptions,
) -> Result<CopyReport, RegistryError> {
    let mut report = CopyReport {
        source: source.at(digest),
        target: target.at(digest),
        digest: digest.to_string(),
        ..CopyReport::default()
    };
    let (bytes, media_type, children) =
        copy_manifest(client, source, digest, target, &mut report).await?;
    if let Some(tag) = &options.tag {
        client
            .put_manifest(target, tag, bytes.clone(), &media_type)
            .await?;
    }
    let reference = options.tag.as_deref().unwrap_or(digest);
    let landed = client.head_manifest(target, reference).await?.digest;
    if landed != digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("copy of {} to {}", source.at(digest), target.at(reference)),
            expected: digest.to_string(),
            actual: landed,
        });
    }
    for (child, platform) in &children {
        let at = client.head_manifest(target, child).await?.digest;
        if &at != child {
            return Err(RegistryError::DigestMismatch {
                what: format!("copy of platform {platform} to {}", target.at(child)),
                expected: child.clone(),
                actual: at,
            });
        }
        report.platforms.push(platform.clone());
    }
    if options.signatures {
        let mut subjects = vec![digest.to_string()];
        subjects.extend(children.into_iter().map(|(d, _)| d));
        for subject in &subjects {
            copy_artifacts(
                client,
                source,
                subject,
                target,
                subject == digest,
                &mut report,
            )
            .await?;
        }
    }
    Ok(report)
}

/// Copy the cosign tags and the referrers of `subject` (already in the target).
async fn copy_artifacts(
    client: &RegistryClient,
    source: &Repo,
    subject: &str,
    target: &Repo,
    root: bool,
    report: &mut CopyReport,
) -> Result<(), RegistryError> {
    for suffix in ARTIFACT_SUFFIXES {
        let tag = format!("{}.{suffix}", digest_tag(subject));
        match client.head_manifest(source, &tag).await {
            Ok(head) => {
                let (bytes, media_type, _) =
                    copy_manifest(client, source, &head.digest, target, report).await?;
                client
                    .put_manifest(target, &tag, bytes, &media_type)
                    .await?;
                if root && suffix == "sig" {
                    report.signature = Some(head.digest.clone());
                }
                report.artifacts.push(tag);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    // Referrers: the API where the source has one, else its fallback tag.
    let fallback = digest_tag(subject);
    let referrers = match client.referrers(source, subject, None).await? {
        Some(index) => index.manifests,
        None => match client.get_manifest(source, &fallback).await {
            Ok(raw) => match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
                Ok(Manifest::Index(_, index)) => index.manifests,
                _ => Vec::new(),
            },
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        },
    };
    if referrers.is_empty() {
        return Ok(());
    }
    for entry in &referrers {
        copy_manifest(client, source, &entry.digest, target, report).await?;
        report.artifacts.push(format!(
            "referrer {} {}",
            entry.artifact_type.as_deref().unwrap_or(&entry.media_type),
            entry.digest
        ));
    }
    if client.referrers(target, subject, None).await?.is_none() {
        update_fallback_index(client, target, &fallback, &referrers).await?;
    }
    Ok(())
}

/// Add `entries` to the target's referrers fallback index `tag` (created when missing).
async fn update_fallback_index(
    client: &RegistryClient,
    target: &Repo,
    tag: &str,
    entries: &[ImageIndexEntry],
) -> Result<(), RegistryError> {
    let mut index = match client.get_manifest(target, tag).await {
        Ok(raw) => match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
            Ok(Manifest::Index(_, index)) => index,
            _ => empty_index(),
        },
        Err(e) if e.is_not_found() => empty_index(),
        Err(e) => return Err(e),
    };
    let before = index.manifests.len();
    for e in entries {
        if !index.manifests.iter().any(|m| m.digest == e.digest) {
            index.manifests.push(e.clone());
        }
    }
    if index.manifests.len() == before && before > 0 {
        return Ok(());
    }
    let bytes = serde_json::to_vec(&index).map_err(|e| RegistryError::Protocol {
        registry: target.registry.clone(),
        what: target.at(tag),
        reason: format!("cannot write the referrers index: {e}"),
    })?;
    client
        .put_manifest(target, tag, bytes.into(), OCI_IMAGE_INDEX_MEDIA_TYPE)
        .await?;
    Ok(())
}

fn empty_index() -> OciImageIndex {
    OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: Vec::new(),
        artifact_type: None,
        annotations: None,
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// An index's children: (digest, `os/arch`).
type Children = Vec<(String, String)>;

/// Copy one manifest and everything it references; returns its bytes, media type and, for an
/// index, its children.
fn copy_manifest<'a>(
    client: &'a RegistryClient,
    source: &'a Repo,
    digest: &'a str,
    target: &'a Repo,
    report: &'a mut CopyReport,
) -> Boxed<'a, (bytes::Bytes, String, Children)> {
    Box::pin(async move {
        let raw = client.get_manifest(source, digest).await?;
        let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|reason| {
            RegistryError::MalformedManifest {
                what: source.at(digest),
                reason,
            }
        })?;
        let media_type = parsed.kind().media_type().to_string();
        let mut children = Vec::new();
        match &parsed {
            Manifest::Index(_, index) => {
                for child in &index.manifests {
                    copy_manifest(client, source, &child.digest, target, report).await?;
                    let platform = child
                        .platform
                        .as_ref()
                        .map(|p| format!("{}/{}", p.os, p.architecture))
                        .unwrap_or_else(|| "unknown".into());
                    children.push((child.digest.clone(), platform));
                }
            }
            Manifest::Image(_, image) => {
                let blobs = std::iter::once(&image.config).chain(image.layers.iter());
                for blob in blobs {
                    if non_distributable(&blob.media_type) {
                        continue;
                    }
                    copy_blob(client, source, &blob.digest, blob.size, target, report).await?;
                }
            }
        }
        client
            .put_manifest(target, digest, raw.bytes.clone(), &media_type)
            .await?;
        report.manifests += 1;
        Ok((raw.bytes, media_type, children))
    })
}

async fn copy_blob(
    client: &RegistryClient,
    source: &Repo,
    digest: &str,
    size: i64,
    target: &Repo,
    report: &mut CopyReport,
) -> Result<(), RegistryError> {
    if client.blob_exists(target, digest).await? {
        report.blobs_present += 1;
        return Ok(());
    }
    let mut tries = 0;
    loop {
        tries += 1;
        let location = if source.registry == target.registry {
            match client
                .mount_blob(target, digest, &source.repository)
                .await?
            {
                Mount::Mounted => {
                    report.blobs_mounted += 1;
                    return Ok(());
                }
                Mount::UploadAt(location) => location,
            }
        } else {
            client.start_upload(target, &target.at(digest)).await?
        };
        let result = async {
            let resp = client.blob_response(source, digest).await?;
            let length = resp.content_length().or(u64::try_from(size).ok());
            let stream = resp.bytes_stream().map_err(std::io::Error::other);
            client
                .finish_upload(
                    target,
                    &location,
                    digest,
                    reqwest::Body::wrap_stream(stream),
                    length,
                )
                .await?;
            Ok::<_, RegistryError>(length.unwrap_or(0))
        }
        .await;
        match result {
            Ok(n) => {
                report.blobs_copied += 1;
                report.bytes_copied += n;
                return Ok(());
            }
            Err(e) if e.is_transient() && tries < 3 => {
                tracing::debug!(error = %e, "retrying blob transfer");
            }
            Err(e) => return Err(e),
        }
    }
}
