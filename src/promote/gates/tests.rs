use super::*;
use crate::commands::Actor;
use crate::image::Digest;
use crate::promote::state::{Check, CommandEvent, DeployState, Review};
use chrono::TimeZone;

const HEAD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OLD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn t(h: u32, m: u32) -> DateTime<Utc> {
    // Tuesday 2026-11-24; Berlin is UTC+1.
    Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
}

fn prod() -> Environment {
    yaml_serde::from_str(
        r#"
name: prod
after: staging
soak: 1h
requiredChecks: [validate]
approvals: { count: 2, from: ["@shop/release-managers"] }
command: required
windows: ["0 9 * * MON-THU for 7h in Europe/Berlin"]
freezes: [{ from: 2026-12-20, to: 2027-01-04, reason: holidays }]
"#,
    )
    .unwrap()
}

fn pr() -> PullRequest {
    PullRequest {
        head_sha: HEAD.into(),
        head_pushed_at: t(8, 0),
        ..crate::promote::plan::fixtures::open_pr(7, "web", "prod", Digest::of(b"v2"), "2.0.0")
    }
}

fn review(user: &str, state: ReviewState, commit: &str, at: DateTime<Utc>) -> Review {
    Review {
        user: user.into(),
        state,
        commit_id: commit.into(),
        submitted_at: at,
        permission: Permission::Write,
    }
}

fn teams() -> BTreeMap<String, BTreeSet<String>> {
    BTreeMap::from([(
        "@shop/release-managers".to_string(),
        BTreeSet::from(["alice".to_string(), "bob".to_string(), "carol".to_string()]),
    )])
}

fn staging_healthy(since: DateTime<Utc>) -> Deployment {
    Deployment {
        env: "staging".into(),
        app: "web".into(),
        digest: Digest::of(b"v2"),
        state: DeployState::Healthy,
        healthy_since: Some(since),
        restarted: None,
    }
}

fn eval(
    pr: &PullRequest,
    env: &Environment,
    now: DateTime<Utc>,
    previous: Option<&Deployment>,
) -> Evaluation {
    let teams = teams();
    evaluate(
        pr,
        &Context {
            env,
            now,
            previous,
            teams: &teams,
            team_errors: &BTreeMap::new(),
            base_rules: None,
            bot_login: "baton[bot]",
            policies: &[],
            from: None,
            attestations: None,
        },
    )
}

fn verdict(e: &Evaluation, gate: Gate) -> (Verdict, String) {
    let r = e
        .results
        .iter()
        .find(|r| r.gate == gate)
        .unwrap_or_else(|| panic!("no {gate:?} gate in {e:?}"));
    (r.verdict, r.reason.clone())
}

fn ready_pr() -> PullRequest {
    let mut p = pr();
    p.reviews = vec![
        review("alice", ReviewState::Approved, HEAD, t(9, 0)),
        review("bob", ReviewState::Approved, HEAD, t(9, 5)),
    ];
    p.commands = vec![CommandEvent {
        comment_id: 1,
        command: Command::Promote { env: "prod".into() },
        actor: Actor {
            login: "carol".into(),
            permission: Permission::Write,
            teams: vec!["@shop/release-managers".into()],
        },
        at: t(9, 10),
    }];
    p
}

#[test]
fn a_rollback_skips_soak_windows_freezes_and_the_command_but_not_approvals_or_hold() {
    let mut p = pr();
    p.labels = vec![ROLLBACK_LABEL.into()];
    // In the freeze, outside any window, nothing soaked, no /promote.
    let frozen_night = Utc.with_ymd_and_hms(2026, 12, 24, 2, 0, 0).unwrap();
    let e = eval(&p, &prod(), frozen_night, None);
    for gate in [Gate::Freeze, Gate::Window, Gate::Soak] {
        let (v, reason) = verdict(&e, gate);
        assert_eq!(v, Verdict::Passed, "{gate:?}: {reason}");
        assert!(reason.starts_with("skipped"), "{reason}");
    }
    assert!(e.results.iter().all(|r| r.gate != Gate::Command), "{e:?}");
    assert_eq!(e.blocking().unwrap().gate, Gate::Approvals);

    p.reviews = ready_pr().reviews;
    assert!(eval(&p, &prod(), frozen_night, None).mergeable());
    p.labels.push(HOLD_LABEL.into());
    assert_eq!(
        eval(&p, &prod(), frozen_night, None)
            .blocking()
            .unwrap()
            .gate,
        Gate::Hold
    );
}

#[test]
fn a_fully_approved_promotion_inside_the_window_after_soak_may_merge() {
    let staging = staging_healthy(t(7, 0));
    let e = eval(&ready_pr(), &prod(), t(10, 0), Some(&staging));
    assert!(e.mergeable(), "{}", e.table());
    assert_eq!(verdict(&e, Gate::Command).1, "/promote prod by @carol");
}

