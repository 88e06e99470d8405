//! GitHub's own rules on the base branch (rulesets and branch protection), as a gate beside the
//! pipeline's: the approvals and checks GitHub requires before it lets a PR merge, so that a
//! user sees why a PR waits even when the reason is GitHub's, and baton does not ask GitHub for
//! a merge it would refuse. Pure: the rules are read by the forge, the PR by the engine.

use std::collections::BTreeMap;

use serde::Serialize;

use super::gates::{Context, Gate, GateResult, Verdict};
use super::state::{CheckState, PullRequest, ReviewState};
use crate::commands::Permission;
use crate::config::pipeline::MergeMethod;

/// What GitHub requires before a PR merges into a branch: every ruleset that applies and the
/// classic branch protection, merged (the strictest of each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseRules {
    /// Approving reviews by people with write access, not the PR's author.
    pub required_approvals: u32,
    /// Approvals of an older head are dismissed when a new one is pushed.
    pub dismiss_stale: bool,
    /// A code owner must approve (shown, not evaluated: baton does not read CODEOWNERS).
    pub code_owner_review: bool,
    /// Status checks or check runs that must pass on the head.
    pub required_checks: Vec<String>,
    /// The head must contain the base branch's tip.
    pub strict: bool,
    /// Merge methods GitHub allows (`merge`, `squash`, `rebase`); empty: any.
    pub allowed_merge_methods: Vec<String>,
    /// Every commit must be signed (verified).
    pub signed_commits: bool,
    /// Merges go through the merge queue.
    pub merge_queue: bool,
    /// How the merge queue lands a PR (`merge`, `squash`, `rebase`), when GitHub says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_merge_method: Option<String>,
    /// Where the rules come from: `ruleset 42`, `branch protection`.
    pub sources: Vec<String>,
    /// Rules baton could not read, with why (`branch protection: GitHub answered 403 …`).
    pub unreadable: Vec<String>,
}

impl BaseRules {
    /// Whether GitHub requires anything before a merge. Without, the gate is left out, also
    /// when some rules could not be read (most Apps may not read branch protection; a refusal
    /// still explains itself on the PR).
    pub fn requires_anything(&self) -> bool {
        self.required_approvals > 0
            || self.code_owner_review
            || !self.required_checks.is_empty()
            || self.strict
            || !self.allowed_merge_methods.is_empty()
            || self.signed_commits
            || self.merge_queue
    }

    /// Add `other`'s rules to these, keeping the strictest of each.
    pub fn merge(&mut self, other: BaseRules) {
        self.required_approvals = self.required_approvals.max(other.required_approvals);
        self.dismiss_stale |= other.dismiss_stale;
        self.code_owner_review |= other.code_owner_review;
        self.strict |= other.strict;
        self.signed_commits |= other.signed_commits;
        self.merge_queue |= other.merge_queue;
        if other.queue_merge_method.is_some() {
            self.queue_merge_method = other.queue_merge_method;
        }
        for c in other.required_checks {
            if !self.required_checks.contains(&c) {
                self.required_checks.push(c);
            }
        }
        if !other.allowed_merge_methods.is_empty() {
            self.allowed_merge_methods = if self.allowed_merge_methods.is_empty() {
                other.allowed_merge_methods
            } else {
                // Both apply: only methods both allow are allowed.
                self.allowed_merge_methods
                    .iter()
                    .filter(|m| other.allowed_merge_methods.contains(m))
                    .cloned()
                    .collect()
            };
        }
        self.sources.extend(other.sources);
        self.unreadable.extend(other.unreadable);
    }
}

