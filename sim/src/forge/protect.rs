//! Branch protection and rulesets on a base branch, as GitHub enforces them when a pull request
//! is merged: required approving reviews (count, stale approvals dismissed on push), required
//! status checks (and "up to date with the base"), allowed merge methods, signed commits, and
//! a required merge queue. A refusal is GitHub's `405` with its wording.

use super::json::{latest_check_runs, latest_statuses};
use super::state::{Issue, Repo, ReviewState, State};
use super::{Error, Permission, gitops};

/// The rules on one branch. Set with `ForgeHandle::protect_branch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// Where GitHub keeps them: a repository ruleset (`true`) or classic branch protection. The
    /// wording of refusals differs ("Repository rule violations found").
    pub ruleset: bool,
    /// Approving reviews needed from people with write access (not the author).
    pub required_approving_reviews: u32,
    /// Approvals of an older head do not count.
    pub dismiss_stale_reviews: bool,
    /// Reported as configured; not enforced (the stand-in has no CODEOWNERS).
    pub require_code_owner_reviews: bool,
    /// Contexts (statuses or check runs) that must have passed on the head.
    pub required_status_checks: Vec<String>,
    /// The head must contain the base branch tip.
    pub strict: bool,
    /// `merge`, `squash`, `rebase`; empty: whatever the repository allows.
    pub allowed_merge_methods: Vec<String>,
    /// Every commit the merge brings in must be signed (verified).
    pub required_signatures: bool,
    /// Merges go through the merge queue; `PUT .../merge` is refused.
    pub merge_queue: bool,
    /// How the merge queue lands a pull: `merge` (default when empty), `squash` or `rebase`.
    pub queue_merge_method: String,
}

/// Why GitHub refuses to merge `issue` with `method` now, if it does. `method` `queue`: why
/// the merge queue refuses to take it (the queue itself keeps it up to date and picks the
/// method).
pub(crate) fn refusal(
    st: &State,
    path: &std::path::Path,
    r: &Repo,
    issue: &Issue,
    head: &str,
    base: &str,
    method: &str,
) -> Option<Error> {
    let p = issue.pull.as_ref()?;
    let rules = r.protection.get(&p.base_ref)?;
    let refuse = |why: String| {
        let message = if rules.ruleset {
            format!("Repository rule violations found\n\n{why}\n\n")
        } else {
            why
        };
        Some(Error::new(405, message))
    };
    let queue = method == "queue";
    if rules.merge_queue && !queue {
        return refuse("Changes must be made through the merge queue".into());
    }
    if !queue
        && !rules.allowed_merge_methods.is_empty()
        && !rules.allowed_merge_methods.iter().any(|m| m == method)
    {
        return refuse(match method {
            "squash" => "Squash merges are not allowed on this repository.".into(),
            "rebase" => "Rebase merges are not allowed on this repository.".into(),
            _ => "Merge commits are not allowed on this repository.".into(),
        });
    }
    let needed = rules.required_approving_reviews;
    if needed > 0 {
        let mut latest: std::collections::BTreeMap<&str, (&str, ReviewState)> = Default::default();
        for rv in &p.reviews {
            if rv.state != ReviewState::Commented {
                latest.insert(&rv.user, (&rv.commit_id, rv.state));
            }
        }
        let approvals = latest
            .iter()
            .filter(|(user, (commit, state))| {
                *state == ReviewState::Approved
                    && **user != issue.author
                    && st.permission(user) >= Permission::Write
                    && (!rules.dismiss_stale_reviews || *commit == head)
            })
            .count() as u32;
        if approvals < needed {
            return refuse(format!(
                "At least {needed} approving review{} required by reviewers with write access.",
                if needed == 1 { " is" } else { "s are" }
            ));
        }
    }
    for context in &rules.required_status_checks {
        let status = latest_statuses(r, head)
            .into_iter()
            .find(|s| &s.context == context)
            .map(|s| s.state.as_str() == "success");
        let run = latest_check_runs(r, head)
            .into_iter()
            .find(|c| &c.name == context)
            .map(|c| {
                c.status == "completed"
                    && matches!(
                        c.conclusion.as_deref(),
                        Some("success" | "neutral" | "skipped")
                    )
            });
        match status.or(run) {
            Some(true) => {}
            Some(false) => {
                return refuse(format!("Required status check \"{context}\" is failing."));
            }
            None => return refuse(format!("Required status check \"{context}\" is expected.")),
        }
    }
    if rules.strict && !queue && base != head && !gitops::is_ancestor(path, base, head) {
        return refuse("Head branch is not up to date with the base branch.".into());
    }
    if rules.required_signatures && !signed(path, base, head, &r.verified) {
        return refuse("Commits must have verified signatures.".into());
    }
    None
}

