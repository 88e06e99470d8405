//! GitHub's merge queue. Where the base branch requires one (a ruleset's `merge_queue` rule, or
//! GitHub refused a direct merge because of it), baton does not merge: once every gate passed it
//! writes the audit trailers into the PR body, puts the PR into the queue
//! (`Forge::enqueue`, GraphQL `enqueuePullRequest` at the head it evaluated), and records
//! `queued in GitHub's merge queue at <head7> (<time>)` in the status comment. The queue's merge
//! is baton's merge: no merge call follows, and the rollout follows the base branch as after a
//! direct merge. While the PR stays open at that head, later passes only wait; after
//! [`REQUEUE_AFTER`] still open (the queue dropped it, e.g. a failing check on the merge group),
//! baton queues it again.
//!
//! The queue writes its own commit message, so the trailers live where it keeps them: the PR
//! body (a repository whose default merge and squash messages are "pull request title and
//! description") and the promotion commit itself (app, environment, digests and tag, which a
//! rebase keeps). A queue that rebases keeps only the commits: before queueing, baton adds a
//! record commit (no file changed) carrying the whole record, approvers included.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::{Engine, Observed, refusal, text};
use crate::forge::Forge;
use crate::gitrepo::trailers::{self, Promotion};

const PREFIX: &str = "queued in GitHub's merge queue at `";

/// How long a queued PR may stay open at the same head before baton queues it again.
pub fn requeue_after() -> Duration {
    Duration::hours(1)
}