/// The `github` gate: GitHub's required approvals and checks on the head, with the other rules
/// (up to date, signed commits, merge methods, merge queue) named so a refusal is no surprise.
pub(super) fn github(pr: &PullRequest, ctx: &Context<'_>, rules: &BaseRules) -> GateResult {
    let mut blocked = Vec::new();
    let mut waiting = Vec::new();
    let mut passed = Vec::new();

    if rules.required_approvals > 0 {
        let (approved, changes) = github_approvals(pr, ctx, rules);
        let need = rules.required_approvals;
        if !changes.is_empty() {
            blocked.push(format!("changes requested by {}", changes.join(", ")));
        } else if (approved.len() as u32) < need {
            let by = if approved.is_empty() {
                String::new()
            } else {
                format!(" (approved: {})", approved.join(", "))
            };
            let stale = if rules.dismiss_stale {
                ", of the latest push"
            } else {
                ""
            };
            blocked.push(format!(
                "{}/{need} approving reviews from people with write access{stale}{by}",
                approved.len()
            ));
        } else {
            passed.push(format!("{need} approval(s)"));
        }
    }
    let mut failing = Vec::new();
    let mut pending = Vec::new();
    for context in &rules.required_checks {
        match pr
            .checks
            .iter()
            .find(|c| &c.context == context)
            .map(|c| c.state)
        {
            Some(CheckState::Success) => {}
            Some(CheckState::Failure) => failing.push(context.as_str()),
            Some(CheckState::Pending) => pending.push(context.clone()),
            None => pending.push(format!("{context} (not reported)")),
        }
    }
    if !failing.is_empty() {
        blocked.push(format!("required check failing: {}", failing.join(", ")));
    }
    if !pending.is_empty() {
        waiting.push(format!("waiting for required check {}", pending.join(", ")));
    }
    if !rules.required_checks.is_empty() && failing.is_empty() && pending.is_empty() {
        passed.push(format!("{} green", rules.required_checks.join(", ")));
    }

    // The environment's `mergeMethod` against the methods GitHub allows, up front rather than
    // as a refused merge. A merge queue lands with its own method, so it does not apply there.
    if let Some(why) = merge_method_refused(ctx.env.merge_method, rules) {
        blocked.push(why);
    }

    let mut also = Vec::new();
    if rules.code_owner_review {
        also.push("a code owner's review".to_string());
    }
    if rules.strict {
        also.push("up to date with the base".to_string());
    }
    if rules.signed_commits {
        also.push("signed commits".to_string());
    }
    if !rules.allowed_merge_methods.is_empty() {
        also.push(format!(
            "merge method {}",
            rules.allowed_merge_methods.join("/")
        ));
    }
    if rules.merge_queue {
        also.push("the merge queue".to_string());
    }

    let (verdict, mut reason) = if !blocked.is_empty() {
        (Verdict::Blocked, blocked.join("; "))
    } else if !waiting.is_empty() {
        (Verdict::Waiting, waiting.join("; "))
    } else if passed.is_empty() {
        (
            Verdict::Passed,
            "nothing required before merging".to_string(),
        )
    } else {
        (Verdict::Passed, passed.join(", "))
    };
    if !blocked.is_empty() && !waiting.is_empty() {
        reason.push_str("; ");
        reason.push_str(&waiting.join("; "));
    }
    if !also.is_empty() {
        reason.push_str(&format!("; also requires {}", also.join(", ")));
    }
    if !rules.sources.is_empty() {
        reason.push_str(&format!(" ({})", rules.sources.join(", ")));
    }
    for u in &rules.unreadable {
        reason.push_str(&format!("; could not read {u}"));
    }
    GateResult {
        gate: Gate::GitHub,
        verdict,
        reason,
        recheck_at: None,
        soak: None,
    }
}

/// Why GitHub would refuse the environment's merge method, if it would: the rules allow only
/// other methods (and no merge queue picks its own).
fn merge_method_refused(method: MergeMethod, rules: &BaseRules) -> Option<String> {
    if rules.merge_queue || rules.allowed_merge_methods.is_empty() {
        return None;
    }
    let name = match method {
        MergeMethod::Merge => "merge",
        MergeMethod::Squash => "squash",
    };
    if rules.allowed_merge_methods.iter().any(|m| m == name) {
        return None;
    }
    let allowed = rules.allowed_merge_methods.join("/");
    let fix = ["squash", "merge"]
        .into_iter()
        .find(|m| rules.allowed_merge_methods.iter().any(|a| a == m))
        .map(|m| format!("set `mergeMethod: {m}` for this environment"))
        .unwrap_or_else(|| {
            "baton merges only with `merge` or `squash`: allow one of them on GitHub".to_string()
        });
    Some(format!(
        "GitHub allows only {allowed} merges here and this environment merges with `{name}`: {fix}"
    ))
}

