//! `POST /webhooks/github`: the signature is checked (HMAC-SHA256, constant time) before the
//! body is parsed; the event name header becomes an [`Event`]; each delivery is handled
//! once. A webhook only *nudges* the engine: all state is re-read from GitHub, so a lost or
//! duplicated delivery delays work but never loses or repeats it.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Secret;

/// Check `X-Hub-Signature-256: sha256=<hex>` against the body. Constant-time in the
/// signature bytes.
pub fn verify_signature(secret: &Secret, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// `sha256=<hex>` for a body, as GitHub signs it (used by tests and stand-ins).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The GitHub events baton acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A comment on a PR: may carry a command.
    IssueComment {
        action: String,
        pr: Option<u64>,
        comment_id: u64,
        author: String,
        author_is_bot: bool,
    },
    /// A PR opened, synchronized, labeled, closed…
    PullRequest { action: String, pr: u64 },
    /// A review submitted or dismissed.
    PullRequestReview { pr: u64 },
    /// A commit status changed.
    Status { sha: String, context: String },
    /// A check run or suite changed.
    Check { sha: String },
    /// A branch moved.
    Push { branch: String, after: String },
    /// A merge queue asks for checks on a merge group (`checks_requested`).
    MergeGroup { head_sha: String, head_ref: String },
    /// GitHub's hello on webhook creation.
    Ping,
}

/// Why a delivery was not understood.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// An event baton does not act on (answered with 204).
    #[error("event {0:?} is not handled")]
    Unhandled(String),
    /// A handled event whose body is not what GitHub sends.
    #[error("malformed {event} payload: {source}")]
    Malformed {
        event: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    action: String,
    issue: Issue,
    comment: Comment,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    user: User,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    number: u64,
}

#[derive(Deserialize)]
struct ReviewPayload {
    pull_request: Numbered,
}

#[derive(Deserialize)]
struct Numbered {
    number: u64,
}

#[derive(Deserialize)]
struct StatusPayload {
    sha: String,
    context: String,
}

#[derive(Deserialize)]
struct CheckRunPayload {
    check_run: HeadSha,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    check_suite: HeadSha,
}

#[derive(Deserialize)]
struct HeadSha {
    head_sha: String,
}

#[derive(Deserialize)]
struct MergeGroupPayload {
    action: String,
    merge_group: MergeGroup,
}

#[derive(Deserialize)]
struct MergeGroup {
    head_sha: String,
    head_ref: String,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
}

/// Parse a verified delivery.
pub fn parse(event: &str, body: &[u8]) -> Result<Event, EventError> {
    let bad = |source| EventError::Malformed {
        event: event.to_string(),
        source,
    };
    Ok(match event {
        "ping" => Event::Ping,
        "issue_comment" => {
            let p: IssueCommentPayload = serde_json::from_slice(body).map_err(bad)?;
            Event::IssueComment {
                action: p.action,
                pr: p.issue.pull_request.is_some().then_some(p.issue.number),
                comment_id: p.comment.id,
                author_is_bot: p.comment.user.kind == "Bot"
                    || p.comment.user.login.ends_with("[bot]"),
                author: p.comment.user.login,
            }
        }
        "pull_request" => {
            let p: PullRequestPayload = serde_json::from_slice(body).map_err(bad)?;
            Event::PullRequest {
                action: p.action,
                pr: p.number,
            }
        }
        "pull_request_review" => {
            let p: ReviewPayload = serde_json::from_slice(body).map_err(bad)?;
            Event::PullRequestReview {
                pr: p.pull_request.number,
            }
        }
        "status" => {
            let p: StatusPayload = serde_json::from_slice(body).map_err(bad)?;
            Event::Status {
                sha: p.sha,
                context: p.context,
            }
        }
        "check_run" => {
            let p: CheckRunPayload = serde_json::from_slice(body).map_err(bad)?;
            Event::Check {
                sha: p.check_run.head_sha,
            }
        }
        "check_suite" => {
            let p: CheckSuitePayload = serde_json::from_slice(body).map_err(bad)?;
            Event::Check {
                sha: p.check_suite.head_sha,
            }
        }
        "push" => {
            let p: PushPayload = serde_json::from_slice(body).map_err(bad)?;
            Event::Push {
                branch: p.git_ref.trim_start_matches("refs/heads/").to_string(),
                after: p.after,
            }
        }
        "merge_group" => {
            let p: MergeGroupPayload = serde_json::from_slice(body).map_err(bad)?;
            if p.action != "checks_requested" {
                return Err(EventError::Unhandled(format!("merge_group.{}", p.action)));
            }
            Event::MergeGroup {
                head_sha: p.merge_group.head_sha,
                head_ref: p.merge_group.head_ref,
            }
        }
        other => return Err(EventError::Unhandled(other.to_string())),
    })
}

/// Remembers the last delivery ids so that a redelivery is acknowledged and skipped.
#[derive(Debug)]
pub struct Deliveries {
    capacity: usize,
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Deliveries {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// True the first time an id is seen (within the last `capacity` ids).
    pub fn first_time(&self, id: &str) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (seen, order) = &mut *guard;
        if seen.contains(id) {
            return false;
        }
        seen.insert(id.to_string());
        order.push_back(id.to_string());
        if order.len() > self.capacity
            && let Some(old) = order.pop_front()
        {
            seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_made_with_the_secret_verifies_and_nothing_else_does() {
        let secret = Secret::new("It's a Secret to Everybody");
        // GitHub's documented example.
        let body = b"Hello, World!";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(&secret, body), expected);
        assert!(verify_signature(&secret, body, Some(expected)));
        assert!(!verify_signature(&secret, b"Hello, World?", Some(expected)));
        assert!(!verify_signature(
            &Secret::new("other"),
            body,
            Some(expected)
        ));
        assert!(!verify_signature(&secret, body, None));
        assert!(!verify_signature(&secret, body, Some("sha1=abc")));
        assert!(!verify_signature(&secret, body, Some("sha256=zz")));
    }

    #[test]
    fn comments_on_prs_are_parsed_and_bots_recognised() {
        let body = br#"{"action":"created","issue":{"number":5,"pull_request":{"url":"x"}},"comment":{"id":99,"body":"/promote prod","user":{"login":"alice","type":"User"}}}"#;
        assert_eq!(
            parse("issue_comment", body).unwrap(),
            Event::IssueComment {
                action: "created".into(),
                pr: Some(5),
                comment_id: 99,
                author: "alice".into(),
                author_is_bot: false
            }
        );
        let bot = br#"{"action":"created","issue":{"number":5},"comment":{"id":1,"user":{"login":"baton[bot]","type":"Bot"}}}"#;
        assert!(matches!(
            parse("issue_comment", bot).unwrap(),
            Event::IssueComment {
                pr: None,
                author_is_bot: true,
                ..
            }
        ));
    }

    #[test]
    fn unknown_events_and_malformed_payloads_are_told_apart() {
        assert!(matches!(
            parse("fork", b"{}"),
            Err(EventError::Unhandled(_))
        ));
        assert!(matches!(
            parse("push", b"{}"),
            Err(EventError::Malformed { .. })
        ));
        assert_eq!(
            parse("push", br#"{"ref":"refs/heads/main","after":"abc"}"#).unwrap(),
            Event::Push {
                branch: "main".into(),
                after: "abc".into()
            }
        );
    }

    #[test]
    fn a_redelivery_is_recognised_within_capacity() {
        let d = Deliveries::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"));
        assert!(d.first_time("a"), "a fell out of the window of 2");
    }
}
