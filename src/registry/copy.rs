//! Copy an image by digest to another repository (an environment's `copyTo`): every blob and
//! every manifest, index children first, so the copy has exactly the same digest. Blobs the
//! target already has are skipped; on the same registry they are mounted across repositories
//! instead of transferred. Layers are streamed, never held in memory. The digest is read back
//! from the target at the end and must match.

use std::future::Future;
use std::pin::Pin;

use futures::TryStreamExt as _;
use serde::Serialize;

use super::client::{Mount, RegistryClient};
use super::cosign;
use super::error::RegistryError;
use super::manifest::{self, Manifest};
use super::repo::Repo;

/// What to copy besides the image.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Also tag the copy (the digest is what is pinned; the tag is for people).
    pub tag: Option<String>,
    /// Also copy the cosign signature (`sha256-<hex>.sig`), when the source has one, so the
    /// copy verifies with the same key.
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
    /// Digest of the copied signature manifest, when one was copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Layer media types that registries do not store (Windows foreign layers).
fn non_distributable(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
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
    let (bytes, media_type) = copy_manifest(client, source, digest, target, &mut report).await?;
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
    if options.signatures {
        let sig_tag = cosign::signature_tag(digest);
        match client.head_manifest(source, &sig_tag).await {
            Ok(head) => {
                let (bytes, media_type) =
                    copy_manifest(client, source, &head.digest, target, &mut report).await?;
                client
                    .put_manifest(target, &sig_tag, bytes, &media_type)
                    .await?;
                report.signature = Some(head.digest);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// Copy one manifest and everything it references; returns its bytes and media type.
fn copy_manifest<'a>(
    client: &'a RegistryClient,
    source: &'a Repo,
    digest: &'a str,
    target: &'a Repo,
    report: &'a mut CopyReport,
) -> Boxed<'a, (bytes::Bytes, String)> {
    Box::pin(async move {
        let raw = client.get_manifest(source, digest).await?;
        let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|reason| {
            RegistryError::MalformedManifest {
                what: source.at(digest),
                reason,
            }
        })?;
        let media_type = parsed.kind().media_type().to_string();
        match &parsed {
            Manifest::Index(_, index) => {
                for child in &index.manifests {
                    copy_manifest(client, source, &child.digest, target, report).await?;
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
        Ok((raw.bytes, media_type))
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
