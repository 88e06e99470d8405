//! Reading the config repo's files either from a checkout on disk or from a commit's tree,
//! behind one trait, so that a bump is planned the same way by `baton bump` (a checkout)
//! and by the bot (a fetched commit, no working tree).

use std::path::{Component, Path};

use crate::config::validate::resolve_in_repo;

/// Read-only access to the files of one revision of the config repo. Paths are
/// repo-relative with `/` separators; paths leaving the repo are refused.
pub trait Files {
    /// The file's text, `Ok(None)` when it does not exist.
    fn read(&self, path: &str) -> Result<Option<String>, String>;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &str) -> bool;
    /// Repo-relative paths of the files directly in directory `path`, sorted; empty when it
    /// does not exist.
    fn list(&self, path: &str) -> Result<Vec<String>, String>;
}

/// Files of a checkout on disk.
pub struct FsFiles<'a>(pub &'a Path);

impl Files for FsFiles<'_> {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        let full = resolve_in_repo(self.0, path)?;
        match std::fs::read_to_string(&full) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {path}: {e}")),
        }
    }

    fn is_dir(&self, path: &str) -> bool {
        resolve_in_repo(self.0, path).is_ok_and(|p| p.is_dir())
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        let norm = normalize(path)?;
        let dir = resolve_in_repo(self.0, &norm)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                e.file_name().to_str().map(|n| {
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

/// Files of a commit's tree in a git2 repository.
pub struct TreeFiles<'r> {
    pub repo: &'r git2::Repository,
    pub tree: git2::Tree<'r>,
}

/// Normalise a repo-relative path: drop `.`, resolve `..`, refuse leaving the root.
pub fn normalize(path: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => {
                parts.push(s.to_str().ok_or_else(|| format!("{path:?} is not UTF-8"))?)
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "{path:?} leaves the config repo; paths must stay inside it"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{path:?} is absolute; paths are relative to the config repo root"
                ));
            }
        }
    }
    Ok(parts.join("/"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_and_refuses_escapes() {
        assert_eq!(
            normalize("environments/dev/../prod/./k.yaml").unwrap(),
            "environments/prod/k.yaml"
        );
        assert!(normalize("../x").is_err());
        assert!(normalize("a/../../x").is_err());
        assert!(normalize("/etc/passwd").is_err());
    }
}
