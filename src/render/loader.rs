//! File access for a build, with the path rules kustomize enforces plus baton's own.
//!
//! - Nothing may resolve outside the config repo: `../` past the root and symlinks pointing out
//!   are refused (DESIGN.md: "Kustomize paths that leave the repo root are refused").
//! - Files (resource files, patches, generator sources) must lie in or below the directory of
//!   the kustomization that names them — kustomize's default root-only load restriction.
//!   Directories (bases, components) may be anywhere inside the repo.
//!
//! Symlinks are resolved before either check, so a link cannot smuggle a path past them.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use super::error::{Location, RenderError};

/// A path after resolution.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Canonical absolute path.
    pub abs: PathBuf,
    /// Relative to the repo root, for messages.
    pub rel: PathBuf,
    pub is_dir: bool,
}

pub struct Loader {
    root: PathBuf,
    cache: HashMap<PathBuf, std::sync::Arc<str>>,
}

fn looks_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || s.starts_with("gitlab.com/")
        || s.starts_with("bitbucket.org/")
        || s.contains("?ref=")
}

impl Loader {
    /// `root` must be an existing directory.
    pub fn new(root: &Path) -> Result<Self, RenderError> {
        let root = root.canonicalize().map_err(|source| RenderError::Io {
            at: Location::file(root),
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Loader {
            root,
            cache: HashMap::new(),
        })
    }

    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path relative to the repo root (for messages); `abs` must be inside it.
    pub fn rel(&self, abs: &Path) -> PathBuf {
        abs.strip_prefix(&self.root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| abs.to_path_buf())
    }

    /// Resolve a directory given to `render` (absolute, or relative to the repo root).
    pub fn resolve_entry(&self, dir: &Path) -> Result<Resolved, RenderError> {
        let joined = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            self.root.join(dir)
        };
        let shown = dir.display().to_string();
        let abs = joined.canonicalize().map_err(|source| RenderError::Io {
            at: Location::file(dir),
            path: dir.to_path_buf(),
            source,
        })?;
        if !abs.starts_with(&self.root) {
            return Err(RenderError::PathRefused {
                at: Location::file(dir),
                field: "render".into(),
                path: shown,
                why: "resolves outside the config repo; render a directory inside --repo".into(),
            });
        }
        let rel = self.rel(&abs);
        Ok(Resolved {
            is_dir: abs.is_dir(),
            abs,
            rel,
        })
    }

    /// Resolve `entry`, written in `field` of the kustomization in directory `dir`
    /// (canonical), at location `at`. `dirs_allowed`: directories are acceptable (resources,
    /// components); otherwise only files are.
    pub fn resolve(
        &self,
        dir: &Path,
        entry: &str,
        at: &Location,
        field: &str,
        dirs_allowed: bool,
    ) -> Result<Resolved, RenderError> {
        let refused = |why: String| RenderError::PathRefused {
            at: at.clone(),
            field: field.to_string(),
            path: entry.to_string(),
            why,
        };
        let joined = dir.join(entry);
        // Check the lexical path first so that `../../..` is refused even when it exists.
        let lexical = normalize(&joined);
        if !lexical.starts_with(&self.root) {
            return Err(refused(
                "resolves outside the config repo; keep every path inside the repo".into(),
            ));
        }
        let abs = match joined.canonicalize() {
            Ok(p) => p,
            Err(e) => {
                if looks_remote(entry) {
                    return Err(RenderError::Unsupported {
                        at: at.clone(),
                        field: format!("{field} (remote {entry:?})"),
                        why: "remote resources are not fetched; vendor them into the repo".into(),
                    });
                }
                let message = if e.kind() == std::io::ErrorKind::NotFound {
                    if lexical.symlink_metadata().is_ok() {
                        "is a broken symlink".to_string()
                    } else {
                        "no such file or directory".to_string()
                    }
                } else {
                    e.to_string()
                };
                return Err(RenderError::BadReference {
                    at: at.clone(),
                    field: field.to_string(),
                    path: entry.to_string(),
                    message,
                });
            }
        };
        if !abs.starts_with(&self.root) {
            return Err(refused(format!(
                "resolves (through a symlink) to {}, outside the config repo",
                abs.display()
            )));
        }
        let is_dir = abs.is_dir();
        if is_dir && !dirs_allowed {
            return Err(RenderError::BadReference {
                at: at.clone(),
                field: field.to_string(),
                path: entry.to_string(),
                message: "is a directory; this field takes a file".into(),
            });
        }
        if !is_dir && !abs.starts_with(dir) {
            return Err(refused(format!(
                "is not in or below {} (kustomize's root-only load restriction: a file must live \
                 under the kustomization that uses it; reference its directory as a resource instead)",
                self.rel(dir).display()
            )));
        }
        let rel = self.rel(&abs);
        Ok(Resolved { abs, rel, is_dir })
    }