#[test]
fn outside_the_window_it_waits_until_the_next_opening() {
    let staging = staging_healthy(t(1, 0));
    let e = eval(&ready_pr(), &prod(), t(16, 30), Some(&staging));
    let (v, reason) = verdict(&e, Gate::Window);
    assert_eq!(v, Verdict::Waiting);
    assert!(reason.contains("2026-11-25 08:00 UTC"), "{reason}");
    assert_eq!(
        e.recheck_at(),
        Some(Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap())
    );
}

#[test]
fn a_freeze_blocks_even_inside_a_window() {
    let staging = staging_healthy(Utc.with_ymd_and_hms(2026, 12, 21, 0, 0, 0).unwrap());
    let e = eval(
        &ready_pr(),
        &prod(),
        Utc.with_ymd_and_hms(2026, 12, 22, 10, 0, 0).unwrap(),
        Some(&staging),
    );
    let (v, reason) = verdict(&e, Gate::Freeze);
    assert_eq!(v, Verdict::Waiting);
    assert!(
        reason.contains("frozen (holidays) until 2027-01-05 00:00 UTC"),
        "{reason}"
    );
    assert!(!e.mergeable());
}

#[test]
fn soak_counts_healthy_time_in_the_previous_environment_of_this_digest() {
    let env = prod();
    let e = eval(
        &ready_pr(),
        &env,
        t(10, 0),
        Some(&staging_healthy(t(9, 30))),
    );
    let (v, reason) = verdict(&e, Gate::Soak);
    assert_eq!(v, Verdict::Waiting);
    assert_eq!(reason, "soaking in staging until 2026-11-24 10:30 UTC");
    assert_eq!(e.recheck_at(), Some(t(10, 30)));

    let mut other = staging_healthy(t(1, 0));
    other.digest = Digest::of(b"v1");
    let (v, reason) = verdict(&eval(&ready_pr(), &env, t(10, 0), Some(&other)), Gate::Soak);
    assert_eq!(v, Verdict::Waiting);
    assert!(reason.contains("does not run"), "{reason}");

    let mut unhealthy = staging_healthy(t(1, 0));
    unhealthy.healthy_since = None;
    assert_eq!(
        verdict(
            &eval(&ready_pr(), &env, t(10, 0), Some(&unhealthy)),
            Gate::Soak
        )
        .0,
        Verdict::Waiting
    );
}

#[test]
fn approvals_count_only_team_members_on_the_current_head() {
    let staging = staging_healthy(t(1, 0));
    let mut p = ready_pr();
    p.reviews = vec![
        review("alice", ReviewState::Approved, HEAD, t(9, 0)),
        review("bob", ReviewState::Approved, OLD, t(8, 30)),
        review("mallory", ReviewState::Approved, HEAD, t(9, 0)),
    ];
    let (v, reason) = verdict(
        &eval(&p, &prod(), t(10, 0), Some(&staging)),
        Gate::Approvals,
    );
    assert_eq!(v, Verdict::Blocked);
    assert!(
        reason.starts_with("1/2 approvals from @shop/release-managers"),
        "{reason}"
    );
    assert!(
        reason.contains("approvals by bob predate the latest push"),
        "{reason}"
    );
}

#[test]
fn a_later_request_for_changes_overrides_an_approval() {
    let mut p = ready_pr();
    p.reviews.push(review(
        "alice",
        ReviewState::ChangesRequested,
        HEAD,
        t(9, 30),
    ));
    let (v, reason) = verdict(
        &eval(&p, &prod(), t(10, 0), Some(&staging_healthy(t(1, 0)))),
        Gate::Approvals,
    );
    assert_eq!(v, Verdict::Blocked);
    assert_eq!(reason, "changes requested by alice");
}

#[test]
fn a_hold_label_blocks() {
    let mut p = ready_pr();
    p.labels.push(HOLD_LABEL.into());
    p.hold_reason = Some("@dana: waiting for the DB migration".into());
    let e = eval(&p, &prod(), t(10, 0), Some(&staging_healthy(t(1, 0))));
    let (v, reason) = verdict(&e, Gate::Hold);
    assert_eq!(v, Verdict::Blocked);
    assert!(reason.contains("waiting for the DB migration"), "{reason}");
    assert_eq!(e.blocking().unwrap().gate, Gate::Hold);
}

#[test]
fn required_checks_must_be_green_on_the_head() {
    let mut p = ready_pr();
    p.checks = vec![Check {
        context: "baton/validate".into(),
        state: CheckState::Failure,
    }];
    assert_eq!(
        verdict(&eval(&p, &prod(), t(10, 0), None), Gate::Checks).0,
        Verdict::Blocked
    );
    p.checks.clear();
    let (v, reason) = verdict(&eval(&p, &prod(), t(10, 0), None), Gate::Checks);
    assert_eq!(v, Verdict::Waiting);
    assert_eq!(reason, "waiting for baton/validate (not reported)");
}

