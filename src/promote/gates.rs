//! Gate evaluation for one promotion PR: may it merge now, and if not, why not and when to
//! look again. Pure: every input is a plain value, the clock included.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::base_rules::BaseRules;
use super::policy::{self, PolicyInput, PolicySource};
use super::state::{CheckState, Deployment, PullRequest, ReviewState};
use crate::commands::{self, Command, Permission};
use crate::config::pipeline::{CommandGate, Environment};
use crate::image::Digest;

/// The label that holds a promotion.
pub const HOLD_LABEL: &str = "baton:hold";

/// The label of a rollback PR: the planner never updates or supersedes it, and its gates skip
/// soak, windows, freezes and the `/promote` command.
pub const ROLLBACK_LABEL: &str = "baton:rollback";

/// Whether a PR is a rollback.
pub fn is_rollback(pr: &PullRequest) -> bool {
    pr.labels.iter().any(|l| l == ROLLBACK_LABEL)
}

/// Which gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Gate {
    Hold,
    Freeze,
    Window,
    Soak,
    Checks,
    Approvals,
    Command,
    Policy,
    /// The environment's `copyTo`: the image can be copied (while other gates wait), then was
    /// copied and verified (before the merge). Evaluated by the engine, which does the I/O.
    Copy,
    /// GitHub's own rules on the base branch (rulesets, branch protection): its required
    /// approvals and checks ([`super::base_rules`]).
    #[serde(rename = "github")]
    GitHub,
}

impl Gate {
    pub fn title(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Freeze => "freeze",
            Self::Window => "window",
            Self::Soak => "soak",
            Self::Checks => "checks",
            Self::Approvals => "approvals",
            Self::Command => "command",
            Self::Policy => "policy",
            Self::Copy => "copy",
            Self::GitHub => "github",
        }
    }
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Satisfied.
    Passed,
    /// Not yet: time or a pending check will settle it.
    Waiting,
    /// Not without someone acting (an approval, a command, a fix, an unhold).
    Blocked,
}

/// One gate's result with a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub gate: Gate,
    pub verdict: Verdict,
    pub reason: String,
    /// When this gate may change by itself (a window opens, a soak completes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck_at: Option<DateTime<Utc>>,
    /// The soak gate's clock, for displays that show it live ([`GateResult::detail`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakProgress>,
}

/// Where a soak stands: healthy since when, out of how long, and the last restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakProgress {
    pub healthy_since: DateTime<Utc>,
    #[serde(with = "secs")]
    pub need: std::time::Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted: Option<super::state::SoakRestart>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl SoakProgress {
    /// `healthy for 7m of 10m (restarted at 14:02 after Deployment/web: ProgressDeadlineExceeded)`,
    /// as of `now`.
    pub fn text(&self, now: DateTime<Utc>) -> String {
        let need = self.need.as_secs();
        let done = (now - self.healthy_since)
            .num_seconds()
            .clamp(0, need as i64) as u64;
        format!(
            "healthy for {} of {}{}",
            minutes(done),
            minutes(need),
            restart_note(self.restarted.as_ref())
        )
    }
}

/// ` (restarted at 14:02 after …)`, or nothing.
fn restart_note(r: Option<&super::state::SoakRestart>) -> String {
    r.map(|r| {
        format!(
            " (restarted at {} after {})",
            r.at.format("%H:%M"),
            r.reason
        )
    })
    .unwrap_or_default()
}

/// `45s`, `7m`, `1h5m`.
fn minutes(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ if secs % 3600 / 60 == 0 => format!("{}h", secs / 3600),
        _ => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
    }
}

impl GateResult {
    /// The reason as of `now`: a soak in progress says how far it is (`healthy for 7m of
    /// 10m`); every other gate says its [`GateResult::reason`]. The stored reason uses absolute
    /// times instead, so that the PR's status comment changes only when a gate does.
    pub fn detail(&self, now: DateTime<Utc>) -> String {
        match &self.soak {
            Some(p) if self.verdict != Verdict::Passed => p.text(now),
            _ => self.reason.clone(),
        }
    }
}

