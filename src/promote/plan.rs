//! The planner: from what the registry offers, what Git pins, what clusters run and which
//! promotion PRs are open, decide which PRs should be opened, updated, closed or merged.
//! Pure and idempotent: run twice on the same state, it asks for the same actions, and once
//! they are done it asks for none — which is what makes restarts safe.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::gates::{self, Context, Evaluation, is_rollback};
use super::state::{DeployState, Deployment, Promotion, PullRequest};
use crate::config::pipeline::Pipeline;
use crate::image::{Digest, Pinned};

/// The newest blessed release of an app, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub tag: Option<String>,
    pub digest: Digest,
}

/// Everything the planner reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub pipeline: &'a Pipeline,
    pub now: DateTime<Utc>,
    /// Newest blessed release per app.
    pub releases: &'a BTreeMap<String, Release>,
    /// What the config branch tip pins, by (env, app).
    pub pinned: &'a BTreeMap<(String, String), Pinned>,
    /// What each environment runs, by (env, app).
    pub deployments: &'a BTreeMap<(String, String), Deployment>,
    /// Open promotion PRs.
    pub open: &'a [PullRequest],
    /// Members of the teams the pipeline names.
    pub teams: &'a BTreeMap<String, BTreeSet<String>>,
    /// Teams GitHub would not list, with why.
    pub team_errors: &'a BTreeMap<String, String>,
    /// GitHub's own rules on the base branch, when read.
    pub base_rules: Option<&'a super::base_rules::BaseRules>,
    pub bot_login: &'a str,
    /// `policies/*.rego` of the config branch.
    pub policies: &'a [super::policy::PolicySource],
    /// Digests rolled back out of an environment, by (env, app): never proposed there again
    /// (from [`held_digests`]).
    pub held: &'a BTreeMap<(String, String), BTreeSet<Digest>>,
    /// Verified attestations by image digest (`sha256:…`): predicate type → predicate.
    pub attestations: &'a BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// Something the engine should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Open a PR pinning `to` in `env`.
    Open {
        env: String,
        app: String,
        to: PinnedOut,
        from: Option<PinnedOut>,
    },
    /// The open PR pins an older digest: rebuild its branch on `to` and say so on the PR.
    Update {
        pr: u64,
        env: String,
        app: String,
        to: PinnedOut,
        superseded: PinnedOut,
    },
    /// The PR is no longer needed.
    Close {
        pr: u64,
        env: String,
        app: String,
        reason: String,
    },
    /// Every gate passed: merge.
    Merge {
        pr: u64,
        env: String,
        app: String,
        evaluation: Evaluation,
    },
    /// Gates are not all passed; report them.
    Wait {
        pr: u64,
        env: String,
        app: String,
        evaluation: Evaluation,
    },
    /// Open one PR for a group (release train) pinning each member's new digest in `env`.
    /// (A group's PR is closed, merged or left waiting with the other actions, `app` naming the
    /// group.)
    OpenGroup {
        env: String,
        group: String,
        members: Vec<MemberChange>,
    },
    /// The group's open PR pins another set of digests: rebuild its branch on `members`.
    UpdateGroup {
        pr: u64,
        env: String,
        group: String,
        members: Vec<MemberChange>,
        superseded: Vec<MemberChange>,
    },
}

/// One member app's change in a group's PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberChange {
    pub app: String,
    pub to: PinnedOut,
    /// What the environment pins now (absent before the first promotion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<PinnedOut>,
}

/// A pinned image in serialisable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinnedOut {
    pub tag: Option<String>,
    pub digest: String,
}

impl From<&Pinned> for PinnedOut {
    fn from(p: &Pinned) -> Self {
        Self {
            tag: p.tag.clone(),
            digest: p.digest.to_string(),
        }
    }
}

impl From<&Release> for PinnedOut {
    fn from(r: &Release) -> Self {
        Self {
            tag: r.tag.clone(),
            digest: r.digest.to_string(),
        }
    }
}

impl Action {
    pub fn key(&self) -> (&str, &str) {
        match self {
            Self::Open { env, app, .. }
            | Self::Update { env, app, .. }
            | Self::Close { env, app, .. }
            | Self::Merge { env, app, .. }
            | Self::Wait { env, app, .. } => (env, app),
            Self::OpenGroup { env, group, .. } | Self::UpdateGroup { env, group, .. } => {
                (env, group)
            }
        }
    }
}

