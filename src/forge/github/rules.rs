//! GitHub's own rules on a branch: the rulesets that apply to it
//! (`GET /repos/{owner}/{repo}/rules/branches/{branch}`, readable with read access) and its
//! classic branch protection (`GET /repos/{owner}/{repo}/branches/{branch}/protection`, which
//! needs admin rights, or *Administration: read* for an App), merged into one [`BaseRules`].

use super::*;

const ROUTE_RULES: &str = "/repos/{owner}/{repo}/rules/branches/{branch}";
const ROUTE_PROTECTION: &str = "/repos/{owner}/{repo}/branches/{branch}/protection";

pub(super) async fn base_rules(forge: &GitHubForge, branch: &str) -> Result<BaseRules> {
    let mut rules = BaseRules::default();
    rules.merge(rulesets(forge, branch).await?);
    rules.merge(protection(forge, branch).await?);
    Ok(rules)
}

/// The active rules of every ruleset that applies to `branch`.
async fn rulesets(forge: &GitHubForge, branch: &str) -> Result<BaseRules> {
    let path = forge.repo_path(&format!("/rules/branches/{}?per_page=100", seg(branch)));
    let listed: Vec<GhRule> = match forge.list(ROUTE_RULES, path).await {
        Ok(listed) => listed,
        Err(e @ (ForgeError::Forbidden { .. } | ForgeError::NotFound(_))) => {
            return Ok(unreadable(format!("the rulesets of {branch} ({e})")));
        }
        Err(e) => return Err(e),
    };
    Ok(rules_of(listed))
}

fn rules_of(listed: Vec<GhRule>) -> BaseRules {
    let mut out = BaseRules::default();
    for rule in listed {
        let p = &rule.parameters;
        let mut one = BaseRules::default();
        match rule.kind.as_str() {
            "pull_request" => {
                one.required_approvals =
                    p["required_approving_review_count"].as_u64().unwrap_or(0) as u32;
                one.dismiss_stale = p["dismiss_stale_reviews_on_push"] == true;
                one.code_owner_review = p["require_code_owner_review"] == true;
                one.allowed_merge_methods = p["allowed_merge_methods"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            "required_status_checks" => {
                one.strict = p["strict_required_status_checks_policy"] == true;
                one.required_checks = p["required_status_checks"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c["context"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            "required_signatures" => one.signed_commits = true,
            "merge_queue" => {
                one.merge_queue = true;
                one.queue_merge_method = p["merge_method"].as_str().map(str::to_ascii_lowercase);
            }
            _ => continue,
        }
        if let Some(id) = rule.ruleset_id {
            let source = format!("ruleset {id}");
            if !out.sources.contains(&source) {
                one.sources.push(source);
            }
        }
        out.merge(one);
    }
    out
}

/// The branch's classic protection: none when GitHub says it is not protected (`404`),
/// unreadable when the credentials may not see it (`403`).
async fn protection(forge: &GitHubForge, branch: &str) -> Result<BaseRules> {
    let refused = || BaseRules {
        unreadable: vec![format!(
            "the branch protection of {branch} (GitHub shows it only to admins, and to Apps with Administration: read)"
        )],
        ..BaseRules::default()
    };
    if lock(&forge.protection_refused).is_some_and(|at| at.elapsed() < forge.options.permission_ttl)
    {
        return Ok(refused());
    }
    let call = Call::get(
        ROUTE_PROTECTION,
        forge.repo_path(&format!("/branches/{}/protection", seg(branch))),
    );
    let answer = forge.send(&call).await?;
    match answer.status {
        s if s.is_success() => Ok(protection_of(answer.parse(&call)?)),
        StatusCode::NOT_FOUND => Ok(BaseRules::default()),
        StatusCode::FORBIDDEN => {
            tracing::info!(%branch, "GitHub does not show baton the branch protection; its refusals still explain themselves");
            *lock(&forge.protection_refused) = Some(Instant::now());
            Ok(refused())
        }
        _ => Err(answer.error(&call)),
    }
}

fn protection_of(p: GhProtection) -> BaseRules {
    let mut out = BaseRules {
        sources: vec!["branch protection".into()],
        ..BaseRules::default()
    };
    if let Some(checks) = p.required_status_checks {
        out.strict = checks.strict.unwrap_or(false);
        out.required_checks = checks.contexts;
        for c in checks.checks {
            if !out.required_checks.contains(&c.context) {
                out.required_checks.push(c.context);
            }
        }
    }
    if let Some(reviews) = p.required_pull_request_reviews {
        // GitHub's default when reviews are required but no count is given.
        out.required_approvals = reviews.required_approving_review_count.unwrap_or(1);
        out.dismiss_stale = reviews.dismiss_stale_reviews;
        out.code_owner_review = reviews.require_code_owner_reviews;
    }
    out.signed_commits = p.required_signatures.is_some_and(|s| s.enabled);
    out
}

fn unreadable(what: String) -> BaseRules {
    tracing::warn!(%what, "cannot read GitHub's rules");
    BaseRules {
        unreadable: vec![what],
        ..BaseRules::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_rules_become_base_rules() {
        let listed: Vec<GhRule> = serde_json::from_value(json!([
            {"type": "deletion", "ruleset_id": 1},
            {"type": "pull_request", "ruleset_id": 1, "parameters": {
                "required_approving_review_count": 2, "dismiss_stale_reviews_on_push": true,
                "require_code_owner_review": false, "require_last_push_approval": false,
                "required_review_thread_resolution": false, "allowed_merge_methods": ["squash"]}},
            {"type": "required_status_checks", "ruleset_id": 2, "parameters": {
                "strict_required_status_checks_policy": true,
                "required_status_checks": [{"context": "ci"}, {"context": "lint", "integration_id": 5}]}},
            {"type": "required_signatures", "ruleset_id": 2},
            {"type": "merge_queue", "ruleset_id": 2, "parameters": {"merge_method": "SQUASH"}},
        ]))
        .unwrap();
        let r = rules_of(listed);
        assert_eq!(r.required_approvals, 2);
        assert!(r.dismiss_stale && r.strict && r.signed_commits && r.merge_queue);
        assert_eq!(r.queue_merge_method.as_deref(), Some("squash"));
        assert_eq!(r.required_checks, ["ci", "lint"]);
        assert_eq!(r.allowed_merge_methods, ["squash"]);
        assert_eq!(r.sources, ["ruleset 1", "ruleset 2"]);
    }

    #[test]
    fn classic_protection_becomes_base_rules() {
        let p: GhProtection = serde_json::from_value(json!({
            "url": "u",
            "required_status_checks": {"strict": false, "contexts": ["ci"], "checks": [{"context": "ci", "app_id": null}, {"context": "e2e", "app_id": 3}]},
            "required_pull_request_reviews": {"dismiss_stale_reviews": false, "require_code_owner_reviews": true, "required_approving_review_count": 1},
            "required_signatures": {"url": "u", "enabled": true},
        }))
        .unwrap();
        let r = protection_of(p);
        assert_eq!(r.required_approvals, 1);
        assert!(r.code_owner_review && r.signed_commits && !r.strict && !r.dismiss_stale);
        assert_eq!(r.required_checks, ["ci", "e2e"]);
        assert_eq!(r.sources, ["branch protection"]);
    }
}
