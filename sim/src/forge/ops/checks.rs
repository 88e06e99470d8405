//! Commit statuses and check runs.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn create_status(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    sha: &str,
    state: &str,
    context: &str,
    description: Option<&str>,
    target_url: Option<&str>,
) -> Result<(u64, Value), Error> {
    if !matches!(state, "error" | "failure" | "pending" | "success") {
        return Err(Error::validation(
            "Status",
            Some("state"),
            "custom",
            Some("state is not included in the list"),
        ));
    }
    let path = inner.repo_path(owner, repo);
    let mut st = inner.lock();
    repo_ref(&st, owner, repo)?;
    if !gitops::commit_exists(&path, sha) {
        return Err(Error::new(422, format!("No commit found for SHA: {sha}")));
    }
    let id = st.id();
    let rec = StatusRec {
        id,
        sha: sha.to_owned(),
        state: state.to_owned(),
        context: context.to_owned(),
        description: description.map(str::to_owned),
        target_url: target_url.map(str::to_owned),
        creator: login.to_owned(),
        created_at: Utc::now(),
    };
    st.repo_mut(owner, repo)
        .expect("checked above")
        .statuses
        .push(rec.clone());
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let status = sh.status(r, &rec);
    let branches: Vec<Value> = crate::git::read_refs(&path)
        .into_iter()
        .filter(|(name, target)| name.starts_with("refs/heads/") && target == sha)
        .map(|(name, _)| json!({"name": name.trim_start_matches("refs/heads/"), "commit": {"sha": sha, "url": format!("{}/repos/{owner}/{repo}/commits/{sha}", inner.base())}, "protected": false}))
        .collect();
    let payload = json!({
        "id": id,
        "sha": sha,
        "name": format!("{owner}/{repo}"),
        "target_url": target_url,
        "avatar_url": null,
        "context": context,
        "description": description,
        "state": state,
        "commit": {"sha": sha, "url": format!("{}/repos/{owner}/{repo}/commits/{sha}", inner.base())},
        "branches": branches,
        "created_at": ts(rec.created_at),
        "updated_at": ts(rec.created_at),
    });
    emit(inner, &st, "status", r, login, payload);
    drop(st);
    crate::forge::queue::advance(inner, owner, repo);
    Ok((id, status))
}

/// Fields of a check-run create or update request.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CheckRunFields {
    pub name: Option<String>,
    pub head_sha: Option<String>,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub started_at: Option<chrono::DateTime<Utc>>,
    pub completed_at: Option<chrono::DateTime<Utc>>,
    pub output: Option<CheckOutput>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CheckOutput {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
}

const CONCLUSIONS: [&str; 8] = [
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
];

fn validate_check(f: &CheckRunFields) -> Result<(), Error> {
    if let Some(s) = &f.status
        && !matches!(
            s.as_str(),
            "queued" | "in_progress" | "completed" | "waiting" | "requested" | "pending"
        )
    {
        return Err(Error::validation(
            "CheckRun",
            Some("status"),
            "invalid",
            None,
        ));
    }
    if let Some(c) = &f.conclusion
        && !CONCLUSIONS.contains(&c.as_str())
    {
        return Err(Error::validation(
            "CheckRun",
            Some("conclusion"),
            "invalid",
            None,
        ));
    }
    if (f.status.as_deref() == Some("completed") || f.completed_at.is_some())
        && f.conclusion.is_none()
    {
        return Err(Error::validation(
            "CheckRun",
            Some("conclusion"),
            "missing_field",
            None,
        ));
    }
    Ok(())
}

