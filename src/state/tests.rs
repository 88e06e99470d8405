use chrono::TimeZone;

use super::*;
use crate::promote::gates::{Gate, Verdict};

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0).unwrap()
}

fn digest(n: u8) -> String {
    crate::image::Digest::of(&[n]).to_string()
}

fn seen(digest: &str, state: DeployState, since: Option<DateTime<Utc>>) -> Observation {
    Observation {
        app: "web".into(),
        digest: digest.to_string(),
        state,
        healthy_since: since,
        reason: (state != DeployState::Healthy)
            .then(|| "Deployment/web: ProgressDeadlineExceeded".to_string()),
    }
}

fn healthy(digest: &str, since: DateTime<Utc>) -> Observation {
    seen(digest, DeployState::Healthy, Some(since))
}

fn web(state: &EnvState) -> Deployment {
    state
        .deployments("staging", false)
        .into_iter()
        .find(|d| d.app == "web")
        .expect("web runs in staging")
}

#[test]
fn a_clock_keeps_its_start_while_the_digest_stays_healthy() {
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(14, 0))], t(14, 0));
    s.observe(&[healthy(&digest(1), t(14, 0))], t(14, 5));
    s.observe(&[healthy(&digest(1), t(14, 0))], t(14, 9));
    let d = web(&s);
    assert_eq!(d.healthy_since, Some(t(14, 0)));
    assert_eq!(d.restarted, None);
}

#[test]
fn a_flap_in_the_middle_of_a_soak_restarts_the_clock_and_says_why() {
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(13, 55))], t(13, 55));
    s.observe(
        &[seen(&digest(1), DeployState::Progressing, None)],
        t(14, 1),
    );
    let d = web(&s);
    assert_eq!(d.state, DeployState::Progressing);
    assert_eq!(
        d.healthy_since, None,
        "no soak counts while it is unhealthy"
    );
    s.observe(&[healthy(&digest(1), t(14, 2))], t(14, 2));
    let d = web(&s);
    assert_eq!(d.healthy_since, Some(t(14, 2)), "the clock starts over");
    let restart = d.restarted.clone().expect("the restart is remembered");
    assert_eq!(restart.at, t(14, 1));
    assert_eq!(restart.reason, "Deployment/web: ProgressDeadlineExceeded");

    // The soak gate of the next environment counts from 14:02, and says so.
    let pipeline = crate::config::pipeline::Pipeline::parse("pipeline.yaml", PIPELINE)
        .unwrap()
        .pipeline;
    let prod = pipeline.environment("prod").unwrap();
    let pr = pr(&d.digest);
    let no_teams = Default::default();
    let ctx = crate::promote::gates::Context {
        env: prod,
        now: t(14, 9),
        previous: Some(&d),
        teams: &no_teams,
        team_errors: &Default::default(),
        base_rules: None,
        bot_login: "baton",
        policies: &[],
        from: None,
        attestations: None,
    };
    let e = crate::promote::gates::evaluate(&pr, &ctx);
    let soak = e.results.iter().find(|r| r.gate == Gate::Soak).unwrap();
    assert_eq!(
        soak.verdict,
        Verdict::Waiting,
        "7 of 10 minutes after the flap"
    );
    assert_eq!(
        soak.detail(t(14, 9)),
        "healthy for 7m of 10m (restarted at 14:01 after Deployment/web: ProgressDeadlineExceeded)"
    );
    assert_eq!(
        soak.reason,
        "soaking in staging until 2026-12-02 14:12 UTC (restarted at 14:01 after Deployment/web: ProgressDeadlineExceeded)",
        "the PR's status comment gets absolute times, so it is not edited every pass"
    );
    let ctx = crate::promote::gates::Context {
        now: t(14, 12),
        ..ctx
    };
    let e = crate::promote::gates::evaluate(&pr, &ctx);
    let soak = e.results.iter().find(|r| r.gate == Gate::Soak).unwrap();
    assert_eq!(soak.verdict, Verdict::Passed);
}

