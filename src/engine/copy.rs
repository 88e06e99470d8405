//! The copy step of environments with `copyTo`, in the engine: the image a promotion pins
//! (`<copyTo>/<name>@<digest>`) is copied there from the app's registry once every other gate
//! of the PR has passed and before the merge, so the target registry holds only approved
//! images and the merged pin never names an image that is not there. The registry work is
//! [`Copier`]'s; this module turns it into the `copy` gate, the PR body's copy section and the
//! timeline line.
//!
//! - While the other gates wait, [`Copier::preflight`]: is the source image still there, does
//!   the target accept pushes?
//! - At the merge, [`Copier::copy`]: the index, every platform manifest, the blobs, the cosign
//!   tags and OCI referrers, verified by digest (and by signature with the app's key). A
//!   failure is the `copy` gate with its reason; it is retried with backoff, never skipped.
//! - [`pinned_routes`] + [`Copier::ensure_pinned`]: what the reconcilers run before they apply
//!   an environment with `copyTo` (a rollback to an old release, a registry that lost it, a
//!   repo adopted with pins already in place).

use chrono::{DateTime, Utc};

use super::{Engine, EngineError, Observed, RepoView};
use crate::config::pipeline::Pipeline;
use crate::forge::Forge;
use crate::gitrepo::files::Files as _;
use crate::promote::Evaluation;
use crate::promote::gates::{Gate, GateResult, Verdict};
use crate::registry::CopyReport;
use crate::registry::copier::{CopyFailure, Readiness, Route, route};
use crate::registry::verify::Requirements;

pub use crate::registry::copier::Copier;

/// The `copy` gate for a preflight result.
pub fn readiness_gate(route: &Route, digest: &str, readiness: &Readiness) -> GateResult {
    let source = route.source.at(digest);
    let (verdict, reason) = match readiness {
        Readiness::Ready {
            already_there: true,
        } => (
            Verdict::Passed,
            format!("`{source}` is already in `{}`", route.target),
        ),
        Readiness::Ready {
            already_there: false,
        } => (
            Verdict::Passed,
            format!(
                "`{source}` is there and `{}` accepts pushes; it is copied once every other gate passes",
                route.target
            ),
        ),
        Readiness::SourceMissing => (
            Verdict::Blocked,
            format!(
                "`{source}` is no longer in its registry, so it cannot be copied to `{}`; push it again or promote another release",
                route.target
            ),
        ),
        Readiness::Problem { reason, transient } => (
            if *transient {
                Verdict::Waiting
            } else {
                Verdict::Blocked
            },
            reason.clone(),
        ),
    };
    GateResult {
        gate: Gate::Copy,
        verdict,
        reason,
        recheck_at: None,
        soak: None,
    }
}

/// The `copy` gate for a failed copy.
pub fn failure_gate(route: &Route, digest: &str, failure: &CopyFailure) -> GateResult {
    GateResult {
        gate: Gate::Copy,
        verdict: if failure.transient {
            Verdict::Waiting
        } else {
            Verdict::Blocked
        },
        reason: format!(
            "copying `{}` to `{}` failed (attempt {}): {}; retrying at {}",
            route.source.at(digest),
            route.target,
            failure.attempts,
            failure.reason,
            failure.retry_at.format("%H:%M:%S UTC")
        ),
        recheck_at: Some(failure.retry_at),
        soak: None,
    }
}

/// The passed `copy` gate of a copy made before the merge (`line`: its timeline line).
fn copied_gate(line: &str) -> GateResult {
    GateResult {
        gate: Gate::Copy,
        verdict: Verdict::Passed,
        reason: line.to_string(),
        recheck_at: None,
        soak: None,
    }
}

/// What the copy step before a merge did.
enum BeforeMerge {
    /// The environment has no `copyTo`.
    NotNeeded,
    /// Copied and verified: the timeline line of each copy.
    Copied(Vec<String>),
    /// Not copied: the `copy` gate saying why.
    Failed(GateResult),
}

