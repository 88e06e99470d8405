//! Reading the config repo's files behind one trait, so that the same code reads a checkout on
//! disk ([`FsFiles`], `baton bump`, `baton validate`) and a fetched commit's tree (the bot;
//! `gitrepo::files::TreeFiles`). Paths are repo-relative; leaving the repo is refused here.

use std::path::{Component, Path, PathBuf};

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

/// Resolve a repo-relative path, refusing absolute paths, `..` that leaves the repo, and
/// symlinks that point outside it. The path need not exist.
pub fn resolve_in_repo(repo: &Path, rel: &str) -> Result<PathBuf, String> {
    let path = Path::new(rel);
    if path.is_absolute() {
        return Err(format!(
            "{rel:?} is absolute; paths are relative to the config repo root"
        ));
    }
    let mut depth: i32 = 0;
    for c in path.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!(
                "{rel:?} leaves the config repo; paths must stay inside it"
            ));
        }
    }
    let full = repo.join(path);
    if let (Ok(root), Ok(real)) = (repo.canonicalize(), full.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(format!(
            "{rel:?} resolves (through a symlink) to {}, outside the config repo",
            real.display()
        ));
    }
    Ok(full)
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
