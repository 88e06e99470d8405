//! Release trains (pipeline `groups:`): the apps of a group travel together, one PR per group
//! and environment. Pure, like the rest of the planner.
//!
//! - A group's PR pins every member that has a new digest for the environment; members with
//!   nothing new are left as they are.
//! - The group advances only when every member with a new digest is ready: for the first
//!   environment, its newest blessed release; for a later one, what the previous environment
//!   has run healthy (and verified) for the soak. One member still soaking holds the others.
//! - The gates are evaluated per member (soak, policies and attestations are per app; hold,
//!   checks, approvals, commands, windows and freezes read the one PR) and combined: a gate
//!   passes only when it passes for every member ([`combine`]).

use super::gates::{self, Evaluation, Gate, GateResult, Verdict, is_rollback};
use super::plan::{Action, Inputs, MemberChange, PinnedOut, Release, context, desired, is_older};
use super::state::PullRequest;
use crate::config::Environment;
use crate::config::pipeline::Unit;

/// What `env` could receive for `app`, ready or not: the newest blessed release for an
/// environment with no `after:`, else what the previous environment runs (healthy, failing or
/// not soaked yet). A member whose candidate is new but not [`desired`] yet holds its group.
fn candidate(inputs: &Inputs<'_>, env: &Environment, app: &str) -> Option<Release> {
    match &env.after {
        None => inputs.releases.get(app).cloned(),
        Some(prev) => {
            let dep = inputs.deployments.get(&(prev.clone(), app.to_string()))?;
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

/// Plan one group in one environment: `prs` are the group's open PRs there, once per member
/// each pins.
pub(super) fn plan_group(
    inputs: &Inputs<'_>,
    env: &Environment,
    unit: &Unit<'_>,
    prs: &[&PullRequest],
    actions: &mut Vec<Action>,
) {
    let group = unit.name.to_string();
    let key = |app: &str| (env.name.clone(), app.to_string());
    // One PR per (group, env): a rollback PR is the one kept, then the oldest.
    let mut numbers: Vec<(bool, u64)> = prs.iter().map(|p| (!is_rollback(p), p.number)).collect();
    numbers.sort();
    numbers.dedup();
    let kept = numbers.first().map(|(_, n)| *n);
    for (_, extra) in numbers.iter().skip(1) {
        actions.push(Action::Close {
            pr: *extra,
            env: env.name.clone(),
            app: group.clone(),
            reason: format!(
                "#{} already promotes group {group} to {}",
                kept.unwrap_or_default(),
                env.name
            ),
        });
    }
    let current: Vec<&PullRequest> = prs
        .iter()
        .copied()
        .filter(|p| Some(p.number) == kept)
        .collect();

    // What the members want: each new digest, and whether every one of them is ready.
    let mut wanted = Vec::new();
    let mut unready = false;
    for app in unit.apps {
        let pinned = inputs.pinned.get(&key(app));
        let held = inputs.held.get(&key(app));
        let is_new = |r: &Release| {
            pinned.is_none_or(|p| p.digest != r.digest && !is_older(r, p))
                && held.is_none_or(|h| !h.contains(&r.digest))
        };
        let Some(c) = candidate(inputs, env, app).filter(|c| is_new(c)) else {
            continue;
        };
        match desired(inputs, env, app).filter(|d| d.digest == c.digest) {
            Some(ready) => wanted.push(MemberChange {
                app: app.clone(),
                to: (&ready).into(),
                from: pinned.map(Into::into),
            }),
            None => unready = true,
        }
    }
    let want = (!wanted.is_empty() && !unready).then_some(wanted);

    let Some(first) = current.first() else {
        if let Some(members) = want {
            actions.push(Action::OpenGroup {
                env: env.name.clone(),
                group,
                members,
            });
        }
        return;
    };
    let number = first.number;
    let rollback = is_rollback(first);
    let pinned_now = |p: &PullRequest| {
        inputs
            .pinned
            .get(&key(&p.app))
            .is_some_and(|pin| pin.digest == p.digest)
    };
    // (A state naming no member stands for a group branch that changes none.)
    if current
        .iter()
        .all(|p| pinned_now(p) || !unit.apps.contains(&p.app))
    {
        actions.push(Action::Close {
            pr: number,
            env: env.name.clone(),
            app: group,
            reason: format!("{} already runs what it pins in Git", env.name),
        });
        return;
    }
    let pins = |p: &PullRequest| (p.app.clone(), p.digest.to_string());
    let same_set = |members: &[MemberChange]| {
        let mut a: Vec<(String, String)> = current.iter().map(|p| pins(p)).collect();
        let mut b: Vec<(String, String)> = members
            .iter()
            .map(|m| (m.app.clone(), m.to.digest.clone()))
            .collect();
        a.sort();
        b.sort();
        a == b
    };
    match want {
        // A rollback PR is never updated or superseded by a newer release.
        Some(members) if !rollback && !same_set(&members) => {
            actions.push(Action::UpdateGroup {
                pr: number,
                env: env.name.clone(),
                group,
                members,
                superseded: current
                    .iter()
                    .map(|p| MemberChange {
                        app: p.app.clone(),
                        to: PinnedOut {
                            tag: p.tag.clone(),
                            digest: p.digest.to_string(),
                        },
                        from: None,
                    })
                    .collect(),
            });
            return;
        }
        _ => {}
    }
    if let Some(p) = current.iter().find(|p| {
        !rollback
            && inputs
                .held
                .get(&key(&p.app))
                .is_some_and(|h| h.contains(&p.digest))
    }) {
        actions.push(Action::Close {
            pr: number,
            env: env.name.clone(),
            app: group,
            reason: format!(
                "{} of {} was rolled back from {}; a newer release will be proposed",
                p.digest.short(),
                p.app,
                env.name
            ),
        });
        return;
    }
    let evaluations: Vec<(String, Evaluation)> = current
        .iter()
        .map(|p| (p.app.clone(), gates::evaluate(p, &context(inputs, env, p))))
        .collect();
    let evaluation = combine(&evaluations);
    let env = env.name.clone();
    actions.push(if evaluation.mergeable() {
        Action::Merge {
            pr: number,
            env,
            app: group,
            evaluation,
        }
    } else {
        Action::Wait {
            pr: number,
            env,
            app: group,
            evaluation,
        }
    });
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Passed => 0,
        Verdict::Waiting => 1,
        Verdict::Blocked => 2,
    }
}

/// The gates of a group's PR from its members' evaluations: each gate's verdict is the worst
/// of the members'; a reason all members share is shown once, differing ones per member
/// (`web: healthy in dev since …; worker: soaking in dev until …`), only the members not
/// passed when the gate is not.
pub fn combine(members: &[(String, Evaluation)]) -> Evaluation {
    let mut order: Vec<Gate> = Vec::new();
    for (_, e) in members {
        for r in &e.results {
            if !order.contains(&r.gate) {
                order.push(r.gate);
            }
        }
    }
    let results = order
        .into_iter()
        .map(|gate| {
            let per: Vec<(&str, &GateResult)> = members
                .iter()
                .filter_map(|(app, e)| {
                    e.results
                        .iter()
                        .find(|r| r.gate == gate)
                        .map(|r| (app.as_str(), r))
                })
                .collect();
            let worst = per
                .iter()
                .map(|(_, r)| r.verdict)
                .max_by_key(|v| rank(*v))
                .unwrap_or(Verdict::Passed);
            let (_, first) = per[0];
            if per
                .iter()
                .all(|(_, r)| r.reason == first.reason && r.verdict == first.verdict)
            {
                return first.clone();
            }
            let shown: Vec<&(&str, &GateResult)> = per
                .iter()
                .filter(|(_, r)| worst == Verdict::Passed || r.verdict != Verdict::Passed)
                .collect();
            let reason = shown
                .iter()
                .map(|(app, r)| format!("{app}: {}", r.reason))
                .collect::<Vec<_>>()
                .join("; ");
            let waiting = per.iter().filter(|(_, r)| r.verdict != Verdict::Passed);
            GateResult {
                gate,
                verdict: worst,
                reason,
                recheck_at: waiting.clone().filter_map(|(_, r)| r.recheck_at).min(),
                soak: waiting
                    .filter_map(|(_, r)| r.soak.clone())
                    .max_by_key(|s| s.healthy_since),
            }
        })
        .collect();
    Evaluation {
        results,
        approvers: members
            .first()
            .map(|(_, e)| e.approvers.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::plan::fixtures::{self, now};
    use super::*;
    use crate::config::Pipeline;
    use crate::image::{Digest, Pinned};
    use crate::promote::state::Deployment;

    fn pipeline() -> Pipeline {
        Pipeline::parse(
            "p",
            r#"
apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web: { image: reg/web, bless: { semver: ">=1.0.0" } }
  worker: { image: reg/worker, bless: { semver: ">=1.0.0" } }
  api: { image: reg/api, bless: { semver: ">=1.0.0" } }
groups:
  shop: { apps: [web, worker] }
environments:
  - { name: dev, autoMerge: true }
  - { name: staging, after: dev, soak: 10m, autoMerge: true, requiredChecks: [validate] }
"#,
        )
        .unwrap()
        .pipeline
    }

    fn d(app: &str, tag: &str) -> Digest {
        Digest::of(format!("{app}:{tag}").as_bytes())
    }

    fn k(env: &str, app: &str) -> (String, String) {
        (env.to_string(), app.to_string())
    }

    struct World {
        pipeline: Pipeline,
        releases: BTreeMap<String, Release>,
        pinned: BTreeMap<(String, String), Pinned>,
        deployments: BTreeMap<(String, String), Deployment>,
        open: Vec<PullRequest>,
        held: BTreeMap<(String, String), BTreeSet<Digest>>,
    }

    impl World {
        /// Every app runs 1.0.0 everywhere, healthy for hours.
        fn new() -> Self {
            let mut w = Self {
                pipeline: pipeline(),
                releases: BTreeMap::new(),
                pinned: BTreeMap::new(),
                deployments: BTreeMap::new(),
                open: vec![],
                held: BTreeMap::new(),
            };
            for app in ["web", "worker", "api"] {
                w.release(app, "1.0.0");
                for env in ["dev", "staging"] {
                    w.pin(env, app, "1.0.0");
                    w.healthy(env, app, "1.0.0", 600);
                }
            }
            w
        }

        fn release(&mut self, app: &str, tag: &str) {
            self.releases.insert(
                app.into(),
                Release {
                    tag: Some(tag.into()),
                    digest: d(app, tag),
                },
            );
        }

        fn pin(&mut self, env: &str, app: &str, tag: &str) {
            self.pinned.insert(
                k(env, app),
                Pinned {
                    tag: Some(tag.into()),
                    digest: d(app, tag),
                },
            );
        }

        fn healthy(&mut self, env: &str, app: &str, tag: &str, minutes: i64) {
            self.deployments.insert(
                k(env, app),
                fixtures::healthy(env, app, d(app, tag), minutes),
            );
        }

        /// The group's PR #`number` to `env`, pinning `members` (app, tag).
        fn group_pr(&mut self, number: u64, env: &str, members: &[(&str, &str)]) {
            for (app, tag) in members {
                self.open.push(PullRequest {
                    group: Some("shop".into()),
                    ..fixtures::open_pr(number, app, env, d(app, tag), tag)
                });
            }
        }

        fn plan(&self) -> Vec<Action> {
            super::super::plan::plan(&Inputs {
                pipeline: &self.pipeline,
                now: now(),
                releases: &self.releases,
                pinned: &self.pinned,
                deployments: &self.deployments,
                open: &self.open,
                teams: &BTreeMap::new(),
                team_errors: &BTreeMap::new(),
                base_rules: None,
                bot_login: "baton[bot]",
                policies: &[],
                held: &self.held,
                attestations: &BTreeMap::new(),
            })
        }
    }

    fn members(changes: &[MemberChange]) -> Vec<(&str, Option<&str>)> {
        changes
            .iter()
            .map(|m| (m.app.as_str(), m.to.tag.as_deref()))
            .collect()
    }

    #[test]
    fn two_members_with_new_releases_open_one_group_pr_and_an_ungrouped_app_its_own() {
        let mut w = World::new();
        w.release("web", "1.1.0");
        w.release("worker", "1.1.0");
        w.release("api", "1.1.0");
        let actions = w.plan();
        assert_eq!(actions.len(), 2, "{actions:?}");
        let Action::OpenGroup {
            env,
            group,
            members: m,
        } = &actions[0]
        else {
            panic!("{actions:?}")
        };
        assert_eq!((env.as_str(), group.as_str()), ("dev", "shop"));
        assert_eq!(
            members(m),
            [("web", Some("1.1.0")), ("worker", Some("1.1.0"))]
        );
        assert_eq!(m[0].from.as_ref().unwrap().tag.as_deref(), Some("1.0.0"));
        assert!(
            matches!(&actions[1], Action::Open { env, app, .. } if env == "dev" && app == "api"),
            "{actions:?}"
        );
    }

    #[test]
    fn only_members_with_a_new_digest_are_pinned_by_the_group_pr() {
        let mut w = World::new();
        w.release("worker", "1.2.0");
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::OpenGroup { members: m, .. }] if members(m) == [("worker", Some("1.2.0"))]),
            "{actions:?}"
        );
    }

    #[test]
    fn the_group_advances_to_the_next_environment_only_when_every_new_member_has_soaked() {
        let mut w = World::new();
        for app in ["web", "worker"] {
            w.release(app, "1.1.0");
            w.pin("dev", app, "1.1.0");
        }
        w.healthy("dev", "web", "1.1.0", 30);
        w.healthy("dev", "worker", "1.1.0", 5);
        assert_eq!(w.plan(), vec![], "worker has soaked 5m of 10m");

        w.healthy("dev", "worker", "1.1.0", 11);
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::OpenGroup { env, members: m, .. }] if env == "staging" && members(m) == [("web", Some("1.1.0")), ("worker", Some("1.1.0"))]),
            "{actions:?}"
        );
    }

    #[test]
    fn an_open_group_pr_waits_on_the_soak_of_every_member_and_merges_when_all_passed() {
        let mut w = World::new();
        for app in ["web", "worker"] {
            w.pin("dev", app, "1.1.0");
        }
        w.healthy("dev", "web", "1.1.0", 30);
        // worker's soak started over after a health loss.
        w.healthy("dev", "worker", "1.1.0", 3);
        w.group_pr(7, "staging", &[("web", "1.1.0"), ("worker", "1.1.0")]);
        let actions = w.plan();
        let [
            Action::Wait {
                pr: 7,
                app,
                evaluation,
                ..
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        assert_eq!(app, "shop");
        let soak = evaluation.blocking().unwrap();
        assert_eq!(soak.gate, Gate::Soak);
        assert!(
            soak.reason.starts_with("worker: soaking in dev until"),
            "{soak:?}"
        );
        assert!(
            !soak.reason.contains("web:"),
            "passed members are not listed: {soak:?}"
        );
        assert_eq!(
            soak.recheck_at,
            Some(now() - chrono::Duration::minutes(3) + chrono::Duration::minutes(10))
        );

        w.healthy("dev", "worker", "1.1.0", 12);
        let actions = w.plan();
        let [
            Action::Merge {
                pr: 7, evaluation, ..
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        let soak = evaluation
            .results
            .iter()
            .find(|r| r.gate == Gate::Soak)
            .unwrap();
        assert!(
            soak.reason.contains("web: healthy in dev")
                && soak.reason.contains("worker: healthy in dev"),
            "{soak:?}"
        );
    }

    #[test]
    fn a_hold_on_the_group_pr_holds_every_member_with_one_reason() {
        let mut w = World::new();
        w.release("web", "1.1.0");
        w.release("worker", "1.1.0");
        w.group_pr(7, "dev", &[("web", "1.1.0"), ("worker", "1.1.0")]);
        for pr in &mut w.open {
            pr.labels.push(gates::HOLD_LABEL.into());
        }
        let actions = w.plan();
        let [Action::Wait { evaluation, .. }] = &actions[..] else {
            panic!("{actions:?}")
        };
        let hold = evaluation.blocking().unwrap();
        assert_eq!(hold.gate, Gate::Hold);
        assert!(
            hold.reason.starts_with("held (label"),
            "one shared reason: {hold:?}"
        );
    }

    #[test]
    fn a_newer_release_of_one_member_updates_the_group_pr_keeping_the_other() {
        let mut w = World::new();
        w.release("web", "1.2.0");
        w.release("worker", "1.1.0");
        w.group_pr(7, "dev", &[("web", "1.1.0"), ("worker", "1.1.0")]);
        let actions = w.plan();
        let [
            Action::UpdateGroup {
                pr: 7,
                members: m,
                superseded,
                ..
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        assert_eq!(
            members(m),
            [("web", Some("1.2.0")), ("worker", Some("1.1.0"))]
        );
        assert_eq!(
            members(superseded),
            [("web", Some("1.1.0")), ("worker", Some("1.1.0"))]
        );
        // Planning again on the updated PR asks for nothing but the merge.
        w.open.clear();
        w.group_pr(7, "dev", &[("web", "1.2.0"), ("worker", "1.1.0")]);
        assert!(
            matches!(&w.plan()[..], [Action::Merge { pr: 7, .. }]),
            "{:?}",
            w.plan()
        );
    }

    #[test]
    fn a_group_pr_whose_pins_git_already_has_is_closed_once() {
        let mut w = World::new();
        w.pin("dev", "web", "1.1.0");
        w.pin("dev", "worker", "1.1.0");
        w.release("web", "1.1.0");
        w.release("worker", "1.1.0");
        w.group_pr(7, "dev", &[("web", "1.1.0"), ("worker", "1.1.0")]);
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::Close { pr: 7, app, .. }] if app == "shop"),
            "{actions:?}"
        );
    }

    #[test]
    fn a_group_pr_that_changes_no_member_is_closed() {
        let mut w = World::new();
        w.release("web", "1.1.0");
        w.group_pr(7, "dev", &[("shop", "none")]);
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::Close { pr: 7, .. }]),
            "{actions:?}"
        );
    }

    #[test]
    fn a_members_own_pr_gives_way_to_the_group() {
        let mut w = World::new();
        w.release("web", "1.1.0");
        let mut own = PullRequest {
            group: None,
            ..{
                w.group_pr(5, "dev", &[("web", "1.1.0")]);
                w.open.pop().unwrap()
            }
        };
        own.app = "web".into();
        w.open.push(own);
        let actions = w.plan();
        assert!(
            actions.iter().any(|a| matches!(a, Action::Close { pr: 5, reason, .. } if reason.contains("group shop"))),
            "{actions:?}"
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::OpenGroup { .. })),
            "{actions:?}"
        );
    }

    #[test]
    fn a_held_digest_in_a_group_pr_closes_it() {
        let mut w = World::new();
        w.held
            .insert(k("dev", "worker"), BTreeSet::from([d("worker", "1.1.0")]));
        w.group_pr(7, "dev", &[("web", "1.0.1"), ("worker", "1.1.0")]);
        let actions = w.plan();
        assert!(
            matches!(&actions[..], [Action::Close { pr: 7, reason, .. }] if reason.contains("of worker was rolled back")),
            "{actions:?}"
        );
    }
}
