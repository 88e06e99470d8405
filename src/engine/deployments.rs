//! GitHub Deployments, one per rollout of a promotion to an environment: environment `<env>`,
//! ref the promotion's merge commit on the config branch, payload `{app, digest, tag}`. Its
//! statuses follow the rollout report: `in_progress` while applying, then `success` or
//! `failure`; `log_url` is the PR, `environment_url` baton's status page (`server.publicUrl`).
//! Once a rollback's Deployment succeeds, the Deployment of the release it rolled back gets
//! `inactive` (GitHub's `auto_inactive` only deactivates *successful* earlier deployments).
//!
//! Nothing is remembered: the Deployment of an environment and merge commit is looked up
//! before one is created (`GET .../deployments?environment=&sha=`), and a status is posted
//! only when the Deployment's newest status is not already the one wanted. `Engine::report_rollout`
//! calls this before it writes the commit status that marks the report done, so a bot killed
//! in between does it again, without duplicates.
//!
//! The decisions ([`wanted`], [`to_post`], [`payload`], [`needs_deactivation`]) are pure; the
//! I/O is [`Engine::record_deployments`].

use serde_json::{Value, json};

use super::rollout::{Rollout, RolloutState, STATUS_DESCRIPTION_LIMIT, clip};
use super::{Engine, EngineError};
use crate::forge::{DeploymentState, Forge, ForgeError, NewDeployment, NewDeploymentStatus};
use crate::gitrepo::history::Entry;
use crate::image::Digest;

/// Where Deployments link to. Set on the engine with [`Engine::with_deployments`]; without
/// it no Deployments are made (library users and tests that do not want them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentLinks {
    /// The config repository's web page (`https://github.com/shop/config`): PR links
    /// (`log_url`) are `<repo>/pull/<n>`.
    pub repository: Option<String>,
    /// baton's status page (`server.publicUrl`): each status's `environment_url`. Without it
    /// `environment_url` is left out.
    pub status_page: Option<String>,
}

/// The Deployment status a rollout state asks for.
pub fn wanted(state: &RolloutState) -> DeploymentState {
    match state {
        RolloutState::Applying => DeploymentState::InProgress,
        RolloutState::Healthy { .. } => DeploymentState::Success,
        RolloutState::Failed { .. } | RolloutState::Invalid { .. } => DeploymentState::Failure,
    }
}

fn is_final(s: DeploymentState) -> bool {
    matches!(
        s,
        DeploymentState::Success | DeploymentState::Failure | DeploymentState::Error
    )
}

/// The statuses to post, in order, on a Deployment whose statuses are `existing` (newest
/// first) so that it says `want`: `in_progress` first when it has none; nothing when it says
/// so already, is `inactive` (over), or when a finished rollout would go back to
/// `in_progress` (a re-apply of the same commit is not a new rollout).
pub fn to_post(existing: &[DeploymentState], want: DeploymentState) -> Vec<DeploymentState> {
    match existing.first().copied() {
        None if want == DeploymentState::InProgress => vec![want],
        None => vec![DeploymentState::InProgress, want],
        Some(DeploymentState::Inactive) => vec![],
        Some(newest) if newest == want => vec![],
        Some(newest) if is_final(newest) && !is_final(want) => vec![],
        Some(_) => vec![want],
    }
}

/// Whether a rolled-back release's Deployment (statuses newest first) is still shown as
/// failed, and so is to be marked `inactive`.
pub fn needs_deactivation(existing: &[DeploymentState]) -> bool {
    matches!(
        existing.first(),
        Some(DeploymentState::Failure | DeploymentState::Error)
    )
}

/// What a Deployment carries: the app, its digest and its tag.
pub fn payload(app: &str, digest: &Digest, tag: Option<&str>) -> Value {
    json!({ "app": app, "digest": digest.as_str(), "tag": tag })
}

/// The Deployment's description.
pub fn description(entry: &Entry) -> String {
    let p = &entry.promotion;
    let what = match &p.tag {
        Some(tag) => format!("{} {tag} ({})", p.app, p.to.short()),
        None => format!("{} {}", p.app, p.to.short()),
    };
    let text = match (&p.rollback_of, p.pull_request) {
        (Some(bad), _) => format!(
            "roll back {what} in {}, replacing {}",
            p.environment,
            bad.short()
        ),
        (None, Some(pr)) => format!("{what} to {} (#{pr})", p.environment),
        (None, None) => format!("{what} to {}", p.environment),
    };
    clip(&text, STATUS_DESCRIPTION_LIMIT)
}