/// What `env` should receive for `app` now, if anything: the newest blessed release for an
/// environment with no `after:`, else what the previous environment has run healthy for at
/// least its soak time.
pub(super) fn desired(
    inputs: &Inputs<'_>,
    env: &crate::config::Environment,
    app: &str,
) -> Option<Release> {
    match &env.after {
        None => inputs.releases.get(app).cloned(),
        Some(prev) => {
            let dep = inputs.deployments.get(&(prev.clone(), app.to_string()))?;
            let since = dep
                .healthy_since
                .filter(|_| dep.state == DeployState::Healthy)?;
            let soak =
                chrono::Duration::from_std(env.soak.map(|s| s.0).unwrap_or_default()).ok()?;
            if inputs.now < since + soak {
                return None;
            }
            // The tag travels with the digest from the environment before.
            let tag = inputs
                .pinned
                .get(&(prev.clone(), app.to_string()))
                .filter(|p| p.digest == dep.digest)
                .and_then(|p| p.tag.clone());
            Some(Release {
                tag,
                digest: dep.digest.clone(),
            })
        }
    }
}

/// What the gates of `pr` (one app's PR, or one member's state of a group's PR) read
/// besides the PR: the previous environment's deployment of its app, what `env` pins for it
/// now, its image's attestations.
pub(super) fn context<'a>(
    inputs: &Inputs<'a>,
    env: &'a crate::config::Environment,
    pr: &PullRequest,
) -> Context<'a> {
    Context {
        env,
        now: inputs.now,
        previous: env
            .after
            .as_ref()
            .and_then(|prev| inputs.deployments.get(&(prev.clone(), pr.app.clone()))),
        teams: inputs.teams,
        team_errors: inputs.team_errors,
        base_rules: inputs.base_rules,
        bot_login: inputs.bot_login,
        policies: inputs.policies,
        from: inputs
            .pinned
            .get(&(env.name.clone(), pr.app.clone()))
            .map(|p| &p.digest),
        attestations: inputs.attestations.get(&pr.digest.to_string()),
    }
}

/// Whether `candidate` is an older release than `pinned`, judged by their tags as semantic
/// versions (a leading `v` allowed). Without two comparable tags nothing is "older": a
/// digest differing from the pinned one is then taken as new. This keeps a rollback in one
/// environment from cascading backwards into the next.
pub(super) fn is_older(candidate: &Release, pinned: &Pinned) -> bool {
    let version = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| semver::Version::parse(t.trim_start_matches('v')).ok())
    };
    match (version(&candidate.tag), version(&pinned.tag)) {
        (Some(c), Some(p)) => c < p,
        _ => false,
    }
}

/// The digests each (env, app) holds back after rollbacks, from its promotions newest first
/// (the config branch history). A rollback's `Baton-Rollback-Of` digest stays held until a
/// promotion that is not a rollback lands in that environment (a newer release flowed, so the
/// hold has done its job), or a later rollback restores that very digest on purpose
/// (`/rollback <env> to <digest>`). Consecutive rollbacks add up: rolling back twice holds
/// both digests.
pub fn held_digests<'a>(
    newest_first: impl IntoIterator<Item = &'a Promotion>,
) -> BTreeMap<(String, String), BTreeSet<Digest>> {
    let mut held: BTreeMap<(String, String), BTreeSet<Digest>> = BTreeMap::new();
    let mut restored: BTreeMap<(String, String), BTreeSet<Digest>> = BTreeMap::new();
    let mut settled: BTreeSet<(String, String)> = BTreeSet::new();
    for p in newest_first {
        let key = (p.environment.clone(), p.app.clone());
        if settled.contains(&key) {
            continue;
        }
        let Some(bad) = &p.rollback_of else {
            settled.insert(key);
            continue;
        };
        let restored = restored.entry(key.clone()).or_default();
        restored.insert(p.to.clone());
        if !restored.contains(bad) {
            held.entry(key).or_default().insert(bad.clone());
        }
    }
    held
}

