//! The I/O of the check: list the open PRs to the config branch, skip heads already checked,
//! fetch and export the head, validate and render it, and report on the forge.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use git2::Oid;
use serde::Serialize;

use super::diff;
use super::summary::{self, EnvReport, Problem, Report};
use crate::config::pipeline::Pipeline;
use crate::forge::{self, CommentInfo, Forge, ForgeError, PullRequestInfo, StatusState};
use crate::forge::{PrState, StatusUpdate};
use crate::gitrepo::bump;
use crate::gitrepo::files::{Files, FsFiles};
use crate::gitrepo::repo::{ConfigRepo, GitError};
use crate::registry::copier::Route;
use crate::registry::copier::{Copier, Readiness, route};
use crate::render::{self, Object};

/// Why a check could not be made. Each variant knows whether a later attempt may succeed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
    /// The PR's head commit is not in the clone even after fetching `refs/pull/*/head`.
    #[error("PR #{pr}: head commit {sha} could not be fetched")]
    MissingHead { pr: u64, sha: String },
    /// A scratch directory for the exported commit could not be made.
    #[error("scratch directory for rendering: {0}")]
    Scratch(#[source] std::io::Error),
}

impl CheckError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git(e) => e.is_transient(),
            Self::Forge(e) => e.is_transient(),
            // GitHub updates refs/pull/N/head asynchronously; the next pass finds it.
            Self::MissingHead { .. } => true,
            Self::Scratch(_) => true,
        }
    }
}

/// What happened to one PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CheckOutcome {
    /// The head was checked and reported.
    Checked { pr: u64, sha: String, passed: bool },
    /// baton had already reported on this head; nothing was done.
    AlreadyChecked { pr: u64, sha: String },
    /// The check could not be made this time (the error is logged); the next pass retries.
    Failed { pr: u64, error: String },
}

/// The config-repo PR check for one repository. Holds its own bare clone (a workdir of its
/// own, so it never races the engine's).
pub struct Checker {
    repo: Mutex<ConfigRepo>,
    /// Checks that images moving into `copyTo` environments can be copied there.
    copier: Option<std::sync::Arc<Copier>>,
}

/// An image a PR moves into an environment with `copyTo`: (env, route, digest).
type CopyCheck = (String, Route, String);

/// Renders of the base side, shared by the PRs of one pass (most share the branch tip).
type BaseCache = HashMap<(Oid, String), Result<Vec<Object>, String>>;

impl Checker {
    pub fn new(repo: ConfigRepo) -> Self {
        Self {
            repo: Mutex::new(repo),
            copier: None,
        }
    }

    /// Also check, for every image a PR moves into an environment with `copyTo`, that the
    /// source still has it and the target accepts pushes: a vanished image or a refused
    /// credential fails the check. (An outage does not: the promotion's `copy` gate shows it,
    /// and a head is checked only once.)
    pub fn with_copier(mut self, copier: std::sync::Arc<Copier>) -> Self {
        self.copier = Some(copier);
        self
    }