/// The newest promotion before `rollback` (in `history`, newest first) that brought the
/// rolled-back digest to the environment: the release whose Deployment is to be deactivated.
pub fn rolled_back<'h>(history: &'h [Entry], rollback: &Entry) -> Option<&'h Entry> {
    let bad = rollback.promotion.rollback_of.as_ref()?;
    history
        .iter()
        .skip_while(|e| e.commit != rollback.commit)
        .skip(1)
        .find(|e| {
            e.promotion.app == rollback.promotion.app
                && e.promotion.environment == rollback.promotion.environment
                && e.promotion.to == *bad
        })
}

/// Errors that stop the report (it is retried, and nothing after is written); others (the
/// App lacks the *Deployments* permission, GitHub refused) are logged and the rollout report
/// goes on without its Deployment.
fn stops_the_report(e: &ForgeError) -> bool {
    e.is_transient() || matches!(e, ForgeError::Fenced { .. })
}

impl<F: Forge> Engine<F> {
    /// Record GitHub Deployments for a rollout (see the module docs): one per promotion in
    /// `concerned` (the promotions this report is about), and `inactive` on the release a
    /// healthy rollback replaced. `history` is the environment's promotions, newest first.
    pub(super) async fn record_deployments(
        &self,
        rollout: &Rollout,
        concerned: &[&Entry],
        history: &[Entry],
    ) -> Result<(), EngineError> {
        let Some(links) = self.deployment_links.clone() else {
            return Ok(());
        };
        for entry in concerned {
            let result = self
                .record_deployment(rollout, entry, history, &links)
                .await;
            match result {
                Ok(()) => {}
                Err(e) if stops_the_report(&e) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(env = %rollout.env, app = %entry.promotion.app, error = %e, "cannot record the GitHub Deployment");
                }
            }
        }
        Ok(())
    }

    async fn record_deployment(
        &self,
        rollout: &Rollout,
        entry: &Entry,
        history: &[Entry],
        links: &DeploymentLinks,
    ) -> Result<(), ForgeError> {
        let p = &entry.promotion;
        let bot = self.forge.bot_login();
        let found = self
            .forge
            .deployments(&rollout.env, &entry.commit)
            .await?
            .into_iter()
            .find(|d| d.creator == bot);
        let (deployment, existing) = match found {
            Some(d) => {
                let states: Vec<DeploymentState> = self
                    .forge
                    .deployment_statuses(d.id)
                    .await?
                    .iter()
                    .map(|s| s.state)
                    .collect();
                (d, states)
            }
            None => {
                let d = self
                    .forge
                    .create_deployment(&NewDeployment {
                        sha: entry.commit.clone(),
                        environment: rollout.env.clone(),
                        description: description(entry),
                        payload: payload(&p.app, &p.to, p.tag.as_deref()),
                    })
                    .await?;
                tracing::info!(env = %rollout.env, app = %p.app, id = d.id, "created GitHub Deployment");
                (d, Vec::new())
            }
        };
        let want = wanted(&rollout.state);
        let log_url = links
            .repository
            .as_deref()
            .zip(p.pull_request)
            .map(|(repo, pr)| format!("{}/pull/{pr}", repo.trim_end_matches('/')));
        let description = rollout.status().description;
        for state in to_post(&existing, want) {
            let text = if state == want {
                description.clone()
            } else {
                format!("applying {}", &entry.commit[..entry.commit.len().min(7)])
            };
            self.forge
                .create_deployment_status(
                    deployment.id,
                    &NewDeploymentStatus {
                        state,
                        description: text,
                        log_url: log_url.clone(),
                        environment_url: links.status_page.clone(),
                    },
                )
                .await?;
        }
        if want == DeploymentState::Success
            && let Some(bad) = rolled_back(history, entry)
        {
            self.deactivate(rollout, bad, entry).await?;
        }
        Ok(())
    }

    /// Mark the Deployment of the rolled-back release `bad` inactive (once).
    async fn deactivate(
        &self,
        rollout: &Rollout,
        bad: &Entry,
        rollback: &Entry,
    ) -> Result<(), ForgeError> {
        let bot = self.forge.bot_login();
        for d in self
            .forge
            .deployments(&rollout.env, &bad.commit)
            .await?
            .into_iter()
            .filter(|d| d.creator == bot)
        {
            let states: Vec<DeploymentState> = self
                .forge
                .deployment_statuses(d.id)
                .await?
                .iter()
                .map(|s| s.state)
                .collect();
            if needs_deactivation(&states) {
                let by = match rollback.promotion.pull_request {
                    Some(pr) => format!("rolled back by #{pr}"),
                    None => "rolled back".to_string(),
                };
                self.forge
                    .create_deployment_status(
                        d.id,
                        &NewDeploymentStatus {
                            state: DeploymentState::Inactive,
                            description: by,
                            log_url: None,
                            environment_url: None,
                        },
                    )
                    .await?;
                tracing::info!(env = %rollout.env, id = d.id, "marked the rolled-back Deployment inactive");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitrepo::trailers::Promotion;
    use DeploymentState::*;
    use chrono::{TimeZone, Utc};
    use std::time::Duration;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn entry(commit: &str, to: char, rollback_of: Option<char>) -> Entry {
        Entry {
            time: Utc.with_ymd_and_hms(2026, 12, 3, 8, 0, 0).unwrap(),
            commit: commit.to_string(),
            promotion: Promotion {
                app: "web".into(),
                environment: "dev".into(),
                from: None,
                to: digest(to),
                tag: Some("1.2.0".into()),
                approved_by: vec![],
                promoted_by: None,
                pull_request: Some(7),
                rollback_of: rollback_of.map(digest),
            },
        }
    }

    #[test]
    fn a_rollout_state_asks_for_its_deployment_status() {
        assert_eq!(wanted(&RolloutState::Applying), InProgress);
        assert_eq!(
            wanted(&RolloutState::Healthy {
                took: Duration::from_secs(3),
                summary: String::new()
            }),
            Success
        );
        assert_eq!(wanted(&RolloutState::Failed { reasons: vec![] }), Failure);
        assert_eq!(
            wanted(&RolloutState::Invalid {
                reason: "bad".into()
            }),
            Failure
        );
    }

    #[test]
    fn a_new_deployment_starts_in_progress_even_when_first_seen_finished() {
        assert_eq!(to_post(&[], InProgress), [InProgress]);
        assert_eq!(to_post(&[], Success), [InProgress, Success]);
        assert_eq!(to_post(&[], Failure), [InProgress, Failure]);
    }

    #[test]
    fn a_status_already_there_is_not_posted_again() {
        assert!(to_post(&[InProgress], InProgress).is_empty());
        assert!(to_post(&[Success, InProgress], Success).is_empty());
        assert!(to_post(&[Failure, InProgress], Failure).is_empty());
    }

    #[test]
    fn a_rollout_moves_from_in_progress_to_its_outcome() {
        assert_eq!(to_post(&[InProgress], Success), [Success]);
        assert_eq!(to_post(&[InProgress], Failure), [Failure]);
        // Recovered at the same commit (the reconciler found it healthy after all).
        assert_eq!(to_post(&[Failure, InProgress], Success), [Success]);
    }

    #[test]
    fn a_finished_or_inactive_deployment_never_goes_back() {
        assert!(to_post(&[Success, InProgress], InProgress).is_empty());
        assert!(to_post(&[Failure, InProgress], InProgress).is_empty());
        assert!(to_post(&[Inactive, Success], Failure).is_empty());
        assert!(to_post(&[Inactive, Failure], Success).is_empty());
    }

    #[test]
    fn only_a_deployment_still_shown_failed_is_deactivated() {
        assert!(needs_deactivation(&[Failure, InProgress]));
        assert!(needs_deactivation(&[Error]));
        assert!(!needs_deactivation(&[Inactive, Failure, InProgress]));
        assert!(!needs_deactivation(&[Success]));
        assert!(!needs_deactivation(&[]));
    }

    #[test]
    fn the_payload_names_app_digest_and_tag() {
        assert_eq!(
            payload("web", &digest('a'), Some("1.2.0")),
            json!({"app": "web", "digest": format!("sha256:{}", "a".repeat(64)), "tag": "1.2.0"})
        );
        assert_eq!(payload("web", &digest('a'), None)["tag"], Value::Null);
    }

    #[test]
    fn a_rollback_finds_the_release_it_replaced() {
        // Newest first: the rollback (to a), the bad release (b), the release before (a).
        let history = vec![
            entry("c3", 'a', Some('b')),
            entry("c2", 'b', None),
            entry("c1", 'a', None),
        ];
        assert_eq!(
            rolled_back(&history, &history[0]).map(|e| e.commit.as_str()),
            Some("c2")
        );
        assert_eq!(rolled_back(&history, &history[1]), None);
    }

    #[test]
    fn descriptions_name_the_release_and_fit_githubs_limit() {
        assert_eq!(
            description(&entry("c2", 'b', None)),
            format!("web 1.2.0 (sha256:{}) to dev (#7)", "b".repeat(12))
        );
        assert!(description(&entry("c3", 'a', Some('b'))).starts_with("roll back web 1.2.0"));
        assert!(description(&entry("c3", 'a', Some('b'))).chars().count() <= 140);
    }
}
