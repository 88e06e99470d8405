//! What the forge does to its bare repositories with git2: resolve refs, test and perform
//! merges (merge commit or squash), seed content, and describe pushed commits.

use std::path::Path;

use git2::{Oid, Repository, Signature};

#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
    #[error("merge conflict")]
    Conflict,
    #[error("base branch moved during the merge")]
    BaseMoved,
    #[error(transparent)]
    Git(#[from] git2::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Merge,
    Squash,
}

pub(crate) fn open(path: &Path) -> Result<Repository, git2::Error> {
    Repository::open_bare(path)
}

/// The commit a branch points at.
pub(crate) fn branch_sha(path: &Path, branch: &str) -> Option<String> {
    let repo = open(path).ok()?;
    repo.refname_to_id(&format!("refs/heads/{branch}"))
        .ok()
        .map(|o| o.to_string())
}

/// A full SHA, branch, tag or other revision resolved to a commit SHA.
pub(crate) fn resolve_commit(path: &Path, rev: &str) -> Option<String> {
    let repo = open(path).ok()?;
    for candidate in [
        format!("refs/heads/{rev}"),
        format!("refs/tags/{rev}"),
        rev.to_owned(),
    ] {
        if let Ok(obj) = repo.revparse_single(&candidate)
            && let Ok(commit) = obj.peel_to_commit()
        {
            return Some(commit.id().to_string());
        }
    }
    None
}

/// A commit as `GET /repos/{owner}/{repo}/commits/{ref}` describes it.
#[derive(Debug, Clone)]
pub(crate) struct CommitInfo {
    pub sha: String,
    pub message: String,
    pub tree: String,
    pub parents: Vec<String>,
    /// (name, email, time) of the author and the committer.
    pub author: (String, String, chrono::DateTime<chrono::Utc>),
    pub committer: (String, String, chrono::DateTime<chrono::Utc>),
}

/// Read one commit.
pub(crate) fn commit_info(path: &Path, sha: &str) -> Option<CommitInfo> {
    let repo = open(path).ok()?;
    let commit = repo.find_commit(Oid::from_str(sha).ok()?).ok()?;
    let person = |s: Signature<'_>| {
        (
            s.name().unwrap_or_default().to_owned(),
            s.email().unwrap_or_default().to_owned(),
            chrono::DateTime::from_timestamp(s.when().seconds(), 0).unwrap_or_default(),
        )
    };
    Some(CommitInfo {
        sha: commit.id().to_string(),
        message: commit.message().unwrap_or_default().to_owned(),
        tree: commit.tree_id().to_string(),
        parents: commit.parent_ids().map(|p| p.to_string()).collect(),
        author: person(commit.author()),
        committer: person(commit.committer()),
    })
}

/// Point `refs/pull/<number>/head` at a pull's head commit, as GitHub does for every pull, so
/// that clients can fetch a pull's head without knowing its branch.
pub(crate) fn set_pull_head(path: &Path, number: u64, sha: &str) -> Result<(), git2::Error> {
    let repo = open(path)?;
    repo.reference(
        &format!("refs/pull/{number}/head"),
        Oid::from_str(sha)?,
        true,
        "pull head",
    )?;
    Ok(())
}

/// Whether `sha` names an existing commit.
pub(crate) fn commit_exists(path: &Path, sha: &str) -> bool {
    let Ok(repo) = open(path) else { return false };
    Oid::from_str(sha)
        .ok()
        .and_then(|oid| repo.find_commit(oid).ok())
        .is_some()
}

/// Does `ancestor` lie in the history of `descendant` (or equal it)?
pub(crate) fn is_ancestor(path: &Path, ancestor: &str, descendant: &str) -> bool {
    let Ok(repo) = open(path) else { return false };
    let (Ok(a), Ok(d)) = (Oid::from_str(ancestor), Oid::from_str(descendant)) else {
        return false;
    };
    a == d || repo.graph_descendant_of(d, a).unwrap_or(false)
}

/// Would merging `head` into `base` be free of conflicts?
pub(crate) fn mergeable(path: &Path, base: &str, head: &str) -> Result<bool, git2::Error> {
    let repo = open(path)?;
    let base = repo.find_commit(Oid::from_str(base)?)?;
    let head = repo.find_commit(Oid::from_str(head)?)?;
    let index = repo.merge_commits(&base, &head, None)?;
    Ok(!index.has_conflicts())
}