#[test]
fn an_interruption_the_reconciler_saw_within_one_reconcile_restarts_the_clock() {
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(14, 0))], t(14, 0));
    // The reconcile waited out a flap: healthy at its end, but only since 14:04.
    let mut o = healthy(&digest(1), t(14, 4));
    o.reason = Some("Deployment/web: MinimumReplicasUnavailable".into());
    s.observe(&[o], t(14, 4));
    let d = web(&s);
    assert_eq!(d.healthy_since, Some(t(14, 4)));
    assert_eq!(
        d.restarted.unwrap().reason,
        "Deployment/web: MinimumReplicasUnavailable"
    );
}

#[test]
fn a_new_digest_gets_its_own_clock_and_an_old_one_comes_back_with_its_own() {
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(10, 0))], t(10, 0));
    s.observe(&[healthy(&digest(2), t(11, 0))], t(11, 0));
    assert_eq!(web(&s).healthy_since, Some(t(11, 0)));
    assert_eq!(web(&s).digest.to_string(), digest(2));
    // Digest 1 comes back (a rollback): a new rollout, so a new start.
    s.observe(&[healthy(&digest(1), t(12, 0))], t(12, 0));
    assert_eq!(web(&s).healthy_since, Some(t(12, 0)));
}

#[test]
fn an_app_the_environment_no_longer_runs_is_not_deployed() {
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(10, 0))], t(10, 0));
    s.observe(&[], t(10, 5));
    assert!(s.deployments("staging", false).is_empty());
}

#[test]
fn old_clocks_are_pruned_but_never_the_running_one() {
    let mut s = EnvState::default();
    for n in 0..20u8 {
        s.observe(&[healthy(&digest(n), t(10, n.into()))], t(10, n.into()));
    }
    let app = &s.apps["web"];
    assert_eq!(app.clocks.len(), CLOCKS_PER_APP);
    assert!(app.clocks.contains_key(&digest(19)));
    assert!(!app.clocks.contains_key(&digest(0)));
}

/// An environment of `apps` apps, each with a workload's rollout mark, and `digests` releases
/// seen in turn (the last one running, healthy, verified).
pub(super) fn fleet(apps: u32, digests: u8) -> EnvState {
    let mut s = EnvState::default();
    for n in 0..digests {
        let obs: Vec<Observation> = (0..apps)
            .map(|i| Observation {
                app: format!("app-{i:04}"),
                ..healthy(&digest(n), t(10, n.into()))
            })
            .collect();
        s.observe(&obs, t(10, n.into()));
    }
    for i in 0..apps {
        let app = format!("app-{i:04}");
        s.record_verification(
            &app,
            VerifyRecord {
                digest: digest(digests - 1),
                attempt: 1,
                passed: true,
                passed_at: Some(t(11, 0)),
                finished_at: t(11, 0),
                summary: "verification passed: smoke (12s)".into(),
            },
        );
        s.rollouts.rollouts.insert(
            format!("shop-prod_{app}_apps_Deployment"),
            crate::reconcile::context::RememberedRollout {
                template: "7d4b9c6f5d".into(),
                available: 3,
                since: t(10, 0),
            },
        );
    }
    s
}

#[test]
fn when_the_whole_state_is_too_big_history_goes_first_and_the_running_clocks_stay() {
    let four = fleet(1000, 4);
    let forms: Vec<String> = four.encodings().collect();
    assert_eq!(forms[0], four.encode(), "the whole state first");
    assert!(forms[1].len() < forms[0].len(), "older clocks went");
    for text in &forms[1..] {
        let back = EnvState::decode(text).unwrap();
        for (name, app) in &four.apps {
            let kept = &back.apps[name];
            let running = &app.running.as_ref().unwrap().digest;
            assert_eq!(kept.running, app.running);
            assert_eq!(kept.clocks.get(running), app.clocks.get(running), "{name}");
            assert_eq!(
                kept.clocks.len(),
                1,
                "{name}: only the running digest's clock"
            );
            assert_eq!(kept.verification, app.verification);
        }
        assert_eq!(
            back.rollouts.rollouts, four.rollouts.rollouts,
            "workload marks stay"
        );
        assert_eq!(
            back.deployments("prod", true),
            four.deployments("prod", true),
            "the planner reads the same from a smaller document"
        );
    }
}

