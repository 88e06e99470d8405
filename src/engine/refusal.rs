//! Merges GitHub refuses (branch protection, rulesets, a disallowed merge method, a required
//! merge queue): GitHub's reason goes once into the PR's status comment timeline, with what to do
//! and when baton tries again, and the retries back off (1 min, doubling, at most an hour)
//! instead of repeating on every pass. The line itself is the record, so a restarted bot keeps
//! the schedule: `GitHub refused the merge of `<head7>` (attempt N): <reason> <what to do> Next
//! try after <RFC 3339>.`

use chrono::{DateTime, Duration, SecondsFormat, Utc};

const PREFIX: &str = "GitHub refused the merge of `";
const NEXT: &str = "Next try after ";

/// A refusal recorded in a status comment's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The first seven characters of the head it was refused at.
    pub head: String,
    pub attempt: u32,
    pub reason: String,
    pub next_try: DateTime<Utc>,
}

/// How long after the `attempt`-th refusal baton tries again.
pub fn backoff(attempt: u32) -> Duration {
    Duration::minutes(1i64 << attempt.saturating_sub(1).min(6)).min(Duration::hours(1))
}

/// What a person can do about GitHub's `reason`.
pub fn advice(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("merge queue") {
        "The base branch requires a merge queue: baton puts this PR into the queue at the next try."
    } else if r.contains("approving review") {
        "GitHub's rules want more approving reviews (from people with write access, on the current head) than the pipeline: approve on GitHub, or align `approvals.count` with the branch rules."
    } else if r.contains("status check") {
        "A check GitHub requires is missing or failing on the head: make it pass, or add it to `requiredChecks` so the gate table shows it."
    } else if r.contains("not allowed") && r.contains("merge") {
        "The repository does not allow this merge method: set `mergeMethod` for this environment to one it allows."
    } else if r.contains("signature") {
        "The base branch requires signed commits, and this promotion commit is not verified: run baton as a GitHub App (GitHub then makes and signs its commits), or lift `required_signatures` for baton's branches."
    } else if r.contains("up to date") || r.contains("out of date") {
        "GitHub wants the branch up to date with the base: baton rebuilds it with the next release; or lift the \"up to date\" requirement."
    } else {
        "See the branch protection and rulesets of the base branch on GitHub."
    }
}

/// GitHub's reason on one line.
fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The timeline line for a refusal.
pub fn line(head: &str, attempt: u32, reason: &str, next_try: DateTime<Utc>) -> String {
    let reason = one_line(reason);
    let reason = reason.trim_end_matches('.');
    format!(
        "{PREFIX}{}` (attempt {attempt}): {reason}. {} {NEXT}{}.",
        &head[..head.len().min(7)],
        advice(reason),
        next_try.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// A refusal line read back.
pub fn parse(line: &str) -> Option<Refusal> {
    let rest = line.strip_prefix(PREFIX)?;
    let (head, rest) = rest.split_once("` (attempt ")?;
    let (attempt, rest) = rest.split_once("): ")?;
    let (before, next) = rest.rsplit_once(NEXT)?;
    let next_try = DateTime::parse_from_rfc3339(next.trim_end_matches('.'))
        .ok()?
        .with_timezone(&Utc);
    let reason = before
        .split_once(". ")
        .map(|(r, _)| r)
        .unwrap_or(before)
        .to_owned();
    Some(Refusal {
        head: head.to_owned(),
        attempt: attempt.parse().ok()?,
        reason,
        next_try,
    })
}

/// What blocks the PR while baton waits to try again, for the status headline and outcomes.
pub fn blocking(r: &Refusal) -> String {
    format!(
        "GitHub refused the merge: {}; next try after {}",
        r.reason,
        r.next_try.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The latest refusal of `head` among a timeline's events.
pub fn latest(events: &[String], head: &str) -> Option<(usize, Refusal)> {
    let short = &head[..head.len().min(7)];
    events
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, e)| parse(e).filter(|r| r.head == short).map(|r| (i, r)))
}

/// Record that GitHub refused to merge `head` for `reason` in a timeline's `events`: the
/// line of the `previous` refusal of that head is replaced (its attempt counted up), else one
/// is added. The blocking reason to show.
pub fn record(
    events: &mut Vec<String>,
    previous: Option<&(usize, Refusal)>,
    head: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> String {
    let attempt = previous.map_or(1, |(_, r)| r.attempt + 1);
    let line = line(head, attempt, reason, now + backoff(attempt));
    let shown = parse(&line)
        .map(|r| blocking(&r))
        .unwrap_or_else(|| format!("GitHub refused the merge: {reason}"));
    match previous {
        Some((i, _)) => events[*i] = line,
        None => events.push(line),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_line_round_trips_and_names_what_to_do() {
        let at: DateTime<Utc> = "2026-11-24T10:42:00Z".parse().unwrap();
        let l = line(
            "abcdef0123",
            2,
            "Repository rule violations found\n\nChanges must be made through the merge queue\n\n",
            at,
        );
        assert!(
            l.contains("merge queue: baton puts this PR into the queue"),
            "{l}"
        );
        assert!(!l.contains('\n'));
        let r = parse(&l).unwrap();
        assert_eq!(
            r,
            Refusal {
                head: "abcdef0".into(),
                attempt: 2,
                reason:
                    "Repository rule violations found Changes must be made through the merge queue"
                        .into(),
                next_try: at,
            }
        );
        let events = vec!["merged".to_string(), l.clone()];
        assert_eq!(latest(&events, "abcdef0123").map(|(i, _)| i), Some(1));
        assert_eq!(latest(&events, "1234567"), None);
        assert_eq!(parse("closed: superseded"), None);
    }

    #[test]
    fn retries_back_off_from_a_minute_to_an_hour() {
        assert_eq!(backoff(1), Duration::minutes(1));
        assert_eq!(backoff(2), Duration::minutes(2));
        assert_eq!(backoff(4), Duration::minutes(8));
        assert_eq!(backoff(7), Duration::hours(1));
        assert_eq!(backoff(40), Duration::hours(1));
    }

    #[test]
    fn each_kind_of_refusal_gets_its_own_advice() {
        for (reason, wanted) in [
            (
                "At least 2 approving reviews are required by reviewers with write access.",
                "approvals.count",
            ),
            (
                "Required status check \"ci\" is expected.",
                "requiredChecks",
            ),
            (
                "Squash merges are not allowed on this repository.",
                "mergeMethod",
            ),
            ("Commits must have verified signatures.", "signed"),
            ("Pull Request is not mergeable", "branch protection"),
        ] {
            assert!(
                advice(reason).contains(wanted),
                "{reason}: {}",
                advice(reason)
            );
        }
    }
}