/// Merge `head` into branch `base`, moving the branch only if it still points at `base_sha`.
/// Returns the new commit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn merge(
    path: &Path,
    base_branch: &str,
    base_sha: &str,
    head_sha: &str,
    method: Method,
    message: &str,
    author: &Signature<'_>,
    committer: &Signature<'_>,
) -> Result<String, MergeError> {
    let repo = open(path)?;
    let base_oid = Oid::from_str(base_sha)?;
    let base = repo.find_commit(base_oid)?;
    let head = repo.find_commit(Oid::from_str(head_sha)?)?;
    let mut index = repo.merge_commits(&base, &head, None)?;
    if index.has_conflicts() {
        return Err(MergeError::Conflict);
    }
    let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
    let parents: Vec<&git2::Commit<'_>> = match method {
        Method::Merge => vec![&base, &head],
        Method::Squash => vec![&base],
    };
    let oid = repo.commit(None, author, committer, message, &tree, &parents)?;
    let refname = format!("refs/heads/{base_branch}");
    repo.reference_matching(&refname, oid, true, base_oid, "merge pull request")
        .map_err(|e| {
            if e.code() == git2::ErrorCode::Modified {
                MergeError::BaseMoved
            } else {
                MergeError::Git(e)
            }
        })?;
    Ok(oid.to_string())
}

/// How a merge queue lands a pull request: like [`Method`], plus rebase (the pull's commits
/// replayed one by one onto the base, each keeping its message and author).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueMethod {
    Merge,
    Squash,
    Rebase,
}

/// Build a merge group: `head` landed on `base_sha` with `method`, as commits that no branch
/// points at yet. Returns the group's head commit; the caller points a ref at it.
pub(crate) fn build_group(
    path: &Path,
    base_sha: &str,
    head_sha: &str,
    method: QueueMethod,
    message: &str,
    author: &Signature<'_>,
    committer: &Signature<'_>,
) -> Result<String, MergeError> {
    let repo = open(path)?;
    let base = repo.find_commit(Oid::from_str(base_sha)?)?;
    let head = repo.find_commit(Oid::from_str(head_sha)?)?;
    if method == QueueMethod::Rebase {
        // The pull's own commits, oldest first, each cherry-picked onto the previous one.
        let mut walk = repo.revwalk()?;
        walk.push(head.id())?;
        walk.hide(base.id())?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        let mut tip = base;
        for oid in walk {
            let commit = repo.find_commit(oid?)?;
            if commit.parent_count() > 1 {
                continue;
            }
            let mut index = repo.cherrypick_commit(&commit, &tip, 0, None)?;
            if index.has_conflicts() {
                return Err(MergeError::Conflict);
            }
            let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
            let msg = String::from_utf8_lossy(commit.message_bytes()).into_owned();
            let oid = repo.commit(None, &commit.author(), committer, &msg, &tree, &[&tip])?;
            tip = repo.find_commit(oid)?;
        }
        return Ok(tip.id().to_string());
    }
    let mut index = repo.merge_commits(&base, &head, None)?;
    if index.has_conflicts() {
        return Err(MergeError::Conflict);
    }
    let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
    let parents: Vec<&git2::Commit<'_>> = match method {
        QueueMethod::Merge => vec![&base, &head],
        _ => vec![&base],
    };
    Ok(repo
        .commit(None, author, committer, message, &tree, &parents)?
        .to_string())
}

/// Point `refname` at `sha` (creating or moving it).
pub(crate) fn set_ref(path: &Path, refname: &str, sha: &str, log: &str) -> Result<(), git2::Error> {
    open(path)?.reference(refname, Oid::from_str(sha)?, true, log)?;
    Ok(())
}

/// Fast-forward branch `base` from `from` to `to`; `BaseMoved` when it no longer points at
/// `from`.
pub(crate) fn fast_forward(
    path: &Path,
    base: &str,
    from: &str,
    to: &str,
) -> Result<(), MergeError> {
    let repo = open(path)?;
    repo.reference_matching(
        &format!("refs/heads/{base}"),
        Oid::from_str(to)?,
        true,
        Oid::from_str(from)?,
        "merge queue",
    )
    .map_err(|e| {
        if e.code() == git2::ErrorCode::Modified {
            MergeError::BaseMoved
        } else {
            MergeError::Git(e)
        }
    })?;
    Ok(())
}