/// The timeline line for a PR queued at `head`.
pub fn line(head: &str, at: DateTime<Utc>) -> String {
    format!(
        "{PREFIX}{}` ({}); GitHub merges it once the required checks pass on the merge group.",
        &head[..head.len().min(7)],
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The timeline line for a record commit `new_head` put on `head` before queueing.
pub fn recorded_line(head: &str, new_head: &str, at: DateTime<Utc>) -> String {
    format!(
        "recorded approvals and who promoted in `{}` on `{}` ({}): the merge queue rebases, so the audit record goes with the commits.",
        &new_head[..new_head.len().min(7)],
        &head[..head.len().min(7)],
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// When `head` was last queued, from a status comment's timeline.
pub fn queued_at(events: &[String], head: &str) -> Option<DateTime<Utc>> {
    let short = &head[..head.len().min(7)];
    events.iter().rev().find_map(|e| {
        let rest = e.strip_prefix(PREFIX)?;
        let (h, rest) = rest.split_once("` (")?;
        if h != short {
            return None;
        }
        let (at, _) = rest.split_once(')')?;
        DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// Whether a PR queued at `head` is still waiting for the queue at `now` (not to be queued
/// again yet).
pub fn waiting(events: &[String], head: &str, now: DateTime<Utc>) -> bool {
    queued_at(events, head).is_some_and(|at| now < at + requeue_after())
}

/// Whether GitHub's merge refusal names the merge queue (the rules may not have been readable).
pub fn refused_for_queue(reason: &str) -> bool {
    reason.to_ascii_lowercase().contains("merge queue")
}

/// The audit record a merge carries: an app's promotion, or a group's (`Baton-Group` and one
/// promotion per member, as [`Promotion::group_message`] writes them).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub group: Option<&'a str>,
    pub promotions: &'a [Promotion],
}

impl Record<'_> {
    /// The record's trailer block (a commit message's last paragraph).
    pub fn trailer_block(&self) -> String {
        let mut out = self
            .group
            .map(|g| format!("{}: {g}\n", trailers::GROUP))
            .unwrap_or_default();
        for p in self.promotions {
            out.push_str(&p.trailer_block());
        }
        out
    }

    /// A commit message carrying the record: subject, optional body, the trailers.
    pub fn commit_message(&self, subject: &str, body: &str) -> String {
        match (self.group, self.promotions) {
            (None, [one]) => one.commit_message(subject, body),
            (group, all) => Promotion::group_message(subject, body, group.unwrap_or(""), all),
        }
    }

    /// Whether `message` carries exactly this record.
    fn is_in(&self, message: &str) -> bool {
        Promotion::parse_all(message) == self.promotions
    }
}

/// `body` ending with `record`'s trailer block (replacing one baton wrote before), so that a
/// queue writing "title and description" keeps the audit record as its message's last
/// paragraph.
pub fn body_with_trailers(body: &str, record: &Record<'_>) -> String {
    let kept = match body.trim_end().rsplit_once("\n\n") {
        Some((before, last)) if is_trailer_block(last) => before,
        _ if is_trailer_block(body.trim()) => "",
        _ => body.trim_end(),
    };
    let mut out = kept.trim_end().to_string();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(&record.trailer_block());
    out
}

fn is_trailer_block(paragraph: &str) -> bool {
    let paragraph = paragraph.trim();
    !paragraph.is_empty()
        && paragraph
            .lines()
            .all(|l| l.starts_with("Baton-") && l.contains(": "))
        && paragraph.contains(trailers::APP)
}

impl<F: Forge> Engine<F> {
    /// Whether GitHub last refused this head's merge for want of the merge queue (the rules
    /// were not readable, or changed): then the next try queues instead.
    pub(super) fn queue_required(&self, o: &Observed) -> bool {
        let events = o
            .status
            .as_ref()
            .map(|s| text::timeline(&s.body))
            .unwrap_or_default();
        refusal::latest(&events, &o.state.head_sha)
            .is_some_and(|(_, r)| refused_for_queue(&r.reason))
    }

    /// For a queue that rebases (it lands the PR's commits as they are, so the PR body is not
    /// kept): put the whole audit record (approvers, who promoted, the PR) into the branch as a
    /// commit that changes no file on top of `head`, unless the head already carries exactly this
    /// record. Returns the new head when it made one; the PR is queued at that head on a later
    /// pass, once its checks report there (approvals of `head` still count: same content,
    /// `ConfigRepo::same_content`).
    pub(super) async fn record_before_rebase_queue(
        &self,
        o: &Observed,
        head: &str,
        record: &Record<'_>,
    ) -> Result<Option<String>, super::EngineError> {
        let oid = git2::Oid::from_str(head).map_err(|e| crate::gitrepo::repo::GitError::Git {
            op: "read",
            message: format!("the PR head {head} is not a commit id: {e}"),
            transient: false,
        })?;
        let message = tokio::task::block_in_place(|| self.repo().message_of(oid))?;
        if record.is_in(&message) {
            return Ok(None);
        }
        let subject = message.lines().next().unwrap_or_default();
        let record = record.commit_message(
            subject,
            "The promotion's audit record, for a merge queue that rebases: this commit changes no file.",
        );
        let made = self.publish_record(&o.info.head_ref, oid, &record).await?;
        Ok(Some(made.to_string()))
    }

    /// Write the audit trailers into the PR body (when they are not already there), then put the
    /// PR into the merge queue at `head`.
    pub(super) async fn enqueue_promotion(
        &self,
        o: &Observed,
        head: &str,
        record: &Record<'_>,
    ) -> Result<(), crate::forge::ForgeError> {
        let body = body_with_trailers(&o.info.body, record);
        if body != o.info.body {
            self.forge
                .update_pull_request(o.info.number, &o.info.title, &body)
                .await?;
        }
        self.forge.enqueue(o.info.number, head).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Digest;

    fn promotion() -> Promotion {
        Promotion {
            app: "web".into(),
            environment: "prod".into(),
            from: Some(Digest::of(b"old")),
            to: Digest::of(b"new"),
            tag: Some("1.4.0".into()),
            approved_by: vec!["alice".into()],
            promoted_by: Some("carol".into()),
            pull_request: Some(7),
            rollback_of: None,
        }
    }

    #[test]
    fn a_queued_line_reads_back_for_its_head_only() {
        let at = Utc::now();
        let events = vec!["opened".to_string(), line("abcdef0123", at)];
        let back = queued_at(&events, "abcdef0999").expect("same short head");
        assert_eq!(back.timestamp(), at.timestamp());
        assert_eq!(queued_at(&events, "1234567aaa"), None);
        assert!(waiting(&events, "abcdef0123", at + Duration::minutes(59)));
        assert!(!waiting(&events, "abcdef0123", at + Duration::minutes(61)));
    }

    #[test]
    fn the_body_ends_with_the_trailers_once_and_they_parse() {
        let p = promotion();
        let one = |p: &Promotion| {
            body_with_trailers(
                "Promotes **web**.\n\nCommands: `/help`.\n",
                &Record {
                    group: None,
                    promotions: std::slice::from_ref(p),
                },
            )
        };
        let body = one(&p);
        assert!(body.starts_with("Promotes **web**."));
        assert_eq!(Promotion::parse(&body), Some(p.clone()));
        let mut later = p.clone();
        later.approved_by.push("bob".into());
        let again = body_with_trailers(
            &body,
            &Record {
                group: None,
                promotions: std::slice::from_ref(&later),
            },
        );
        assert_eq!(again.matches("Baton-App:").count(), 1);
        assert_eq!(Promotion::parse(&again), Some(later));
    }

    #[test]
    fn a_group_body_ends_with_the_group_and_every_members_trailers() {
        let web = promotion();
        let worker = Promotion {
            app: "worker".into(),
            to: Digest::of(b"worker"),
            ..promotion()
        };
        let members = [web, worker];
        let record = Record {
            group: Some("shop"),
            promotions: &members,
        };
        let body = body_with_trailers("Promotes group **shop**.\n", &record);
        assert!(
            body.contains("\n\nBaton-Group: shop\nBaton-App: web\n"),
            "{body}"
        );
        assert_eq!(Promotion::parse_all(&body), members);
        let again = body_with_trailers(&body, &record);
        assert_eq!(again, body, "replaced, not added");
        assert!(record.is_in(&record.commit_message("subject", "no file changed")));
    }

    #[test]
    fn a_refusal_naming_the_queue_is_recognised() {
        assert!(refused_for_queue(
            "Repository rule violations found\n\nChanges must be made through the merge queue"
        ));
        assert!(!refused_for_queue(
            "At least 1 approving review is required"
        ));
    }
}
