//! The delivery record of one environment, kept in its state ConfigMap with the soak clocks
//! ([`crate::state::EnvState::notify`]): every delivery is written down as pending before it
//! is tried and as done after, keyed by event id and receiver. A restart picks up what is
//! pending and never sends what is done again. It holds no secret: receivers are named by
//! their `notify:` entry's `name`, never by URL.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::Event;

/// Deliveries remembered as done, per environment (the newest; an event is repeated only
/// when the engine makes the same decision again, which happens within minutes).
pub const DONE_KEPT: usize = 500;
/// Deliveries pending at most, per environment (a receiver down for hours must not grow the
/// ConfigMap without bound): beyond it the oldest are given up.
pub const PENDING_KEPT: usize = 200;

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The wait after the first failure; doubled after each one.
    pub first: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// Attempts in all, after which the delivery is given up.
    pub attempts: u32,
}

impl Default for Retry {
    /// 1 s, 2 s, 4 s … 5 min: ten attempts over about 13 minutes.
    fn default() -> Self {
        Self {
            first: Duration::seconds(1),
            max: Duration::minutes(5),
            attempts: 10,
        }
    }
}

impl Retry {
    /// The wait after the `failures`-th failed attempt.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1i32 << failures.saturating_sub(1).min(20);
        (self.first * factor).min(self.max)
    }
}

/// One environment's deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// `<event id>/<receiver>` → how it ended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub done: BTreeMap<String, Done>,
}

/// A delivery still to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The `notify:` entry's name.
    pub sink: String,
    pub event: Event,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    pub next_try: DateTime<Utc>,
    /// Why the last attempt failed (a status code or a connection error, never a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Pending {
    pub fn key(&self) -> String {
        key(&self.event.id, &self.sink)
    }
}

/// A delivery that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub at: DateTime<Utc>,
    /// `false`: given up after its attempts, or refused for good by the receiver.
    pub delivered: bool,
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    GaveUp,
    /// It was not pending (already settled by an earlier write).
    Unknown,
}

pub fn key(event_id: &str, sink: &str) -> String {
    format!("{event_id}/{sink}")
}

