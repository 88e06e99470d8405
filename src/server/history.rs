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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitrepo::trailers::Promotion;

    fn commit(repo: &git2::Repository, refname: &str, message: &str) -> git2::Oid {
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let parent = repo
            .refname_to_id(refname)
            .ok()
            .map(|id| repo.find_commit(id).unwrap());
        repo.commit(
            Some(refname),
            &sig,
            &sig,
            message,
            &tree,
            &parent.iter().collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn promotion(env: &str, n: u64) -> String {
        let p = Promotion {
            app: "web".into(),
            environment: env.into(),
            from: None,
            to: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
            tag: Some(format!("1.{n}.0")),
            approved_by: vec![],
            promoted_by: None,
            pull_request: Some(n),
            rollback_of: None,
        };
        format!("Promote web to {env}\n\n{}", p.trailer_block())
    }

    #[test]
    fn git_history_reads_the_fetched_config_branch_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let source = GitHistory::new(dir.path(), "main");
        assert!(matches!(
            source.read(&Filter::default()),
            Err(HistoryError::NotFetched(b)) if b == "main"
        ));
        let branch = "refs/remotes/origin/main";
        commit(&repo, branch, "initial");
        commit(&repo, branch, &promotion("dev", 1));
        commit(&repo, branch, "unrelated");
        commit(&repo, branch, &promotion("prod", 2));
        commit(&repo, branch, &promotion("dev", 3));
        let all = source.read(&Filter::default()).unwrap();
        let prs: Vec<_> = all.iter().map(|e| e.promotion.pull_request).collect();
        assert_eq!(prs, [Some(3), Some(2), Some(1)]);
        let dev = source
            .read(&Filter {
                environment: Some("dev".into()),
                limit: Some(1),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(dev.len(), 1);
        assert_eq!(dev[0].promotion.tag.as_deref(), Some("1.3.0"));
    }
}