/// Plan every (environment, app) of the pipeline, and every (environment, group) of its
/// release trains (`super::group`).
pub fn plan(inputs: &Inputs<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    // By (env, app), or (env, group) for a group's PR (once per member it pins).
    let mut by_key: BTreeMap<(String, String), Vec<&PullRequest>> = BTreeMap::new();
    for pr in inputs.open {
        let name = pr.group.as_ref().unwrap_or(&pr.app);
        by_key
            .entry((pr.env.clone(), name.clone()))
            .or_default()
            .push(pr);
    }
    for env in inputs.pipeline.promotion_order() {
        for unit in inputs.pipeline.units() {
            if unit.group {
                // A member's own PR from before it joined the group gives way to the group's.
                for app in unit.apps {
                    for pr in by_key
                        .remove(&(env.name.clone(), app.clone()))
                        .unwrap_or_default()
                    {
                        actions.push(Action::Close {
                            pr: pr.number,
                            env: env.name.clone(),
                            app: app.clone(),
                            reason: format!(
                                "{app} is promoted with group {} now, in one PR per environment",
                                unit.name
                            ),
                        });
                    }
                }
                let prs = by_key
                    .remove(&(env.name.clone(), unit.name.to_string()))
                    .unwrap_or_default();
                super::group::plan_group(inputs, env, &unit, &prs, &mut actions);
                continue;
            }
            let app = &unit.apps[0];
            let key = (env.name.clone(), app.clone());
            let mut prs = by_key.remove(&key).unwrap_or_default();
            // A rollback PR is the one that stays when there are several.
            prs.sort_by_key(|p| (!is_rollback(p), p.number));
            // One PR per (app, env): any extra (from an older bug or a person) is closed.
            for extra in prs.iter().skip(1) {
                actions.push(Action::Close {
                    pr: extra.number,
                    env: env.name.clone(),
                    app: app.clone(),
                    reason: format!("#{} already promotes {app} to {}", prs[0].number, env.name),
                });
            }
            let pinned = inputs.pinned.get(&key);
            let want = desired(inputs, env, app);
            let held = inputs.held.get(&key);
            let want_new = want.as_ref().filter(|w| {
                pinned.is_none_or(|p| p.digest != w.digest && !is_older(w, p))
                    && held.is_none_or(|h| !h.contains(&w.digest))
            });
            match (prs.first(), want_new) {
                (None, None) => {}
                (None, Some(w)) => actions.push(Action::Open {
                    env: env.name.clone(),
                    app: app.clone(),
                    to: w.into(),
                    from: pinned.map(Into::into),
                }),
                (Some(pr), _) if pinned.is_some_and(|p| p.digest == pr.digest) => {
                    actions.push(Action::Close {
                        pr: pr.number,
                        env: env.name.clone(),
                        app: app.clone(),
                        reason: format!("{} already runs {} in Git", env.name, pr.digest.short()),
                    })
                }
                // A rollback PR is never updated or superseded by a newer release.
                (Some(pr), Some(w)) if w.digest != pr.digest && !is_rollback(pr) => {
                    actions.push(Action::Update {
                        pr: pr.number,
                        env: env.name.clone(),
                        app: app.clone(),
                        to: w.into(),
                        superseded: PinnedOut {
                            tag: pr.tag.clone(),
                            digest: pr.digest.to_string(),
                        },
                    })
                }
                (Some(pr), _)
                    if !is_rollback(pr) && held.is_some_and(|h| h.contains(&pr.digest)) =>
                {
                    actions.push(Action::Close {
                        pr: pr.number,
                        env: env.name.clone(),
                        app: app.clone(),
                        reason: format!(
                            "{} was rolled back from {}; a newer release will be proposed",
                            pr.digest.short(),
                            env.name
                        ),
                    })
                }
                (Some(pr), _) => {
                    let evaluation = gates::evaluate(pr, &context(inputs, env, pr));
                    let (pr, env, app) = (pr.number, env.name.clone(), app.clone());
                    actions.push(if evaluation.mergeable() {
                        Action::Merge {
                            pr,
                            env,
                            app,
                            evaluation,
                        }
                    } else {
                        Action::Wait {
                            pr,
                            env,
                            app,
                            evaluation,
                        }
                    });
                }
            }
        }
    }
    // PRs for apps, groups or environments the pipeline no longer has (a group's PR once).
    let mut closed = BTreeSet::new();
    for ((env, app), prs) in by_key {
        for pr in prs {
            if !closed.insert(pr.number) {
                continue;
            }
            actions.push(Action::Close {
                pr: pr.number,
                env: env.clone(),
                app: app.clone(),
                reason: format!("the pipeline no longer promotes {app} to {env}"),
            });
        }
    }
    actions
}

