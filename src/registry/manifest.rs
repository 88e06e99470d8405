//! Reading manifests: which of the four kinds baton supports a manifest is (OCI index, Docker
//! manifest list, OCI image manifest, Docker v2 manifest), and the metadata PR bodies show
//! (`org.opencontainers.image.created` / `revision` / `source`, from annotations or labels).
//! Pure functions over bytes; the scanner fetches.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, ImageIndexEntry,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex, OciImageManifest,
};
use serde::{Deserialize, Serialize};

pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";

/// The manifest kinds baton reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestKind {
    OciIndex,
    DockerManifestList,
    OciManifest,
    DockerManifest,
}

impl ManifestKind {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::OciIndex => OCI_IMAGE_INDEX_MEDIA_TYPE,
            Self::DockerManifestList => IMAGE_MANIFEST_LIST_MEDIA_TYPE,
            Self::OciManifest => OCI_IMAGE_MEDIA_TYPE,
            Self::DockerManifest => IMAGE_MANIFEST_MEDIA_TYPE,
        }
    }

    pub fn is_index(self) -> bool {
        matches!(self, Self::OciIndex | Self::DockerManifestList)
    }

    fn from_media_type(mt: &str) -> Option<Self> {
        let mt = mt.split(';').next().unwrap_or(mt).trim();
        [
            Self::OciIndex,
            Self::DockerManifestList,
            Self::OciManifest,
            Self::DockerManifest,
        ]
        .into_iter()
        .find(|k| k.media_type() == mt)
    }
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub enum Manifest {
    Index(ManifestKind, OciImageIndex),
    Image(ManifestKind, Box<OciImageManifest>),
}

impl Manifest {
    pub fn kind(&self) -> ManifestKind {
        match self {
            Self::Index(k, _) | Self::Image(k, _) => *k,
        }
    }

    pub fn annotations(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Self::Index(_, i) => i.annotations.as_ref(),
            Self::Image(_, m) => m.annotations.as_ref(),
        }
    }
}

/// Parse manifest bytes. The kind comes from the document's `mediaType`, else the response
/// `Content-Type`, else the document's shape (OCI allows omitting `mediaType`). The error is a
/// reason to show after `malformed manifest for repo:tag:`.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<i64>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if probe.schema_version == Some(1) {
        return Err(
            "Docker schema 1 manifests are not supported; push with a current client".into(),
        );
    }
    if probe.schema_version != Some(2) {
        return Err(format!(
            "schemaVersion must be 2, found {}",
            probe
                .schema_version
                .map_or("none".to_string(), |v| v.to_string())
        ));
    }
    let declared = probe.media_type.as_deref().or(content_type);
    let kind = match declared.and_then(ManifestKind::from_media_type) {
        Some(k) => k,
        None if probe.media_type.is_some() => {
            return Err(format!(
                "unsupported media type {}",
                probe.media_type.unwrap_or_default()
            ));
        }
        None if probe.manifests.is_some() => ManifestKind::OciIndex,
        None if probe.config.is_some() => ManifestKind::OciManifest,
        None => return Err("neither an image manifest nor an index".into()),
    };
    if kind.is_index() {
        let index: OciImageIndex =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid image index: {e}"))?;
        Ok(Manifest::Index(kind, index))
    } else {
        let m: OciImageManifest =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid image manifest: {e}"))?;
        Ok(Manifest::Image(kind, Box::new(m)))
    }
}

/// The child of an index whose metadata stands for the whole image: `linux/amd64` if present,
/// else the first entry that is not an attestation (`unknown/unknown`).
pub fn representative_child(index: &OciImageIndex) -> Option<&ImageIndexEntry> {
    let platform = |e: &&ImageIndexEntry| {
        e.platform
            .as_ref()
            .map(|p| (p.os.to_string(), p.architecture.to_string()))
    };
    index
        .manifests
        .iter()
        .find(|e| platform(e).is_some_and(|(os, arch)| os == "linux" && arch == "amd64"))
        .or_else(|| {
            index
                .manifests
                .iter()
                .find(|e| platform(e).is_none_or(|(os, _)| os != "unknown"))
        })
}