    fn repo(&self) -> std::sync::MutexGuard<'_, ConfigRepo> {
        self.repo.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check every open PR to the config branch whose head baton has not reported on yet.
    /// Idle cost: one PR list plus one status list per open PR, all conditional reads.
    pub async fn run_once<F: Forge>(&self, forge: &F) -> Result<Vec<CheckOutcome>, CheckError> {
        let branch = self.repo().branch().to_string();
        let prs: Vec<PullRequestInfo> = forge
            .open_pull_requests()
            .await?
            .into_iter()
            .filter(|p| p.base_ref == branch)
            .collect();
        let mut cache = BaseCache::new();
        let mut fetched = false;
        let mut out = Vec::new();
        for pr in prs {
            match self.check(forge, &pr, &mut fetched, &mut cache).await {
                Ok(o) => out.push(o),
                Err(e) if e.is_transient() && !matches!(e, CheckError::MissingHead { .. }) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(pr = pr.number, error = %e, "config-repo PR check failed");
                    out.push(CheckOutcome::Failed {
                        pr: pr.number,
                        error: e.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Check one PR (e.g. on a `pull_request` webhook). Closed PRs and PRs to another branch
    /// are left alone (`Ok(None)`).
    pub async fn check_pull_request<F: Forge>(
        &self,
        forge: &F,
        number: u64,
    ) -> Result<Option<CheckOutcome>, CheckError> {
        let pr = forge.pull_request(number).await?;
        if pr.state != PrState::Open || pr.base_ref != self.repo().branch() {
            return Ok(None);
        }
        let mut fetched = false;
        self.check(forge, &pr, &mut fetched, &mut BaseCache::new())
            .await
            .map(Some)
    }

    async fn check<F: Forge>(
        &self,
        forge: &F,
        pr: &PullRequestInfo,
        fetched: &mut bool,
        cache: &mut BaseCache,
    ) -> Result<CheckOutcome, CheckError> {
        let statuses = forge.statuses(&pr.head_sha).await?;
        let reported = statuses.iter().find(|s| {
            s.context == super::CONTEXT && s.creator.eq_ignore_ascii_case(forge.bot_login())
        });
        if reported.is_some_and(|s| s.state != StatusState::Pending) {
            return Ok(CheckOutcome::AlreadyChecked {
                pr: pr.number,
                sha: pr.head_sha.clone(),
            });
        }
        let (mut report, copies) = tokio::task::block_in_place(|| {
            if !*fetched {
                self.repo().fetch()?;
                *fetched = true;
            }
            self.evaluate(pr, cache)
        })?;
        if let Some(copier) = &self.copier {
            for (env, route, digest) in copies {
                let text = match copier.preflight(&route, &digest).await {
                    Readiness::Ready { .. } => continue,
                    Readiness::Problem {
                        reason,
                        transient: true,
                    } => {
                        tracing::warn!(pr = pr.number, %env, %reason, "cannot check the copy target now");
                        continue;
                    }
                    Readiness::SourceMissing => format!(
                        "copyTo: `{}` is not in its registry, so it cannot be copied to `{}`",
                        route.source.at(&digest),
                        route.target
                    ),
                    Readiness::Problem { reason, .. } => format!("copyTo: {reason}"),
                };
                report.problems.push(Problem {
                    env: Some(env),
                    text,
                });
            }
        }
        // The bot's own promotion PRs carry the rendered diff in their body; they get a
        // comment only when the check fails.
        let own_promotion = forge::parse_promotion_branch(&pr.head_ref).is_some()
            && pr.author.eq_ignore_ascii_case(forge.bot_login());
        let mut target_url = (!pr.html_url.is_empty()).then(|| pr.html_url.clone());
        if report.passed() && own_promotion {
            tracing::debug!(pr = pr.number, "promotion PR passed; no summary comment");
        } else {
            let body = summary::comment(&report);
            let comments = forge.comments(pr.number).await?;
            let id = upsert_comment(forge, pr.number, &comments, &body).await?;
            if let Some(url) = &mut target_url {
                url.push_str(&format!("#issuecomment-{id}"));
            }
        }
        let status = StatusUpdate {
            context: super::CONTEXT.to_string(),
            state: if report.passed() {
                StatusState::Success
            } else {
                StatusState::Failure
            },
            description: summary::description(&report),
            target_url,
        };
        forge.set_status(&pr.head_sha, &status).await?;
        tracing::info!(pr = pr.number, sha = %pr.head_sha, passed = report.passed(), "config-repo PR checked");
        Ok(CheckOutcome::Checked {
            pr: pr.number,
            sha: pr.head_sha.clone(),
            passed: report.passed(),
        })
    }

    /// Validate and render the PR head, and compare every environment with the merge base.
    fn evaluate(
        &self,
        pr: &PullRequestInfo,
        cache: &mut BaseCache,
    ) -> Result<(Report, Vec<CopyCheck>), CheckError> {
        let repo = self.repo();
        let missing = || CheckError::MissingHead {
            pr: pr.number,
            sha: pr.head_sha.clone(),
        };
        let head = Oid::from_str(&pr.head_sha).map_err(|_| missing())?;
        if !repo.has_commit(head) {
            // A PR from a fork: its head is only under refs/pull/<n>/head.
            repo.fetch_pull_heads()?;
            if !repo.has_commit(head) {
                return Err(missing());
            }
        }
        let tip = repo.tip()?;
        let base = repo.merge_base(tip, head)?.unwrap_or(tip);
        let dir = tempfile::tempdir().map_err(CheckError::Scratch)?;
        repo.export(head, dir.path())?;
        let mut report = Report {
            head_sha: pr.head_sha.clone(),
            base_sha: base.to_string(),
            problems: crate::config::validate::validate_repo(dir.path())
                .into_iter()
                .map(|d| Problem {
                    env: None,
                    text: d.to_string(),
                })
                .collect(),
            envs: Vec::new(),
        };
        let Ok(loaded) = Pipeline::load(dir.path()) else {
            return Ok((report, Vec::new()));
        };
        let copies = if self.copier.is_some() {
            moved_into_copy_to(
                &loaded.pipeline,
                &FsFiles(dir.path()),
                &repo.files_at(base)?,
            )
        } else {
            Vec::new()
        };
        let mut base_dir = None;
        for env in loaded.pipeline.promotion_order() {
            let path = env.path();
            let after = match render::render(dir.path(), &path) {
                Ok(objects) => objects,
                Err(e) => {
                    report.problems.push(Problem {
                        env: Some(env.name.clone()),
                        text: e.to_string(),
                    });
                    continue;
                }
            };
            let key = (base, path.to_string_lossy().into_owned());
            if !cache.contains_key(&key) {
                if base_dir.is_none() {
                    let d = tempfile::tempdir().map_err(CheckError::Scratch)?;
                    repo.export(base, d.path())?;
                    base_dir = Some(d);
                }
                let root = base_dir.as_ref().expect("exported above").path();
                let rendered = render::render(root, &path).map_err(|e| e.to_string());
                cache.insert(key.clone(), rendered);
            }
            let (before, note) = match &cache[&key] {
                Ok(objects) => (objects.as_slice(), None),
                Err(e) => (
                    &[][..],
                    Some(format!(
                        "{} did not render at `{}`, so every object counts as added: {e}",
                        path.display(),
                        &report.base_sha[..7]
                    )),
                ),
            };
            report.envs.push(EnvReport {
                env: env.name.clone(),
                diff: diff::diff(before, &after),
                note,
            });
        }
        Ok((report, copies))
    }
}

/// The images `head` pins in environments with `copyTo` that `base` does not.
fn moved_into_copy_to(pipeline: &Pipeline, head: &dyn Files, base: &dyn Files) -> Vec<CopyCheck> {
    let mut out = Vec::new();
    for env in &pipeline.environments {
        for app in pipeline.apps.keys() {
            let Some(Ok(route)) = route(pipeline, &env.name, app) else {
                continue;
            };
            let pin = |files: &dyn Files| {
                bump::current(files, pipeline, &env.name, app)
                    .ok()
                    .flatten()
            };
            if let Some(now) = pin(head)
                && pin(base).map(|p| p.digest) != Some(now.digest.clone())
            {
                out.push((env.name.clone(), route, now.digest.to_string()));
            }
        }
    }
    out
}

/// Create baton's check comment on the PR, or edit the one already there; writes nothing when
/// it already says `body`. Returns the comment's id.
async fn upsert_comment<F: Forge>(
    forge: &F,
    pr: u64,
    comments: &[CommentInfo],
    body: &str,
) -> Result<u64, ForgeError> {
    let existing = comments.iter().find(|c| {
        c.author.eq_ignore_ascii_case(forge.bot_login()) && c.body.starts_with(summary::MARKER)
    });
    match existing {
        Some(c) if c.body == body => Ok(c.id),
        Some(c) => forge.update_comment(c.id, body).await.map(|()| c.id),
        None => forge.create_comment(pr, body).await,
    }
}

/// The rendered manifest diff of one environment between two commits of the clone (e.g. the
/// config branch tip and a promotion branch), cut at about `limit` bytes. Only that
/// environment is rendered.
pub fn rendered_diff(
    repo: &ConfigRepo,
    env: &str,
    env_path: &Path,
    before: Oid,
    after: Oid,
    limit: usize,
) -> Result<String, String> {
    let side = |commit: Oid| -> Result<Vec<Object>, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("scratch directory: {e}"))?;
        repo.export(commit, dir.path()).map_err(|e| e.to_string())?;
        render::render(dir.path(), env_path).map_err(|e| e.to_string())
    };
    let (b, a) = (side(before)?, side(after)?);
    Ok(diff::unified(env, &b, &a, limit))
}
