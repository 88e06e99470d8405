//! Notifications (`notify:` in `baton.yaml`, docs/notify.md): what baton tells people about a
//! promotion, and how it makes sure each receiver hears it once.
//!
//! The pure parts: an [`Event`] with a stable id, made from what the engine decided
//! ([`from_outcome`]); which entries want it ([`crate::config::notify::NotifyConfig::wants`]);
//! the bodies and the signature ([`payload`]); the delivery record kept with baton's state
//! ([`log::Log`]: pending before the attempt, done after). The I/O part is [`worker`]: a task
//! of its own that the service only hands events to, so a slow or dead receiver never holds
//! a promotion back.

pub mod log;
pub mod payload;
pub mod worker;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use crate::config::notify::EventKind;
use crate::engine::Outcome;

/// Something a receiver is told about, as persisted while its delivery is pending and as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Stable across restarts and repeats of the same decision ([`event_id`]); sent as
    /// `X-Baton-Delivery` so a receiver can drop a repeat.
    pub id: String,
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The config repo, `owner/name`.
    pub repository: String,
    #[serde(rename = "environment")]
    pub env: String,
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
    /// The config branch commit (the merge, or the state reconciled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What the engine said: the blocking gate, GitHub's refusal, the rollout's status.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestRef {
    pub number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The id of an event: the same decision about the same release always has the same one
/// (environment, app, event, digest, PR), whichever pass or process made it.
pub fn event_id(
    env: &str,
    app: &str,
    kind: EventKind,
    digest: Option<&str>,
    pr: Option<u64>,
) -> String {
    let key = format!(
        "baton-notify/1\n{env}\n{app}\n{}\n{}\n{}",
        kind.as_str(),
        digest.unwrap_or("-"),
        pr.map_or_else(|| "-".to_string(), |n| n.to_string())
    );
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// What the service knows of the release an outcome concerns (the engine's outcomes name only
/// the PR, environment and app).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub url: Option<String>,
    /// The PR is a rollback (`baton:rollback`).
    pub rollback: bool,
    pub commit: Option<String>,
}

/// The event an engine outcome is, if any. `release` answers for `(env, app, pr)`.
pub fn from_outcome(
    outcome: &Outcome,
    repository: &str,
    release: impl Fn(&str, &str, Option<u64>) -> Release,
    now: DateTime<Utc>,
) -> Option<Event> {
    let (kind, env, app, pr, detail, commit) = match outcome {
        Outcome::Waiting {
            pr,
            env,
            app,
            blocking,
            ..
        } => (
            waiting_kind(blocking)?,
            env,
            app,
            Some(*pr),
            blocking.clone(),
            None,
        ),
        Outcome::Merged { pr, env, app, sha } => {
            let kind = if release(env, app, Some(*pr)).rollback {
                EventKind::RolledBack
            } else {
                EventKind::Merged
            };
            (kind, env, app, Some(*pr), String::new(), Some(sha.clone()))
        }
        Outcome::Reported {
            pr,
            env,
            app,
            state,
        } => (reported_kind(state)?, env, app, *pr, state.clone(), None),
        _ => return None,
    };
    let r = release(env, app, pr);
    Some(Event {
        id: event_id(env, app, kind, r.digest.as_deref(), pr),
        kind,
        repository: repository.to_string(),
        env: env.clone(),
        app: app.clone(),
        digest: r.digest,
        tag: r.tag,
        pull_request: pr.map(|number| PullRequestRef { number, url: r.url }),
        commit: commit.or(r.commit),
        detail,
        occurred_at: now,
    })
}

/// A waiting PR is news when people must act (approve, or `/promote`) or GitHub refused the
/// merge; the other gates (soak, windows, checks) clear by themselves.
fn waiting_kind(blocking: &str) -> Option<EventKind> {
    if blocking.starts_with("GitHub refused the merge") {
        return Some(EventKind::MergeRefused);
    }
    let (gate, reason) = blocking.split_once(':')?;
    match gate.trim() {
        "approvals" | "command" => Some(EventKind::WaitingForApproval),
        "github" if reason.to_ascii_lowercase().contains("approv") => {
            Some(EventKind::WaitingForApproval)
        }
        _ => None,
    }
}