impl<F: Forge> Engine<F> {
    /// The copy route of `app` in `env`, or the `copy` gate saying why there is none.
    fn copy_route(
        &self,
        view: &RepoView,
        env: &str,
        app: &str,
    ) -> Option<Result<(&Copier, Route), GateResult>> {
        let blocked = |reason: String| GateResult {
            gate: Gate::Copy,
            verdict: Verdict::Blocked,
            reason,
            recheck_at: None,
            soak: None,
        };
        let route = match route(&view.pipeline, env, app)? {
            Ok(r) => r,
            Err(e) => return Some(Err(blocked(format!("cannot name the copy: {e}")))),
        };
        Some(match self.copier.as_deref() {
            Some(c) => Ok((c, route)),
            None => Err(blocked(
                "baton runs without a registry client and cannot copy to `copyTo`".into(),
            )),
        })
    }

    /// While other gates wait: the `copy` gate (source there, target accepts pushes), written
    /// into the PR body's copy section too. A group's PR checks every member's copy: the gate
    /// passes only when it passes for each, and names the members it does not pass for.
    pub(super) async fn copy_preflight(
        &self,
        view: &RepoView,
        o: &mut Observed,
    ) -> Result<Option<GateResult>, EngineError> {
        let mut gates = Vec::new();
        let mut sections = Vec::new();
        for member in o.states() {
            let Some(found) = self.copy_route(view, &member.env, &member.app) else {
                continue;
            };
            let digest = member.digest.to_string();
            let gate = match found {
                Err(gate) => gate,
                Ok((copier, route)) => {
                    let gate =
                        readiness_gate(&route, &digest, &copier.preflight(&route, &digest).await);
                    sections.push(match copier.deferred(&member.env, &member.app, &digest) {
                        Some(f) => failed_section(&route, &digest, &f),
                        None => pending_section(&route, &digest, &gate),
                    });
                    gate
                }
            };
            gates.push((
                member.app,
                Evaluation {
                    results: vec![gate],
                    approvers: Vec::new(),
                },
            ));
        }
        if !sections.is_empty() {
            self.set_copy_section(o, &sections.join("\n\n")).await?;
        }
        Ok(match gates.len() {
            0 => None,
            1 => gates.pop().and_then(|(_, e)| e.results.into_iter().next()),
            _ => crate::promote::group::combine(&gates)
                .results
                .into_iter()
                .next(),
        })
    }

    /// Before a merge, in the PR's gates: copy (as [`Engine::copy_before_merge`]) and add a
    /// passed `copy` gate per copy to `evaluation`, returning the timeline lines; or add the
    /// failed gate, write "Waiting" into the status comment and return what blocks.
    pub(super) async fn copy_for_merge(
        &self,
        view: &RepoView,
        o: &mut Observed,
        evaluation: &mut Evaluation,
    ) -> Result<Result<Vec<String>, String>, EngineError> {
        Ok(match self.copy_before_merge(view, o).await? {
            BeforeMerge::NotNeeded => Ok(Vec::new()),
            BeforeMerge::Copied(lines) => {
                evaluation
                    .results
                    .extend(lines.iter().map(|l| copied_gate(l)));
                Ok(lines)
            }
            BeforeMerge::Failed(gate) => {
                let blocking = format!("{}: {}", gate.gate.title(), gate.reason);
                evaluation.results.push(gate);
                self.write_waiting(o, &blocking, evaluation).await?;
                Err(blocking)
            }
        })
    }

