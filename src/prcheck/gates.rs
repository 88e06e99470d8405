//! Gate integrity for every PR (pure): which gated environments a PR touches and whether their
//! approvers approved its head. Promotion gates bind the PRs baton opens; a person's PR that
//! changes what a gated environment runs, or weakens its gates, would otherwise skip them all.
//! The gates always come from the **base** branch's pipeline: a PR cannot lower the bar it is
//! judged by.
//!
//! An environment is gated when the base pipeline gives it `approvals:`. A PR touches it when
//! - its render at the head differs from the base (objects added, changed or removed), or
//! - its entry in `policies/pipeline.yaml` changes in a way that weakens or moves it (fewer
//!   approvals, other approvers, a shorter soak, a removed window, freeze, required check,
//!   verification step or `command: required`, `autoMerge` turned on, another path or
//!   cluster, removed altogether), or
//! - what governs every environment changes: an app's blessing rule or signature check, or a
//!   `policies/*.rego` file.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::pipeline::{Approvals, CommandGate, Environment, Pipeline};
use crate::promote::gates::eligible;
use crate::promote::state::{Review, ReviewState};

/// A gated environment the PR touches, and who must approve.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded {
    pub env: String,
    /// What the PR changes for it, for people (`runs something else: …`, `approvals 2 → 1`).
    pub reasons: Vec<String>,
    /// The base pipeline's approvals for the environment.
    pub approvals: Approvals,
}

/// What a PR changes outside the environments' entries: apps and Rego policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedChanges {
    /// `policies/*.rego` files added, changed or removed.
    pub policies: Vec<String>,
}