/// The rollout and verification reports the engine words in its statuses
/// (`engine::rollout::Rollout::status`, `engine::verification`).
fn reported_kind(state: &str) -> Option<EventKind> {
    if state.starts_with("healthy") {
        Some(EventKind::RolledOutHealthy)
    } else if state.starts_with("failed") || state.starts_with("not applied") {
        Some(EventKind::RolloutFailed)
    } else if state.starts_with("verification failed") {
        Some(EventKind::VerificationFailed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AppRollout, Rollout, RolloutState};

    fn at() -> DateTime<Utc> {
        "2026-12-03T10:00:00Z".parse().unwrap()
    }

    fn known(_: &str, _: &str, pr: Option<u64>) -> Release {
        Release {
            digest: Some(format!("sha256:{:064}", pr.unwrap_or(0))),
            tag: Some("1.1.0".into()),
            url: pr.map(|n| format!("https://github.com/shop/config/pull/{n}")),
            rollback: pr == Some(9),
            commit: None,
        }
    }

    fn event(o: Outcome) -> Option<Event> {
        from_outcome(&o, "shop/config", known, at())
    }

    fn rollout_state(state: RolloutState) -> String {
        Rollout {
            env: "prod".into(),
            commit: "abc1234".into(),
            state,
            apps: Vec::<AppRollout>::new(),
        }
        .status()
        .description
    }

    #[test]
    fn engine_outcomes_become_the_events_people_are_told_about() {
        let waiting = |blocking: &str| Outcome::Waiting {
            pr: 4,
            env: "prod".into(),
            app: "web".into(),
            blocking: blocking.into(),
            gates: vec![],
        };
        let kind = |o| event(o).map(|e| e.kind);
        assert_eq!(
            kind(waiting("approvals: 1 of 2 from @shop/release-managers")),
            Some(EventKind::WaitingForApproval)
        );
        assert_eq!(
            kind(waiting("command: needs /promote prod")),
            Some(EventKind::WaitingForApproval)
        );
        assert_eq!(kind(waiting("soak: healthy for 2m of 10m")), None);
        assert_eq!(kind(waiting("checks: validate pending")), None);
        let refused = crate::engine::refusal::blocking(&crate::engine::refusal::Refusal {
            head: "abcdef0".into(),
            attempt: 1,
            reason: "Commits must have verified signatures.".into(),
            next_try: at(),
        });
        assert_eq!(kind(waiting(&refused)), Some(EventKind::MergeRefused));

        let merged = |pr| Outcome::Merged {
            pr,
            env: "prod".into(),
            app: "web".into(),
            sha: "f00".into(),
        };
        let m = event(merged(4)).unwrap();
        assert_eq!(m.kind, EventKind::Merged);
        assert_eq!(m.commit.as_deref(), Some("f00"));
        assert_eq!(m.pull_request.as_ref().unwrap().number, 4);
        assert_eq!(kind(merged(9)), Some(EventKind::RolledBack));

        let reported = |state: String| Outcome::Reported {
            pr: Some(4),
            env: "prod".into(),
            app: "web".into(),
            state,
        };
        assert_eq!(
            kind(reported(rollout_state(RolloutState::Healthy {
                took: std::time::Duration::from_secs(12),
                summary: "2 objects".into()
            }))),
            Some(EventKind::RolledOutHealthy)
        );
        assert_eq!(
            kind(reported(rollout_state(RolloutState::Failed {
                reasons: vec!["Deployment/web: ProgressDeadlineExceeded".into()]
            }))),
            Some(EventKind::RolloutFailed)
        );
        assert_eq!(
            kind(reported(rollout_state(RolloutState::Invalid {
                reason: "render failed".into()
            }))),
            Some(EventKind::RolloutFailed)
        );
        assert_eq!(kind(reported(rollout_state(RolloutState::Applying))), None);
        assert_eq!(
            kind(reported("verification failed".into())),
            Some(EventKind::VerificationFailed)
        );
        assert_eq!(kind(reported("verified".into())), None);
        assert_eq!(
            event(Outcome::Opened {
                pr: 1,
                env: "dev".into(),
                app: "web".into()
            }),
            None
        );
    }

    #[test]
    fn the_same_decision_has_the_same_id_and_any_difference_changes_it() {
        let a = event_id("prod", "web", EventKind::Merged, Some("sha256:1"), Some(4));
        assert_eq!(
            a,
            event_id("prod", "web", EventKind::Merged, Some("sha256:1"), Some(4))
        );
        assert_eq!(a.len(), 32);
        for other in [
            event_id("dev", "web", EventKind::Merged, Some("sha256:1"), Some(4)),
            event_id("prod", "api", EventKind::Merged, Some("sha256:1"), Some(4)),
            event_id(
                "prod",
                "web",
                EventKind::RolledBack,
                Some("sha256:1"),
                Some(4),
            ),
            event_id("prod", "web", EventKind::Merged, Some("sha256:2"), Some(4)),
            event_id("prod", "web", EventKind::Merged, Some("sha256:1"), Some(5)),
            event_id("prod", "web", EventKind::Merged, None, Some(4)),
        ] {
            assert_ne!(a, other);
        }
        // Repeated passes over a waiting PR make the same event.
        let w = || Outcome::Waiting {
            pr: 4,
            env: "prod".into(),
            app: "web".into(),
            blocking: "approvals: 0 of 2".into(),
            gates: vec![],
        };
        assert_eq!(event(w()).unwrap().id, event(w()).unwrap().id);
    }
}