impl Log {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.done.is_empty()
    }

    /// Record `event` as pending for each of `sinks` that has neither had it nor has it
    /// pending. Returns how many deliveries were added, and how many older ones were given up
    /// to stay under [`PENDING_KEPT`].
    pub fn enqueue(&mut self, event: &Event, sinks: &[&str], now: DateTime<Utc>) -> (usize, usize) {
        let mut added = 0;
        for sink in sinks {
            let k = key(&event.id, sink);
            if self.done.contains_key(&k) || self.pending.iter().any(|p| p.key() == k) {
                continue;
            }
            self.pending.push(Pending {
                sink: sink.to_string(),
                event: event.clone(),
                attempts: 0,
                next_try: now,
                last_error: None,
            });
            added += 1;
        }
        let mut dropped = 0;
        while self.pending.len() > PENDING_KEPT {
            let p = self.pending.remove(0);
            self.settle(&p.key(), now, false);
            dropped += 1;
        }
        (added, dropped)
    }

    /// The deliveries due at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<Pending> {
        self.pending
            .iter()
            .filter(|p| p.next_try <= now)
            .cloned()
            .collect()
    }

    /// When the next pending delivery is due.
    pub fn next_try(&self) -> Option<DateTime<Utc>> {
        self.pending.iter().map(|p| p.next_try).min()
    }

    /// The receiver took it (`delivered`), or it is given up for good (`false`).
    pub fn settle(&mut self, key: &str, now: DateTime<Utc>, delivered: bool) {
        self.pending.retain(|p| p.key() != key);
        self.done
            .insert(key.to_string(), Done { at: now, delivered });
        while self.done.len() > DONE_KEPT {
            let oldest = self
                .done
                .iter()
                .min_by_key(|(k, d)| (d.at, (*k).clone()))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.done.remove(&k);
                }
                None => break,
            }
        }
    }

    /// An attempt failed with `error`: try again after the backoff, or give up.
    pub fn failed(
        &mut self,
        key: &str,
        error: &str,
        now: DateTime<Utc>,
        retry: &Retry,
    ) -> AfterFailure {
        let Some(p) = self.pending.iter_mut().find(|p| p.key() == key) else {
            return AfterFailure::Unknown;
        };
        p.attempts += 1;
        p.last_error = Some(error.to_string());
        if p.attempts >= retry.attempts {
            self.settle(key, now, false);
            return AfterFailure::GaveUp;
        }
        p.next_try = now + retry.backoff(p.attempts);
        AfterFailure::RetryAt(p.next_try)
    }

    /// Drop pending deliveries to receivers no longer configured.
    pub fn forget_sinks(&mut self, configured: &[&str]) -> usize {
        let before = self.pending.len();
        self.pending
            .retain(|p| configured.contains(&p.sink.as_str()));
        before - self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
    }

    fn ev(id: &str) -> Event {
        Event {
            id: id.into(),
            kind: EventKind::Merged,
            repository: "shop/config".into(),
            env: "prod".into(),
            app: "web".into(),
            digest: None,
            tag: None,
            pull_request: None,
            commit: None,
            detail: String::new(),
            occurred_at: at(0),
        }
    }

    #[test]
    fn an_event_is_pending_once_per_receiver_and_never_again_once_delivered() {
        let mut log = Log::default();
        assert_eq!(log.enqueue(&ev("e1"), &["a", "b"], at(0)), (2, 0));
        assert_eq!(
            log.enqueue(&ev("e1"), &["a", "b"], at(1)),
            (0, 0),
            "pending"
        );
        assert_eq!(log.due(at(0)).len(), 2);
        log.settle(&key("e1", "a"), at(2), true);
        log.settle(&key("e1", "b"), at(2), true);
        assert!(log.pending.is_empty());
        assert_eq!(log.enqueue(&ev("e1"), &["a", "b"], at(3)), (0, 0), "done");
        assert_eq!(log.enqueue(&ev("e2"), &["a"], at(3)), (1, 0));
    }

    #[test]
    fn failures_back_off_doubling_to_the_cap_then_give_up() {
        let retry = Retry {
            first: Duration::seconds(1),
            max: Duration::seconds(5),
            attempts: 5,
        };
        assert_eq!(retry.backoff(1), Duration::seconds(1));
        assert_eq!(retry.backoff(3), Duration::seconds(4));
        assert_eq!(retry.backoff(4), Duration::seconds(5));
        assert_eq!(retry.backoff(60), Duration::seconds(5));
        let mut log = Log::default();
        log.enqueue(&ev("e"), &["a"], at(0));
        let k = key("e", "a");
        assert_eq!(
            log.failed(&k, "HTTP 500", at(0), &retry),
            AfterFailure::RetryAt(at(1))
        );
        assert!(log.due(at(0)).is_empty());
        assert_eq!(log.due(at(1)).len(), 1);
        assert_eq!(log.next_try(), Some(at(1)));
        for _ in 0..3 {
            assert!(matches!(
                log.failed(&k, "HTTP 500", at(10), &retry),
                AfterFailure::RetryAt(_)
            ));
        }
        assert_eq!(
            log.failed(&k, "HTTP 500", at(10), &retry),
            AfterFailure::GaveUp
        );
        assert!(log.pending.is_empty());
        assert!(!log.done[&k].delivered);
        assert_eq!(log.failed(&k, "x", at(11), &retry), AfterFailure::Unknown);
        assert_eq!(
            log.enqueue(&ev("e"), &["a"], at(12)),
            (0, 0),
            "given up is done"
        );
    }

    #[test]
    fn the_record_stays_bounded() {
        let mut log = Log::default();
        for i in 0..(PENDING_KEPT + 3) {
            log.enqueue(&ev(&format!("p{i}")), &["a"], at(0));
        }
        assert_eq!(log.pending.len(), PENDING_KEPT);
        assert!(
            log.done.contains_key(&key("p0", "a")),
            "the oldest is given up"
        );
        for i in 0..(DONE_KEPT + 10) {
            log.settle(&key(&format!("d{i}"), "a"), at(i as u32 + 1), true);
        }
        assert_eq!(log.done.len(), DONE_KEPT);
        assert!(
            log.done
                .contains_key(&key(&format!("d{}", DONE_KEPT + 9), "a"))
        );
        assert_eq!(log.forget_sinks(&["b"]), PENDING_KEPT);
    }
}
