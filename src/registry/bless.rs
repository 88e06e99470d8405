//! Blessing rules as pure code: which tags are candidates for promotion and why the others
//! are not, and how the newest candidate is chosen.
//!
//! Semver follows Cargo's (and npm's) pre-release convention, as implemented by the `semver`
//! crate: a pre-release such as `1.5.0-rc.1` matches a range only when a comparator of the
//! range names a pre-release of the same `major.minor.patch` (`>=1.5.0-rc.0`). So `>=1.0.0`
//! never promotes a release candidate by accident. Tags may carry a leading `v`.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use regex::Regex;
use semver::{Version, VersionReq};
use serde::Serialize;

use crate::config::pipeline::{Bless, BlessRule, Newest};

/// A compiled blessing rule.
#[derive(Debug, Clone)]
pub enum Rule {
    Semver {
        text: String,
        req: VersionReq,
    },
    Regex {
        text: String,
        re: Regex,
    },
    /// A marker tag: whatever digest it points at is blessed.
    Tag(String),
}

/// A pipeline `bless:` that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("`bless` must set exactly one of `semver`, `regex` or `tag`")]
    NotExactlyOne,
    #[error("`bless.semver: {text}` is not a semver range: {reason}")]
    Semver { text: String, reason: String },
    #[error("`bless.regex: {text}` is not a regular expression: {reason}")]
    Regex { text: String, reason: String },
}

impl Rule {
    pub fn compile(bless: &Bless) -> Result<Self, RuleError> {
        match bless.rule().ok_or(RuleError::NotExactlyOne)? {
            BlessRule::Semver(text) => VersionReq::parse(text)
                .map(|req| Rule::Semver {
                    text: text.to_string(),
                    req,
                })
                .map_err(|e| RuleError::Semver {
                    text: text.to_string(),
                    reason: e.to_string(),
                }),
            BlessRule::Regex(text) => Regex::new(&format!("^(?:{text})$"))
                .map(|re| Rule::Regex {
                    text: text.to_string(),
                    re,
                })
                .map_err(|e| RuleError::Regex {
                    text: text.to_string(),
                    reason: e.to_string(),
                }),
            BlessRule::Tag(t) => Ok(Rule::Tag(t.to_string())),
        }
    }

    /// Whether this rule is decided by reading one tag (no tag listing).
    pub fn marker(&self) -> Option<&str> {
        match self {
            Rule::Tag(t) => Some(t),
            _ => None,
        }
    }

    /// Judge one tag: `Ok` with its version (when it is one) if blessed, else why not.
    pub fn judge(&self, tag: &str) -> Result<Option<Version>, Rejection> {
        let version = parse_version(tag);
        match self {
            Rule::Semver { text, req } => {
                let Some(v) = version else {
                    return Err(Rejection::NotSemver);
                };
                if req.matches(&v) {
                    return Ok(Some(v));
                }
                if !v.pre.is_empty() {
                    let mut release = v.clone();
                    release.pre = semver::Prerelease::EMPTY;
                    if req.matches(&release) {
                        return Err(Rejection::PreRelease {
                            range: text.clone(),
                        });
                    }
                }
                Err(Rejection::OutOfRange {
                    range: text.clone(),
                })
            }
            Rule::Regex { text, re } => {
                if re.is_match(tag) {
                    Ok(version)
                } else {
                    Err(Rejection::NoMatch {
                        regex: text.clone(),
                    })
                }
            }
            Rule::Tag(marker) => {
                if tag == marker {
                    Ok(version)
                } else {
                    Err(Rejection::NotMarker {
                        marker: marker.clone(),
                    })
                }
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Semver { text, .. } => write!(f, "semver {text}"),
            Rule::Regex { text, .. } => write!(f, "regex {text}"),
            Rule::Tag(t) => write!(f, "tag {t}"),
        }
    }
}

/// `1.2.3`, `v1.2.3`, `1.2.3-rc.1`. Partial versions (`1.2`) are not versions.
pub fn parse_version(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    Version::parse(t).ok()
}

/// Cosign's artifacts live next to the image as tags (`sha256-<hex>.sig`, `.att`, `.sbom`),
/// as do OCI referrers fallback indexes (`sha256-<hex>`). They are never candidates and are
/// not worth explaining.
pub fn is_artifact_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest.split('.').next().unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a tag is not blessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Rejection {
    /// The rule is semver and the tag is not a version.
    NotSemver,
    /// A pre-release the range does not opt into.
    PreRelease {
        range: String,
    },
    OutOfRange {
        range: String,
    },
    NoMatch {
        regex: String,
    },
    NotMarker {
        marker: String,
    },
    /// The marker tag does not exist.
    MarkerMissing {
        marker: String,
    },
    /// Blessed by its tag, but the signature check failed.
    Signature {
        detail: String,
    },
    /// Signed, but a required attestation is missing or does not verify.
    Attestation {
        detail: String,
    },
    /// The tag's manifest could not be read or is not an image.
    Unreadable {
        detail: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSemver => f.write_str("not a semantic version"),
            Self::PreRelease { range } => write!(
                f,
                "pre-release not allowed by `{range}` (name a pre-release in the range to opt in)"
            ),
            Self::OutOfRange { range } => write!(f, "outside the range `{range}`"),
            Self::NoMatch { regex } => write!(f, "does not match `{regex}`"),
            Self::NotMarker { marker } => write!(f, "not the marker tag `{marker}`"),
            Self::MarkerMissing { marker } => {
                write!(f, "the marker tag `{marker}` does not exist")
            }
            Self::Signature { detail } => write!(f, "signature: {detail}"),
            Self::Attestation { detail } => write!(f, "attestation {detail}"),
            Self::Unreadable { detail } => write!(f, "unreadable: {detail}"),
        }
    }
}

