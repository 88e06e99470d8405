//! Where `/api/v1/history` reads promotions from: a [`HistorySource`] the service installs
//! in the server's state. [`GitHistory`] reads the config repo's bare clone (the one the
//! engine fetches into) with its own `git2` handle, so requests never wait on the engine.

use std::path::PathBuf;

use crate::gitrepo::history::{self, Entry, Filter};

/// Why history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The clone has no config branch yet (the first fetch has not happened).
    #[error("the config branch {0:?} has not been fetched yet; try again shortly")]
    NotFetched(String),
    #[error("reading history from the config repo at {path}: {message}")]
    Git { path: String, message: String },
}

impl HistoryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NotFetched(_))
    }
}

/// Reads promotions, newest first. Called on a blocking thread.
pub trait HistorySource: Send + Sync + 'static {
    fn read(&self, filter: &Filter) -> Result<Vec<Entry>, HistoryError>;
}

impl<F> HistorySource for F
where
    F: Fn(&Filter) -> Result<Vec<Entry>, HistoryError> + Send + Sync + 'static,
{
    fn read(&self, filter: &Filter) -> Result<Vec<Entry>, HistoryError> {
        self(filter)
    }
}

/// History from a clone of the config repo: the first-parent log of
/// `refs/remotes/origin/<branch>` (as `ConfigRepo` fetches it) or, when that does not
/// exist, of the local `refs/heads/<branch>`.
#[derive(Debug, Clone)]
pub struct GitHistory {
    pub path: PathBuf,
    pub branch: String,
}

impl GitHistory {
    /// For a `ConfigRepo`: `GitHistory::new(repo.git().path(), repo.branch())`.
    pub fn new(path: impl Into<PathBuf>, branch: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            branch: branch.into(),
        }
    }
}

impl HistorySource for GitHistory {
    fn read(&self, filter: &Filter) -> Result<Vec<Entry>, HistoryError> {
        let git = |e: git2::Error| HistoryError::Git {
            path: self.path.display().to_string(),
            message: e.message().to_string(),
        };
        let repo = git2::Repository::open(&self.path).map_err(git)?;
        let start = [
            format!("refs/remotes/origin/{}", self.branch),
            format!("refs/heads/{}", self.branch),
        ]
        .iter()
        .find_map(|r| repo.refname_to_id(r).ok())
        .ok_or_else(|| HistoryError::NotFetched(self.branch.clone()))?;
        history::read(&repo, start, filter).map_err(git)
    }
}