#[test]
fn the_document_round_trips_and_a_newer_format_is_refused() {
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(10, 0))], t(10, 0));
    s.observe(&[seen(&digest(1), DeployState::Failed, None)], t(10, 3));
    s.request_retry("web");
    s.rollouts.rollouts.insert(
        "shop_web_apps_Deployment".into(),
        crate::reconcile::context::RememberedRollout {
            template: "abc".into(),
            available: 2,
            since: t(10, 0),
        },
    );
    let text = s.encode();
    assert_eq!(EnvState::decode(&text).unwrap(), s);
    assert_eq!(EnvState::decode("").unwrap(), EnvState::default());
    let newer = text.replace("\"format\":1", "\"format\":99");
    assert!(
        EnvState::decode(&newer)
            .unwrap_err()
            .contains("newer baton")
    );
    assert!(EnvState::decode("{").is_err());
}

fn record(digest: &str, attempt: u32, passed: bool, at: DateTime<Utc>) -> VerifyRecord {
    VerifyRecord {
        digest: digest.into(),
        attempt,
        passed,
        passed_at: passed.then_some(at),
        finished_at: at,
        summary: String::new(),
    }
}

#[test]
fn a_verification_runs_once_per_attempt_and_retry_moves_to_the_next() {
    let mut s = EnvState::default();
    let d = digest(1);
    assert_eq!(s.next_verification("web", &d), Some(1));
    assert_eq!(
        s.next_verification("web", &d),
        Some(1),
        "not done yet: a restart reads the same run"
    );
    s.record_verification("web", record(&d, 1, false, t(10, 0)));
    assert_eq!(
        s.next_verification("web", &d),
        None,
        "attempt 1 has its result"
    );
    s.request_retry("web");
    assert!(s.retry_pending("web"));
    assert_eq!(s.next_verification("web", &d), Some(2));
    assert!(!s.retry_pending("web"), "the retry is used up");
    assert_eq!(s.next_verification("web", &d), Some(2));
    s.record_verification("web", record(&d, 2, true, t(10, 5)));
    assert_eq!(s.next_verification("web", &d), None);
    // A restart reads the same answers.
    let mut back = EnvState::decode(&s.encode()).unwrap();
    assert_eq!(back.next_verification("web", &d), None);
}

#[test]
fn in_a_verified_environment_soak_counts_from_the_passed_verification() {
    let mut s = EnvState::default();
    let d = digest(1);
    s.observe(&[healthy(&d, t(10, 0))], t(10, 0));
    let dep = |s: &EnvState| s.deployments("staging", true).pop().unwrap();
    assert_eq!(dep(&s).healthy_since, None, "not verified yet");
    s.record_verification("web", record(&d, 1, true, t(10, 4)));
    assert_eq!(dep(&s).healthy_since, Some(t(10, 4)));
    s.record_verification("web", record(&d, 2, false, t(10, 8)));
    assert_eq!(dep(&s).state, DeployState::Failed);
    // Unhealthy after a passed verification: no soak.
    s.record_verification("web", record(&d, 3, true, t(10, 9)));
    s.observe(&[seen(&d, DeployState::Progressing, None)], t(10, 10));
    assert_eq!(dep(&s).healthy_since, None);
}

#[test]
fn every_process_reads_the_same_deployments_from_the_same_document() {
    let pipeline = crate::config::pipeline::Pipeline::parse("pipeline.yaml", PIPELINE)
        .unwrap()
        .pipeline;
    let mut s = EnvState::default();
    s.observe(&[healthy(&digest(1), t(10, 0))], t(10, 0));
    let states = BTreeMap::from([("staging".to_string(), s.clone())]);
    let read_back = BTreeMap::from([(
        "staging".to_string(),
        EnvState::decode(&s.encode()).unwrap(),
    )]);
    assert_eq!(
        deployments(&states, &pipeline),
        deployments(&read_back, &pipeline)
    );
    assert_eq!(deployments(&states, &pipeline).len(), 1);
}

const PIPELINE: &str = r#"
apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web:
    image: registry.example.com/shop/web
    bless: { semver: ">=1.0.0" }
environments:
  - name: staging
  - name: prod
    after: staging
    soak: 10m
"#;

