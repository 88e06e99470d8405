//! The reconcilers' input: the config branch tip, exported to a directory and rendered per
//! environment. Fetches are shared between environments (at most one per [`FETCH_REUSE`]),
//! and each commit is exported once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::pipeline::Pipeline;
use crate::gitrepo::repo::ConfigRepo;
use crate::reconcile::prune::PruneGuard;
use crate::reconcile::runner::Input;
use crate::reconcile::{Env, ReconcileError, render_input_with};

/// A fetch younger than this is reused by the next environment's reconcile.
pub const FETCH_REUSE: Duration = Duration::from_millis(500);

/// Exported commits kept on disk (older ones are removed).
const KEEP_TREES: usize = 4;

struct Tip {
    /// [`TipSource::generation`] when this fetch started.
    generation: u64,
    commit: String,
    fetched: Instant,
    pipeline: Option<Arc<Pipeline>>,
    pipeline_error: Option<String>,
}

/// Renders environments at the config branch tip.
pub struct TipSource {
    repo: Mutex<ConfigRepo>,
    trees: PathBuf,
    tip: Mutex<Option<Tip>>,
    /// Bumped by [`TipSource::invalidate`]; a fetch started before the bump is not reused.
    generation: std::sync::atomic::AtomicU64,
    /// How environments are rendered (helm for `helmCharts`, from `baton.yaml`'s `render:`).
    render: crate::render::Options,
}

/// Why the tip could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] crate::gitrepo::repo::GitError),
    #[error("cannot export {commit} to {dir}: {message}")]
    Export {
        commit: String,
        dir: String,
        message: String,
    },
    #[error("{0}")]
    Pipeline(String),
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git(e) => e.is_transient(),
            Self::Export { .. } => true,
            Self::Pipeline(_) => false,
        }
    }
}

impl TipSource {
    pub fn new(repo: ConfigRepo, trees: PathBuf) -> Self {
        Self {
            repo: Mutex::new(repo),
            trees,
            tip: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            render: crate::render::Options::default(),
        }
    }

    /// Render with `options` (e.g. a helm binary for `helmCharts`).
    pub fn with_render_options(mut self, options: crate::render::Options) -> Self {
        self.render = options;
        self
    }

    /// Make the next [`TipSource::refresh`] fetch, even if the last fetch is fresh (the
    /// branch is known to have moved).
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The tip as last fetched.
    pub fn commit(&self) -> Option<String> {
        self.lock_tip().as_ref().map(|t| t.commit.clone())
    }

    /// The pipeline at the last fetched tip, if it loaded.
    pub fn pipeline(&self) -> Option<Arc<Pipeline>> {
        self.lock_tip().as_ref().and_then(|t| t.pipeline.clone())
    }

    fn lock_tip(&self) -> std::sync::MutexGuard<'_, Option<Tip>> {
        self.tip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory holding the files of `commit` (after [`TipSource::refresh`]).
    pub fn tree(&self, commit: &str) -> PathBuf {
        self.trees.join(commit)
    }

    /// Fetch (unless a fetch is fresh), export the tip and load its pipeline. Blocking.
    pub fn refresh(&self) -> Result<(String, Arc<Pipeline>), SourceError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        {
            let tip = self.lock_tip();
            if let Some(t) = tip.as_ref()
                && t.generation == generation
                && t.fetched.elapsed() < FETCH_REUSE
            {
                return match (&t.pipeline, &t.pipeline_error) {
                    (Some(p), _) => Ok((t.commit.clone(), p.clone())),
                    (None, e) => Err(SourceError::Pipeline(e.clone().unwrap_or_default())),
                };
            }
        }
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let commit = repo.fetch()?;
        let dir = self.tree(&commit.to_string());
        if !dir.join(".baton-complete").exists() {
            let partial = self.trees.join(format!(".{commit}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            let _ = std::fs::remove_dir_all(&dir);
            let export_err = |message: String| SourceError::Export {
                commit: commit.to_string(),
                dir: dir.display().to_string(),
                message,
            };
            repo.export(commit, &partial)
                .map_err(|e| export_err(e.to_string()))?;
            std::fs::write(partial.join(".baton-complete"), b"")
                .map_err(|e| export_err(e.to_string()))?;
            std::fs::rename(&partial, &dir).map_err(|e| export_err(e.to_string()))?;
            self.collect_garbage(&dir);
        }
        drop(repo);
        let loaded = Pipeline::load(&dir);
        let commit = commit.to_string();
        let mut tip = self.lock_tip();
        let (pipeline, error) = match loaded {
            Ok(l) => (Some(Arc::new(l.pipeline)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        *tip = Some(Tip {
            generation,
            commit: commit.clone(),
            fetched: Instant::now(),
            pipeline: pipeline.clone(),
            pipeline_error: error.clone(),
        });
        match pipeline {
            Some(p) => Ok((commit, p)),
            None => Err(SourceError::Pipeline(error.unwrap_or_default())),
        }
    }

    /// Keep the newest exports only.
    fn collect_garbage(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.trees) else {
            return;
        };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path() != keep && !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        dirs.sort();
        let excess = dirs.len().saturating_sub(KEEP_TREES - 1);
        for (_, d) in dirs.into_iter().take(excess) {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// The reconciler's input for `env`: the tip rendered. A pipeline that does not load or an
    /// environment that does not render is a permanent error, and nothing is applied.
    pub fn input(&self, env: &Env) -> Result<Input, ReconcileError> {
        let (commit, pipeline) = self.refresh().map_err(|e| ReconcileError::Source {
            env: env.name.clone(),
            transient: e.is_transient(),
            message: e.to_string(),
        })?;
        let environment = pipeline
            .environment(&env.name)
            .ok_or_else(|| ReconcileError::Source {
                env: env.name.clone(),
                message: format!(
                    "policies/pipeline.yaml at {} no longer defines environment {}; nothing applied",
                    &commit[..commit.len().min(12)],
                    env.name
                ),
                transient: false,
            })?;
        let objects = render_input_with(
            env,
            &commit,
            &self.tree(&commit),
            &environment.path(),
            &self.render,
        )?;
        let prune = PruneGuard {
            max_fraction: environment.prune_max_fraction(),
            approved: None,
        };
        Ok(Input {
            commit,
            objects,
            prune: Some(prune),
            allow: environment.allow.clone(),
            service_account: environment.service_account(),
        })
    }
}
