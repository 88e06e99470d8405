//! The four DORA metrics (deployment frequency, lead time for changes, change failure rate,
//! time to restore) computed from the config repo's audit log: the `Baton-*` trailers on the
//! first-parent history ([`crate::gitrepo::history`]), plus what is known about each image's
//! source commit ([`Facts`]). [`compute`] is pure; [`gather`] reads the registry and GitHub for
//! the facts, [`table`] formats a report for people. Definitions: docs/dora.md.

pub mod gather;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;

use crate::gitrepo::history::Entry;
use crate::image::Digest;

pub use gather::gather;
pub use table::table;

/// Where the start of a change's lead time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StartSource {
    /// The commit named by `org.opencontainers.image.revision`, its time read from the source
    /// repository on GitHub.
    SourceCommit,
    /// The image's `created` time (used only when plausible, see [`plausible_created`]).
    ImageCreated,
}

impl StartSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::SourceCommit => "source commit",
            Self::ImageCreated => "image created",
        }
    }
}

/// When the change a digest carries was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChangeStart {
    pub at: DateTime<Utc>,
    pub source: StartSource,
}

/// What Git alone does not say, gathered from the registry and GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// When each digest's change was made.
    pub starts: BTreeMap<Digest, ChangeStart>,
    /// Promotion commits whose verification (`baton/<env>/verify`) failed.
    pub failed_verifications: BTreeSet<String>,
}

/// Reproducible builders (ko, Jib, rules_oci, buildpacks) pin `created` to 1970 or 1980; a
/// `created` time is believed only when it lies after 2000 and not after the first time the
/// digest was deployed.
pub fn plausible_created(created: DateTime<Utc>, first_deployed: DateTime<Utc>) -> bool {
    let floor = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
    created > floor && created <= first_deployed
}

/// DORA performance band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Elite,
    High,
    Medium,
    Low,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elite => "elite",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }

    /// Deployment frequency: elite at least daily, high at least weekly, medium at least
    /// monthly (30 days).
    pub fn of_frequency(per_day: f64) -> Self {
        if per_day >= 1.0 {
            Self::Elite
        } else if per_day >= 1.0 / 7.0 {
            Self::High
        } else if per_day >= 1.0 / 30.0 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// Lead time: elite under an hour, high under a week, medium under 180 days.
    pub fn of_lead_time(seconds: i64) -> Self {
        if seconds < 3600 {
            Self::Elite
        } else if seconds < 7 * 86_400 {
            Self::High
        } else if seconds < 180 * 86_400 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// Change failure rate: elite up to 15 %, high up to 30 %, medium up to 45 %.
    pub fn of_failure_rate(rate: f64) -> Self {
        if rate <= 0.15 {
            Self::Elite
        } else if rate <= 0.30 {
            Self::High
        } else if rate <= 0.45 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// Time to restore: elite under an hour, high under a day, medium under a week.
    pub fn of_restore(seconds: i64) -> Self {
        if seconds < 3600 {
            Self::Elite
        } else if seconds < 86_400 {
            Self::High
        } else if seconds < 7 * 86_400 {
            Self::Medium
        } else {
            Self::Low
        }
    }
}

/// The report's window and scope.
#[derive(Debug, Clone)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub env: Option<String>,
    pub app: Option<String>,
}

impl Window {
    /// The last `days` days up to `until`.
    pub fn last_days(days: i64, until: DateTime<Utc>) -> Self {
        Self {
            since: until - Duration::days(days),
            until,
            env: None,
            app: None,
        }
    }

    fn days(&self) -> f64 {
        ((self.until - self.since).num_seconds() as f64 / 86_400.0).max(1.0 / 24.0)
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.since && t <= self.until
    }
}

/// Deployment frequency over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Frequency {
    /// Promotions merged (rollbacks not counted).
    pub deployments: usize,
    pub per_day: f64,
    pub per_week: f64,
    /// `None` when nothing was deployed.
    pub band: Option<Band>,
}

/// Lead time for changes: the median over the promotions whose start is known.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadTime {
    pub median_seconds: Option<i64>,
    /// How many figures came from each source.
    pub from_source_commit: usize,
    pub from_image_created: usize,
    /// Promotions with no usable start (no revision readable, no plausible `created`).
    pub unknown: usize,
    pub band: Option<Band>,
}