/// Platforms of an index, `os/arch[/variant]`.
pub fn platforms(index: &OciImageIndex) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .filter(|p| p.os.to_string() != "unknown")
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect()
}

/// What PR bodies and `registry scan` show about an image, read once per digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageMeta {
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

impl ImageMeta {
    /// Fill fields still missing from annotations (or labels) — earlier sources win.
    pub fn absorb(&mut self, values: Option<&BTreeMap<String, String>>) {
        let Some(values) = values else { return };
        if self.created.is_none() {
            self.created = values.get(ANNOTATION_CREATED).and_then(|s| parse_time(s));
        }
        if self.revision.is_none() {
            self.revision = values
                .get(ANNOTATION_REVISION)
                .filter(|s| !s.is_empty())
                .cloned();
        }
        if self.source.is_none() {
            self.source = values
                .get(ANNOTATION_SOURCE)
                .filter(|s| !s.is_empty())
                .cloned();
        }
    }

    pub fn complete(&self) -> bool {
        self.created.is_some() && self.revision.is_some() && self.source.is_some()
    }

    /// Fill from an image config blob: its `config.Labels`, then its `created`.
    pub fn absorb_config(&mut self, config: &[u8]) {
        #[derive(Deserialize)]
        struct ImageConfig {
            #[serde(default)]
            created: Option<String>,
            #[serde(default)]
            config: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default, rename = "Labels")]
            labels: Option<BTreeMap<String, String>>,
        }
        let Ok(c) = serde_json::from_slice::<ImageConfig>(config) else {
            return;
        };
        self.absorb(c.config.and_then(|i| i.labels).as_ref());
        if self.created.is_none() {
            self.created = c.created.as_deref().and_then(parse_time);
        }
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_four_manifest_kinds_are_recognised() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:aa"},"layers":[]}"#;
        assert_eq!(
            parse(docker, None).unwrap().kind(),
            ManifestKind::DockerManifest
        );
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(
            parse(list, None).unwrap().kind(),
            ManifestKind::DockerManifestList
        );
        // OCI documents may omit mediaType: the header, then the shape decides.
        let oci = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":1,"digest":"sha256:aa"},"layers":[]}"#;
        assert_eq!(parse(oci, None).unwrap().kind(), ManifestKind::OciManifest);
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            parse(index, Some("application/vnd.oci.image.index.v1+json"))
                .unwrap()
                .kind(),
            ManifestKind::OciIndex
        );
    }

    #[test]
    fn malformed_and_unsupported_manifests_say_why() {
        assert!(parse(b"<html>", None).unwrap_err().starts_with("not JSON"));
        assert!(
            parse(br#"{"schemaVersion":1}"#, None)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None)
                .unwrap_err()
                .contains("unsupported media type text/plain")
        );
        assert!(
            parse(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":7}"#, None)
                .unwrap_err()
                .starts_with("invalid image manifest")
        );
    }

    #[test]
    fn annotations_win_over_labels_and_config_created_is_the_fallback() {
        let mut meta = ImageMeta::default();
        meta.absorb(Some(&BTreeMap::from([(
            ANNOTATION_REVISION.to_string(),
            "abc123".to_string(),
        )])));
        meta.absorb_config(
            br#"{"created":"2026-01-02T03:04:05.123Z","config":{"Labels":{
                "org.opencontainers.image.revision":"ignored",
                "org.opencontainers.image.source":"https://github.com/shop/web"}}}"#,
        );
        assert_eq!(meta.revision.as_deref(), Some("abc123"));
        assert_eq!(meta.source.as_deref(), Some("https://github.com/shop/web"));
        assert_eq!(
            meta.created.unwrap().to_rfc3339(),
            "2026-01-02T03:04:05.123+00:00"
        );
    }
}