/// What ordering needs to know about a candidate.
pub struct Rank<'a> {
    pub tag: &'a str,
    pub version: Option<&'a Version>,
    pub created: Option<DateTime<Utc>>,
}

/// Order candidates best-first. By semver: versions before non-versions, higher first, ties
/// (`v1.0.0` and `1.0.0`) and non-versions by newer creation time, then tag. By creation
/// time: newer first, unknown times last, then by version, then tag.
pub fn compare(newest: Newest, a: &Rank<'_>, b: &Rank<'_>) -> Ordering {
    let by_version = || match (a.version, b.version) {
        (Some(x), Some(y)) => y.cmp(x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    let by_created = || match (a.created, b.created) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    let primary = match newest {
        Newest::Semver => by_version().then_with(by_created),
        Newest::Created => by_created().then_with(by_version),
    };
    primary.then_with(|| b.tag.cmp(a.tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn semver(range: &str) -> Rule {
        Rule::compile(&Bless {
            semver: Some(range.into()),
            ..Bless::default()
        })
        .unwrap()
    }

    #[test]
    fn a_release_range_blesses_releases_and_explains_pre_releases() {
        let r = semver(">=1.0.0");
        assert_eq!(r.judge("1.4.2").unwrap(), Some(Version::new(1, 4, 2)));
        assert_eq!(r.judge("v2.0.0").unwrap(), Some(Version::new(2, 0, 0)));
        assert_eq!(
            r.judge("1.5.0-rc.1"),
            Err(Rejection::PreRelease {
                range: ">=1.0.0".into()
            })
        );
        assert_eq!(
            r.judge("0.9.0"),
            Err(Rejection::OutOfRange {
                range: ">=1.0.0".into()
            })
        );
        assert_eq!(r.judge("latest"), Err(Rejection::NotSemver));
        assert_eq!(r.judge("1.2"), Err(Rejection::NotSemver));
    }

    #[test]
    fn a_range_that_names_a_pre_release_opts_into_that_version_only() {
        let r = semver(">=1.5.0-rc.0");
        assert!(r.judge("1.5.0-rc.1").is_ok());
        assert!(r.judge("1.5.0").is_ok());
        assert!(matches!(
            r.judge("1.6.0-rc.1"),
            Err(Rejection::PreRelease { .. })
        ));
    }

    #[test]
    fn regex_rules_match_the_whole_tag() {
        let r = Rule::compile(&Bless {
            regex: Some("main-[0-9]+".into()),
            ..Bless::default()
        })
        .unwrap();
        assert_eq!(r.judge("main-42"), Ok(None));
        assert!(matches!(
            r.judge("main-42-dirty"),
            Err(Rejection::NoMatch { .. })
        ));
        assert!(matches!(
            r.judge("xmain-42"),
            Err(Rejection::NoMatch { .. })
        ));
    }

    #[test]
    fn invalid_rules_are_reported_with_the_offending_text() {
        let e = Rule::compile(&Bless {
            semver: Some(">=one".into()),
            ..Bless::default()
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`bless.semver: >=one` is not a semver range")
        );
        assert_eq!(
            Rule::compile(&Bless::default()).unwrap_err(),
            RuleError::NotExactlyOne
        );
    }

    #[test]
    fn cosign_and_referrer_tags_are_recognised() {
        let hex = "a".repeat(64);
        assert!(is_artifact_tag(&format!("sha256-{hex}.sig")));
        assert!(is_artifact_tag(&format!("sha256-{hex}.att")));
        assert!(is_artifact_tag(&format!("sha256-{hex}")));
        assert!(!is_artifact_tag("sha256-notreally.sig"));
        assert!(!is_artifact_tag("1.0.0"));
    }

    #[test]
    fn newest_by_semver_puts_versions_first_and_by_created_uses_time() {
        let v = |s: &str| Version::parse(s).unwrap();
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let (v1, v2) = (v("1.10.0"), v("1.9.0"));
        let a = Rank {
            tag: "1.10.0",
            version: Some(&v1),
            created: t("2026-01-01T00:00:00Z"),
        };
        let b = Rank {
            tag: "1.9.0",
            version: Some(&v2),
            created: t("2026-02-01T00:00:00Z"),
        };
        let c = Rank {
            tag: "latest",
            version: None,
            created: t("2026-03-01T00:00:00Z"),
        };
        assert_eq!(compare(Newest::Semver, &a, &b), Ordering::Less);
        assert_eq!(compare(Newest::Semver, &c, &b), Ordering::Greater);
        assert_eq!(compare(Newest::Created, &c, &b), Ordering::Less);
        assert_eq!(compare(Newest::Created, &b, &a), Ordering::Less);
    }
}