    /// Before a merge: copy the PR's digest (a group's: each member's, in turn) to the
    /// environment's `copyTo` and verify it. The PR body's copy section lists each copy; a
    /// failure stops there, and for a group its gate names the member.
    async fn copy_before_merge(
        &self,
        view: &RepoView,
        o: &mut Observed,
    ) -> Result<BeforeMerge, EngineError> {
        let members = o.states();
        let named = members.len() > 1;
        let mut lines = Vec::new();
        let mut sections = Vec::new();
        let mut failed = None;
        for member in &members {
            let Some(found) = self.copy_route(view, &member.env, &member.app) else {
                continue;
            };
            let (section, copied) = match found {
                Ok((copier, route)) => self.copy_member(view, copier, &route, member).await,
                Err(gate) => (None, Err(gate)),
            };
            sections.extend(section);
            match copied {
                Ok(line) => lines.push(line),
                Err(mut gate) => {
                    if named {
                        gate.reason = format!("{}: {}", member.app, gate.reason);
                    }
                    failed = Some(gate);
                    break;
                }
            }
        }
        if !sections.is_empty() {
            self.set_copy_section(o, &sections.join("\n\n")).await?;
        }
        Ok(match failed {
            Some(gate) => BeforeMerge::Failed(gate),
            None if lines.is_empty() => BeforeMerge::NotNeeded,
            None => BeforeMerge::Copied(lines),
        })
    }

    /// Copy one member's (or app's) digest along `route`: the copy section, and the timeline
    /// line or the `copy` gate saying why not.
    async fn copy_member(
        &self,
        view: &RepoView,
        copier: &Copier,
        route: &Route,
        pr: &crate::promote::state::PullRequest,
    ) -> (Option<String>, Result<String, GateResult>) {
        let digest = pr.digest.to_string();
        let key = match self.cosign_key(view, &pr.app) {
            Ok(key) => key,
            Err(reason) => {
                return (
                    None,
                    Err(GateResult {
                        gate: Gate::Copy,
                        verdict: Verdict::Blocked,
                        reason,
                        recheck_at: None,
                        soak: None,
                    }),
                );
            }
        };
        match copier
            .copy(
                &pr.env,
                &pr.app,
                route,
                &digest,
                pr.tag.as_deref(),
                key.as_ref(),
            )
            .await
        {
            Ok(report) => {
                let now = Utc::now();
                (
                    Some(copied_section(route, &report, now)),
                    Ok(format!(
                        "copied `{}` to `{}` ({}) ({})",
                        route.source.at(&digest),
                        route.target,
                        report.summary(),
                        now.format("%Y-%m-%d %H:%M UTC")
                    )),
                )
            }
            Err(failure) => (
                Some(failed_section(route, &digest, &failure)),
                Err(failure_gate(route, &digest, &failure)),
            ),
        }
    }

    /// What the app's `verify:` asks (key or keyless, attestations) at the config branch tip.
    fn cosign_key(&self, view: &RepoView, app: &str) -> Result<Option<Requirements>, String> {
        let Some(verify) = view.pipeline.app(app).and_then(|a| a.verify.as_ref()) else {
            return Ok(None);
        };
        let files: Vec<(String, Option<String>)> = tokio::task::block_in_place(|| {
            let repo = self.repo();
            let tree = repo.files_at(repo.tip()?)?;
            Ok::<_, EngineError>(
                verify
                    .files()
                    .into_iter()
                    .map(|f| (f.to_string(), tree.read(f).ok().flatten()))
                    .collect(),
            )
        })
        .map_err(|e| e.to_string())?;
        let read = |path: &str| {
            files
                .iter()
                .find(|(f, _)| f == path)
                .and_then(|(_, text)| text.clone())
                .map(String::into_bytes)
                .ok_or_else(|| format!("{path} is not in the config repo"))
        };
        Requirements::from_config(verify, &read).map(Some)
    }

    /// Write the PR body's copy section, when it changed.
    async fn set_copy_section(&self, o: &mut Observed, section: &str) -> Result<(), EngineError> {
        let body = with_section(&o.info.body, section);
        if body != o.info.body {
            self.forge
                .update_pull_request(o.info.number, &o.info.title, &body)
                .await?;
            o.info.body = body;
        }
        Ok(())
    }
}

