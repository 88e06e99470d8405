//! Comments, reactions and labels on issues and pull requests.

use super::*;

pub(crate) fn create_comment(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    body: &str,
) -> Result<(u64, Value), Error> {
    let mut st = inner.lock();
    let id = st.id();
    let now = Utc::now();
    let issue = issue_mut(&mut st, owner, repo, number)?;
    issue.updated_at = now;
    st.comments.insert(
        id,
        Comment {
            id,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            issue: number,
            author: login.to_owned(),
            body: body.to_owned(),
            created_at: now,
            updated_at: now,
            reactions: Vec::new(),
        },
    );
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let comment = sh.comment(&st.comments[&id]);
    let payload =
        json!({"action": "created", "issue": sh.issue(r, &r.issues[&number]), "comment": comment});
    emit(inner, &st, "issue_comment", r, login, payload);
    Ok((id, comment))
}

/// `control`: the control surface acts as the author; over REST only the author or a writer may edit.
pub(crate) fn update_comment(
    inner: &Inner,
    login: &str,
    id: u64,
    body: &str,
    control: bool,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let may_edit_any = st.permission(login) >= crate::forge::Permission::Write;
    let c = st.comments.get_mut(&id).ok_or_else(Error::not_found)?;
    if !control && c.author != login && !may_edit_any {
        return Err(Error::new(403, "Resource not accessible by integration"));
    }
    if control && c.author != login {
        return Err(Error::new(
            403,
            format!("{login} did not write comment {id}"),
        ));
    }
    let old = std::mem::replace(&mut c.body, body.to_owned());
    c.updated_at = Utc::now();
    let (owner, repo, number) = (c.owner.clone(), c.repo.clone(), c.issue);
    let r = repo_ref(&st, &owner, &repo)?;
    let sh = shapes(inner, &st);
    let comment = sh.comment(&st.comments[&id]);
    if old != body {
        let payload = json!({
            "action": "edited",
            "changes": {"body": {"from": old}},
            "issue": sh.issue(r, &r.issues[&number]),
            "comment": comment,
        });
        emit(inner, &st, "issue_comment", r, login, payload);
    }
    Ok(comment)
}

pub(crate) fn delete_comment(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    id: u64,
) -> Result<(), Error> {
    let mut st = inner.lock();
    let c = st
        .comments
        .get(&id)
        .filter(|c| c.owner == owner && c.repo == repo)
        .ok_or_else(Error::not_found)?;
    if c.author != login && st.permission(login) < crate::forge::Permission::Write {
        return Err(Error::new(403, "Resource not accessible by integration"));
    }
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let payload = json!({"action": "deleted", "issue": sh.issue(r, &r.issues[&c.issue]), "comment": sh.comment(c)});
    emit(inner, &st, "issue_comment", r, login, payload);
    st.comments.remove(&id);
    Ok(())
}

const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

pub(crate) enum ReactionTarget {
    Comment(u64),
    Issue(u64),
}

/// Returns the reaction and whether it is new (201) or already existed (200).
pub(crate) fn add_reaction(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    target: ReactionTarget,
    content: &str,
) -> Result<(Value, bool), Error> {
    if !REACTIONS.contains(&content) {
        return Err(Error::validation(
            "Reaction",
            Some("content"),
            "invalid",
            None,
        ));
    }
    let mut st = inner.lock();
    let id = st.id();
    let list = match target {
        ReactionTarget::Comment(cid) => {
            &mut st
                .comments
                .get_mut(&cid)
                .filter(|c| c.owner == owner && c.repo == repo)
                .ok_or_else(Error::not_found)?
                .reactions
        }
        ReactionTarget::Issue(n) => &mut issue_mut(&mut st, owner, repo, n)?.reactions,
    };
    if let Some(existing) = list
        .iter()
        .find(|r| r.user == login && r.content == content)
        .cloned()
    {
        return Ok((shapes(inner, &st).reaction(&existing), false));
    }
    let reaction = Reaction {
        id,
        user: login.to_owned(),
        content: content.to_owned(),
        created_at: Utc::now(),
    };
    list.push(reaction.clone());
    Ok((shapes(inner, &st).reaction(&reaction), true))
}