/// Change failure rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureRate {
    pub failed: usize,
    pub total: usize,
    pub rate: Option<f64>,
    /// Of `failed`: followed by a rollback, and with a failed verification (one may be both).
    pub rolled_back: usize,
    pub failed_verification: usize,
    pub band: Option<Band>,
}

/// Time to restore: the median over failed promotions that were restored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    pub median_seconds: Option<i64>,
    pub restored: usize,
    /// Failed promotions not followed by any merge yet.
    pub unrestored: usize,
    pub band: Option<Band>,
}

/// The four metrics for one scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub deployment_frequency: Frequency,
    pub lead_time: LeadTime,
    pub change_failure_rate: FailureRate,
    pub time_to_restore: Restore,
}

/// One day of an environment's metrics (for sparklines).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    pub date: chrono::NaiveDate,
    pub deployments: usize,
    pub failed: usize,
    pub lead_time_seconds: Option<i64>,
    pub restore_seconds: Option<i64>,
}

/// One promotion as the report saw it: every figure with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub app: String,
    pub commit: String,
    pub deployed_at: DateTime<Utc>,
    pub digest: Digest,
    pub tag: Option<String>,
    pub pull_request: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_time_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_time_source: Option<StartSource>,
    /// `rolledBack || verificationFailed`.
    pub failed: bool,
    /// The next merge of this app here rolled this digest back.
    pub rolled_back: bool,
    /// `baton/<env>/verify` failed on this commit.
    pub verification_failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<i64>,
}

/// One app in one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppReport {
    pub app: String,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// One environment: all its apps together, then each app.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvReport {
    pub env: String,
    #[serde(flatten)]
    pub metrics: Metrics,
    pub apps: Vec<AppReport>,
    /// One point per day of the window, oldest first.
    pub daily: Vec<Day>,
    /// The promotions in the window, oldest first.
    pub changes: Vec<Change>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub environments: Vec<EnvReport>,
}

/// Compute the report. `entries` newest first, as `history::read` returns them (entries with
/// the same time keep that commit order); `environments` in pipeline order (others found in the
/// history follow).
/// Promotions before the window still count as the "previous" entry of one inside it.
pub fn compute(entries: &[Entry], environments: &[String], facts: &Facts, w: &Window) -> Report {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    // Oldest first; `history::read` is newest first in commit order, so a stable sort on time
    // keeps commit order for equal times only if reversed first.
    sorted.reverse();
    sorted.sort_by_key(|e| e.time);
    let mut envs: Vec<String> = environments.to_vec();
    for e in &sorted {
        if !envs.contains(&e.promotion.environment) {
            envs.push(e.promotion.environment.clone());
        }
    }
    envs.retain(|e| w.env.as_ref().is_none_or(|want| want == e));
    let environments = envs
        .iter()
        .map(|env| {
            let mut by_app: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
            for e in sorted.iter().filter(|e| e.promotion.environment == *env) {
                if w.app.as_ref().is_none_or(|a| *a == e.promotion.app) {
                    by_app.entry(&e.promotion.app).or_default().push(e);
                }
            }
            let mut changes = Vec::new();
            let mut apps = Vec::new();
            for (app, list) in &by_app {
                let mine = app_changes(list, facts, w);
                apps.push(AppReport {
                    app: app.to_string(),
                    metrics: metrics(&mine, w),
                });
                changes.extend(mine);
            }
            changes.sort_by_key(|c| c.deployed_at);
            EnvReport {
                env: env.clone(),
                metrics: metrics(&changes, w),
                apps,
                daily: daily(&changes, w),
                changes,
            }
        })
        .collect();
    Report {
        since: w.since,
        until: w.until,
        environments,
    }
}