/// Who approves the PR as GitHub counts it, and who requested changes: each reviewer's latest
/// deciding review, people with write access other than the bot (the PR's author); an approval
/// of an older head counts unless stale approvals are dismissed.
fn github_approvals<'p>(
    pr: &'p PullRequest,
    ctx: &Context<'_>,
    rules: &BaseRules,
) -> (Vec<&'p str>, Vec<&'p str>) {
    let mut latest: BTreeMap<&str, &super::state::Review> = BTreeMap::new();
    for r in pr.reviews.iter().filter(|r| {
        r.user != ctx.bot_login
            && r.permission >= Permission::Write
            && matches!(
                r.state,
                ReviewState::Approved | ReviewState::ChangesRequested | ReviewState::Dismissed
            )
    }) {
        if latest
            .get(r.user.as_str())
            .is_none_or(|prev| prev.submitted_at <= r.submitted_at)
        {
            latest.insert(&r.user, r);
        }
    }
    let mut approved = Vec::new();
    let mut changes = Vec::new();
    for (user, r) in latest {
        match r.state {
            ReviewState::Approved if !rules.dismiss_stale || r.commit_id == pr.head_sha => {
                approved.push(user)
            }
            ReviewState::ChangesRequested => changes.push(user),
            _ => {}
        }
    }
    (approved, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promote::state::{Check, Review};

    fn rules() -> BaseRules {
        BaseRules {
            required_approvals: 2,
            dismiss_stale: true,
            required_checks: vec!["ci".into()],
            sources: vec!["ruleset 7".into()],
            ..BaseRules::default()
        }
    }

    fn review(user: &str, state: ReviewState, commit: &str, permission: Permission) -> Review {
        Review {
            user: user.into(),
            state,
            commit_id: commit.into(),
            submitted_at: "2026-01-01T10:00:00Z".parse().unwrap(),
            permission,
        }
    }

    fn pr(reviews: Vec<Review>, checks: Vec<Check>) -> PullRequest {
        PullRequest {
            number: 1,
            app: "web".into(),
            env: "prod".into(),
            digest: crate::image::Digest::of(b"v1"),
            tag: None,
            head_sha: "head".into(),
            head_pushed_at: "2026-01-01T09:00:00Z".parse().unwrap(),
            labels: vec![],
            hold_reason: None,
            reviews,
            checks,
            commands: vec![],
            group: None,
        }
    }

    fn gate(pr: &PullRequest, rules: &BaseRules) -> GateResult {
        let env: crate::config::pipeline::Environment =
            yaml_serde::from_str("name: prod\n").unwrap();
        let teams = Default::default();
        let ctx = Context {
            env: &env,
            now: "2026-01-01T12:00:00Z".parse().unwrap(),
            previous: None,
            teams: &teams,
            team_errors: &Default::default(),
            base_rules: Some(rules),
            bot_login: "baton[bot]",
            policies: &[],
            from: None,
            attestations: None,
        };
        github(pr, &ctx, rules)
    }

    fn ci(state: CheckState) -> Check {
        Check {
            context: "ci".into(),
            state,
        }
    }

    #[test]
    fn githubs_required_approvals_count_write_access_on_the_head_only() {
        let w = Permission::Write;
        let pr1 = pr(
            vec![
                review("alice", ReviewState::Approved, "head", w),
                review("bob", ReviewState::Approved, "old", w),
                review("eve", ReviewState::Approved, "head", Permission::Read),
                review("baton[bot]", ReviewState::Approved, "head", w),
            ],
            vec![ci(CheckState::Success)],
        );
        let g = gate(&pr1, &rules());
        assert_eq!(g.verdict, Verdict::Blocked);
        assert!(
            g.reason
                .starts_with("1/2 approving reviews from people with write access, of the latest push (approved: alice)"),
            "{}",
            g.reason
        );
        assert!(g.reason.ends_with("(ruleset 7)"), "{}", g.reason);
        // Without "dismiss stale", GitHub still counts bob's older approval.
        let keep = BaseRules {
            dismiss_stale: false,
            ..rules()
        };
        let g = gate(&pr1, &keep);
        assert_eq!(g.verdict, Verdict::Passed, "{}", g.reason);
        assert!(g.reason.contains("ci green"), "{}", g.reason);
    }

    #[test]
    fn a_required_check_waits_while_pending_and_blocks_when_failing() {
        let w = Permission::Write;
        let approved = vec![
            review("alice", ReviewState::Approved, "head", w),
            review("bob", ReviewState::Approved, "head", w),
        ];
        let g = gate(&pr(approved.clone(), vec![]), &rules());
        assert_eq!(g.verdict, Verdict::Waiting);
        assert!(
            g.reason
                .contains("waiting for required check ci (not reported)"),
            "{}",
            g.reason
        );
        let g = gate(
            &pr(approved.clone(), vec![ci(CheckState::Failure)]),
            &rules(),
        );
        assert_eq!(g.verdict, Verdict::Blocked);
        assert!(
            g.reason.contains("required check failing: ci"),
            "{}",
            g.reason
        );
        let g = gate(&pr(approved, vec![ci(CheckState::Success)]), &rules());
        assert_eq!(g.verdict, Verdict::Passed, "{}", g.reason);
    }

    #[test]
    fn changes_requested_block_and_other_rules_are_named() {
        let all = BaseRules {
            strict: true,
            signed_commits: true,
            merge_queue: true,
            allowed_merge_methods: vec!["squash".into()],
            unreadable: vec!["branch protection: GitHub answered 403".into()],
            ..rules()
        };
        let g = gate(
            &pr(
                vec![review(
                    "carol",
                    ReviewState::ChangesRequested,
                    "head",
                    Permission::Admin,
                )],
                vec![ci(CheckState::Success)],
            ),
            &all,
        );
        assert_eq!(g.verdict, Verdict::Blocked);
        assert!(
            g.reason.starts_with("changes requested by carol; also requires up to date with the base, signed commits, merge method squash, the merge queue (ruleset 7); could not read branch protection: GitHub answered 403"),
            "{}",
            g.reason
        );
    }

    #[test]
    fn a_merge_method_github_does_not_allow_blocks_up_front_unless_a_queue_merges() {
        let squash_only = BaseRules {
            allowed_merge_methods: vec!["squash".into(), "rebase".into()],
            required_checks: vec!["ci".into()],
            ..BaseRules::default()
        };
        let g = gate(&pr(vec![], vec![ci(CheckState::Success)]), &squash_only);
        assert_eq!(g.verdict, Verdict::Blocked);
        assert!(
            g.reason.starts_with("GitHub allows only squash/rebase merges here and this environment merges with `merge`: set `mergeMethod: squash` for this environment"),
            "{}",
            g.reason
        );
        let allowed = BaseRules {
            allowed_merge_methods: vec!["merge".into()],
            ..squash_only.clone()
        };
        let g = gate(&pr(vec![], vec![ci(CheckState::Success)]), &allowed);
        assert_ne!(g.verdict, Verdict::Blocked, "{}", g.reason);
        let queued = BaseRules {
            merge_queue: true,
            ..squash_only
        };
        let g = gate(&pr(vec![], vec![ci(CheckState::Success)]), &queued);
        assert_ne!(g.verdict, Verdict::Blocked, "{}", g.reason);
    }

    #[test]
    fn rules_from_several_places_keep_the_strictest() {
        let mut a = BaseRules {
            required_approvals: 1,
            required_checks: vec!["ci".into()],
            allowed_merge_methods: vec!["merge".into(), "squash".into()],
            sources: vec!["branch protection".into()],
            ..BaseRules::default()
        };
        a.merge(BaseRules {
            required_approvals: 2,
            required_checks: vec!["ci".into(), "lint".into()],
            allowed_merge_methods: vec!["squash".into()],
            signed_commits: true,
            sources: vec!["ruleset 3".into()],
            ..BaseRules::default()
        });
        assert_eq!(a.required_approvals, 2);
        assert_eq!(a.required_checks, ["ci", "lint"]);
        assert_eq!(a.allowed_merge_methods, ["squash"]);
        assert!(a.signed_commits);
        assert_eq!(a.sources, ["branch protection", "ruleset 3"]);
        assert!(a.requires_anything());
        let unreadable = BaseRules {
            unreadable: vec!["the branch protection of main".into()],
            ..BaseRules::default()
        };
        assert!(!unreadable.requires_anything());
    }
}
