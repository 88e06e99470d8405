//! The I/O of the check: list the open PRs to the config branch, skip heads already checked,
//! fetch and export the head, validate and render it, and report on the forge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use git2::Oid;
use serde::Serialize;

use super::summary::{self, EnvReport, Problem, Report};
use super::{diff, gates};
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
    /// The config branch (fixed: read without the clone's lock, which a fetch may hold).
    branch: String,
    repo: Mutex<ConfigRepo>,
    /// Checks that images moving into `copyTo` environments can be copied there.
    copier: Option<std::sync::Arc<Copier>>,
    /// How environments are rendered (helm for `helmCharts`).
    render: render::Options,
}

/// An image a PR moves into an environment with `copyTo`: (env, route, digest).
type CopyCheck = (String, Route, String);

/// Renders of the base side, shared by the PRs of one pass (most share the branch tip).
type BaseCache = HashMap<(Oid, String), Result<Vec<Object>, String>>;

impl Checker {
    pub fn new(repo: ConfigRepo) -> Self {
        Self {
            branch: repo.branch().to_string(),
            repo: Mutex::new(repo),
            copier: None,
            render: render::Options::default(),
        }
    }

    /// Render with `options` (e.g. a helm binary for `helmCharts`, from `baton.yaml`).
    pub fn with_render_options(mut self, options: render::Options) -> Self {
        self.render = options;
        self
    }

    /// Also check, for every image a PR moves into an environment with `copyTo`, that the
    /// source still has it and the target accepts pushes: a vanished image or a refused
    /// credential fails the check. (An outage does not: the promotion's `copy` gate shows it,
    /// and a head is checked only once.)
    pub fn with_copier(mut self, copier: std::sync::Arc<Copier>) -> Self {
        self.copier = Some(copier);
        self
    }

    /// The config branch the check guards.
    pub(super) fn branch(&self) -> String {
        self.branch.clone()
    }

    fn repo(&self) -> std::sync::MutexGuard<'_, ConfigRepo> {
        self.repo.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the config branch is guarded so that `baton/validate` binds people's PRs
    /// ([`super::guard`]).
    pub async fn guard<F: Forge>(&self, forge: &F) -> Result<super::guard::Guard, CheckError> {
        super::guard::inspect(&self.repo, &self.branch, forge).await
    }

