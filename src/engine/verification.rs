//! Reporting acceptance tests ([`crate::reconcile::verify`]) on GitHub: the commit status
//! `baton/<env>/verify` on the reconciled commit, a line in the promotion PR's timeline, the
//! log tail of a failure as one comment, and the rollback path when the environment says
//! `onFailure: rollback`. Like rollout reports, a report already on GitHub writes nothing.

use super::rollback::{RollbackRequest, Rolled};
use super::rollout::clip;
use super::{Engine, EngineError, Outcome};
use crate::config::pipeline::OnFailure;
use crate::forge::{Forge, StatusState, StatusUpdate};
use crate::reconcile::verify::VerifyReport;

/// The comment carrying a failed run's log tail starts with this, naming the run.
fn failure_marker(report: &VerifyReport) -> String {
    format!(
        "<!-- baton:verify {} {} {} {} -->",
        report.env, report.app, report.digest, report.attempt
    )
}

impl<F: Forge> Engine<F> {
    /// Report a verification of `report.env` run for the state reconciled at `commit`.
    pub async fn report_verification(
        &self,
        commit: &str,
        report: &VerifyReport,
        on_failure: OnFailure,
    ) -> Result<Vec<Outcome>, EngineError> {
        let context = report.status_context();
        let passed = report.passed();
        let state = if passed {
            StatusState::Success
        } else {
            StatusState::Failure
        };
        let description = clip(&report.summary(), 140);
        let current = self.forge.statuses(commit).await?;
        let already = current
            .iter()
            .find(|s| s.context == context)
            .is_some_and(|s| s.state == state && s.description == description);
        if already {
            return Ok(Vec::new());
        }

        // The PR that promoted this digest gets the result in its timeline (and, for a
        // failure, the log tail in one comment), before the status that marks it reported.
        let entries = tokio::task::block_in_place(|| self.promotions_at(commit, &report.env))?;
        let pr = entries
            .iter()
            .find(|e| e.promotion.app == report.app && e.promotion.to.to_string() == report.digest)
            .and_then(|e| e.promotion.pull_request);
        let mut outcomes = Vec::new();
        if let Some(pr) = pr {
            let (line, headline) = if passed {
                (
                    format!("verified: {}", report.summary()),
                    format!("{} verified in {}", report.app, report.env),
                )
            } else {
                (
                    format!("verification failed: {}", report.summary()),
                    format!("{} failed verification in {}", report.app, report.env),
                )
            };
            self.add_timeline(pr, &report.app, &report.env, &headline, &[line])
                .await?;
            if !passed {
                let marker = failure_marker(report);
                let comments = self.forge.comments(pr).await?;
                let posted = comments
                    .iter()
                    .any(|c| c.author == self.forge.bot_login() && c.body.starts_with(&marker));
                if !posted {
                    let body = format!(
                        "{marker}\n### Verification of {} in {} failed\n\n{}",
                        report.app,
                        report.env,
                        clip(&report.markdown(), 60_000)
                    );
                    self.forge.create_comment(pr, &body).await?;
                }
            }
            outcomes.push(Outcome::Reported {
                pr: Some(pr),
                env: report.env.clone(),
                app: report.app.clone(),
                state: if passed {
                    "verified"
                } else {
                    "verification failed"
                }
                .into(),
            });
        }

        if !passed && on_failure == OnFailure::Rollback {
            let request = RollbackRequest {
                env: report.env.clone(),
                app: report.app.clone(),
                to: None,
                bad: report.digest.parse().ok(),
                by: None,
                why: format!(
                    "the verification of {} in {} failed ({})",
                    report.app,
                    report.env,
                    report.summary()
                ),
            };
            if let Rolled::Opened { pr, .. } = self.roll_back_now(&request).await? {
                outcomes.push(Outcome::RollbackOpened {
                    pr,
                    env: report.env.clone(),
                    app: report.app.clone(),
                });
            }
        }

        self.forge
            .set_status(
                commit,
                &StatusUpdate {
                    context,
                    state,
                    description,
                    target_url: None,
                },
            )
            .await?;
        Ok(outcomes)
    }
}
