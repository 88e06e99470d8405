//! The config repo's files in a commit's tree ([`TreeFiles`]), behind the [`Files`] trait that
//! `config::files` defines for a checkout on disk too, so that a bump is planned the same way by
//! `baton bump` (a checkout) and by the bot (a fetched commit, no working tree).

use std::path::Path;

pub use crate::config::files::{Files, FsFiles, normalize};

/// Files of a commit's tree in a git2 repository.
pub struct TreeFiles<'r> {
    pub repo: &'r git2::Repository,
    pub tree: git2::Tree<'r>,
}

impl Files for TreeFiles<'_> {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        let norm = normalize(path)?;
        let entry = match self.tree.get_path(Path::new(&norm)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {norm}: {}", e.message())),
        };
        if entry.filemode() == 0o120000 {
            return Err(format!(
                "{norm} is a symlink; baton does not follow symlinks in the config repo"
            ));
        }
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Ok(None);
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| format!("cannot read {norm}: {}", e.message()))?;
        String::from_utf8(blob.content().to_vec())
            .map(Some)
            .map_err(|_| format!("{norm} is not UTF-8 text"))
    }

    fn is_dir(&self, path: &str) -> bool {
        let Ok(norm) = normalize(path) else {
            return false;
        };
        if norm.is_empty() {
            return true;
        }
        self.tree
            .get_path(Path::new(&norm))
            .is_ok_and(|e| e.kind() == Some(git2::ObjectType::Tree))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        let norm = normalize(path)?;
        let tree = if norm.is_empty() {
            self.tree.clone()
        } else {
            match self.tree.get_path(Path::new(&norm)) {
                Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => self
                    .repo
                    .find_tree(e.id())
                    .map_err(|e| format!("cannot list {norm}: {}", e.message()))?,
                _ => return Ok(Vec::new()),
            }
        };
        let mut out: Vec<String> = tree
            .iter()
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob) && e.filemode() != 0o120000)
            .filter_map(|e| {
                e.name().ok().map(|n| {
                    if norm.is_empty() {
                        n.to_string()
                    } else {
                        format!("{norm}/{n}")
                    }
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
