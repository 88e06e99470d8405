//! The metrics over a built history with known answers.

use super::*;
use crate::gitrepo::trailers::Promotion;

fn t(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
}

fn d(n: u8) -> Digest {
    Digest::of(&[n])
}

fn promote(at: DateTime<Utc>, env: &str, app: &str, to: u8) -> Entry {
    Entry {
        time: at,
        commit: format!("{env}-{app}-{to}-{}", at.timestamp()),
        promotion: Promotion {
            app: app.into(),
            environment: env.into(),
            from: None,
            to: d(to),
            tag: Some(format!("1.{to}.0")),
            approved_by: vec![],
            promoted_by: None,
            pull_request: Some(u64::from(to) + 100),
            rollback_of: None,
        },
    }
}

fn rollback(at: DateTime<Utc>, env: &str, app: &str, to: u8, bad: u8) -> Entry {
    let mut e = promote(at, env, app, to);
    e.promotion.rollback_of = Some(d(bad));
    e
}

fn start(at: DateTime<Utc>, source: StartSource) -> ChangeStart {
    ChangeStart { at, source }
}

/// dev/web: d1 (lead 1 h, source commit), d2 (30 min, image created; rolled back after
/// 20 min), d3 (no start; verification failed; restored by d4 26 h later), d4 (1 h).
/// dev/api: d5, nothing known. prod/web: d1 (lead 4 days), d4 (verification failed, never
/// restored). Before the window: dev/web d0.
fn world() -> (Vec<Entry>, Facts, Window) {
    let mut entries = vec![
        promote(
            Utc.with_ymd_and_hms(2026, 10, 20, 9, 0, 0).unwrap(),
            "dev",
            "web",
            0,
        ),
        promote(t(2, 10, 0), "dev", "web", 1),
        promote(t(3, 10, 0), "dev", "web", 2),
        rollback(t(3, 10, 20), "dev", "web", 1, 2),
        promote(t(4, 10, 0), "dev", "web", 3),
        promote(t(5, 12, 0), "dev", "web", 4),
        promote(t(6, 9, 0), "prod", "web", 1),
        promote(t(10, 8, 0), "dev", "api", 5),
        promote(t(14, 9, 0), "prod", "web", 4),
    ];
    entries.reverse(); // newest first, as history::read gives them
    let facts = Facts {
        starts: BTreeMap::from([
            (d(1), start(t(2, 9, 0), StartSource::SourceCommit)),
            (d(2), start(t(3, 9, 30), StartSource::ImageCreated)),
            (d(4), start(t(5, 11, 0), StartSource::SourceCommit)),
        ]),
        failed_verifications: BTreeSet::from([
            entries
                .iter()
                .find(|e| e.promotion.to == d(3))
                .unwrap()
                .commit
                .clone(),
            entries
                .iter()
                .find(|e| e.promotion.to == d(4) && e.promotion.environment == "prod")
                .unwrap()
                .commit
                .clone(),
        ]),
    };
    let window = Window {
        since: t(1, 0, 0),
        until: t(15, 0, 0),
        env: None,
        app: None,
    };
    (entries, facts, window)
}

fn envs() -> Vec<String> {
    vec!["dev".into(), "staging".into(), "prod".into()]
}

fn env<'a>(r: &'a Report, name: &str) -> &'a EnvReport {
    r.environments.iter().find(|e| e.env == name).unwrap()
}

fn app<'a>(e: &'a EnvReport, name: &str) -> &'a Metrics {
    &e.apps.iter().find(|a| a.app == name).unwrap().metrics
}

#[test]
fn deployment_frequency_counts_promotions_in_the_window_not_rollbacks() {
    let (entries, facts, w) = world();
    let r = compute(&entries, &envs(), &facts, &w);
    let web = &app(env(&r, "dev"), "web").deployment_frequency;
    assert_eq!(web.deployments, 4);
    assert!((web.per_day - 4.0 / 14.0).abs() < 1e-9, "{web:?}");
    assert!((web.per_week - 2.0).abs() < 1e-9, "{web:?}");
    assert_eq!(web.band, Some(Band::High));
    let dev = &env(&r, "dev").metrics.deployment_frequency;
    assert_eq!(dev.deployments, 5);
    let staging = &env(&r, "staging").metrics.deployment_frequency;
    assert_eq!((staging.deployments, staging.band), (0, None));
}

#[test]
fn lead_time_is_the_median_from_the_change_start_and_says_where_each_start_came_from() {
    let (entries, facts, w) = world();
    let r = compute(&entries, &envs(), &facts, &w);
    let web = &app(env(&r, "dev"), "web").lead_time;
    assert_eq!(web.median_seconds, Some(3600), "{web:?}");
    assert_eq!(
        (web.from_source_commit, web.from_image_created, web.unknown),
        (2, 1, 1)
    );
    assert_eq!(web.band, Some(Band::High));
    let changes = &env(&r, "dev").changes;
    let d2 = changes.iter().find(|c| c.digest == d(2)).unwrap();
    assert_eq!(d2.lead_time_seconds, Some(1800));
    assert_eq!(d2.lead_time_source, Some(StartSource::ImageCreated));
    let prod = &env(&r, "prod").metrics.lead_time;
    // d1: 4 days 0 h; d4: 9 days minus 2 h.
    assert_eq!(
        prod.median_seconds,
        Some((4 * 86_400 + (9 * 86_400 - 7200)) / 2)
    );
    assert_eq!(prod.band, Some(Band::High));
}

