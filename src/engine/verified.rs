//! Where bot commits are made. With a token they are made with git2 and force-pushed (signed
//! with the SSH key `repo.signingKey` names, when there is one: `gitrepo::sign`). Under GitHub App auth they are
//! made through GitHub's Git data API (`Forge::create_commit`): GitHub signs what its API makes
//! for an App, so promotion and rollback commits show as verified and pass
//! `required_signatures`. The message, and so the trailers and `baton history`, are the same
//! either way.

use super::{Engine, EngineError};
use crate::forge::Forge;
use crate::gitrepo::bump::{BumpError, FileChange};
use crate::gitrepo::files::TreeFiles;
use crate::gitrepo::repo::{GitError, Prepared, Pushed};

/// What a branch's new content is, from the files at the config branch tip.
pub(super) type Edit<'a> =
    dyn FnMut(&TreeFiles<'_>) -> Result<Vec<FileChange>, BumpError> + Send + 'a;

impl<F: Forge> Engine<F> {
    /// Point the bot-owned `branch` at a commit of `edit`'s changes on the config branch tip
    /// (nothing when it already has them), made by the forge when it vouches for its commits.
    pub(super) async fn publish_branch(
        &self,
        branch: &str,
        message: &str,
        edit: &mut Edit<'_>,
    ) -> Result<Pushed, EngineError> {
        if !self.forge.makes_verified_commits() {
            return Ok(tokio::task::block_in_place(|| {
                self.repo().publish_branch(branch, message, edit)
            })?);
        }
        let prepared = tokio::task::block_in_place(|| self.repo().prepare_branch(branch, edit))?;
        let (base, base_tree, changes) = match prepared {
            Prepared::Unchanged { tip } => return Ok(Pushed::Unchanged { tip }),
            Prepared::Commit {
                base,
                base_tree,
                changes,
            } => (base, base_tree, changes),
        };
        let files: Vec<(String, String)> = changes
            .iter()
            .filter(|c| !c.is_noop())
            .map(|c| (c.path.clone(), c.after.clone()))
            .collect();
        let sha = self
            .forge
            .create_commit(
                branch,
                &base.to_string(),
                &base_tree.to_string(),
                message,
                &files,
            )
            .await?;
        let commit = git2::Oid::from_str(&sha).map_err(|e| GitError::Git {
            op: "read",
            message: format!("GitHub answered a commit sha that is not one ({sha}): {e}"),
            transient: false,
        })?;
        // The engine reads the new head (the rendered diff): fetch it.
        tokio::task::block_in_place(|| self.repo().fetch())?;
        Ok(Pushed::Committed {
            commit,
            attempts: 1,
        })
    }

    /// Put a commit with `message` and no file changed on top of the bot-owned `branch`, whose
    /// head is `head`: with git2 (signed when there is a key) or, under App auth, through the
    /// Git data API. Returns the new head.
    pub(super) async fn publish_record(
        &self,
        branch: &str,
        head: git2::Oid,
        message: &str,
    ) -> Result<git2::Oid, EngineError> {
        if !self.forge.makes_verified_commits() {
            return Ok(tokio::task::block_in_place(|| {
                self.repo().push_record(branch, head, message)
            })?);
        }
        let tree = tokio::task::block_in_place(|| self.repo().tree_of(head))?;
        let sha = self
            .forge
            .create_commit(branch, &head.to_string(), &tree.to_string(), message, &[])
            .await?;
        tokio::task::block_in_place(|| self.repo().fetch())?;
        Ok(git2::Oid::from_str(&sha).map_err(|e| GitError::Git {
            op: "read",
            message: format!("GitHub answered a commit sha that is not one ({sha}): {e}"),
            transient: false,
        })?)
    }
}