fn pr(digest: &crate::image::Digest) -> crate::promote::state::PullRequest {
    crate::promote::state::PullRequest {
        number: 7,
        app: "web".into(),
        env: "prod".into(),
        digest: digest.clone(),
        tag: None,
        head_sha: "abc".into(),
        head_pushed_at: t(9, 0),
        labels: vec![],
        hold_reason: None,
        reviews: vec![],
        checks: vec![],
        commands: vec![],
        group: None,
    }
}

#[test]
fn a_rollout_timed_anew_by_a_resync_is_not_recorded_again_but_a_new_state_is() {
    use crate::engine::{AppRollout, Rollout, RolloutState};
    let healthy = |secs: u64| Rollout {
        env: "dev".into(),
        commit: "a".repeat(40),
        state: RolloutState::Healthy {
            took: std::time::Duration::from_secs(secs),
            summary: "Deployment/web: 1/1".into(),
        },
        apps: vec![AppRollout {
            app: "web".into(),
            digest: digest(1).parse().unwrap(),
            state: DeployState::Healthy,
        }],
    };
    let mut s = EnvState::default();
    assert!(s.record_rollout(&healthy(3)));
    assert!(!s.record_rollout(&healthy(1)), "only the time differs");
    let mut failed = healthy(3);
    failed.state = RolloutState::Failed {
        reasons: vec!["Deployment/web: crash".into()],
    };
    assert!(s.record_rollout(&failed));
    // It survives the document's round trip, as another replica reads it.
    let back = EnvState::decode(&s.encode()).unwrap();
    assert_eq!(back.rollout, Some(failed));
}

fn summary(
    commit: &str,
    writes: usize,
    error: Option<&str>,
) -> crate::server::view::ReconcileSummary {
    use crate::server::view::{Health, ReconcileSummary};
    ReconcileSummary {
        commit: Some(commit.to_string()),
        finished_at: t(10, writes as u32),
        health: if error.is_some() {
            Health::Unknown
        } else {
            Health::Healthy
        },
        writes,
        drift: 0,
        duration_ms: 40,
        summary: format!("dev at {commit}: {writes} written"),
        error: error.map(String::from),
    }
}

#[test]
fn an_idle_resync_keeps_the_last_reconcile_shown_but_a_write_a_new_commit_or_an_error_replace_it() {
    let mut s = EnvState::default();
    assert!(s.show_reconcile(&summary("a", 3, None)), "the first one");
    assert!(!s.show_reconcile(&summary("a", 0, None)), "an idle resync");
    assert_eq!(s.reconciled, Some(summary("a", 3, None)));
    assert!(s.show_reconcile(&summary("a", 1, None)), "a write (drift)");
    assert!(s.show_reconcile(&summary("b", 0, None)), "a new commit");
    assert!(s.show_reconcile(&summary("b", 0, Some("render: boom"))));
    assert!(!s.show_reconcile(&summary("b", 0, Some("render: boom"))));
    let back = EnvState::decode(&s.encode()).unwrap();
    assert_eq!(
        back.reconciled, s.reconciled,
        "another replica reads it back"
    );
}

#[test]
fn what_only_other_replicas_pages_show_goes_before_any_clock() {
    use crate::server::view::OpenPromotion;
    let mut s = fleet(3, 4);
    let open = OpenPromotion {
        number: 7,
        url: Some("https://github.com/shop/config/pull/7".into()),
        env: "prod".into(),
        app: "web".into(),
        to: crate::image::Pinned {
            tag: Some("1.1.0".into()),
            digest: digest(9).parse().unwrap(),
        },
        blocking: Some("approvals: 0/2".into()),
        held: false,
        hold_reason: None,
        gates: Vec::new(),
    };
    assert!(s.show_open(vec![open.clone()]));
    assert!(
        !s.show_open(vec![open.clone()]),
        "unchanged: nothing to write"
    );
    s.show_reconcile(&summary("a", 1, None));
    assert_eq!(EnvState::decode(&s.encode()).unwrap().open, vec![open]);
    let smaller = EnvState::decode(&s.encodings().nth(1).unwrap()).unwrap();
    assert!(smaller.open.is_empty() && smaller.reconciled.is_none());
    assert_eq!(
        smaller.deployments("prod", true),
        s.deployments("prod", true)
    );
}