/// The promotions of one app in one environment inside the window, with their figures.
/// `list` is that app's history there, oldest first.
fn app_changes(list: &[&Entry], facts: &Facts, w: &Window) -> Vec<Change> {
    let rolled_back: Vec<bool> = list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            !e.promotion.is_rollback()
                && list.get(i + 1).is_some_and(|next| {
                    next.promotion.rollback_of.as_ref() == Some(&e.promotion.to)
                })
        })
        .collect();
    let verification_failed: Vec<bool> = list
        .iter()
        .map(|e| !e.promotion.is_rollback() && facts.failed_verifications.contains(&e.commit))
        .collect();
    let failed: Vec<bool> = (0..list.len())
        .map(|i| rolled_back[i] || verification_failed[i])
        .collect();
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let p = &e.promotion;
        if p.is_rollback() || !w.contains(e.time) {
            continue;
        }
        let lead = facts
            .starts
            .get(&p.to)
            .filter(|s| s.at <= e.time)
            .map(|s| ((e.time - s.at).num_seconds(), s.source));
        // Restored by the first later merge that is not itself a failed promotion.
        let restored_at = failed[i]
            .then(|| (i + 1..list.len()).find(|&j| !failed[j]))
            .flatten()
            .map(|j| list[j].time);
        out.push(Change {
            app: p.app.clone(),
            commit: e.commit.clone(),
            deployed_at: e.time,
            digest: p.to.clone(),
            tag: p.tag.clone(),
            pull_request: p.pull_request,
            lead_time_seconds: lead.map(|l| l.0),
            lead_time_source: lead.map(|l| l.1),
            failed: failed[i],
            rolled_back: rolled_back[i],
            verification_failed: verification_failed[i],
            restored_at,
            restore_seconds: restored_at.map(|t| (t - e.time).num_seconds()),
        });
    }
    out
}

fn median(mut v: Vec<i64>) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

fn metrics(changes: &[Change], w: &Window) -> Metrics {
    let n = changes.len();
    let per_day = n as f64 / w.days();
    let leads: Vec<(i64, StartSource)> = changes
        .iter()
        .filter_map(|c| Some((c.lead_time_seconds?, c.lead_time_source?)))
        .collect();
    let lead_median = median(leads.iter().map(|l| l.0).collect());
    let failed: Vec<&Change> = changes.iter().filter(|c| c.failed).collect();
    let rate = (n > 0).then(|| failed.len() as f64 / n as f64);
    let restores: Vec<i64> = failed.iter().filter_map(|c| c.restore_seconds).collect();
    let restore_median = median(restores.clone());
    Metrics {
        deployment_frequency: Frequency {
            deployments: n,
            per_day,
            per_week: per_day * 7.0,
            band: (n > 0).then(|| Band::of_frequency(per_day)),
        },
        lead_time: LeadTime {
            median_seconds: lead_median,
            from_source_commit: leads
                .iter()
                .filter(|l| l.1 == StartSource::SourceCommit)
                .count(),
            from_image_created: leads
                .iter()
                .filter(|l| l.1 == StartSource::ImageCreated)
                .count(),
            unknown: n - leads.len(),
            band: lead_median.map(Band::of_lead_time),
        },
        change_failure_rate: FailureRate {
            failed: failed.len(),
            total: n,
            rate,
            rolled_back: failed.iter().filter(|c| c.rolled_back).count(),
            failed_verification: failed.iter().filter(|c| c.verification_failed).count(),
            band: rate.map(Band::of_failure_rate),
        },
        time_to_restore: Restore {
            median_seconds: restore_median,
            restored: restores.len(),
            unrestored: failed.len() - restores.len(),
            band: restore_median.map(Band::of_restore),
        },
    }
}

/// One point per calendar day (UTC) of the window, oldest first.
fn daily(changes: &[Change], w: &Window) -> Vec<Day> {
    let first = w.since.date_naive();
    let last = w.until.date_naive();
    let mut out = Vec::new();
    let mut day = first;
    // Bounded: a window of years still draws at most 400 points.
    while day <= last && out.len() < 400 {
        let today: Vec<&Change> = changes
            .iter()
            .filter(|c| c.deployed_at.date_naive() == day)
            .collect();
        out.push(Day {
            date: day,
            deployments: today.len(),
            failed: today.iter().filter(|c| c.failed).count(),
            lead_time_seconds: median(today.iter().filter_map(|c| c.lead_time_seconds).collect()),
            restore_seconds: median(today.iter().filter_map(|c| c.restore_seconds).collect()),
        });
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

/// `3d 4h`, `2h 5m`, `45s`: two units at most.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests;
