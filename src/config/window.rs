//! Promotion windows (`"0 9 * * MON-THU for 7h in Europe/Berlin"`) and freezes.
//!
//! A window opens at each occurrence of its cron schedule, evaluated in its time zone (so
//! 09:00 stays 09:00 local across DST changes), and stays open for its duration.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::HumanDuration;

/// A recurring interval during which promotions may merge.
#[derive(Debug, Clone)]
pub struct Window {
    source: String,
    cron: Cron,
    duration: HumanDuration,
    tz: Tz,
}

/// Why a window string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid window {input:?}: {reason} (write \"<cron> for <duration> in <time zone>\", e.g. \"0 9 * * MON-THU for 7h in Europe/Berlin\")"
)]
pub struct WindowError {
    pub input: String,
    pub reason: String,
}

impl Window {
    /// The time zone the schedule is evaluated in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    pub fn duration(&self) -> HumanDuration {
        self.duration
    }

    /// If the window is open at `now`, when it closes.
    pub fn open_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        let start = self.cron.find_previous_occurrence(&local, true).ok()?;
        let end = start.with_timezone(&Utc) + chrono::Duration::from_std(self.duration.0).ok()?;
        (now < end).then_some(end)
    }

    /// When the window next opens strictly after `now` (`None` if the schedule never fires).
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| WindowError {
            input: input.to_string(),
            reason,
        };
        let (schedule, rest) = input
            .split_once(" for ")
            .ok_or_else(|| err("missing \" for <duration>\"".into()))?;
        let (duration, tz) = rest
            .split_once(" in ")
            .ok_or_else(|| err("missing \" in <time zone>\"".into()))?;
        let schedule = schedule.trim();
        if schedule.split_whitespace().count() != 5 {
            return Err(err(format!(
                "the schedule {schedule:?} must have five fields (minute hour day-of-month month day-of-week)"
            )));
        }
        let cron =
            Cron::from_str(schedule).map_err(|e| err(format!("schedule {schedule:?}: {e}")))?;
        let duration: HumanDuration = duration
            .trim()
            .parse()
            .map_err(|e: super::duration::DurationError| err(e.to_string()))?;
        if duration.0.is_zero() {
            return Err(err("the duration must be longer than 0s".into()));
        }
        let tz: Tz = tz.trim().parse().map_err(|_| {
            err(format!(
                "unknown time zone {:?} (use an IANA name such as Europe/Berlin or UTC)",
                tz.trim()
            ))
        })?;
        Ok(Self {
            source: input.to_string(),
            cron,
            duration,
            tz,
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A point in time written either as a date (`2026-12-20`, midnight in the freeze's time
/// zone) or as RFC 3339 (`2026-12-20T18:00:00+01:00`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instant {
    Date(NaiveDate),
    Exact(DateTime<Utc>),
}

impl FromStr for Instant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(Self::Date(d));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self::Exact(t.with_timezone(&Utc)))
            .map_err(|_| format!("invalid date {s:?}: write YYYY-MM-DD or an RFC 3339 time such as 2026-12-20T18:00:00+01:00"))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Date(d) => write!(f, "{d}"),
            Self::Exact(t) => write!(f, "{}", t.to_rfc3339()),
        }
    }
}

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A period in which no promotion to the environment merges. Dates are whole days: a freeze
/// `from: 2026-12-20, to: 2027-01-04` covers both days entirely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Freeze {
    pub from: Instant,
    pub to: Instant,
    #[serde(default)]
    pub reason: Option<String>,
    /// Time zone for date-only bounds; UTC when omitted.
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl Freeze {
    fn tz(&self) -> Result<Tz, String> {
        match &self.time_zone {
            None => Ok(Tz::UTC),
            Some(z) => z.parse().map_err(|_| {
                format!("unknown time zone {z:?} (use an IANA name such as Europe/Berlin or UTC)")
            }),
        }
    }

    /// The freeze as a half-open UTC interval `[start, end)`.
    pub fn interval(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        let tz = self.tz()?;
        let at = |i: &Instant, end_of_day: bool| -> Result<DateTime<Utc>, String> {
            match i {
                Instant::Exact(t) => Ok(*t),
                Instant::Date(d) => {
                    let day = if end_of_day {
                        d.succ_opt().ok_or("date out of range")?
                    } else {
                        *d
                    };
                    let naive = NaiveDateTime::new(day, NaiveTime::MIN);
                    tz.from_local_datetime(&naive)
                        .earliest()
                        .map(|t| t.with_timezone(&Utc))
                        .ok_or_else(|| format!("{day} 00:00 does not exist in {tz}"))
                }
            }
        };
        let start = at(&self.from, false)?;
        let end = at(&self.to, true)?;
        if end <= start {
            return Err(format!(
                "the freeze ends ({}) before it starts ({})",
                self.to, self.from
            ));
        }
        Ok((start, end))
    }

    /// Whether `now` falls inside the freeze. Invalid freezes (caught by validation) never match.
    pub fn covers(&self, now: DateTime<Utc>) -> bool {
        self.interval().is_ok_and(|(s, e)| s <= now && now < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_is_open_from_its_occurrence_for_its_duration() {
        let w: Window = "0 9 * * MON-THU for 7h in Europe/Berlin".parse().unwrap();
        // Tuesday 2026-11-24, Berlin is UTC+1 in winter: open 08:00Z..15:00Z.
        assert_eq!(
            w.open_until(utc("2026-11-24T08:00:00Z")),
            Some(utc("2026-11-24T15:00:00Z"))
        );
        assert!(w.open_until(utc("2026-11-24T14:59:59Z")).is_some());
        assert!(w.open_until(utc("2026-11-24T15:00:00Z")).is_none());
        assert!(w.open_until(utc("2026-11-24T07:59:59Z")).is_none());
        // Friday is not in MON-THU.
        assert!(w.open_until(utc("2026-11-27T10:00:00Z")).is_none());
        assert_eq!(
            w.next_open(utc("2026-11-27T10:00:00Z")),
            Some(utc("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn windows_follow_local_time_across_daylight_saving_changes() {
        let w: Window = "0 9 * * * for 1h in Europe/Berlin".parse().unwrap();
        // Before the 2026-03-29 change Berlin is UTC+1, after it UTC+2.
        assert!(w.open_until(utc("2026-03-28T08:30:00Z")).is_some());
        assert!(w.open_until(utc("2026-03-30T07:30:00Z")).is_some());
        assert!(w.open_until(utc("2026-03-30T08:30:00Z")).is_none());
    }

    #[test]
    fn malformed_windows_say_what_is_wrong() {
        for (bad, needle) in [
            ("0 9 * * MON for 7h", "time zone"),
            ("0 9 * * MON in UTC", "for <duration>"),
            ("0 9 * * for 7h in UTC", "five fields"),
            ("0 25 * * * for 7h in UTC", "schedule"),
            ("0 9 * * * for 7x in UTC", "duration"),
            ("0 9 * * * for 7h in Mars/Olympus", "unknown time zone"),
        ] {
            let e = bad.parse::<Window>().unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn date_freezes_cover_whole_days_in_their_time_zone() {
        let f = Freeze {
            from: "2026-12-20".parse().unwrap(),
            to: "2027-01-04".parse().unwrap(),
            reason: Some("holidays".into()),
            time_zone: Some("Europe/Berlin".into()),
        };
        assert!(!f.covers(utc("2026-12-19T22:59:59Z")));
        assert!(f.covers(utc("2026-12-19T23:00:00Z")));
        assert!(f.covers(utc("2027-01-04T22:59:59Z")));
        assert!(!f.covers(utc("2027-01-04T23:00:00Z")));
    }

    #[test]
    fn a_freeze_that_ends_before_it_starts_is_invalid() {
        let f = Freeze {
            from: "2027-01-04".parse().unwrap(),
            to: "2026-12-20".parse().unwrap(),
            reason: None,
            time_zone: None,
        };
        assert!(f.interval().unwrap_err().contains("before it starts"));
        assert!(!f.covers(utc("2026-12-25T00:00:00Z")));
    }
}
