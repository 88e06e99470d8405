//! Render errors: every one names the file (relative to the repo root), the line when the
//! problem has one, the field involved, and what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a problem is: a file relative to the repo root, and a 1-based line when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl Location {
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: None,
        }
    }

    pub fn at(file: impl Into<PathBuf>, line: usize) -> Self {
        Self {
            file: file.into(),
            line: Some(line),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = if self.file.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.file
        };
        match self.line {
            Some(line) => write!(f, "{}:{line}", file.display()),
            None => write!(f, "{}", file.display()),
        }
    }
}

/// Why a tree could not be rendered. Apart from interrupted reads ([`RenderError::is_transient`])
/// these are permanent: the same input fails the same way, so callers report them (on the PR,
/// on stderr) rather than retry.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A file could not be read.
    #[error("{at}: cannot read {}: {source}", path.display())]
    Io {
        at: Location,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file is not valid YAML.
    #[error("{at}: invalid YAML: {message}")]
    Yaml { at: Location, message: String },

    /// A kustomization field has a value kustomize would reject.
    #[error("{at}: `{field}`: {message}")]
    InvalidField {
        at: Location,
        field: String,
        message: String,
    },

    /// A kustomization field that baton's renderer does not implement.
    #[error(
        "{at}: `{field}` is not supported by baton's renderer ({why}); remove it or render this tree with kustomize itself (supported fields: docs/render.md)"
    )]
    Unsupported {
        at: Location,
        field: String,
        why: String,
    },

    /// A path that resolves outside the config repo, or outside the kustomization directory
    /// for a file (kustomize's root-only load restriction).
    #[error("{at}: `{field}` entry {path:?} {why}")]
    PathRefused {
        at: Location,
        field: String,
        path: String,
        why: String,
    },

    /// A referenced file or directory does not exist or is not what the field expects.
    #[error("{at}: `{field}` entry {path:?}: {message}")]
    BadReference {
        at: Location,
        field: String,
        path: String,
        message: String,
    },

    /// A resource, patch or generator could not be applied.
    #[error("{at}: {message}")]
    Build { at: Location, message: String },
}

impl RenderError {
    /// The location the error points at.
    pub fn location(&self) -> &Location {
        match self {
            RenderError::Io { at, .. }
            | RenderError::Yaml { at, .. }
            | RenderError::InvalidField { at, .. }
            | RenderError::Unsupported { at, .. }
            | RenderError::PathRefused { at, .. }
            | RenderError::BadReference { at, .. }
            | RenderError::Build { at, .. } => at,
        }
    }

    /// Worth retrying? Only an interrupted or timed-out read; everything else is a property of
    /// the tree and fails the same way next time (report it on the PR instead).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RenderError::Io { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut)
        )
    }

    pub(crate) fn build(at: Location, message: impl Into<String>) -> Self {
        RenderError::Build {
            at,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(
        at: Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        RenderError::InvalidField {
            at,
            field: field.into(),
            message: message.into(),
        }
    }
}
