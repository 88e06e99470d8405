//! A digest bump planned against the files of a config-repo checkout: which file changes and
//! how. Planning reads; [`FileChange::write`] writes atomically (temp file + rename), so a
//! failed write never leaves a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::edit::{self, EditError, ImagePin};
use crate::config::pipeline::{App, Environment, PinFormat, Pipeline};
use crate::config::validate::{KUSTOMIZATION_FILES, resolve_in_repo};
use crate::image::Pinned;

/// Why a bump could not be planned or written.
#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    /// The environment is not in the pipeline.
    #[error("unknown environment {name:?}; the pipeline defines: {known}")]
    UnknownEnvironment { name: String, known: String },
    /// The app is not in the pipeline.
    #[error("unknown app {name:?}; the pipeline defines: {known}")]
    UnknownApp { name: String, known: String },
    /// A path in the pipeline leaves the repo or does not exist.
    #[error("environment {env}: {message}")]
    Path { env: String, message: String },
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The edit itself failed.
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// One file's before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the repo root, `/`-separated.
    pub path: String,
    pub before: String,
    pub after: String,
}

impl FileChange {
    pub fn is_noop(&self) -> bool {
        self.before == self.after
    }

    /// A unified diff with `a/` and `b/` headers, empty when nothing changes.
    pub fn unified_diff(&self) -> String {
        if self.is_noop() {
            return String::new();
        }
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{}", self.path), &format!("b/{}", self.path))
            .to_string()
    }

    /// Write the new text under `repo`: to a temp file in the same directory, then renamed
    /// over the original, keeping its permissions.
    pub fn write(&self, repo: &Path) -> Result<(), BumpError> {
        let path = repo.join(&self.path);
        let io = |source| BumpError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(repo);
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(self.after.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        if let Ok(meta) = std::fs::metadata(&path) {
            tmp.as_file()
                .set_permissions(meta.permissions())
                .map_err(io)?;
        }
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// The image name an environment pulls an app from: the app's image, or its copy under
/// `copyTo` (`<copyTo>/<last path segment>`).
pub fn pulled_name(env: &Environment, app: &App) -> Option<String> {
    env.copy_to.as_ref().map(|prefix| {
        let last = app.image.rsplit('/').next().unwrap_or(&app.image);
        format!("{}/{last}", prefix.trim_end_matches('/'))
    })
}

/// Plan pinning `app` to `pinned` in `env`, reading files under `repo`.
pub fn plan(
    repo: &Path,
    pipeline: &Pipeline,
    env: &str,
    app: &str,
    pinned: &Pinned,
) -> Result<FileChange, BumpError> {
    let environment = pipeline
        .environment(env)
        .ok_or_else(|| BumpError::UnknownEnvironment {
            name: env.to_string(),
            known: pipeline.environment_names().join(", "),
        })?;
    let app_cfg = pipeline.app(app).ok_or_else(|| BumpError::UnknownApp {
        name: app.to_string(),
        known: pipeline.app_names().join(", "),
    })?;
    let env_dir = environment.path();
    let path_err = |message: String| BumpError::Path {
        env: env.to_string(),
        message,
    };
    let rel = match &app_cfg.pin.file {
        Some(file) => env_dir.join(file),
        None => {
            let dir = resolve_in_repo(repo, &env_dir.to_string_lossy()).map_err(path_err)?;
            let name = KUSTOMIZATION_FILES
                .iter()
                .find(|f| dir.join(f).is_file())
                .ok_or_else(|| {
                    path_err(format!("{} has no kustomization.yaml", env_dir.display()))
                })?;
            env_dir.join(name)
        }
    };
    let rel_str = slash(&rel);
    let full = resolve_in_repo(repo, &rel_str).map_err(path_err)?;
    let before = std::fs::read_to_string(&full).map_err(|source| BumpError::Io {
        path: rel_str.clone(),
        source,
    })?;
    let after = match (&app_cfg.pin.file, &app_cfg.pin.key) {
        (None, _) => {
            let new_name = pulled_name(environment, app_cfg);
            edit::pin_kustomize_image(
                &rel_str,
                &before,
                &ImagePin {
                    image: &app_cfg.image,
                    new_name: new_name.as_deref(),
                    pinned,
                },
            )?
        }
        (Some(_), Some(key)) => {
            let value = match app_cfg.pin.format {
                PinFormat::Digest => pinned.digest.to_string(),
                PinFormat::Reference => format!(
                    "{}@{}",
                    pulled_name(environment, app_cfg).unwrap_or_else(|| app_cfg.image.clone()),
                    pinned.digest
                ),
            };
            edit::set_value(&rel_str, &before, key, &value)?
        }
        (Some(_), None) => {
            let new_name = pulled_name(environment, app_cfg);
            edit::pin_manifest_images(
                &rel_str,
                &before,
                &ImagePin {
                    image: &app_cfg.image,
                    new_name: new_name.as_deref(),
                    pinned,
                },
            )?
        }
    };
    Ok(FileChange {
        path: rel_str,
        before,
        after,
    })
}

fn slash(p: &PathBuf) -> String {
    p.to_string_lossy().replace('\\', "/")
}