/// The gated environments (by the base pipeline) that a PR touches. `rendered` names the
/// environments whose render changed; `head` is the head's pipeline, when it loads.
pub fn guarded(
    base: &Pipeline,
    head: Option<&Pipeline>,
    rendered: &BTreeMap<String, String>,
    shared: &SharedChanges,
) -> Vec<Guarded> {
    let mut common = Vec::new();
    match head {
        None => common.push("policies/pipeline.yaml does not load at the head".to_string()),
        Some(head) => {
            for (name, app) in &base.apps {
                match head.apps.get(name) {
                    None => common.push(format!("app {name} removed")),
                    Some(h) if h.bless != app.bless => {
                        common.push(format!("app {name}: blessing rule changed"))
                    }
                    Some(h) if h.verify != app.verify => {
                        common.push(format!("app {name}: signature check changed"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    common.extend(
        shared
            .policies
            .iter()
            .map(|p| format!("policy {p} changed")),
    );
    let mut out = Vec::new();
    for env in base.promotion_order() {
        let Some(approvals) = env.approvals.clone().filter(|a| a.count > 0) else {
            continue;
        };
        let mut reasons = Vec::new();
        if let Some(what) = rendered.get(&env.name) {
            reasons.push(format!("runs something else: {what}"));
        }
        let head_env = head.and_then(|h| h.environment(&env.name));
        if head.is_some() {
            reasons.extend(weakened(env, head_env));
        }
        reasons.extend(common.iter().cloned());
        if !reasons.is_empty() {
            out.push(Guarded {
                env: env.name.clone(),
                reasons,
                approvals,
            });
        }
    }
    out
}

/// How `head` weakens or moves the gates of `base` (empty when it does not).
pub fn weakened(base: &Environment, head: Option<&Environment>) -> Vec<String> {
    let Some(head) = head else {
        return vec!["removed from the pipeline".into()];
    };
    let mut out = Vec::new();
    let count = |e: &Environment| e.approvals.as_ref().map_or(0, |a| a.count);
    if count(head) < count(base) {
        out.push(format!("approvals {} → {}", count(base), count(head)));
    }
    let from = |e: &Environment| -> BTreeSet<String> {
        e.approvals
            .as_ref()
            .map(|a| a.from.iter().map(|w| w.to_ascii_lowercase()).collect())
            .unwrap_or_default()
    };
    let (bf, hf) = (from(base), from(head));
    // Fewer names narrow who may approve; other or no names widen it.
    if !hf.is_subset(&bf) || (hf.is_empty() && !bf.is_empty()) {
        out.push("approvers changed".into());
    }
    if head.auto_merge && !base.auto_merge {
        out.push("autoMerge turned on".into());
    }
    let soak = |e: &Environment| e.soak.map(|s| s.0).unwrap_or_default();
    if soak(head) < soak(base) {
        out.push("soak shortened".into());
    }
    if base.command == CommandGate::Required && head.command != CommandGate::Required {
        out.push("command: required dropped".into());
    }
    let missing =
        |what: &str, gone: usize| (gone > 0).then(|| format!("{gone} {what} removed or changed"));
    out.extend(missing(
        "required check(s)",
        base.required_checks
            .iter()
            .filter(|c| !head.required_checks.contains(c))
            .count(),
    ));
    out.extend(missing(
        "window(s)",
        base.windows
            .iter()
            .filter(|w| !head.windows.contains(w))
            .count(),
    ));
    // A first window narrows when merges happen; more windows widen it.
    if !base.windows.is_empty() && head.windows.len() > base.windows.len() {
        out.push("window(s) added (merges allowed at more times)".into());
    }
    out.extend(missing(
        "freeze(s)",
        base.freezes
            .iter()
            .filter(|f| !head.freezes.contains(f))
            .count(),
    ));
    out.extend(missing(
        "verification step(s)",
        base.verify
            .iter()
            .filter(|v| !head.verify.contains(v))
            .count(),
    ));
    if head.path() != base.path() {
        out.push(format!(
            "path {} → {}",
            base.path().display(),
            head.path().display()
        ));
    }
    if head.cluster() != base.cluster() {
        out.push(format!("cluster {} → {}", base.cluster(), head.cluster()));
    }
    if head.after != base.after {
        out.push("after: changed".into());
    }
    if head.copy_to != base.copy_to {
        out.push("copyTo changed".into());
    }
    if head.allow != base.allow {
        out.push("allow: changed".into());
    }
    out
}

/// Who approved `head_sha` among those `approvals` lets approve, and who approved an older
/// head. The latest deciding review of each person counts; `bot` never does; `permission`
/// answers for reviewers when the environment names no approvers (write access needed).
pub fn approvers<'r>(
    reviews: &'r [Review],
    head_sha: &str,
    bot: &str,
    approvals: &Approvals,
    teams: &BTreeMap<String, BTreeSet<String>>,
) -> (Vec<&'r str>, Vec<&'r str>) {
    let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
    for r in reviews
        .iter()
        .filter(|r| !r.user.eq_ignore_ascii_case(bot) && r.state != ReviewState::Commented)
    {
        if latest
            .get(r.user.as_str())
            .is_none_or(|p| p.submitted_at <= r.submitted_at)
        {
            latest.insert(&r.user, r);
        }
    }
    let mut current = Vec::new();
    let mut stale = Vec::new();
    for (user, r) in latest {
        if r.state != ReviewState::Approved || !eligible(user, r.permission, &approvals.from, teams)
        {
            continue;
        }
        if r.commit_id == head_sha {
            current.push(user);
        } else {
            stale.push(user);
        }
    }
    (current, stale)
}

/// The problem text for a guarded environment its approvers have not approved yet; `None`
/// when they have.
pub fn unmet(g: &Guarded, head_sha: &str, approved: &[&str], stale: &[&str]) -> Option<String> {
    if approved.len() as u32 >= g.approvals.count {
        return None;
    }
    let who = if g.approvals.from.is_empty() {
        "reviewers with write access".to_string()
    } else {
        g.approvals.from.join(", ")
    };
    let mut text = format!(
        "{NEEDS_APPROVAL} {} ({} of {} from {who} at {}): this PR {}",
        g.env,
        approved.len(),
        g.approvals.count,
        &head_sha[..head_sha.len().min(7)],
        g.reasons.join("; "),
    );
    if !stale.is_empty() {
        text.push_str(&format!(
            "; approvals by {} are of an older head",
            stale.join(", ")
        ));
    }
    Some(text)
}

/// A short fingerprint of the reviews that can matter for `head_sha` (each reviewer's
/// reviews of that head, and how many reviews there are in all): a head waiting for approval
/// is checked again only when it changes.
pub fn reviews_fingerprint(reviews: &[Review], head_sha: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut lines: Vec<String> = reviews
        .iter()
        .filter(|r| r.commit_id == head_sha)
        .map(|r| {
            format!(
                "{} {:?} {}",
                r.user.to_ascii_lowercase(),
                r.state,
                r.submitted_at
            )
        })
        .collect();
    lines.sort();
    lines.push(reviews.len().to_string());
    let hash = Sha256::digest(lines.join("\n").as_bytes());
    hex::encode(&hash[..8])
}

/// The hidden line in the summary comment that records [`reviews_fingerprint`].
pub fn reviews_marker(fingerprint: &str) -> String {
    format!("<!-- baton:reviews {fingerprint} -->")
}

/// Starts every missing-approval problem (and so the status description when it is the only
/// kind of problem): such a head is checked again on the next pass, as reviews arrive.
pub const NEEDS_APPROVAL: &str = "needs approval in";

/// Reviewers whose permission matters (the environment names no approvers).
pub fn needs_permissions(guarded: &[Guarded]) -> bool {
    guarded.iter().any(|g| g.approvals.from.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Permission;
    use chrono::{TimeZone, Utc};

    fn pipeline(prod: &str) -> Pipeline {
        let text = format!(
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: r.example.com/shop/web\n    bless: {{ semver: \">=1.0.0\" }}\nenvironments:\n  - name: dev\n    autoMerge: true\n  - name: prod\n    after: dev\n{prod}"
        );
        yaml_serde::from_str(&text).unwrap()
    }

    const PROD: &str = "    soak: 1h\n    approvals: { count: 2, from: [\"@shop/release-managers\"] }\n    command: required\n    windows: [\"0 9 * * MON-THU for 7h in Europe/Berlin\"]\n";

    #[test]
    fn a_changed_render_or_a_weaker_gate_touches_prod_and_a_dev_only_change_does_not() {
        let base = pipeline(PROD);
        let none = SharedChanges::default();
        let dev_only = BTreeMap::from([("dev".to_string(), "1 changed".to_string())]);
        assert!(guarded(&base, Some(&base), &dev_only, &none).is_empty());

        let prod = BTreeMap::from([("prod".to_string(), "image web moves".to_string())]);
        let g = guarded(&base, Some(&base), &prod, &none);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].env, "prod");
        assert_eq!(g[0].approvals.count, 2, "the base's approvals");
        assert_eq!(g[0].reasons, ["runs something else: image web moves"]);

        let lower = pipeline(&PROD.replace("count: 2", "count: 1"));
        let g = guarded(&base, Some(&lower), &BTreeMap::new(), &none);
        assert_eq!(g[0].reasons, ["approvals 2 → 1"]);
        assert_eq!(g[0].approvals.count, 2, "judged by the base, not the head");

        let weaker = pipeline(
            &PROD
                .replace("    command: required\n", "")
                .replace(
                    "    windows: [\"0 9 * * MON-THU for 7h in Europe/Berlin\"]\n",
                    "",
                )
                .replace("soak: 1h", "soak: 10m")
                .replace("\"@shop/release-managers\"", "\"@shop/everyone\""),
        );
        let g = guarded(&base, Some(&weaker), &BTreeMap::new(), &none);
        assert_eq!(
            g[0].reasons,
            [
                "approvers changed",
                "soak shortened",
                "command: required dropped",
                "1 window(s) removed or changed"
            ]
        );

        let stricter = pipeline(&PROD.replace("count: 2", "count: 3"));
        assert!(guarded(&base, Some(&stricter), &BTreeMap::new(), &none).is_empty());

        let policy = SharedChanges {
            policies: vec!["policies/prod.rego".into()],
        };
        let g = guarded(&base, Some(&base), &BTreeMap::new(), &policy);
        assert_eq!(g[0].reasons, ["policy policies/prod.rego changed"]);
        let g = guarded(&base, None, &BTreeMap::new(), &none);
        assert_eq!(
            g[0].reasons,
            ["policies/pipeline.yaml does not load at the head"]
        );
    }

    #[test]
    fn only_current_approvals_of_named_approvers_count() {
        let at = |m| Utc.with_ymd_and_hms(2026, 12, 1, 10, m, 0).unwrap();
        let review = |user: &str, state, commit: &str, m| Review {
            user: user.into(),
            state,
            commit_id: commit.into(),
            submitted_at: at(m),
            permission: Permission::Write,
        };
        let reviews = vec![
            review("alice", ReviewState::Approved, "head", 1),
            review("bob", ReviewState::Approved, "old", 2),
            review("mallory", ReviewState::Approved, "head", 3),
            review("carol", ReviewState::Approved, "head", 4),
            review("carol", ReviewState::ChangesRequested, "head", 5),
            review("baton[bot]", ReviewState::Approved, "head", 6),
        ];
        let teams = BTreeMap::from([(
            "@shop/release-managers".to_string(),
            BTreeSet::from(["alice".to_string(), "bob".to_string(), "carol".to_string()]),
        )]);
        let approvals = Approvals {
            count: 2,
            from: vec!["@shop/release-managers".into()],
        };
        let (now, stale) = approvers(&reviews, "head", "baton[bot]", &approvals, &teams);
        assert_eq!(now, ["alice"]);
        assert_eq!(stale, ["bob"]);
        let g = Guarded {
            env: "prod".into(),
            reasons: vec!["runs something else: image web moves".into()],
            approvals,
        };
        let text = unmet(&g, "headsha1234", &now, &stale).unwrap();
        assert!(
            text.starts_with("needs approval in prod (1 of 2 from @shop/release-managers at headsha): this PR runs something else"),
            "{text}"
        );
        assert!(
            text.contains("approvals by bob are of an older head"),
            "{text}"
        );
        assert_eq!(unmet(&g, "head", &["alice", "bob"], &[]), None);
    }
}
