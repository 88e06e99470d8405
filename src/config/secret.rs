//! Secrets (tokens, keys, webhook secrets): read from an environment variable or a file,
//! held in a type that never prints its value, so that no log line or error carries it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A secret value. `Debug` and `Display` print `[redacted]`; use [`Secret::expose`] at the
/// one place the value is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the call that needs it (an Authorization header, a credential
    /// callback). Never format it into a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret comes from: exactly one of an environment variable or a file (whose
/// content, with surrounding whitespace trimmed, is the secret).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Why a secret could not be read. Names the variable or file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or empty")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
    #[error("a secret needs exactly one of env: or file:")]
    Ambiguous,
}

impl SecretRef {
    pub fn from_env(var: &str) -> Self {
        Self {
            env: Some(var.to_string()),
            file: None,
        }
    }

    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self {
            env: None,
            file: Some(path.into()),
        }
    }

    /// Read the secret now (files are re-read on every call, so rotated secrets are picked up).
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
                _ => Err(SecretError::MissingEnv(var.clone())),
            },
            (None, Some(path)) => {
                let v = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?;
                let v = v.trim();
                if v.is_empty() {
                    Err(SecretError::EmptyFile(path.clone()))
                } else {
                    Ok(Secret(v.to_string()))
                }
            }
            _ => Err(SecretError::Ambiguous),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_formats_its_value() {
        let s = Secret::new("ghp_supersecret");
        assert!(!format!("{s} {s:?} {:?}", Some(&s)).contains("supersecret"));
        assert_eq!(s.expose(), "ghp_supersecret");
    }

    #[test]
    fn file_secrets_are_trimmed_and_errors_name_the_source_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  tok-123\n").unwrap();
        assert_eq!(
            SecretRef::from_file(&path).resolve().unwrap().expose(),
            "tok-123"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            SecretRef::from_file(&path).resolve(),
            Err(SecretError::EmptyFile(_))
        ));
        let e = SecretRef::from_env("BATON_TEST_SURELY_UNSET_VAR")
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("BATON_TEST_SURELY_UNSET_VAR"));
        assert!(matches!(
            SecretRef::default().resolve(),
            Err(SecretError::Ambiguous)
        ));
    }
}
