//! Reviews, review requests, collaborator permissions and team members.

use super::*;

pub(super) async fn request_reviewers(
    forge: &GitHubForge,
    number: u64,
    approvers: &[String],
) -> Result<()> {
    let request = review_request(approvers, &forge.owner, &forge.bot_login);
    if !request.skipped.is_empty() {
        tracing::warn!(pr = number, skipped = ?request.skipped, "cannot request these reviewers: GitHub asks only teams of the repository's organization, never the PR's author");
    }
    if request.users.is_empty() && request.teams.is_empty() {
        return Ok(());
    }
    let call = Call::new(
        Method::POST,
        "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
        forge.repo_path(&format!("/pulls/{number}/requested_reviewers")),
        Some(json!({ "reviewers": request.users, "team_reviewers": request.teams })),
    );
    forge.ok(&call).await.map(drop)
}

pub(super) async fn reviews(forge: &GitHubForge, number: u64) -> Result<Vec<Review>> {
    let path = forge.repo_path(&format!("/pulls/{number}/reviews?per_page=100"));
    let reviews: Vec<GhReview> = forge
        .list("/repos/{owner}/{repo}/pulls/{pull_number}/reviews", path)
        .await?;
    let mut out = Vec::new();
    for r in reviews {
        let state = match r.state.as_str() {
            "APPROVED" => ReviewState::Approved,
            "CHANGES_REQUESTED" => ReviewState::ChangesRequested,
            "COMMENTED" => ReviewState::Commented,
            "DISMISSED" => ReviewState::Dismissed,
            // PENDING: not submitted, not visible to anyone but its author.
            _ => continue,
        };
        let (Some(user), Some(submitted_at)) = (r.user, r.submitted_at) else {
            continue;
        };
        let permission = forge.permission(&user.login).await?;
        out.push(Review {
            user: user.login,
            state,
            commit_id: r.commit_id.unwrap_or_default(),
            submitted_at,
            permission,
        });
    }
    Ok(out)
}

pub(super) async fn permission(forge: &GitHubForge, login: &str) -> Result<Permission> {
    let ttl = forge.options.permission_ttl;
    if let Some((p, at)) = lock(&forge.permissions).get(login)
        && at.elapsed() < ttl
    {
        return Ok(*p);
    }
    let call = Call::get(
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        forge.repo_path(&format!("/collaborators/{}/permission", seg(login))),
    );
    let answer = forge.send(&call).await?;
    let permission = if answer.status == StatusCode::NOT_FOUND {
        Permission::None
    } else if answer.status.is_success() {
        let p: GhPermission = answer.parse(&call)?;
        permission_of(&p)
    } else {
        return Err(answer.error(&call));
    };
    lock(&forge.permissions).insert(login.to_owned(), (permission, Instant::now()));
    Ok(permission)
}

pub(super) async fn team_members(
    forge: &GitHubForge,
    org: &str,
    slug: &str,
) -> Result<Vec<String>> {
    let path = format!(
        "/orgs/{}/teams/{}/members?per_page=100",
        seg(org),
        seg(slug)
    );
    let members: Vec<GhUser> = forge
        .list("/orgs/{org}/teams/{team_slug}/members", path)
        .await?;
    Ok(members.into_iter().map(|u| u.login).collect())
}

/// Who a review request for `approvers` (`approvals.from`) asks: logins as users, `@org/slug`
/// as the team `slug` when `org` is the repository's `owner`. Teams of other organizations
/// (GitHub cannot request them) and `author` (GitHub refuses to ask a PR's author) are
/// `skipped`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ReviewRequest {
    pub(super) users: Vec<String>,
    pub(super) teams: Vec<String>,
    pub(super) skipped: Vec<String>,
}

pub(super) fn review_request(approvers: &[String], owner: &str, author: &str) -> ReviewRequest {
    let mut out = ReviewRequest::default();
    for who in approvers {
        let (list, name) = match who.strip_prefix('@') {
            Some(team) => match team.split_once('/') {
                Some((org, slug)) if org.eq_ignore_ascii_case(owner) && !slug.is_empty() => {
                    (&mut out.teams, slug)
                }
                _ => (&mut out.skipped, who.as_str()),
            },
            None if who.eq_ignore_ascii_case(author) || who.is_empty() => {
                (&mut out.skipped, who.as_str())
            }
            None => (&mut out.users, who.as_str()),
        };
        if !list.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            list.push(name.to_owned());
        }
    }
    out
}

/// `role_name` is the precise role (`maintain`, `triage`, or a custom role); `permission` is the
/// legacy base role, the fallback for custom roles.
pub(super) fn permission_of(p: &GhPermission) -> Permission {
    match p.role_name.as_deref().map(Permission::from_github) {
        Some(Permission::None) | None => Permission::from_github(&p.permission),
        Some(role) => role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precise_role_wins_over_the_legacy_permission() {
        let p = |permission: &str, role: Option<&str>| {
            permission_of(&GhPermission {
                permission: permission.into(),
                role_name: role.map(Into::into),
            })
        };
        assert_eq!(p("write", Some("maintain")), Permission::Maintain);
        assert_eq!(p("read", Some("triage")), Permission::Triage);
        assert_eq!(p("write", Some("custom-deployer")), Permission::Write);
        assert_eq!(p("admin", None), Permission::Admin);
        assert_eq!(p("none", Some("none")), Permission::None);
    }

    #[test]
    fn approvers_become_users_and_team_slugs_of_the_repository_owner() {
        let from: Vec<String> = [
            "alice",
            "@shop/release-managers",
            "@Shop/sre",
            "@other-org/ops",
            "baton[bot]",
            "ALICE",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            review_request(&from, "shop", "baton[bot]"),
            ReviewRequest {
                users: vec!["alice".into()],
                teams: vec!["release-managers".into(), "sre".into()],
                skipped: vec!["@other-org/ops".into(), "baton[bot]".into()],
            }
        );
        assert_eq!(review_request(&[], "shop", "x"), ReviewRequest::default());
    }
}