/// What the planner's tests (here and in `group`) build their inputs from.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;
    use crate::promote::state::{Check, CheckState};
    use chrono::TimeZone;

    /// The tests' clock: Tuesday 2026-11-24 10:00 UTC.
    pub fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
    }

    /// `env` runs `digest` of `app`, healthy since `minutes_ago`.
    pub fn healthy(env: &str, app: &str, digest: Digest, minutes_ago: i64) -> Deployment {
        Deployment {
            env: env.into(),
            app: app.into(),
            digest,
            state: DeployState::Healthy,
            healthy_since: Some(now() - chrono::Duration::minutes(minutes_ago)),
            restarted: None,
        }
    }

    /// PR #`number` promoting `app` to `env` at `digest` (`tag`), pushed an hour ago, with
    /// `baton/validate` green.
    pub fn open_pr(number: u64, app: &str, env: &str, digest: Digest, tag: &str) -> PullRequest {
        PullRequest {
            number,
            app: app.into(),
            env: env.into(),
            digest,
            tag: Some(tag.into()),
            head_sha: "abc".into(),
            head_pushed_at: now() - chrono::Duration::hours(1),
            labels: vec![],
            hold_reason: None,
            reviews: vec![],
            checks: vec![Check {
                context: "baton/validate".into(),
                state: CheckState::Success,
            }],
            commands: vec![],
            group: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::now;
    use super::*;
    use crate::promote::gates::Gate;

    fn pipeline() -> Pipeline {
        Pipeline::parse(
            "p",
            r#"
apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web: { image: reg/web, bless: { semver: ">=1.0.0" } }
environments:
  - { name: dev, autoMerge: true }
  - { name: staging, after: dev, soak: 10m, autoMerge: true, requiredChecks: [validate] }
  - { name: prod, after: staging, soak: 1h, approvals: { count: 1 } }
"#,
        )
        .unwrap()
        .pipeline
    }

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn key(env: &str) -> (String, String) {
        (env.to_string(), "web".to_string())
    }

    fn pinned(tag: &str) -> Pinned {
        Pinned {
            tag: Some(tag.into()),
            digest: d(tag),
        }
    }

    fn healthy(env: &str, tag: &str, minutes_ago: i64) -> Deployment {
        super::fixtures::healthy(env, "web", d(tag), minutes_ago)
    }

    fn pr(number: u64, env: &str, tag: &str) -> PullRequest {
        super::fixtures::open_pr(number, "web", env, d(tag), tag)
    }

    struct World {
        pipeline: Pipeline,
        releases: BTreeMap<String, Release>,
        pinned: BTreeMap<(String, String), Pinned>,
        deployments: BTreeMap<(String, String), Deployment>,
        open: Vec<PullRequest>,
        teams: BTreeMap<String, BTreeSet<String>>,
        held: BTreeMap<(String, String), BTreeSet<Digest>>,
    }

    impl World {
        fn new() -> Self {
            let mut w = Self {
                pipeline: pipeline(),
                releases: BTreeMap::new(),
                pinned: BTreeMap::new(),
                deployments: BTreeMap::new(),
                open: vec![],
                teams: BTreeMap::new(),
                held: BTreeMap::new(),
            };
            for env in ["dev", "staging", "prod"] {
                w.pinned.insert(key(env), pinned("1.0.0"));
                w.deployments.insert(key(env), healthy(env, "1.0.0", 600));
            }
            w.releases.insert(
                "web".into(),
                Release {
                    tag: Some("1.0.0".into()),
                    digest: d("1.0.0"),
                },
            );
            w
        }

        fn plan(&self) -> Vec<Action> {
            plan(&Inputs {
                pipeline: &self.pipeline,
                now: now(),
                releases: &self.releases,
                pinned: &self.pinned,
                deployments: &self.deployments,
                open: &self.open,
                teams: &self.teams,
                team_errors: &BTreeMap::new(),
                base_rules: None,
                bot_login: "baton[bot]",
                policies: &[],
                held: &self.held,
                attestations: &BTreeMap::new(),
            })
        }
    }

    #[test]
    fn nothing_to_do_when_everything_runs_the_newest_release() {
        assert_eq!(World::new().plan(), vec![]);
    }

    #[test]
    fn a_new_blessed_release_opens_a_pr_for_the_first_environment_only() {
        let mut w = World::new();
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        let actions = w.plan();
        assert_eq!(actions.len(), 1, "{actions:?}");
        let Action::Open { env, to, from, .. } = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(env, "dev");
        assert_eq!(to.tag.as_deref(), Some("1.1.0"));
        assert_eq!(from.as_ref().unwrap().tag.as_deref(), Some("1.0.0"));
    }

    #[test]
    fn the_next_environment_gets_a_pr_only_after_soak_with_the_tag_carried_along() {
        let mut w = World::new();
        w.pinned.insert(key("dev"), pinned("1.1.0"));
        w.deployments.insert(key("dev"), healthy("dev", "1.1.0", 5));
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        assert_eq!(w.plan(), vec![], "soak of 10m not done after 5m");
        w.deployments
            .insert(key("dev"), healthy("dev", "1.1.0", 11));
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::Open { env, to, .. }] if env == "staging" && to.tag.as_deref() == Some("1.1.0")),
            "{actions:?}"
        );
    }

    #[test]
    fn an_unhealthy_previous_environment_promotes_nothing() {
        let mut w = World::new();
        let mut dep = healthy("dev", "1.1.0", 60);
        dep.state = DeployState::Failed;
        w.deployments.insert(key("dev"), dep);
        assert_eq!(w.plan(), vec![]);
    }

    #[test]
    fn a_newer_digest_updates_the_open_pr_instead_of_opening_another() {
        let mut w = World::new();
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.2.0".into()),
                digest: d("1.2.0"),
            },
        );
        w.open.push(pr(5, "dev", "1.1.0"));
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::Update { pr: 5, to, superseded, .. }] if to.tag.as_deref() == Some("1.2.0") && superseded.tag.as_deref() == Some("1.1.0")),
            "{actions:?}"
        );
    }

    #[test]
    fn an_open_pr_whose_gates_pass_is_merged_and_otherwise_waits() {
        let mut w = World::new();
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        w.open.push(pr(5, "dev", "1.1.0"));
        assert!(
            matches!(&w.plan()[..], [Action::Merge { pr: 5, .. }]),
            "{:?}",
            w.plan()
        );

        // prod needs one approval.
        let mut w = World::new();
        w.pinned.insert(key("dev"), pinned("1.1.0"));
        w.deployments
            .insert(key("dev"), healthy("dev", "1.1.0", 300));
        w.pinned.insert(key("staging"), pinned("1.1.0"));
        w.deployments
            .insert(key("staging"), healthy("staging", "1.1.0", 120));
        w.open.push(pr(9, "prod", "1.1.0"));
        let actions = w.plan();
        let [
            Action::Wait {
                pr: 9, evaluation, ..
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        assert_eq!(evaluation.blocking().unwrap().gate, Gate::Approvals);
    }

    #[test]
    fn a_pr_whose_digest_is_already_pinned_is_closed() {
        let mut w = World::new();
        w.open.push(pr(5, "dev", "1.0.0"));
        assert!(
            matches!(&w.plan()[..], [Action::Close { pr: 5, .. }]),
            "{:?}",
            w.plan()
        );
    }

    #[test]
    fn duplicate_prs_and_prs_for_removed_environments_are_closed() {
        let mut w = World::new();
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        w.open.push(pr(6, "dev", "1.1.0"));
        w.open.push(pr(5, "dev", "1.1.0"));
        w.open.push(pr(7, "qa", "1.1.0"));
        let actions = w.plan();
        assert!(actions.contains(&Action::Close {
            pr: 6,
            env: "dev".into(),
            app: "web".into(),
            reason: "#5 already promotes web to dev".into()
        }));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Merge { pr: 5, .. }))
        );
        assert!(actions.iter().any(
            |a| matches!(a, Action::Close { pr: 7, reason, .. } if reason.contains("no longer"))
        ));
    }

    #[test]
    fn a_rollback_in_one_environment_does_not_cascade_into_the_next() {
        let mut w = World::new();
        // dev was rolled back to 1.0.0 while staging runs 1.1.0.
        w.pinned.insert(key("staging"), pinned("1.1.0"));
        w.deployments
            .insert(key("staging"), healthy("staging", "1.1.0", 30));
        assert!(
            !w.plan()
                .iter()
                .any(|a| matches!(a, Action::Open { env, .. } if env == "staging")),
            "{:?}",
            w.plan()
        );
    }

    fn promotion(env: &str, to: &str, rollback_of: Option<&str>) -> Promotion {
        Promotion {
            app: "web".into(),
            environment: env.into(),
            from: None,
            to: d(to),
            tag: Some(to.into()),
            approved_by: vec![],
            promoted_by: None,
            pull_request: None,
            rollback_of: rollback_of.map(d),
        }
    }

    #[test]
    fn a_rolled_back_digest_is_held_until_a_normal_promotion_or_a_deliberate_restore() {
        // Newest first: prod rolled back 1.1.0 to 1.0.0; dev has nothing to hold.
        let history = [
            promotion("prod", "1.0.0", Some("1.1.0")),
            promotion("dev", "1.1.0", None),
            promotion("prod", "1.1.0", None),
        ];
        let held = held_digests(&history);
        assert_eq!(held.get(&key("prod")), Some(&BTreeSet::from([d("1.1.0")])));
        assert_eq!(held.get(&key("dev")), None);

        // Two rollbacks in a row hold both digests.
        let twice = [
            promotion("prod", "0.9.0", Some("1.0.0")),
            promotion("prod", "1.0.0", Some("1.1.0")),
        ];
        assert_eq!(
            held_digests(&twice).get(&key("prod")),
            Some(&BTreeSet::from([d("1.0.0"), d("1.1.0")]))
        );

        // `/rollback prod to 1.1.0` restores the held digest on purpose: no longer held.
        let restored = [
            promotion("prod", "1.1.0", Some("1.0.0")),
            promotion("prod", "1.0.0", Some("1.1.0")),
        ];
        assert_eq!(
            held_digests(&restored).get(&key("prod")),
            Some(&BTreeSet::from([d("1.0.0")]))
        );

        // A normal promotion after the rollback ends the hold.
        let moved_on = [
            promotion("prod", "1.2.0", None),
            promotion("prod", "1.0.0", Some("1.1.0")),
        ];
        assert_eq!(held_digests(&moved_on).get(&key("prod")), None);
    }

    #[test]
    fn a_held_digest_is_not_proposed_again_but_a_newer_one_flows() {
        let mut w = World::new();
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        w.held.insert(key("dev"), BTreeSet::from([d("1.1.0")]));
        assert_eq!(w.plan(), vec![]);
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.2.0".into()),
                digest: d("1.2.0"),
            },
        );
        assert!(
            matches!(&w.plan()[..], [Action::Open { env, to, .. }] if env == "dev" && to.tag.as_deref() == Some("1.2.0")),
            "{:?}",
            w.plan()
        );
    }

    #[test]
    fn an_open_pr_for_a_held_digest_is_closed_unless_a_newer_release_replaces_it() {
        let mut w = World::new();
        w.held.insert(key("dev"), BTreeSet::from([d("1.1.0")]));
        w.open.push(pr(5, "dev", "1.1.0"));
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        assert!(
            matches!(&w.plan()[..], [Action::Close { pr: 5, reason, .. }] if reason.contains("rolled back")),
            "{:?}",
            w.plan()
        );
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.2.0".into()),
                digest: d("1.2.0"),
            },
        );
        assert!(
            matches!(&w.plan()[..], [Action::Update { pr: 5, .. }]),
            "{:?}",
            w.plan()
        );
    }

    #[test]
    fn a_rollback_pr_is_never_updated_by_a_newer_release_and_merges_without_soak() {
        let mut w = World::new();
        // staging runs 1.1.0 (failed); the rollback PR restores 1.0.0.
        w.pinned.insert(key("staging"), pinned("1.1.0"));
        w.deployments
            .insert(key("dev"), healthy("dev", "1.2.0", 600));
        w.pinned.insert(key("dev"), pinned("1.2.0"));
        let mut rollback = pr(8, "staging", "1.0.0");
        rollback.labels = vec![gates::ROLLBACK_LABEL.into()];
        w.open.push(rollback);
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::Merge { pr: 8, .. }]),
            "{actions:?}"
        );
        // A promotion PR opened for the same pair (by a person) is the extra one.
        w.open.push(pr(5, "staging", "1.2.0"));
        let actions = w.plan();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Close { pr: 5, .. })),
            "{actions:?}"
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Merge { pr: 8, .. })),
            "{actions:?}"
        );
    }

    #[test]
    fn planning_is_idempotent() {
        let mut w = World::new();
        w.releases.insert(
            "web".into(),
            Release {
                tag: Some("1.1.0".into()),
                digest: d("1.1.0"),
            },
        );
        assert_eq!(w.plan(), w.plan());
    }
}