pub(crate) fn list_reactions(
    inner: &Inner,
    owner: &str,
    repo: &str,
    target: ReactionTarget,
    content: Option<&str>,
) -> Result<Vec<Value>, Error> {
    let st = inner.lock();
    let list = match target {
        ReactionTarget::Comment(cid) => {
            &st.comments
                .get(&cid)
                .filter(|c| c.owner == owner && c.repo == repo)
                .ok_or_else(Error::not_found)?
                .reactions
        }
        ReactionTarget::Issue(n) => {
            &repo_ref(&st, owner, repo)?
                .issues
                .get(&n)
                .ok_or_else(Error::not_found)?
                .reactions
        }
    };
    let sh = shapes(inner, &st);
    Ok(list
        .iter()
        .filter(|r| content.is_none_or(|c| r.content == c))
        .map(|r| sh.reaction(r))
        .collect())
}

pub(crate) fn ensure_label(st: &mut State, owner: &str, repo: &str, name: &str) {
    let id = st.id();
    let r = st.repo_mut(owner, repo).expect("caller checked the repo");
    if !r.labels.iter().any(|l| l.name == name) {
        r.labels.push(LabelDef {
            id,
            name: name.to_owned(),
            color: "ededed".to_owned(),
            description: None,
        });
    }
}

pub(crate) fn create_label(
    inner: &Inner,
    owner: &str,
    repo: &str,
    name: &str,
    color: Option<&str>,
    description: Option<&str>,
) -> Result<Value, Error> {
    let mut st = inner.lock();
    let id = st.id();
    let r = st.repo_mut(owner, repo).ok_or_else(Error::not_found)?;
    if r.labels.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
        return Err(Error::validation(
            "Label",
            Some("name"),
            "already_exists",
            None,
        ));
    }
    let label = LabelDef {
        id,
        name: name.to_owned(),
        color: color.unwrap_or("ededed").trim_start_matches('#').to_owned(),
        description: description.map(str::to_owned),
    };
    r.labels.push(label.clone());
    let r = repo_ref(&st, owner, repo)?;
    Ok(shapes(inner, &st).label(r, &label))
}

/// Set an issue's labels to `labels` (`replace`) or add them; delivers `labeled`/`unlabeled`
/// for pulls. Returns the issue's labels afterwards.
pub(crate) fn set_labels(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    labels: &[String],
    replace: bool,
) -> Result<Vec<Value>, Error> {
    let mut st = inner.lock();
    issue_mut(&mut st, owner, repo, number)?;
    for l in labels {
        ensure_label(&mut st, owner, repo, l);
    }
    let issue = issue_mut(&mut st, owner, repo, number)?;
    let before = issue.labels.clone();
    if replace {
        issue.labels.clear();
    }
    for l in labels {
        if !issue.labels.contains(l) {
            issue.labels.push(l.clone());
        }
    }
    issue.updated_at = Utc::now();
    let after = issue.labels.clone();
    label_events(inner, &st, login, owner, repo, number, &before, &after)
}

pub(crate) fn remove_label(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    name: &str,
) -> Result<Vec<Value>, Error> {
    let mut st = inner.lock();
    let issue = issue_mut(&mut st, owner, repo, number)?;
    let before = issue.labels.clone();
    let Some(pos) = issue.labels.iter().position(|l| l == name) else {
        return Err(Error::new(404, "Label does not exist"));
    };
    issue.labels.remove(pos);
    issue.updated_at = Utc::now();
    let after = issue.labels.clone();
    label_events(inner, &st, login, owner, repo, number, &before, &after)
}

#[allow(clippy::too_many_arguments)]
fn label_events(
    inner: &Inner,
    st: &State,
    login: &str,
    owner: &str,
    repo: &str,
    number: u64,
    before: &[String],
    after: &[String],
) -> Result<Vec<Value>, Error> {
    let r = repo_ref(st, owner, repo)?;
    let issue = &r.issues[&number];
    let sh = shapes(inner, st);
    if issue.pull.is_some() && !st.hooks.is_empty() {
        let pr = sh.pull(r, issue);
        let label = |n: &String| {
            r.labels
                .iter()
                .find(|l| &l.name == n)
                .map(|l| sh.label(r, l))
        };
        for added in after.iter().filter(|l| !before.contains(l)) {
            emit(
                inner,
                st,
                "pull_request",
                r,
                login,
                json!({"action": "labeled", "number": number, "label": label(added), "pull_request": pr}),
            );
        }
        for removed in before.iter().filter(|l| !after.contains(l)) {
            emit(
                inner,
                st,
                "pull_request",
                r,
                login,
                json!({"action": "unlabeled", "number": number, "label": label(removed), "pull_request": pr}),
            );
        }
    }
    Ok(sh.issue_labels(r, issue))
}