/// All gates of one PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub results: Vec<GateResult>,
    /// Reviewers whose approval counts for this environment (for the merge trailers).
    pub approvers: Vec<String>,
}

impl Evaluation {
    /// Every gate passed.
    pub fn mergeable(&self) -> bool {
        self.results.iter().all(|r| r.verdict == Verdict::Passed)
    }

    /// The first gate that is not passed, for one-line summaries.
    pub fn blocking(&self) -> Option<&GateResult> {
        self.results.iter().find(|r| r.verdict != Verdict::Passed)
    }

    /// The earliest time a gate may change on its own.
    pub fn recheck_at(&self) -> Option<DateTime<Utc>> {
        self.results
            .iter()
            .filter(|r| r.verdict != Verdict::Passed)
            .filter_map(|r| r.recheck_at)
            .min()
    }

    /// A Markdown gate table for PR bodies and comments.
    pub fn table(&self) -> String {
        let mut out = String::from("| gate | state | detail |\n|---|---|---|\n");
        for r in &self.results {
            let icon = match r.verdict {
                Verdict::Passed => "✅ passed",
                Verdict::Waiting => "⏳ waiting",
                Verdict::Blocked => "⛔ blocked",
            };
            out.push_str(&format!(
                "| {} | {icon} | {} |\n",
                r.gate.title(),
                r.reason.replace('|', "\\|")
            ));
        }
        out
    }
}

/// Everything the gates look at, besides the PR.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub env: &'a Environment,
    pub now: DateTime<Utc>,
    /// The previous environment's deployment of this app (for soak), if there is one.
    pub previous: Option<&'a Deployment>,
    /// Members of the teams the pipeline names, by `@org/slug`.
    pub teams: &'a BTreeMap<String, BTreeSet<String>>,
    /// Teams whose members GitHub would not list, by `@org/slug`, with why (approvals from
    /// them cannot be counted; the approvals gate says so).
    pub team_errors: &'a BTreeMap<String, String>,
    /// GitHub's own rules on the base branch, when read (`None`: not asked).
    pub base_rules: Option<&'a BaseRules>,
    /// The bot's own login: its reviews and comments never count.
    pub bot_login: &'a str,
    /// `policies/*.rego` of the config branch.
    pub policies: &'a [PolicySource],
    /// What the environment pins now (the policy input's `from`).
    pub from: Option<&'a Digest>,
    /// The PR image's verified attestations, predicate type → predicate (policy input).
    pub attestations: Option<&'a BTreeMap<String, serde_json::Value>>,
}

/// Evaluate every gate that applies to `pr` in its environment.
pub fn evaluate(pr: &PullRequest, ctx: &Context<'_>) -> Evaluation {
    // A rollback restores a release the environment ran before: soak (it soaked once),
    // windows and freezes (restoring service is what a freeze protects) and the `/promote`
    // command (the rollback itself was commanded, or ordered by `onFailure`) do not apply.
    // Hold, checks, approvals and policy still do. docs/decisions.md explains why.
    let rollback = is_rollback(pr);
    let skipped = |gate, why: &str| result(gate, Verdict::Passed, format!("skipped: {why}"), None);
    let mut results = vec![hold(pr)];
    if rollback {
        results.push(skipped(Gate::Freeze, "rollbacks are not frozen"));
        if !ctx.env.windows.is_empty() {
            results.push(skipped(Gate::Window, "rollbacks merge outside windows"));
        }
    } else {
        results.push(freeze(ctx));
        results.push(window(ctx));
    }
    if ctx.env.after.is_some() {
        results.push(if rollback {
            skipped(Gate::Soak, "a rollback restores a release that ran before")
        } else {
            soak(pr, ctx)
        });
    }
    if !ctx.env.required_checks.is_empty() {
        results.push(checks(pr, ctx.env));
    }
    if ctx.env.approvals.is_some() || !ctx.env.auto_merge {
        results.push(approvals(pr, ctx));
    }
    if ctx.env.command == CommandGate::Required && !rollback {
        results.push(command(pr, ctx));
    }
    if !ctx.policies.is_empty() {
        results.push(policy(pr, ctx));
    }
    if let Some(rules) = ctx.base_rules.filter(|r| r.requires_anything()) {
        results.push(super::base_rules::github(pr, ctx, rules));
    }
    let approvers = tally(pr, ctx)
        .approved
        .into_iter()
        .map(String::from)
        .collect();
    Evaluation { results, approvers }
}