/// Whether every commit on `head` that `base` lacks is signed (a signature of any key: keys are
/// not checked), made by GitHub itself (committer `noreply@github.com`), or made and signed
/// through the Git data API (`verified`).
fn signed(
    path: &std::path::Path,
    base: &str,
    head: &str,
    verified: &std::collections::BTreeSet<String>,
) -> bool {
    let Ok(repo) = gitops::open(path) else {
        return false;
    };
    let (Ok(head), Ok(base)) = (git2::Oid::from_str(head), git2::Oid::from_str(base)) else {
        return false;
    };
    let Ok(mut walk) = repo.revwalk() else {
        return false;
    };
    if walk.push(head).is_err() || walk.hide(base).is_err() {
        return false;
    }
    walk.flatten().all(|oid| {
        super::gitdata::is_verified(verified, &oid.to_string())
            || repo.find_commit(oid).is_ok_and(|c| {
                c.header_field_bytes("gpgsig").is_ok()
                    || c.committer().email() == Ok("noreply@github.com")
            })
    })
}

/// `GET /repos/{owner}/{repo}/rules/branches/{branch}`: the rules of the rulesets that apply
/// (here: the branch's rules when they are a ruleset; classic protection is not listed, as on
/// GitHub). Each rule names its ruleset.
pub(crate) fn rules_json(full_name: &str, rules: Option<&Protection>) -> Vec<serde_json::Value> {
    use serde_json::json;
    let Some(p) = rules.filter(|p| p.ruleset) else {
        return Vec::new();
    };
    let source = |mut rule: serde_json::Value| {
        rule["ruleset_source_type"] = json!("Repository");
        rule["ruleset_source"] = json!(full_name);
        rule["ruleset_id"] = json!(RULESET_ID);
        rule
    };
    let mut out = vec![source(json!({"type": "deletion"}))];
    if p.required_approving_reviews > 0
        || p.require_code_owner_reviews
        || !p.allowed_merge_methods.is_empty()
    {
        let mut parameters = json!({
            "required_approving_review_count": p.required_approving_reviews,
            "dismiss_stale_reviews_on_push": p.dismiss_stale_reviews,
            "require_code_owner_review": p.require_code_owner_reviews,
            "require_last_push_approval": false,
            "required_review_thread_resolution": false,
        });
        if !p.allowed_merge_methods.is_empty() {
            parameters["allowed_merge_methods"] = json!(p.allowed_merge_methods);
        }
        out.push(source(
            json!({"type": "pull_request", "parameters": parameters}),
        ));
    }
    if !p.required_status_checks.is_empty() || p.strict {
        let checks: Vec<_> = p
            .required_status_checks
            .iter()
            .map(|c| json!({"context": c}))
            .collect();
        out.push(source(
            json!({"type": "required_status_checks", "parameters": {
                "strict_required_status_checks_policy": p.strict,
                "required_status_checks": checks,
            }}),
        ));
    }
    if p.required_signatures {
        out.push(source(json!({"type": "required_signatures"})));
    }
    if p.merge_queue {
        out.push(source(json!({"type": "merge_queue", "parameters": {
            "check_response_timeout_minutes": 60,
            "grouping_strategy": "ALLGREEN",
            "max_entries_to_build": 5,
            "max_entries_to_merge": 5,
            "merge_method": match p.queue_merge_method.to_ascii_lowercase().as_str() {
                "squash" => "SQUASH",
                "rebase" => "REBASE",
                _ => "MERGE",
            },
            "min_entries_to_merge": 1,
            "min_entries_to_merge_wait_minutes": 5,
        }})));
    }
    out
}

/// The id the stand-in gives a branch's ruleset.
pub(crate) const RULESET_ID: u64 = 42;

/// `GET /repos/{owner}/{repo}/branches/{branch}/protection`: classic branch protection, `None`
/// when the branch has none (GitHub's `404 Branch not protected`; rulesets are not shown here).
pub(crate) fn protection_json(url: &str, rules: Option<&Protection>) -> Option<serde_json::Value> {
    use serde_json::json;
    let p = rules.filter(|p| !p.ruleset && **p != Protection::default())?;
    let mut out = json!({
        "url": url,
        "enforce_admins": {"url": format!("{url}/enforce_admins"), "enabled": false},
        "required_signatures": {"url": format!("{url}/required_signatures"), "enabled": p.required_signatures},
        "required_linear_history": {"enabled": false},
        "allow_force_pushes": {"enabled": false},
        "allow_deletions": {"enabled": false},
    });
    if !p.required_status_checks.is_empty() || p.strict {
        let checks: Vec<_> = p
            .required_status_checks
            .iter()
            .map(|c| json!({"context": c, "app_id": null}))
            .collect();
        out["required_status_checks"] = json!({
            "url": format!("{url}/required_status_checks"),
            "strict": p.strict,
            "contexts": p.required_status_checks,
            "contexts_url": format!("{url}/required_status_checks/contexts"),
            "checks": checks,
        });
    }
    if p.required_approving_reviews > 0 || p.require_code_owner_reviews {
        out["required_pull_request_reviews"] = json!({
            "url": format!("{url}/required_pull_request_reviews"),
            "dismiss_stale_reviews": p.dismiss_stale_reviews,
            "require_code_owner_reviews": p.require_code_owner_reviews,
            "required_approving_review_count": p.required_approving_reviews,
            "require_last_push_approval": false,
        });
    }
    Some(out)
}
