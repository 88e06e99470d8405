//! A digest bump planned against the files of a config-repo checkout: which file changes and
//! how. Planning reads; [`FileChange::write`] writes atomically (temp file + rename), so a
//! failed write never leaves a half-written file.

use std::io::Write;
use std::path::Path;

use super::edit::{self, EditError, ImagePin};
use super::files::Files;
use crate::config::pipeline::{App, Environment, PinFormat, Pipeline};
use crate::config::validate::KUSTOMIZATION_FILES;
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
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("{0}")]
    Read(String),
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

/// Plan pinning `app` to `pinned` in `env`, reading the repo's files from `files`.
pub fn plan(
    files: &dyn Files,
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
    let env_dir = environment.path().to_string_lossy().replace('\\', "/");
    let path_err = |message: String| BumpError::Path {
        env: env.to_string(),
        message,
    };
    let rel = match &app_cfg.pin.file {
        Some(file) => format!("{env_dir}/{file}"),
        None => {
            if !files.is_dir(&env_dir) {
                return Err(path_err(format!("directory {env_dir} does not exist")));
            }
            KUSTOMIZATION_FILES
                .iter()
                .map(|f| format!("{env_dir}/{f}"))
                .find(|p| matches!(files.read(p), Ok(Some(_))))
                .ok_or_else(|| path_err(format!("{env_dir} has no kustomization.yaml")))?
        }
    };
    let rel = super::files::normalize(&rel).map_err(path_err)?;
    let before = files
        .read(&rel)
        .map_err(BumpError::Read)?
        .ok_or_else(|| path_err(format!("{rel} does not exist")))?;
    let new_name = pulled_name(environment, app_cfg);
    let image_pin = ImagePin {
        image: &app_cfg.image,
        new_name: new_name.as_deref(),
        pinned,
    };
    let after = match (&app_cfg.pin.file, &app_cfg.pin.key) {
        (None, _) => edit::pin_kustomize_image(&rel, &before, &image_pin)?,
        (Some(_), Some(key)) => {
            let value = match app_cfg.pin.format {
                PinFormat::Digest => pinned.digest.to_string(),
                PinFormat::Reference => format!(
                    "{}@{}",
                    new_name.as_deref().unwrap_or(&app_cfg.image),
                    pinned.digest
                ),
            };
            edit::set_value(&rel, &before, key, &value)?
        }
        (Some(_), None) => edit::pin_manifest_images(&rel, &before, &image_pin)?,
    };
    Ok(FileChange {
        path: rel,
        before,
        after,
    })
}