/// Commit `files` on top of `branch` (creating it when missing) directly in the bare repo.
pub(crate) fn commit_files(
    path: &Path,
    branch: &str,
    files: &[(&str, &str)],
    message: &str,
) -> Result<String, git2::Error> {
    let repo = open(path)?;
    let refname = format!("refs/heads/{branch}");
    let parent = repo
        .refname_to_id(&refname)
        .ok()
        .and_then(|o| repo.find_commit(o).ok());
    let mut builder = git2::build::TreeUpdateBuilder::new();
    for (file, content) in files {
        let blob = repo.blob(content.as_bytes())?;
        builder.upsert(*file, blob, git2::FileMode::Blob);
    }
    let base_tree = match &parent {
        Some(p) => p.tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let tree = repo.find_tree(builder.create_updated(&repo, &base_tree)?)?;
    let sig = Signature::now("Sim Seed", "seed@sim.invalid")?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let oid = repo.commit(Some(&refname), &sig, &sig, message, &tree, &parents)?;
    Ok(oid.to_string())
}

/// A commit as a push event lists it.
#[derive(Debug, Clone)]
pub(crate) struct PushedCommit {
    pub id: String,
    pub tree_id: String,
    pub message: String,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub author: (String, String),
    pub committer: (String, String),
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

/// Commits reachable from `new` but not from `old` (oldest first, at most 20, as GitHub).
pub(crate) fn pushed_commits(path: &Path, old: Option<&str>, new: &str) -> Vec<PushedCommit> {
    let Ok(repo) = open(path) else {
        return Vec::new();
    };
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    let Ok(new) = Oid::from_str(new) else {
        return Vec::new();
    };
    if walk.push(new).is_err() {
        return Vec::new();
    }
    if let Some(old) = old.and_then(|o| Oid::from_str(o).ok()) {
        let _ = walk.hide(old);
    }
    let _ = walk.set_sorting(git2::Sort::TOPOLOGICAL);
    let mut out: Vec<PushedCommit> = walk
        .flatten()
        .take(20)
        .filter_map(|oid| describe(&repo, oid))
        .collect();
    out.reverse();
    out
}

fn describe(repo: &Repository, oid: Oid) -> Option<PushedCommit> {
    let commit = repo.find_commit(oid).ok()?;
    let tree = commit.tree().ok()?;
    let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let (mut added, mut removed, mut modified) = (Vec::new(), Vec::new(), Vec::new());
    if let Ok(diff) = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None) {
        for delta in diff.deltas() {
            let file = delta
                .new_file()
                .path()
                .or_else(|| delta.old_file().path())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            match delta.status() {
                git2::Delta::Added => added.push(file),
                git2::Delta::Deleted => removed.push(file),
                _ => modified.push(file),
            }
        }
    }
    let who = |s: git2::Signature<'_>| {
        (
            String::from_utf8_lossy(s.name_bytes()).into_owned(),
            String::from_utf8_lossy(s.email_bytes()).into_owned(),
        )
    };
    let timestamp =
        chrono::DateTime::from_timestamp(commit.time().seconds(), 0).unwrap_or_default();
    Some(PushedCommit {
        id: oid.to_string(),
        tree_id: tree.id().to_string(),
        message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
        timestamp,
        author: who(commit.author()),
        committer: who(commit.committer()),
        added,
        removed,
        modified,
    })
}

/// Delete a ref; returns the commit it pointed at.
pub(crate) fn delete_ref(path: &Path, refname: &str) -> Option<String> {
    let repo = open(path).ok()?;
    let mut r = repo.find_reference(refname).ok()?;
    let old = r.target()?.to_string();
    r.delete().ok()?;
    Some(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_squash_has_one_parent_and_a_merge_two_and_the_branch_moves() {
        let tmp = tempfile::tempdir().unwrap();
        let path = crate::git::init_bare(tmp.path(), "o", "r", "main").unwrap();
        let base = commit_files(&path, "main", &[("a", "1\n")], "base").unwrap();
        let repo = open(&path).unwrap();
        repo.reference(
            "refs/heads/feature",
            Oid::from_str(&base).unwrap(),
            false,
            "",
        )
        .unwrap();
        let head = commit_files(&path, "feature", &[("b", "2\n")], "feature").unwrap();
        assert!(mergeable(&path, &base, &head).unwrap());
        let sig = Signature::now("t", "t@x").unwrap();

        let merged = merge(&path, "main", &base, &head, Method::Merge, "m", &sig, &sig).unwrap();
        let c = repo.find_commit(Oid::from_str(&merged).unwrap()).unwrap();
        assert_eq!(c.parent_count(), 2);
        assert_eq!(branch_sha(&path, "main").unwrap(), merged);

        // A stale base SHA refuses to move the branch.
        let err = merge(&path, "main", &base, &head, Method::Squash, "s", &sig, &sig).unwrap_err();
        assert!(matches!(err, MergeError::BaseMoved), "{err:?}");

        let squashed = merge(
            &path,
            "main",
            &merged,
            &head,
            Method::Squash,
            "s",
            &sig,
            &sig,
        )
        .unwrap();
        let c = repo.find_commit(Oid::from_str(&squashed).unwrap()).unwrap();
        assert_eq!(c.parent_count(), 1);
    }

    #[test]
    fn conflicting_edits_are_not_mergeable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = crate::git::init_bare(tmp.path(), "o", "r", "main").unwrap();
        let base = commit_files(&path, "main", &[("a", "1\n")], "base").unwrap();
        let repo = open(&path).unwrap();
        repo.reference(
            "refs/heads/feature",
            Oid::from_str(&base).unwrap(),
            false,
            "",
        )
        .unwrap();
        let head = commit_files(&path, "feature", &[("a", "2\n")], "ours").unwrap();
        let moved = commit_files(&path, "main", &[("a", "3\n")], "theirs").unwrap();
        assert!(!mergeable(&path, &moved, &head).unwrap());
        let pushed = pushed_commits(&path, Some(&base), &head);
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].modified, vec!["a".to_owned()]);
    }
}