fn result(
    gate: Gate,
    verdict: Verdict,
    reason: impl Into<String>,
    recheck_at: Option<DateTime<Utc>>,
) -> GateResult {
    GateResult {
        gate,
        verdict,
        reason: reason.into(),
        recheck_at,
        soak: None,
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn hold(pr: &PullRequest) -> GateResult {
    if pr.labels.iter().any(|l| l == HOLD_LABEL) {
        let by = pr
            .hold_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        result(
            Gate::Hold,
            Verdict::Blocked,
            format!("held (label {HOLD_LABEL}){by}; `/unhold` releases it"),
            None,
        )
    } else {
        result(Gate::Hold, Verdict::Passed, "not held", None)
    }
}

fn freeze(ctx: &Context<'_>) -> GateResult {
    for f in &ctx.env.freezes {
        if f.covers(ctx.now)
            && let Ok((_, end)) = f.interval()
        {
            let why = f
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return result(
                Gate::Freeze,
                Verdict::Waiting,
                format!("{} is frozen{why} until {}", ctx.env.name, when(end)),
                Some(end),
            );
        }
    }
    result(Gate::Freeze, Verdict::Passed, "no freeze in effect", None)
}

fn window(ctx: &Context<'_>) -> GateResult {
    if ctx.env.windows.is_empty() {
        return result(
            Gate::Window,
            Verdict::Passed,
            "no promotion windows configured (any time)",
            None,
        );
    }
    if let Some(until) = ctx
        .env
        .windows
        .iter()
        .filter_map(|w| w.open_until(ctx.now))
        .max()
    {
        return result(
            Gate::Window,
            Verdict::Passed,
            format!("inside a promotion window until {}", when(until)),
            None,
        );
    }
    let next = ctx
        .env
        .windows
        .iter()
        .filter_map(|w| w.next_open(ctx.now))
        .min();
    let reason = match next {
        Some(t) => format!("outside the promotion windows; the next opens {}", when(t)),
        None => "outside the promotion windows, and none opens again".to_string(),
    };
    result(Gate::Window, Verdict::Waiting, reason, next)
}

fn soak(pr: &PullRequest, ctx: &Context<'_>) -> GateResult {
    let prev = ctx
        .env
        .after
        .as_deref()
        .unwrap_or("the previous environment");
    let need = ctx.env.soak.map(|s| s.0).unwrap_or_default();
    let Some(dep) = ctx.previous.filter(|d| d.digest == pr.digest) else {
        return result(
            Gate::Soak,
            Verdict::Waiting,
            format!("{prev} does not run {} yet", pr.digest.short()),
            None,
        );
    };
    let Some(since) = dep.healthy_since else {
        return result(
            Gate::Soak,
            Verdict::Waiting,
            format!(
                "{prev} runs {} but it is not healthy yet",
                pr.digest.short()
            ),
            None,
        );
    };
    let progress = SoakProgress {
        healthy_since: since,
        need,
        restarted: dep.restarted.clone(),
    };
    let note = restart_note(dep.restarted.as_ref());
    let need = chrono::Duration::from_std(need).unwrap_or_default();
    let done = since + need;
    // Absolute times, not countdowns: the status comment changes only when a gate does.
    let mut r = if ctx.now >= done {
        result(
            Gate::Soak,
            Verdict::Passed,
            format!("healthy in {prev} since {}{note}", when(since)),
            None,
        )
    } else {
        result(
            Gate::Soak,
            Verdict::Waiting,
            format!("soaking in {prev} until {}{note}", when(done)),
            Some(done),
        )
    };
    r.soak = Some(progress);
    r
}

/// The status/check context a `requiredChecks` name refers to.
pub fn check_context(name: &str) -> String {
    if name == "validate" {
        "baton/validate".to_string()
    } else {
        name.to_string()
    }
}

fn checks(pr: &PullRequest, env: &Environment) -> GateResult {
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    for name in &env.required_checks {
        let ctx = check_context(name);
        match pr.checks.iter().find(|c| c.context == ctx).map(|c| c.state) {
            Some(CheckState::Success) => {}
            Some(CheckState::Failure) => failed.push(ctx),
            Some(CheckState::Pending) => pending.push(ctx),
            None => pending.push(format!("{ctx} (not reported)")),
        }
    }
    if !failed.is_empty() {
        result(
            Gate::Checks,
            Verdict::Blocked,
            format!(
                "failing on {}: {}",
                short_sha(&pr.head_sha),
                failed.join(", ")
            ),
            None,
        )
    } else if !pending.is_empty() {
        result(
            Gate::Checks,
            Verdict::Waiting,
            format!("waiting for {}", pending.join(", ")),
            None,
        )
    } else {
        result(
            Gate::Checks,
            Verdict::Passed,
            format!(
                "{} green",
                env.required_checks
                    .iter()
                    .map(|c| check_context(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        )
    }
}

fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Whether `login` is one of `from` (users or `@org/team`); everyone with write access
/// when `from` is empty.
/// Whether `login` may approve for an environment whose approvers are `from` (users or
/// `@org/team`; empty: anyone with write access).
pub fn eligible(
    login: &str,
    permission: Permission,
    from: &[String],
    teams: &BTreeMap<String, BTreeSet<String>>,
) -> bool {
    if from.is_empty() {
        return permission >= Permission::Write;
    }
    from.iter().any(|who| match who.strip_prefix('@') {
        Some(_) => teams
            .get(who)
            .is_some_and(|m| m.iter().any(|u| u.eq_ignore_ascii_case(login))),
        None => who.eq_ignore_ascii_case(login),
    })
}

/// Reviews that count for an environment, by outcome.
struct Tally<'p> {
    /// Eligible reviewers whose latest review approves the current head.
    approved: Vec<&'p str>,
    /// Eligible reviewers whose approval is of an older head.
    stale: Vec<&'p str>,
    /// Eligible reviewers who requested changes.
    changes: Vec<&'p str>,
}

fn required(env: &Environment) -> (u32, &[String]) {
    match &env.approvals {
        Some(a) => (a.count, &a.from),
        None => (1, &[]),
    }
}

fn tally<'p>(pr: &'p PullRequest, ctx: &Context<'_>) -> Tally<'p> {
    let (_, from) = required(ctx.env);
    // The latest review per user decides; approvals of an older head do not count.
    let mut t = Tally {
        approved: Vec::new(),
        stale: Vec::new(),
        changes: Vec::new(),
    };
    for (user, r) in latest_reviews(pr, ctx.bot_login) {
        if !eligible(user, r.permission, from, ctx.teams) {
            continue;
        }
        match r.state {
            ReviewState::Approved if r.commit_id == pr.head_sha => t.approved.push(user),
            ReviewState::Approved => t.stale.push(user),
            ReviewState::ChangesRequested => t.changes.push(user),
            _ => {}
        }
    }
    t
}

fn approvals(pr: &PullRequest, ctx: &Context<'_>) -> GateResult {
    let (count, from) = required(ctx.env);
    let Tally {
        approved,
        stale,
        changes,
    } = tally(pr, ctx);
    let who = if from.is_empty() {
        "reviewers with write access".to_string()
    } else {
        from.join(", ")
    };
    if !changes.is_empty() {
        return result(
            Gate::Approvals,
            Verdict::Blocked,
            format!("changes requested by {}", changes.join(", ")),
            None,
        );
    }
    if approved.len() as u32 >= count {
        return result(
            Gate::Approvals,
            Verdict::Passed,
            format!("approved by {}", approved.join(", ")),
            None,
        );
    }
    let mut reason = format!("{}/{count} approvals from {who}", approved.len());
    if !approved.is_empty() {
        reason.push_str(&format!(" (approved: {})", approved.join(", ")));
    }
    for team in from.iter().filter(|w| w.starts_with('@')) {
        if let Some(why) = ctx.team_errors.get(team) {
            reason.push_str(&format!("; cannot count {team}: {why}"));
        }
    }
    if !stale.is_empty() {
        reason.push_str(&format!(
            "; approvals by {} predate the latest push and no longer count",
            stale.join(", ")
        ));
    }
    result(Gate::Approvals, Verdict::Blocked, reason, None)
}

fn command(pr: &PullRequest, ctx: &Context<'_>) -> GateResult {
    let wanted = Command::Promote {
        env: ctx.env.name.clone(),
    };
    let by = pr
        .commands
        .iter()
        .filter(|c| c.command == wanted && c.at >= pr.head_pushed_at)
        .find_map(|c| {
            commands::authorize(&c.command, &c.actor, Some(ctx.env))
                .ok()
                .map(|_| c.actor.login.as_str())
        });
    match by {
        Some(login) => result(
            Gate::Command,
            Verdict::Passed,
            format!("/promote {} by @{login}", ctx.env.name),
            None,
        ),
        None => result(
            Gate::Command,
            Verdict::Blocked,
            format!(
                "waiting for an authorized `/promote {}` after the latest push",
                ctx.env.name
            ),
            None,
        ),
    }
}

/// Each reviewer's latest deciding review (comments do not decide; the bot never counts).
fn latest_reviews<'p>(
    pr: &'p PullRequest,
    bot: &str,
) -> BTreeMap<&'p str, &'p super::state::Review> {
    let mut latest: BTreeMap<&str, &super::state::Review> = BTreeMap::new();
    for r in pr
        .reviews
        .iter()
        .filter(|r| r.user != bot && r.state != ReviewState::Commented)
    {
        if latest
            .get(r.user.as_str())
            .is_none_or(|prev| prev.submitted_at <= r.submitted_at)
        {
            latest.insert(&r.user, r);
        }
    }
    latest
}

/// Logins whose latest review approves the current head.
pub fn current_approvers<'p>(pr: &'p PullRequest, bot: &str) -> Vec<&'p str> {
    latest_reviews(pr, bot)
        .into_iter()
        .filter(|(_, r)| r.state == ReviewState::Approved && r.commit_id == pr.head_sha)
        .map(|(u, _)| u)
        .collect()
}

fn policy(pr: &PullRequest, ctx: &Context<'_>) -> GateResult {
    let input = PolicyInput {
        app: pr.app.clone(),
        environment: ctx.env.name.clone(),
        digest: pr.digest.to_string(),
        tag: pr.tag.clone(),
        from: ctx.from.map(|d| d.to_string()),
        now: ctx.now.to_rfc3339(),
        weekday: PolicyInput::weekday_of(ctx.now),
        pull_request: pr.number,
        labels: pr.labels.clone(),
        approvers: current_approvers(pr, ctx.bot_login)
            .into_iter()
            .map(String::from)
            .collect(),
        passed_checks: pr
            .checks
            .iter()
            .filter(|c| c.state == CheckState::Success)
            .map(|c| c.context.clone())
            .collect(),
        attestations: ctx.attestations.cloned().unwrap_or_default(),
    };
    // The gate table says which verified attestations the policy saw.
    let seen = if input.attestations.is_empty() {
        String::new()
    } else {
        format!(
            " (verified attestations: {})",
            input
                .attestations
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match policy::deny_reasons(ctx.policies, &input) {
        Ok(reasons) if reasons.is_empty() => result(
            Gate::Policy,
            Verdict::Passed,
            format!("no policy objects{seen}"),
            None,
        ),
        Ok(reasons) => result(
            Gate::Policy,
            Verdict::Blocked,
            format!("denied: {}{seen}", reasons.join("; ")),
            None,
        ),
        Err(e) => result(
            Gate::Policy,
            Verdict::Blocked,
            format!("policy error (fix the policy): {e}"),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
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
}