    /// Read a file as UTF-8 text (cached: bases shared by several overlays are read once).
    pub fn read_text(
        &mut self,
        r: &Resolved,
        at: &Location,
    ) -> Result<std::sync::Arc<str>, RenderError> {
        if let Some(t) = self.cache.get(&r.abs) {
            return Ok(t.clone());
        }
        let bytes = std::fs::read(&r.abs).map_err(|source| RenderError::Io {
            at: at.clone(),
            path: r.rel.clone(),
            source,
        })?;
        let text: std::sync::Arc<str> = String::from_utf8(bytes)
            .map_err(|_| RenderError::build(Location::file(&r.rel), "file is not valid UTF-8"))?
            .into();
        self.cache.insert(r.abs.clone(), text.clone());
        Ok(text)
    }

    /// Read a file's bytes (generator sources may be binary).
    pub fn read_bytes(&self, r: &Resolved, at: &Location) -> Result<Vec<u8>, RenderError> {
        std::fs::read(&r.abs).map_err(|source| RenderError::Io {
            at: at.clone(),
            path: r.rel.clone(),
            source,
        })
    }

    /// Find the kustomization file of a directory.
    pub fn kustomization_file(&self, dir: &Resolved) -> Result<Option<Resolved>, RenderError> {
        let mut found: Vec<PathBuf> = Vec::new();
        for name in super::kustomization::FILE_NAMES {
            let p = dir.abs.join(name);
            if p.is_file() {
                found.push(p);
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => {
                let abs = found
                    .remove(0)
                    .canonicalize()
                    .map_err(|source| RenderError::Io {
                        at: Location::file(&dir.rel),
                        path: dir.rel.clone(),
                        source,
                    })?;
                if !abs.starts_with(&self.root) {
                    return Err(RenderError::PathRefused {
                        at: Location::file(&dir.rel),
                        field: "kustomization".into(),
                        path: dir.rel.join("kustomization.yaml").display().to_string(),
                        why: "is a symlink out of the config repo".into(),
                    });
                }
                let rel = self.rel(&abs);
                Ok(Some(Resolved {
                    abs,
                    rel,
                    is_dir: false,
                }))
            }
            _ => Err(RenderError::build(
                Location::file(&dir.rel),
                "found several kustomization files (kustomization.yaml, kustomization.yml, Kustomization); keep one",
            )),
        }
    }
}

/// Remove `.` and resolve `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Loader) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("base")).unwrap();
        std::fs::create_dir_all(repo.join("env")).unwrap();
        std::fs::write(repo.join("base/cm.yaml"), "a: 1\n").unwrap();
        std::fs::write(repo.join("env/p.yaml"), "a: 1\n").unwrap();
        std::fs::write(tmp.path().join("secret.yaml"), "a: 1\n").unwrap();
        let loader = Loader::new(&repo).unwrap();
        (tmp, loader)
    }

    #[test]
    fn paths_past_the_repo_root_are_refused() {
        let (_tmp, l) = setup();
        let env = l.root().join("env");
        let at = Location::at("env/kustomization.yaml", 2);
        let err = l
            .resolve(&env, "../../secret.yaml", &at, "resources", true)
            .unwrap_err();
        assert!(matches!(err, RenderError::PathRefused { .. }), "{err}");
        assert!(err.to_string().contains("outside the config repo"));
    }

    #[test]
    fn files_outside_the_kustomization_directory_are_refused() {
        let (_tmp, l) = setup();
        let env = l.root().join("env");
        let at = Location::at("env/kustomization.yaml", 2);
        let err = l
            .resolve(&env, "../base/cm.yaml", &at, "resources", true)
            .unwrap_err();
        assert!(err.to_string().contains("root-only"), "{err}");
        let ok = l.resolve(&env, "../base", &at, "resources", true).unwrap();
        assert!(ok.is_dir);
        assert_eq!(ok.rel, Path::new("base"));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_pointing_out_of_the_repo_are_refused() {
        let (tmp, l) = setup();
        let env = l.root().join("env");
        std::os::unix::fs::symlink(tmp.path().join("secret.yaml"), env.join("link.yaml")).unwrap();
        let at = Location::at("env/kustomization.yaml", 2);
        let err = l
            .resolve(&env, "link.yaml", &at, "resources", true)
            .unwrap_err();
        assert!(err.to_string().contains("through a symlink"), "{err}");
    }

    #[test]
    fn remote_resources_are_unsupported() {
        let (_tmp, l) = setup();
        let env = l.root().join("env");
        let at = Location::at("env/kustomization.yaml", 2);
        let err = l
            .resolve(
                &env,
                "https://github.com/x/y//base?ref=v1",
                &at,
                "resources",
                true,
            )
            .unwrap_err();
        assert!(matches!(err, RenderError::Unsupported { .. }), "{err}");
    }
}