/// The copy routes and pins of every app `env` pins, when `env` has `copyTo`.
pub fn pinned_routes(
    pipeline: &Pipeline,
    files: &dyn crate::gitrepo::files::Files,
    env: &str,
) -> Result<Vec<(Route, crate::image::Pinned)>, String> {
    let mut out = Vec::new();
    for app in pipeline.apps.keys() {
        let Some(route) = route(pipeline, env, app) else {
            return Ok(out);
        };
        let route = route.map_err(|e| format!("copyTo of {env}: {e}"))?;
        if let Ok(Some(pin)) = crate::gitrepo::bump::current(files, pipeline, env, app) {
            out.push((route, pin));
        }
    }
    Ok(out)
}

/// The PR body's copy section, between markers, so that it is replaced in place.
pub const SECTION_START: &str = "<!-- baton:copy -->";
const SECTION_END: &str = "<!-- /baton:copy -->";

/// `body` with its copy section set to `section`.
pub fn with_section(body: &str, section: &str) -> String {
    let block = format!("{SECTION_START}\n{}\n{SECTION_END}", section.trim_end());
    match (body.find(SECTION_START), body.find(SECTION_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{block}{}", &body[..a], &body[b + SECTION_END.len()..])
        }
        _ => format!("{}\n\n{block}\n", body.trim_end()),
    }
}

/// The copy section while the other gates wait.
pub fn pending_section(route: &Route, digest: &str, check: &GateResult) -> String {
    format!(
        "**Copy to `{}`** (`copyTo`): `{}` is copied there by digest once every other gate passes, before the merge.\nCheck: {} {}",
        route.target,
        route.source.at(digest),
        match check.verdict {
            Verdict::Passed => "✅",
            Verdict::Waiting => "⏳",
            Verdict::Blocked => "⛔",
        },
        check.reason
    )
}

/// The copy section once copied.
pub fn copied_section(route: &Route, report: &CopyReport, at: DateTime<Utc>) -> String {
    format!(
        "**Copied** `{}` → `{}` at {} ({}); verified by digest{}.",
        route.source.at(&report.digest),
        route.target.at(&report.digest),
        at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.summary(),
        if report.signature.is_some() {
            ", signature copied"
        } else {
            ""
        }
    )
}

/// The copy section after a failed attempt.
pub fn failed_section(route: &Route, digest: &str, failure: &CopyFailure) -> String {
    format!(
        "**Copy to `{}` failed** (attempt {}): {}. Retrying at {}; the PR merges only once `{}` is copied.",
        route.target,
        failure.attempts,
        failure.reason,
        failure.retry_at.format("%Y-%m-%d %H:%M:%S UTC"),
        route.source.at(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Repo;

    fn web_route() -> Route {
        Route {
            source: Repo::new("r.io", "shop/web"),
            target: Repo::new("prod.io", "shop/web"),
        }
    }

    #[test]
    fn the_copy_section_is_appended_once_then_replaced_in_place() {
        let body = "Promotes **web** to **prod**.\n\nImage: `r.io/shop/web@sha256:aa`\n";
        let first = with_section(body, "pending");
        assert!(first.starts_with(body.trim_end()));
        assert_eq!(first.matches(SECTION_START).count(), 1);
        let second = with_section(&first, "copied");
        assert_eq!(second.matches(SECTION_START).count(), 1);
        assert!(
            second.contains("copied") && !second.contains("pending"),
            "{second}"
        );
        assert_eq!(with_section(&second, "copied"), second);
    }

    #[test]
    fn a_failure_is_a_gate_naming_source_target_attempt_and_retry() {
        let f = CopyFailure {
            reason: "registry prod.io refused access".into(),
            attempts: 2,
            retry_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 10, 0, 20).unwrap(),
            transient: false,
        };
        let g = failure_gate(&web_route(), "sha256:aa", &f);
        assert_eq!(g.gate, Gate::Copy);
        assert_eq!(g.verdict, Verdict::Blocked);
        assert_eq!(
            g.reason,
            "copying `r.io/shop/web@sha256:aa` to `prod.io/shop/web` failed (attempt 2): registry prod.io refused access; retrying at 10:00:20 UTC"
        );
    }
}
