//! Review requests and reviews.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn request_reviewers(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    users: &[String],
    teams: &[String],
    remove: bool,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let not_collaborator = || {
        Error::validation(
            "PullRequest",
            None,
            "custom",
            Some(&format!(
                "Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the {owner}/{repo} repository."
            )),
        )
    };
    if !remove {
        for u in users {
            if st.permission(u) < crate::forge::Permission::Read {
                return Err(not_collaborator());
            }
        }
        for t in teams {
            if !st.teams.contains_key(&(owner.to_owned(), t.clone())) {
                return Err(not_collaborator());
            }
        }
    }
    let issue = pull_mut(&mut st, owner, repo, number)?;
    if !remove && users.contains(&issue.author) {
        return Err(Error::validation(
            "PullRequest",
            None,
            "custom",
            Some("Review cannot be requested from pull request author."),
        ));
    }
    let p = issue.pull.as_mut().expect("a pull");
    let (mut users_changed, mut teams_changed) = (Vec::new(), Vec::new());
    for u in users {
        let present = p.requested_reviewers.contains(u);
        if remove && present {
            p.requested_reviewers.retain(|x| x != u);
            users_changed.push(u.clone());
        } else if !remove && !present {
            p.requested_reviewers.push(u.clone());
            users_changed.push(u.clone());
        }
    }
    for t in teams {
        let present = p.requested_teams.contains(t);
        if remove && present {
            p.requested_teams.retain(|x| x != t);
            teams_changed.push(t.clone());
        } else if !remove && !present {
            p.requested_teams.push(t.clone());
            teams_changed.push(t.clone());
        }
    }
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let pr = sh.pull(r, &r.issues[&number]);
    let action = if remove {
        "review_request_removed"
    } else {
        "review_requested"
    };
    for u in users_changed {
        emit(
            inner,
            &st,
            "pull_request",
            r,
            login,
            json!({"action": action, "number": number, "requested_reviewer": sh.user(&u), "pull_request": pr}),
        );
    }
    for t in teams_changed {
        if let Some(team) = st.teams.get(&(owner.to_owned(), t)) {
            emit(
                inner,
                &st,
                "pull_request",
                r,
                login,
                json!({"action": action, "number": number, "requested_team": sh.team(team), "pull_request": pr}),
            );
        }
    }
    Ok(pr)
}

pub(crate) fn requested_reviewers(
    inner: &Inner,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<Value, Error> {
    let st = inner.lock();
    let r = repo_ref(&st, owner, repo)?;
    let p = r
        .issues
        .get(&number)
        .and_then(|i| i.pull.as_ref())
        .ok_or_else(Error::not_found)?;
    let sh = shapes(inner, &st);
    Ok(json!({
        "users": p.requested_reviewers.iter().map(|u| sh.user(u)).collect::<Vec<_>>(),
        "teams": p.requested_teams.iter().filter_map(|t| st.teams.get(&(owner.to_owned(), t.clone()))).map(|t| sh.team(t)).collect::<Vec<_>>(),
    }))
}

pub(crate) fn submit_review(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    state: ReviewState,
    body: &str,
) -> Result<(u64, Value), Error> {
    let mut st = inner.lock();
    let id = st.id();
    let commit_id = {
        let r = repo_ref(&st, owner, repo)?;
        let issue = r
            .issues
            .get(&number)
            .filter(|i| i.pull.is_some())
            .ok_or_else(Error::not_found)?;
        shapes(inner, &st).pull_head_sha(r, issue)
    };
    let issue = pull_mut(&mut st, owner, repo, number)?;
    if issue.author == login {
        match state {
            ReviewState::Approved => {
                return Err(Error::new(422, "Can not approve your own pull request"));
            }
            ReviewState::ChangesRequested => {
                return Err(Error::new(
                    422,
                    "Can not request changes on your own pull request",
                ));
            }
            ReviewState::Commented => {}
        }
    }
    if state != ReviewState::Approved && body.is_empty() {
        return Err(Error::validation(
            "PullRequestReview",
            Some("body"),
            "missing_field",
            None,
        ));
    }
    let p = issue.pull.as_mut().expect("a pull");
    p.requested_reviewers.retain(|u| u != login);
    let review = Review {
        id,
        user: login.to_owned(),
        state,
        body: body.to_owned(),
        commit_id,
        submitted_at: Utc::now(),
    };
    p.reviews.push(review.clone());
    let r = repo_ref(&st, owner, repo)?;
    let issue = &r.issues[&number];
    let sh = shapes(inner, &st);
    let rv = sh.review(r, issue, &review);
    let mut hook_review = rv.clone();
    // Webhook payloads spell review states in lower case.
    hook_review["state"] = json!(state.as_str().to_ascii_lowercase());
    emit(
        inner,
        &st,
        "pull_request_review",
        r,
        login,
        json!({"action": "submitted", "review": hook_review, "pull_request": sh.pull(r, issue)}),
    );
    Ok((id, rv))
}

pub(crate) fn list_reviews(
    inner: &Inner,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<Vec<Value>, Error> {
    let st = inner.lock();
    let r = repo_ref(&st, owner, repo)?;
    let issue = r
        .issues
        .get(&number)
        .filter(|i| i.pull.is_some())
        .ok_or_else(Error::not_found)?;
    let sh = shapes(inner, &st);
    Ok(issue
        .pull
        .as_ref()
        .expect("filtered")
        .reviews
        .iter()
        .map(|rv| sh.review(r, issue, rv))
        .collect())
}
