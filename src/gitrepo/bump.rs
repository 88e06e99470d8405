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

/// The file that pins `app` in `env`, and its text.
struct Located<'p> {
    environment: &'p Environment,
    app: &'p App,
    path: String,
    text: String,
}

fn locate<'p>(
    files: &dyn Files,
    pipeline: &'p Pipeline,
    env: &str,
    app: &str,
) -> Result<Located<'p>, BumpError> {
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
    let text = files
        .read(&rel)
        .map_err(BumpError::Read)?
        .ok_or_else(|| path_err(format!("{rel} does not exist")))?;
    Ok(Located {
        environment,
        app: app_cfg,
        path: rel,
        text,
    })
}

/// What `env` pins for `app` now: the digest, and the tag when the file records one.
/// `Ok(None)` when the file pins no valid digest for the app.
pub fn current(
    files: &dyn Files,
    pipeline: &Pipeline,
    env: &str,
    app: &str,
) -> Result<Option<Pinned>, BumpError> {
    let l = locate(files, pipeline, env, app)?;
    let syntax = |e: crate::yaml::SyntaxError| {
        BumpError::Edit(EditError::Syntax {
            file: l.path.clone(),
            pos: e.pos,
            message: e.message,
        })
    };
    let from_reference = |reference: &str| -> Option<Pinned> {
        let (name, digest) = reference.rsplit_once('@').unwrap_or(("", reference));
        let digest = digest.parse().ok()?;
        let tag = name
            .strip_prefix(edit::repository_of(name))
            .and_then(|t| t.strip_prefix(':'))
            .map(str::to_string);
        Some(Pinned { tag, digest })
    };
    Ok(match (&l.app.pin.file, &l.app.pin.key) {
        (None, _) => {
            let root = crate::yaml::parse(&l.text).map_err(syntax)?;
            root.get("images")
                .map(|i| i.items())
                .unwrap_or(&[])
                .iter()
                .find_map(|e| {
                    if e.get("name").and_then(crate::yaml::Node::as_str)
                        != Some(l.app.image.as_str())
                    {
                        return None;
                    }
                    let digest = e.get("digest")?.as_str()?.parse().ok()?;
                    Some(Pinned {
                        tag: e.get("newTag").and_then(|t| t.as_str()).map(str::to_string),
                        digest,
                    })
                })
        }
        (Some(_), Some(key)) => {
            let root = crate::yaml::parse(&l.text).map_err(syntax)?;
            let (node, found) = root.lookup(key);
            found
                .then(|| node.as_str())
                .flatten()
                .and_then(from_reference)
        }
        (Some(_), None) => {
            let new_name = pulled_name(l.environment, l.app);
            let names = [Some(l.app.image.as_str()), new_name.as_deref()];
            l.text.lines().find_map(|line| {
                let value = line
                    .trim()
                    .trim_start_matches("- ")
                    .strip_prefix("image:")?
                    .trim()
                    .trim_matches(['"', '\'']);
                names
                    .contains(&Some(edit::repository_of(value)))
                    .then(|| from_reference(value))
                    .flatten()
            })
        }
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
    let Located {
        environment,
        app: app_cfg,
        path: rel,
        text: before,
    } = locate(files, pipeline, env, app)?;
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

/// Plan pinning several apps in `env` at once (a group's PR): one change per file, with every
/// pin that file holds applied in turn (two apps in one kustomization make one change).
pub fn plan_all(
    files: &dyn Files,
    pipeline: &Pipeline,
    env: &str,
    pins: &[(String, Pinned)],
) -> Result<Vec<FileChange>, BumpError> {
    let mut changes: Vec<FileChange> = Vec::new();
    for (app, pinned) in pins {
        let change = plan(&Edited(files, &changes), pipeline, env, app, pinned)?;
        match changes.iter_mut().find(|c| c.path == change.path) {
            Some(c) => c.after = change.after,
            None => changes.push(change),
        }
    }
    Ok(changes)
}

/// Files as they read after `changes`.
struct Edited<'a>(&'a dyn Files, &'a [FileChange]);

impl Files for Edited<'_> {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        match self.1.iter().find(|c| c.path == path) {
            Some(c) => Ok(Some(c.after.clone())),
            None => self.0.read(path),
        }
    }

    fn is_dir(&self, path: &str) -> bool {
        self.0.is_dir(path)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        self.0.list(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitrepo::files::FsFiles;

    #[test]
    fn two_apps_in_one_kustomization_make_one_change_with_both_pins() {
        let (root, p) = example();
        let web = Pinned {
            tag: Some("9.9.9".into()),
            digest: crate::image::Digest::of(b"web"),
        };
        let worker = Pinned {
            tag: Some("release-9.9.9".into()),
            digest: crate::image::Digest::of(b"worker"),
        };
        let changes = plan_all(
            &FsFiles(&root),
            &p,
            "dev",
            &[
                ("web".into(), web.clone()),
                ("worker".into(), worker.clone()),
            ],
        )
        .unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, "environments/dev/kustomization.yaml");
        let diff = changes[0].unified_diff();
        assert!(
            diff.contains(&format!("+    digest: {}", web.digest)),
            "{diff}"
        );
        assert!(
            diff.contains(&format!("+    digest: {}", worker.digest)),
            "{diff}"
        );
    }

    fn example() -> (std::path::PathBuf, Pipeline) {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let p = Pipeline::load(&root).unwrap().pipeline;
        (root, p)
    }

    #[test]
    fn current_reads_back_what_the_example_pins() {
        let (root, p) = example();
        let pin = current(&FsFiles(&root), &p, "prod", "worker")
            .unwrap()
            .unwrap();
        assert_eq!(pin.tag.as_deref(), Some("release-2.0.5"));
        assert!(pin.digest.as_str().starts_with("sha256:3d23abd5"));
    }

    #[test]
    fn current_after_plan_is_the_new_pin() {
        let (root, p) = example();
        let want: Pinned = format!("9.9.9@{}", crate::image::Digest::of(b"x"))
            .parse()
            .unwrap();
        let change = plan(&FsFiles(&root), &p, "dev", "web", &want).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for d in ["environments", "apps", "policies", "keys"] {
            copy(&root.join(d), &dir.path().join(d));
        }
        change.write(dir.path()).unwrap();
        assert_eq!(
            current(&FsFiles(dir.path()), &p, "dev", "web").unwrap(),
            Some(want)
        );
    }

    #[test]
    fn references_in_values_and_manifests_are_read() {
        let p: Pipeline = Pipeline::parse(
            "p",
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  a: { image: reg/a, bless: { tag: ok }, pin: { file: v.yaml, key: img } }\n  b: { image: reg/b, bless: { tag: ok }, pin: { file: m.yaml } }\nenvironments: [{ name: dev }]\n",
        )
        .unwrap()
        .pipeline;
        let dir = tempfile::tempdir().unwrap();
        let d = crate::image::Digest::of(b"1");
        std::fs::create_dir_all(dir.path().join("environments/dev")).unwrap();
        std::fs::write(
            dir.path().join("environments/dev/v.yaml"),
            format!("img: \"reg/a@{d}\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("environments/dev/m.yaml"),
            format!("spec:\n  containers:\n    - image: reg/b:2.0@{d}\n"),
        )
        .unwrap();
        let files = FsFiles(dir.path());
        assert_eq!(
            current(&files, &p, "dev", "a").unwrap(),
            Some(Pinned {
                tag: None,
                digest: d.clone()
            })
        );
        assert_eq!(
            current(&files, &p, "dev", "b").unwrap(),
            Some(Pinned {
                tag: Some("2.0".into()),
                digest: d
            })
        );
    }

    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}