#[test]
fn a_promote_command_counts_only_from_an_authorized_user_after_the_latest_push() {
    let staging = staging_healthy(t(1, 0));
    let mut p = ready_pr();
    p.commands[0].actor = Actor {
        login: "dev".into(),
        permission: Permission::Write,
        teams: vec![],
    };
    assert_eq!(
        verdict(&eval(&p, &prod(), t(10, 0), Some(&staging)), Gate::Command).0,
        Verdict::Blocked
    );
    let mut p = ready_pr();
    p.commands[0].at = t(7, 0); // before the head was pushed at 08:00
    assert_eq!(
        verdict(&eval(&p, &prod(), t(10, 0), Some(&staging)), Gate::Command).0,
        Verdict::Blocked
    );
}

#[test]
fn verified_attestations_are_the_policy_input_so_rego_can_require_provenance() {
    let env = prod();
    let teams = teams();
    let staging = staging_healthy(t(1, 0));
    let policies = vec![PolicySource {
            path: "policies/provenance.rego".into(),
            text: "package baton\nimport rego.v1\nslsa := input.attestations[\"https://slsa.dev/provenance/v1\"]\ndeny contains \"prod takes only images built from main\" if {\n  input.environment == \"prod\"\n  slsa.buildDefinition.externalParameters.workflow.ref != \"refs/heads/main\"\n}\ndeny contains \"prod takes only images with build provenance\" if {\n  input.environment == \"prod\"\n  not slsa\n}\ndeny contains \"critical vulnerabilities\" if {\n  input.attestations[\"https://cosign.sigstore.dev/attestation/vuln/v1\"].scanner.result.critical > 0\n}\n".into(),
        }];
    let with = |branch: &str, critical: u32| {
        BTreeMap::from([
            (
                "https://slsa.dev/provenance/v1".to_string(),
                serde_json::json!({"buildDefinition": {"externalParameters": {"workflow": {"ref": format!("refs/heads/{branch}")}}}}),
            ),
            (
                "https://cosign.sigstore.dev/attestation/vuln/v1".to_string(),
                serde_json::json!({"scanner": {"result": {"critical": critical}}}),
            ),
        ])
    };
    let reason = |attestations: Option<&BTreeMap<String, serde_json::Value>>| {
        let ctx = Context {
            env: &env,
            now: t(10, 0),
            previous: Some(&staging),
            teams: &teams,
            team_errors: &Default::default(),
            base_rules: None,
            bot_login: "baton[bot]",
            policies: &policies,
            from: None,
            attestations,
        };
        verdict(&evaluate(&ready_pr(), &ctx), Gate::Policy)
    };
    let seen = " (verified attestations: https://cosign.sigstore.dev/attestation/vuln/v1, \
                    https://slsa.dev/provenance/v1)";
    assert_eq!(
        reason(Some(&with("main", 0))),
        (Verdict::Passed, format!("no policy objects{seen}"))
    );
    assert_eq!(
        reason(Some(&with("feature", 0))),
        (
            Verdict::Blocked,
            format!("denied: prod takes only images built from main{seen}")
        )
    );
    assert_eq!(
        reason(Some(&with("main", 2))).1,
        format!("denied: critical vulnerabilities{seen}")
    );
    assert_eq!(
        reason(None).1,
        "denied: prod takes only images with build provenance"
    );
}

#[test]
fn a_rego_rule_denies_with_its_message() {
    let env = prod();
    let teams = teams();
    let staging = staging_healthy(t(1, 0));
    let policies = vec![PolicySource {
            path: "policies/tuesday.rego".into(),
            text: "package baton\nimport rego.v1\ndeny contains msg if {\n  input.weekday == \"Tue\"\n  count(input.approvers) < 3\n  msg := sprintf(\"%s needs 3 approvals on Tuesdays\", [input.environment])\n}\n".into(),
        }];
    let ctx = Context {
        env: &env,
        now: t(10, 0),
        previous: Some(&staging),
        teams: &teams,
        team_errors: &BTreeMap::new(),
        base_rules: None,
        bot_login: "baton[bot]",
        policies: &policies,
        from: None,
        attestations: None,
    };
    let e = evaluate(&ready_pr(), &ctx);
    let (v, reason) = verdict(&e, Gate::Policy);
    assert_eq!(v, Verdict::Blocked);
    assert_eq!(reason, "denied: prod needs 3 approvals on Tuesdays");
    assert!(!e.mergeable());
}

#[test]
fn an_auto_merge_environment_without_approvals_has_no_approval_gate() {
    let dev: Environment = yaml_serde::from_str("name: dev\nautoMerge: true\n").unwrap();
    let e = eval(&pr(), &dev, t(3, 0), None);
    assert!(e.mergeable(), "{}", e.table());
    assert!(
        e.results
            .iter()
            .all(|r| r.gate != Gate::Approvals && r.gate != Gate::Soak)
    );
    let manual: Environment = yaml_serde::from_str("name: qa\n").unwrap();
    let (v, reason) = verdict(&eval(&pr(), &manual, t(3, 0), None), Gate::Approvals);
    assert_eq!(v, Verdict::Blocked);
    assert_eq!(reason, "0/1 approvals from reviewers with write access");
}