    /// Check every open PR to the config branch whose head baton has not reported on yet.
    /// Idle cost: one PR list plus one status list per open PR, all conditional reads.
    pub async fn run_once<F: Forge>(&self, forge: &F) -> Result<Vec<CheckOutcome>, CheckError> {
        let branch = self.branch.clone();
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
        if pr.state != PrState::Open || pr.base_ref != self.branch {
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
        // A head that waits only for approvals is checked again on every pass (reviews
        // arrive without a push); any other verdict stands until the next push.
        let awaiting_approval = reported.is_some_and(|s| {
            s.state == StatusState::Failure && s.description.starts_with(gates::NEEDS_APPROVAL)
        });
        if reported.is_some_and(|s| s.state != StatusState::Pending) && !awaiting_approval {
            return Ok(CheckOutcome::AlreadyChecked {
                pr: pr.number,
                sha: pr.head_sha.clone(),
            });
        }
        let mut reviews = None;
        if awaiting_approval {
            // Unless a review changed since, the verdict stands: no fetch, no render.
            let r = forge.reviews(pr.number).await?;
            let marker = gates::reviews_marker(&gates::reviews_fingerprint(&r, &pr.head_sha));
            let comments = forge.comments(pr.number).await?;
            let seen = comments.iter().any(|c| {
                c.author.eq_ignore_ascii_case(forge.bot_login())
                    && c.body.starts_with(summary::MARKER)
                    && c.body.contains(&marker)
            });
            if seen {
                return Ok(CheckOutcome::AlreadyChecked {
                    pr: pr.number,
                    sha: pr.head_sha.clone(),
                });
            }
            reviews = Some(r);
        }
        let (mut report, copies, guarded) = tokio::task::block_in_place(|| {
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
        // comment only when the check fails. They keep their own gates (the engine's).
        let own_promotion = forge::parse_promotion_branch(&pr.head_ref).is_some()
            && pr.author.eq_ignore_ascii_case(forge.bot_login());
        if !own_promotion && !guarded.is_empty() {
            let reviews = match reviews {
                Some(r) => r,
                None => forge.reviews(pr.number).await?,
            };
            report.reviews = Some(gates::reviews_fingerprint(&reviews, &pr.head_sha));
            let teams = team_members(forge, &guarded).await?;
            for g in &guarded {
                let (approved, stale) = gates::approvers(
                    &reviews,
                    &pr.head_sha,
                    forge.bot_login(),
                    &g.approvals,
                    &teams,
                );
                let line = match gates::unmet(g, &pr.head_sha, &approved, &stale) {
                    Some(text) => {
                        report.problems.push(Problem {
                            env: Some(g.env.clone()),
                            text,
                        });
                        format!(
                            "waiting for approval ({} of {})",
                            approved.len(),
                            g.approvals.count
                        )
                    }
                    None => format!("approved by {}", approved.join(", ")),
                };
                report.gated.push(summary::Gated {
                    env: g.env.clone(),
                    reasons: g.reasons.clone(),
                    who: g.approvals.clone(),
                    state: line,
                });
            }
        }
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
        let unchanged = reported
            .is_some_and(|s| s.state == status.state && s.description == status.description);
        if !unchanged {
            forge.set_status(&pr.head_sha, &status).await?;
        }
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
    ) -> Result<(Report, Vec<CopyCheck>, Vec<gates::Guarded>), CheckError> {
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
            gated: Vec::new(),
            reviews: None,
        };
        // The gates come from the base: export it now (its renders are cached per pass).
        let base_dir = tempfile::tempdir().map_err(CheckError::Scratch)?;
        repo.export(base, base_dir.path())?;
        let base_pipeline = Pipeline::load(base_dir.path()).ok().map(|l| l.pipeline);
        let shared = gates::SharedChanges {
            policies: changed_policies(base_dir.path(), dir.path()),
        };
        let Ok(loaded) = Pipeline::load(dir.path()) else {
            let guarded = base_pipeline
                .map(|b| gates::guarded(&b, None, &BTreeMap::new(), &shared))
                .unwrap_or_default();
            return Ok((report, Vec::new(), guarded));
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
        for env in loaded.pipeline.promotion_order() {
            let path = env.path();
            let after = match render::render_with(dir.path(), &path, &self.render) {
                Ok((objects, _warnings)) => objects,
                Err(e) => {
                    report.problems.push(Problem {
                        env: Some(env.name.clone()),
                        text: e.to_string(),
                    });
                    continue;
                }
            };
            if let Some(allow) = &env.allow {
                for d in
                    crate::reconcile::scope::allowed_diagnostics(&env.name, &path, allow, &after)
                {
                    report.problems.push(Problem {
                        env: Some(env.name.clone()),
                        text: d.to_string(),
                    });
                }
            }
            let key = (base, path.to_string_lossy().into_owned());
            if !cache.contains_key(&key) {
                let rendered = render::render_with(base_dir.path(), &path, &self.render)
                    .map(|(objects, _warnings)| objects)
                    .map_err(|e| e.to_string());
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
        let rendered: BTreeMap<String, String> = report
            .envs
            .iter()
            .filter(|e| !e.diff.is_empty())
            .map(|e| (e.env.clone(), summary::change_line(&e.diff)))
            .collect();
        let guarded = base_pipeline
            .map(|b| gates::guarded(&b, Some(&loaded.pipeline), &rendered, &shared))
            .unwrap_or_default();
        Ok((report, copies, guarded))
    }
}

/// `policies/*.rego` files that differ between two exported trees (added, changed, removed).
fn changed_policies(base: &Path, head: &Path) -> Vec<String> {
    let rego = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(root.join("policies"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "rego"))
            .filter_map(|e| {
                let name = format!("policies/{}", e.file_name().to_string_lossy());
                Some((name, std::fs::read(e.path()).ok()?))
            })
            .collect()
    };
    let (b, h) = (rego(base), rego(head));
    let names: BTreeSet<&String> = b.keys().chain(h.keys()).collect();
    names
        .into_iter()
        .filter(|n| b.get(*n) != h.get(*n))
        .cloned()
        .collect()
}

/// Members of the teams the guarded environments name (a team the bot may not list counts
/// no members: its approvals then cannot be met, and the problem says who is needed).
async fn team_members<F: Forge>(
    forge: &F,
    guarded: &[gates::Guarded],
) -> Result<BTreeMap<String, BTreeSet<String>>, ForgeError> {
    let mut out = BTreeMap::new();
    let named: BTreeSet<&String> = guarded
        .iter()
        .flat_map(|g| g.approvals.from.iter())
        .filter(|w| w.starts_with('@'))
        .collect();
    for team in named {
        let Some((org, slug)) = team.trim_start_matches('@').split_once('/') else {
            continue;
        };
        let members = match forge.team_members(org, slug).await {
            Ok(m) => m,
            Err(e @ (ForgeError::NotFound(_) | ForgeError::Forbidden { .. })) => {
                tracing::warn!(%team, error = %e, "cannot list the team; counting no members");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        out.insert(team.clone(), members.into_iter().collect());
    }
    Ok(out)
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
