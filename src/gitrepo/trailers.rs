//! The audit log: `Baton-*` trailers on merge and squash commits. Written by the bot when it
//! merges a promotion, read back by `baton history`; since they live in Git they outlive the
//! bot. The record itself, [`Promotion`], is a plain value the planner owns
//! (`promote::state`); this module is its Git form.

use std::fmt::Write as _;

pub use crate::promote::state::Promotion;

pub const APP: &str = "Baton-App";
pub const ENVIRONMENT: &str = "Baton-Environment";
pub const FROM: &str = "Baton-From";
pub const TO: &str = "Baton-To";
pub const TAG: &str = "Baton-Tag";
pub const APPROVED_BY: &str = "Baton-Approved-By";
pub const PROMOTED_BY: &str = "Baton-Promoted-By";
pub const PULL_REQUEST: &str = "Baton-Pull-Request";
pub const ROLLBACK_OF: &str = "Baton-Rollback-Of";
/// On a group's commit, before the members' records: the release train they travelled in.
pub const GROUP: &str = "Baton-Group";

impl Promotion {
    /// The trailer block, one `Key: value` per line, ending with a newline.
    pub fn trailer_block(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(out, "{k}: {v}");
        };
        line(APP, &self.app);
        line(ENVIRONMENT, &self.environment);
        if let Some(from) = &self.from {
            line(FROM, from.as_str());
        }
        line(TO, self.to.as_str());
        if let Some(tag) = &self.tag {
            line(TAG, tag);
        }
        if !self.approved_by.is_empty() {
            line(APPROVED_BY, &self.approved_by.join(", "));
        }
        if let Some(who) = &self.promoted_by {
            line(PROMOTED_BY, who);
        }
        if let Some(pr) = self.pull_request {
            line(PULL_REQUEST, &format!("#{pr}"));
        }
        if let Some(bad) = &self.rollback_of {
            line(ROLLBACK_OF, bad.as_str());
        }
        out
    }

    /// A commit message: subject, optional body, blank line, trailers.
    pub fn commit_message(&self, subject: &str, body: &str) -> String {
        let mut msg = subject.trim_end().to_string();
        msg.push_str("\n\n");
        if !body.trim().is_empty() {
            msg.push_str(body.trim_end());
            msg.push_str("\n\n");
        }
        msg.push_str(&self.trailer_block());
        msg
    }

    /// A group's commit message: subject, optional body, blank line, then `Baton-Group` and
    /// one trailer block per member, so that history reads one promotion per app.
    pub fn group_message(subject: &str, body: &str, group: &str, members: &[Self]) -> String {
        let mut msg = subject.trim_end().to_string();
        msg.push_str("\n\n");
        if !body.trim().is_empty() {
            msg.push_str(body.trim_end());
            msg.push_str("\n\n");
        }
        let _ = writeln!(msg, "{GROUP}: {group}");
        for m in members {
            msg.push_str(&m.trailer_block());
        }
        msg
    }

    /// Read the trailers of a commit message; `None` unless it names at least an app, an
    /// environment and a valid `Baton-To` digest. Unknown trailers are ignored, and only the
    /// message's last paragraph is read, as Git does. A group's commit records several
    /// promotions: this is the first, [`Promotion::parse_all`] reads them all.
    pub fn parse(message: &str) -> Option<Self> {
        Self::parse_all(message).into_iter().next()
    }

    /// Every promotion a commit message records: one per `Baton-App` trailer, each made of
    /// the trailers from it to the next (trailers before the first apply to all).
    pub fn parse_all(message: &str) -> Vec<Self> {
        let Some(last) = message.trim_end().rsplit("\n\n").next() else {
            return Vec::new();
        };
        let mut shared: Vec<(&str, &str)> = Vec::new();
        let mut records: Vec<Vec<(&str, &str)>> = Vec::new();
        for line in last.lines() {
            let Some((key, value)) = line.split_once(": ") else {
                continue;
            };
            let pair = (key.trim(), value.trim());
            match records.last_mut() {
                _ if pair.0 == APP => records.push(vec![pair]),
                Some(record) => record.push(pair),
                None => shared.push(pair),
            }
        }
        records
            .into_iter()
            .filter_map(|r| Self::from_pairs(shared.iter().chain(r.iter())))
            .collect()
    }

    fn from_pairs<'a>(pairs: impl Iterator<Item = &'a (&'a str, &'a str)>) -> Option<Self> {
        let (mut app, mut env, mut from, mut to, mut tag, mut approved, mut promoted, mut pr) =
            (None, None, None, None, None, Vec::new(), None, None);
        let mut rollback_of = None;
        for &(key, value) in pairs {
            match key {
                APP => app = Some(value.to_string()),
                ENVIRONMENT => env = Some(value.to_string()),
                FROM => from = value.parse().ok(),
                TO => to = value.parse().ok(),
                TAG => tag = Some(value.to_string()),
                APPROVED_BY => {
                    approved = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                }
                PROMOTED_BY => promoted = Some(value.to_string()),
                PULL_REQUEST => pr = value.trim_start_matches('#').parse().ok(),
                ROLLBACK_OF => rollback_of = value.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            app: app?,
            environment: env?,
            from,
            to: to?,
            tag,
            approved_by: approved,
            promoted_by: promoted,
            pull_request: pr,
            rollback_of,
        })
    }

    /// Whether this commit rolled an environment back.
    pub fn is_rollback(&self) -> bool {
        self.rollback_of.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Digest;

    fn sample() -> Promotion {
        Promotion {
            app: "web".into(),
            environment: "prod".into(),
            from: Some(Digest::of(b"old")),
            to: Digest::of(b"new"),
            tag: Some("1.4.0".into()),
            approved_by: vec!["alice".into(), "bob".into()],
            promoted_by: Some("carol".into()),
            pull_request: Some(42),
            rollback_of: None,
        }
    }

    #[test]
    fn trailers_round_trip_through_a_commit_message() {
        let p = sample();
        let msg = p.commit_message(
            "promote web to prod: 1.4.0 (sha256:1234)",
            "Merge pull request #42\n\nbody text",
        );
        assert_eq!(Promotion::parse(&msg), Some(p));
        assert!(msg.ends_with("Baton-Pull-Request: #42\n"));
    }

    #[test]
    fn a_rollback_records_the_digest_it_rolled_back() {
        let p = Promotion {
            rollback_of: Some(Digest::of(b"broken")),
            ..sample()
        };
        let msg = p.commit_message("rollback web in prod", "");
        assert!(msg.contains(&format!("Baton-Rollback-Of: {}", Digest::of(b"broken"))));
        let back = Promotion::parse(&msg).unwrap();
        assert!(back.is_rollback());
        assert_eq!(back, p);
        assert!(!sample().is_rollback());
    }

    #[test]
    fn a_message_without_the_required_trailers_is_not_a_promotion() {
        assert_eq!(
            Promotion::parse("fix typo\n\nSigned-off-by: x <x@y>\n"),
            None
        );
        let no_to = sample()
            .commit_message("s", "")
            .replace("Baton-To", "Baton-Nope");
        assert_eq!(Promotion::parse(&no_to), None);
    }

    #[test]
    fn a_group_commit_records_one_promotion_per_member() {
        let web = sample();
        let worker = Promotion {
            app: "worker".into(),
            from: None,
            to: Digest::of(b"worker-new"),
            tag: Some("release-2.2.0".into()),
            ..sample()
        };
        let msg = Promotion::group_message(
            "promote group shop to prod (#42)",
            "Gates:\n| gate |",
            "shop",
            &[web.clone(), worker.clone()],
        );
        assert!(
            msg.contains("\n\nBaton-Group: shop\nBaton-App: web\n"),
            "{msg}"
        );
        assert_eq!(Promotion::parse_all(&msg), vec![web.clone(), worker]);
        assert_eq!(Promotion::parse(&msg), Some(web.clone()));
        // A one-app commit reads as before.
        assert_eq!(
            Promotion::parse_all(&web.commit_message("s", "")),
            vec![web]
        );
    }

    #[test]
    fn trailers_in_the_body_but_not_the_last_paragraph_do_not_count() {
        let msg = format!(
            "revert\n\n{}\nThis reverts an earlier promotion.\n",
            sample().trailer_block()
        );
        assert_eq!(Promotion::parse(&msg), None);
    }
}
