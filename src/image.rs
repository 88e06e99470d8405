//! Image vocabulary shared by every module: content digests and `tag@digest` references.
//! Images are always pinned by digest; tags are carried along for people to read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `sha256:` digest with 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: expected sha256: followed by 64 lowercase hex digits")]
pub struct DigestError {
    pub input: String,
}

impl Digest {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:0123456789ab`, for titles and tables.
    pub fn short(&self) -> &str {
        &self.0[..("sha256:".len() + 12)]
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(bytes);
        let mut hex = String::with_capacity(64);
        for b in hash {
            hex.push_str(&format!("{b:02x}"));
        }
        Self(format!("sha256:{hex}"))
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(DigestError {
                input: s.to_string(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a promotion pins: a digest, and the tag it was published under when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub tag: Option<String>,
    pub digest: Digest,
}

/// Why a `tag@digest` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinnedError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(
        "invalid tag {0:?}: tags are 1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    )]
    Tag(String),
}

impl FromStr for Pinned {
    type Err = PinnedError;
    /// `sha256:…` or `1.4.0@sha256:…`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('@') {
            None => Ok(Self {
                tag: None,
                digest: s.parse()?,
            }),
            Some((tag, digest)) => {
                if !is_valid_tag(tag) {
                    return Err(PinnedError::Tag(tag.to_string()));
                }
                Ok(Self {
                    tag: Some(tag.to_string()),
                    digest: digest.parse()?,
                })
            }
        }
    }
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{t}@{}", self.digest),
            None => write!(f, "{}", self.digest),
        }
    }
}

/// OCI distribution tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Whether `name` is an image repository (`[host[:port]/]path`) without a tag or digest.
pub fn is_valid_repository(name: &str) -> bool {
    if name.is_empty() || name.contains('@') || name.starts_with('/') || name.ends_with('/') {
        return false;
    }
    let mut parts = name.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let is_host = first
            && parts.peek().is_some()
            && (part.contains('.') || part.contains(':') || part == "localhost");
        first = false;
        let ok = if is_host {
            part.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'))
        } else {
            !part.is_empty()
                && part.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
                })
                && part.as_bytes()[0].is_ascii_alphanumeric()
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_must_be_sha256_with_64_lowercase_hex_digits() {
        assert_eq!(D.parse::<Digest>().unwrap().short(), "sha256:0123456789ab");
        for bad in [
            "",
            "sha256:",
            "sha512:0123",
            &D[..70],
            &D.to_uppercase(),
            &format!("{D}0"),
            &D.replace('a', "g"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?}");
        }
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pinned_accepts_digest_or_tag_at_digest() {
        let p: Pinned = format!("1.4.0@{D}").parse().unwrap();
        assert_eq!(p.tag.as_deref(), Some("1.4.0"));
        assert_eq!(p.to_string(), format!("1.4.0@{D}"));
        assert_eq!(D.parse::<Pinned>().unwrap().tag, None);
        assert!(matches!(
            format!("-x@{D}").parse::<Pinned>(),
            Err(PinnedError::Tag(_))
        ));
        assert!(matches!(
            "1.0@sha256:12".parse::<Pinned>(),
            Err(PinnedError::Digest(_))
        ));
    }

    #[test]
    fn repositories_have_no_tag_or_digest() {
        for good in [
            "nginx",
            "shop/web",
            "registry.example.com/shop/web",
            "127.0.0.1:5000/web",
            "localhost/a_b-c.d",
        ] {
            assert!(is_valid_repository(good), "{good}");
        }
        for bad in [
            "",
            "Shop/web",
            "shop/web@sha256:00",
            "/web",
            "web/",
            "shop//web",
            "-web",
        ] {
            assert!(!is_valid_repository(bad), "{bad}");
        }
    }
}