/// Create (`id == None`) or update a check run as `app`; delivers `check_run` and, when the
/// suite completes, `check_suite` `completed`.
pub(crate) fn upsert_check_run(
    inner: &Inner,
    sender: &str,
    owner: &str,
    repo: &str,
    id: Option<u64>,
    app: AppRef,
    f: CheckRunFields,
) -> Result<(u64, Value), Error> {
    validate_check(&f)?;
    let path = inner.repo_path(owner, repo);
    let mut st = inner.lock();
    repo_ref(&st, owner, repo)?;
    let now = Utc::now();
    let (run_id, created, was_completed) = match id {
        None => {
            let name = f.name.clone().ok_or_else(|| {
                Error::validation("CheckRun", Some("name"), "missing_field", None)
            })?;
            let sha = f.head_sha.clone().ok_or_else(|| {
                Error::validation("CheckRun", Some("head_sha"), "missing_field", None)
            })?;
            if !gitops::commit_exists(&path, &sha) {
                return Err(Error::validation(
                    "CheckRun",
                    Some("head_sha"),
                    "invalid",
                    Some("No commit found for SHA"),
                ));
            }
            let suite_id = ensure_suite(&mut st, owner, repo, &sha, None, app);
            let run_id = st.id();
            st.repo_mut(owner, repo)
                .expect("checked")
                .check_runs
                .push(CheckRun {
                    id: run_id,
                    sha,
                    name,
                    status: "queued".into(),
                    conclusion: None,
                    details_url: None,
                    external_id: None,
                    started_at: Some(now),
                    completed_at: None,
                    title: None,
                    summary: None,
                    text: None,
                    app,
                    suite_id,
                });
            (run_id, true, false)
        }
        Some(id) => {
            let r = st.repo(owner, repo).expect("checked");
            let run = r
                .check_runs
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(Error::not_found)?;
            if run.app != app {
                return Err(Error::new(
                    403,
                    "Invalid app_id `4242` - check run can only be modified by the GitHub App that created it.",
                ));
            }
            (id, false, run.status == "completed")
        }
    };
    let r = st.repo_mut(owner, repo).expect("checked");
    let run = r
        .check_runs
        .iter_mut()
        .find(|c| c.id == run_id)
        .expect("just found or made");
    if let Some(n) = f.name {
        run.name = n;
    }
    if let Some(s) = f.status {
        run.status = s;
    }
    if let Some(c) = f.conclusion {
        run.conclusion = Some(c);
        run.status = "completed".into();
    }
    if f.details_url.is_some() {
        run.details_url = f.details_url;
    }
    if f.external_id.is_some() {
        run.external_id = f.external_id;
    }
    if let Some(t) = f.started_at {
        run.started_at = Some(t);
    }
    if run.status == "completed" {
        run.completed_at = Some(f.completed_at.or(run.completed_at).unwrap_or(now));
    }
    if let Some(o) = f.output {
        run.title = o.title.or(run.title.take());
        run.summary = o.summary.or(run.summary.take());
        run.text = o.text.or(run.text.take());
    }
    let completed_now = run.status == "completed" && !was_completed;
    let suite_id = run.suite_id;
    if let Some(s) = r.check_suites.iter_mut().find(|s| s.id == suite_id) {
        s.updated_at = now;
    }
    let suite_done = r
        .check_runs
        .iter()
        .filter(|c| c.suite_id == suite_id)
        .all(|c| c.status == "completed");
    let r = repo_ref(&st, owner, repo)?;
    let sh = shapes(inner, &st);
    let run = r
        .check_runs
        .iter()
        .find(|c| c.id == run_id)
        .expect("exists");
    let json = sh.check_run(r, run);
    if created {
        emit(
            inner,
            &st,
            "check_run",
            r,
            sender,
            json!({"action": "created", "check_run": json}),
        );
    }
    if completed_now {
        emit(
            inner,
            &st,
            "check_run",
            r,
            sender,
            json!({"action": "completed", "check_run": json}),
        );
        if suite_done {
            emit(
                inner,
                &st,
                "check_suite",
                r,
                sender,
                json!({"action": "completed", "check_suite": sh.check_suite(r, suite_id)}),
            );
        }
    }
    drop(st);
    crate::forge::queue::advance(inner, owner, repo);
    Ok((run_id, json))
}

pub(crate) fn set_ci_check(
    inner: &Inner,
    owner: &str,
    repo: &str,
    sha: &str,
    name: &str,
    conclusion: Option<&str>,
) -> Result<u64, Error> {
    let existing = {
        let st = inner.lock();
        let r = repo_ref(&st, owner, repo)?;
        r.check_runs
            .iter()
            .rev()
            .find(|c| c.app == AppRef::Ci && c.sha == sha && c.name == name)
            .map(|c| c.id)
    };
    let fields = CheckRunFields {
        name: Some(name.to_owned()),
        head_sha: Some(sha.to_owned()),
        status: Some(
            if conclusion.is_some() {
                "completed"
            } else {
                "in_progress"
            }
            .to_owned(),
        ),
        conclusion: conclusion.map(str::to_owned),
        ..Default::default()
    };
    let sender = "github-actions[bot]";
    upsert_check_run(inner, sender, owner, repo, existing, AppRef::Ci, fields).map(|(id, _)| id)
}
