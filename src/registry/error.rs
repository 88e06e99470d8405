//! The registry module's error type. Every variant knows whether retrying can help
//! ([`RegistryError::is_transient`]) and names what was being read (`repo:tag`, `repo@digest`)
//! so that a log line or a PR comment says where the problem is. No variant carries a
//! credential: tokens and passwords live in [`crate::config::secret::Secret`], which never prints its value.

use std::time::Duration;

/// Something went wrong talking to a registry or interpreting what it returned.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (connection refused, DNS, TLS, timeout).
    /// Transient: retried with backoff, then reported.
    #[error("cannot reach registry {registry} while reading {what}: {source}")]
    Unreachable {
        registry: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },

    /// The registry answered with a server error (5xx). Transient.
    #[error("registry {registry} failed with HTTP {status} while reading {what}{}", detail(.message))]
    Server {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },

    /// The registry asked us to slow down (429). Transient; `retry_after` is what the
    /// registry asked for when that was longer than we are willing to wait inline.
    #[error("registry {registry} rate-limited {what}{}", after(.retry_after))]
    RateLimited {
        registry: String,
        what: String,
        retry_after: Option<Duration>,
    },

    /// The registry refused our credentials, or wants credentials we do not have. Permanent
    /// until the configuration changes.
    #[error(
        "registry {registry} refused access to {what} (HTTP {status}){}; check the credentials configured for {registry}",
        detail(.message)
    )]
    Unauthorized {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },

    /// The token endpoint named by the registry's `WWW-Authenticate` challenge failed.
    #[error("registry {registry}: token request to {realm} for {what} failed: {reason}")]
    Token {
        registry: String,
        realm: String,
        what: String,
        reason: String,
        transient: bool,
    },

    /// The repository, tag, manifest or blob does not exist. Permanent.
    #[error("{what} not found on registry {registry}")]
    NotFound { registry: String, what: String },

    /// Any other unexpected status. Permanent.
    #[error("registry {registry} answered HTTP {status} for {what}{}", detail(.message))]
    Unexpected {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },

    /// The manifest is not JSON, not a manifest, or of a kind baton does not read.
    #[error("malformed manifest for {what}: {reason}")]
    MalformedManifest { what: String, reason: String },

    /// The content does not hash to the digest it was asked for by, or a copy landed under
    /// a different digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// The registry's answer was not what the protocol promises (missing header, bad JSON).
    #[error("registry {registry} sent an invalid response for {what}: {reason}")]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },

    /// An image name in the pipeline or a `copyTo` that cannot be parsed.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!("; retry after {}s", d.as_secs().max(1)),
        None => String::new(),
    }
}

impl RegistryError {
    /// Whether the same request may succeed later without a configuration change: outages,
    /// 5xx and rate limits are transient; everything the registry said about the content
    /// itself is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Server { .. } | Self::RateLimited { .. } => true,
            Self::Token { transient, .. } => *transient,
            Self::Unauthorized { .. }
            | Self::NotFound { .. }
            | Self::Unexpected { .. }
            | Self::MalformedManifest { .. }
            | Self::DigestMismatch { .. }
            | Self::Protocol { .. }
            | Self::InvalidReference { .. } => false,
        }
    }

    /// How long the registry asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_rate_limits_are_transient_content_errors_are_not() {
        let server = RegistryError::Server {
            registry: "r".into(),
            what: "shop/web:1.0.0".into(),
            status: 503,
            message: String::new(),
        };
        assert!(server.is_transient());
        let limited = RegistryError::RateLimited {
            registry: "r".into(),
            what: "shop/web".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(limited.is_transient());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
        assert!(limited.to_string().contains("retry after 30s"));
        let bad = RegistryError::MalformedManifest {
            what: "shop/web:1.0.0".into(),
            reason: "not JSON".into(),
        };
        assert!(!bad.is_transient());
        assert_eq!(
            bad.to_string(),
            "malformed manifest for shop/web:1.0.0: not JSON"
        );
    }
}