#[test]
fn a_promotion_rolled_back_or_failing_verification_is_a_failed_change() {
    let (entries, facts, w) = world();
    let r = compute(&entries, &envs(), &facts, &w);
    let web = &app(env(&r, "dev"), "web").change_failure_rate;
    assert_eq!((web.failed, web.total), (2, 4));
    assert_eq!((web.rolled_back, web.failed_verification), (1, 1));
    assert_eq!(web.rate, Some(0.5));
    assert_eq!(web.band, Some(Band::Low));
    let dev = &env(&r, "dev").metrics.change_failure_rate;
    assert_eq!((dev.failed, dev.total, dev.rate), (2, 5, Some(0.4)));
    assert_eq!(dev.band, Some(Band::Medium));
}

#[test]
fn time_to_restore_runs_from_the_failed_merge_to_the_next_merge_that_is_not_a_failure() {
    let (entries, facts, w) = world();
    let r = compute(&entries, &envs(), &facts, &w);
    let web = &app(env(&r, "dev"), "web").time_to_restore;
    // 20 min (the rollback) and 26 h (d4 after d3), median of two = their mean.
    assert_eq!(web.median_seconds, Some((1200 + 93_600) / 2));
    assert_eq!((web.restored, web.unrestored), (2, 0));
    assert_eq!(web.band, Some(Band::High));
    let prod = &env(&r, "prod").metrics.time_to_restore;
    assert_eq!((prod.restored, prod.unrestored), (0, 1));
    assert_eq!((prod.median_seconds, prod.band), (None, None));
}

#[test]
fn filters_keep_one_environment_and_one_app() {
    let (entries, facts, mut w) = world();
    w.env = Some("dev".into());
    w.app = Some("api".into());
    let r = compute(&entries, &envs(), &facts, &w);
    assert_eq!(r.environments.len(), 1);
    let dev = &r.environments[0];
    assert_eq!(dev.apps.len(), 1);
    assert_eq!(dev.metrics.deployment_frequency.deployments, 1);
    assert_eq!(dev.metrics.lead_time.unknown, 1);
}

#[test]
fn the_daily_series_has_one_point_per_day_of_the_window() {
    let (entries, facts, w) = world();
    let r = compute(&entries, &envs(), &facts, &w);
    let daily = &env(&r, "dev").daily;
    assert_eq!(daily.len(), 15);
    assert_eq!(daily[0].date, t(1, 0, 0).date_naive());
    let nov3 = &daily[2];
    assert_eq!((nov3.deployments, nov3.failed), (1, 1));
    assert_eq!(nov3.lead_time_seconds, Some(1800));
    assert_eq!(nov3.restore_seconds, Some(1200));
    assert_eq!(daily.iter().map(|d| d.deployments).sum::<usize>(), 5);
}

#[test]
fn created_times_pinned_by_reproducible_builders_are_not_plausible() {
    let deployed = t(5, 0, 0);
    assert!(!plausible_created(
        Utc.timestamp_opt(0, 0).unwrap(),
        deployed
    ));
    assert!(!plausible_created(
        Utc.with_ymd_and_hms(1980, 1, 1, 0, 0, 1).unwrap(),
        deployed
    ));
    assert!(!plausible_created(t(6, 0, 0), deployed), "after the deploy");
    assert!(plausible_created(t(4, 0, 0), deployed));
}

#[test]
fn bands_follow_the_documented_thresholds() {
    assert_eq!(Band::of_frequency(3.0), Band::Elite);
    assert_eq!(Band::of_frequency(1.0 / 7.0), Band::High);
    assert_eq!(Band::of_frequency(1.0 / 30.0), Band::Medium);
    assert_eq!(Band::of_frequency(0.01), Band::Low);
    assert_eq!(Band::of_lead_time(3599), Band::Elite);
    assert_eq!(Band::of_lead_time(7 * 86_400), Band::Medium);
    assert_eq!(Band::of_lead_time(200 * 86_400), Band::Low);
    assert_eq!(Band::of_failure_rate(0.15), Band::Elite);
    assert_eq!(Band::of_failure_rate(0.3), Band::High);
    assert_eq!(Band::of_failure_rate(0.46), Band::Low);
    assert_eq!(Band::of_restore(86_399), Band::High);
    assert_eq!(Band::of_restore(8 * 86_400), Band::Low);
}

#[test]
fn human_durations_show_two_units() {
    assert_eq!(human(45), "45s");
    assert_eq!(human(125), "2m 5s");
    assert_eq!(human(93_600), "1d 2h");
    assert_eq!(human(3 * 3600 + 60), "3h 1m");
}
