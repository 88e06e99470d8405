//! Checks and statuses: reading commit statuses and check runs, and writing baton's results
//! (a commit status with a token, a check run as an App).

use super::*;

impl GitHubForge {
    /// `set_status` with a token: a commit status (GitHub keeps every one; the newest per
    /// context counts).
    pub(super) async fn set_commit_status(&self, sha: &str, status: &StatusUpdate) -> Result<()> {
        let state = match status.state {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        };
        let mut body = json!({
            "state": state,
            "context": status.context,
            "description": truncate_chars(&status.description, STATUS_DESCRIPTION_LIMIT),
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = json!(url);
        }
        let call = Call::new(
            Method::POST,
            "/repos/{owner}/{repo}/statuses/{sha}",
            self.repo_path(&format!("/statuses/{}", seg(sha))),
            Some(body),
        );
        self.ok(&call).await.map(drop)
    }

    /// `set_status` as a GitHub App: the App's check run named after the context on `sha`.
    /// The latest such run is read first: when it already says the same, nothing is written;
    /// otherwise it is updated, or a run is created when there is none, or when a finished run
    /// would have to go back to in progress (a new run, which becomes the latest). A create
    /// whose answer was lost is found by the next read, not made twice.
    pub(super) async fn set_check_run(
        &self,
        app_id: u64,
        sha: &str,
        status: &StatusUpdate,
    ) -> Result<()> {
        let wanted = CheckRunWrite::of(status);
        let mut failures = 0;
        loop {
            let current = self
                .own_check_runs(app_id, sha, Some(&status.context))
                .await?
                .into_iter()
                .max_by_key(|r| r.id);
            let call = match current {
                Some(run) if wanted.is_written(&run) => return Ok(()),
                Some(run) if run.status != "completed" || wanted.conclusion.is_some() => Call::new(
                    Method::PATCH,
                    "/repos/{owner}/{repo}/check-runs/{check_run_id}",
                    self.repo_path(&format!("/check-runs/{}", run.id)),
                    Some(wanted.body(None)),
                ),
                _ => Call::new(
                    Method::POST,
                    "/repos/{owner}/{repo}/check-runs",
                    self.repo_path("/check-runs"),
                    Some(wanted.body(Some(sha))),
                )
                .no_retry(),
            };
            match self.ok(&call).await {
                Ok(_) => return Ok(()),
                Err(ForgeError::Unavailable { .. })
                    if call.method == Method::POST && failures < self.options.max_retries =>
                {
                    failures += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// This App's latest check runs on `sha` (of one name, or all), newest first as listed.
    pub(super) async fn own_check_runs(
        &self,
        app_id: u64,
        sha: &str,
        name: Option<&str>,
    ) -> Result<Vec<GhCheckRun>> {
        let route = "/repos/{owner}/{repo}/commits/{ref}/check-runs";
        let name = name
            .map(|n| format!("&check_name={}", query(n)))
            .unwrap_or_default();
        let path = self.repo_path(&format!(
            "/commits/{}/check-runs?app_id={app_id}{name}&filter=latest&per_page=100",
            seg(sha)
        ));
        let mut runs = Vec::new();
        for answer in self.pages(route, path).await? {
            let page: GhCheckRuns = answer.parse(&Call::get(route, String::new()))?;
            runs.extend(
                page.check_runs
                    .into_iter()
                    .filter(|r| r.app.as_ref().is_some_and(|a| a.id == app_id)),
            );
        }
        Ok(runs)
    }
}

pub(super) async fn checks(forge: &GitHubForge, sha: &str) -> Result<Vec<Check>> {
    let combined: GhCombinedStatus = forge
        .json(&Call::get(
            "/repos/{owner}/{repo}/commits/{ref}/status",
            forge.repo_path(&format!("/commits/{}/status?per_page=100", seg(sha))),
        ))
        .await?;
    let runs_route = "/repos/{owner}/{repo}/commits/{ref}/check-runs";
    let mut runs = Vec::new();
    for answer in forge
        .pages(
            runs_route,
            forge.repo_path(&format!(
                "/commits/{}/check-runs?filter=latest&per_page=100",
                seg(sha)
            )),
        )
        .await?
    {
        let page: GhCheckRuns = answer.parse(&Call::get(runs_route, String::new()))?;
        runs.extend(page.check_runs);
    }
    Ok(merge_checks(combined.statuses, runs))
}

pub(super) async fn set_status(
    forge: &GitHubForge,
    sha: &str,
    status: &StatusUpdate,
) -> Result<()> {
    match &forge.app {
        Some(app) => forge.set_check_run(app.app_id, sha, status).await,
        None => forge.set_commit_status(sha, status).await,
    }
}

pub(super) async fn statuses(forge: &GitHubForge, sha: &str) -> Result<Vec<CommitStatus>> {
    let listed: Vec<GhStatus> = forge
        .json(&Call::get(
            "/repos/{owner}/{repo}/commits/{ref}/statuses",
            forge.repo_path(&format!("/commits/{}/statuses?per_page=100", seg(sha))),
        ))
        .await?;
    let runs = match &forge.app {
        Some(app) => forge.own_check_runs(app.app_id, sha, None).await?,
        None => Vec::new(),
    };
    Ok(statuses_and_own_runs(listed, runs, &forge.bot_login))
}

/// What orders two reports: time, then check run (1) over status (0), then id.
pub(super) type Rank = (Option<DateTime<Utc>>, u8, u64);

/// A check run as `set_status` writes it for a [`StatusUpdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckRunWrite {
    pub(super) name: String,
    /// `in_progress` or `completed`.
    pub(super) status: &'static str,
    /// `success` or `failure` when completed (a status `error` is a `failure`: check runs
    /// have no error).
    pub(super) conclusion: Option<&'static str>,
    /// The description, cut like a commit status's, so that it reads back the same.
    pub(super) title: String,
    /// The whole description (GitHub requires a summary; an empty description is the title).
    pub(super) summary: String,
    pub(super) details_url: Option<String>,
}

impl CheckRunWrite {
    pub(super) fn of(status: &StatusUpdate) -> Self {
        let (state, conclusion) = match status.state {
            StatusState::Pending => ("in_progress", None),
            StatusState::Success => ("completed", Some("success")),
            StatusState::Failure | StatusState::Error => ("completed", Some("failure")),
        };
        let title = match truncate_chars(&status.description, STATUS_DESCRIPTION_LIMIT) {
            t if t.is_empty() => format!("{}: {}", status.context, conclusion.unwrap_or(state)),
            t => t,
        };
        let summary = match status.description.as_str() {
            "" => title.clone(),
            d => d.to_owned(),
        };
        Self {
            name: status.context.clone(),
            status: state,
            conclusion,
            title,
            summary,
            details_url: status.target_url.clone(),
        }
    }

    /// Whether `run` already says all of this.
    pub(super) fn is_written(&self, run: &GhCheckRun) -> bool {
        let output = run.output.as_ref();
        run.name == self.name
            && run.status == self.status
            && run.conclusion.as_deref() == self.conclusion
            && output.and_then(|o| o.title.as_deref()) == Some(self.title.as_str())
            && output.and_then(|o| o.summary.as_deref()) == Some(self.summary.as_str())
            && (self.details_url.is_none() || run.details_url == self.details_url)
    }

    /// The create (with `head_sha`) or update body.
    pub(super) fn body(&self, head_sha: Option<&str>) -> Value {
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut body = json!({
            "name": self.name,
            "status": self.status,
            "output": { "title": self.title, "summary": self.summary },
        });
        if let Some(sha) = head_sha {
            body["head_sha"] = json!(sha);
            body["started_at"] = json!(now);
        }
        if let Some(c) = self.conclusion {
            body["conclusion"] = json!(c);
            body["completed_at"] = json!(now);
        }
        if let Some(url) = &self.details_url {
            body["details_url"] = json!(url);
        }
        body
    }
}

/// Commit statuses and the bot's own check runs (what `set_status` writes as an App) as one
/// list of [`CommitStatus`], newest first (a check run before a status of the same time).
pub(super) fn statuses_and_own_runs(
    statuses: Vec<GhStatus>,
    runs: Vec<GhCheckRun>,
    bot_login: &str,
) -> Vec<CommitStatus> {
    let mut all: Vec<(Rank, CommitStatus)> = Vec::new();
    for s in statuses {
        let at = s.updated_at.or(s.created_at);
        all.push((
            (at, 0, s.id),
            CommitStatus {
                state: match s.state.as_str() {
                    "success" => StatusState::Success,
                    "pending" => StatusState::Pending,
                    "failure" => StatusState::Failure,
                    _ => StatusState::Error,
                },
                context: s.context,
                description: s.description.unwrap_or_default(),
                creator: s.creator.map(|u| u.login).unwrap_or_default(),
                target_url: s.target_url,
            },
        ));
    }
    for r in runs {
        let at = r.completed_at.or(r.started_at);
        all.push((
            (at, 1, r.id),
            CommitStatus {
                state: match check_run_state(&r.status, r.conclusion.as_deref()) {
                    CheckState::Success => StatusState::Success,
                    CheckState::Pending => StatusState::Pending,
                    CheckState::Failure => StatusState::Failure,
                },
                context: r.name,
                description: r.output.and_then(|o| o.title).unwrap_or_default(),
                creator: bot_login.to_owned(),
                target_url: r.details_url,
            },
        ));
    }
    // Stable: statuses of one time and id (ids missing) keep GitHub's newest-first order.
    all.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    all.into_iter().map(|(_, s)| s).collect()
}

/// Statuses and check runs, one per context or name: the latest, preferring a check run over a
/// status of the same name when they tie.
pub(super) fn merge_checks(statuses: Vec<GhStatus>, runs: Vec<GhCheckRun>) -> Vec<Check> {
    let mut latest: BTreeMap<String, (Rank, CheckState)> = BTreeMap::new();
    let mut keep = |name: String, rank: Rank, state: CheckState| {
        if latest.get(&name).is_none_or(|(old, _)| *old < rank) {
            latest.insert(name, (rank, state));
        }
    };
    for s in statuses {
        let state = match s.state.as_str() {
            "success" => CheckState::Success,
            "pending" => CheckState::Pending,
            _ => CheckState::Failure,
        };
        keep(s.context, (s.updated_at.or(s.created_at), 0, s.id), state);
    }
    for r in runs {
        let state = check_run_state(&r.status, r.conclusion.as_deref());
        keep(r.name, (r.completed_at.or(r.started_at), 1, r.id), state);
    }
    latest
        .into_iter()
        .map(|(context, (_, state))| Check { context, state })
        .collect()
}

pub(super) fn check_run_state(status: &str, conclusion: Option<&str>) -> CheckState {
    if status != "completed" {
        return CheckState::Pending;
    }
    match conclusion {
        Some("success" | "neutral" | "skipped") => CheckState::Success,
        None => CheckState::Pending,
        // failure, cancelled, timed_out, action_required, stale, startup_failure, and
        // anything newer: a finished run that did not pass.
        Some(_) => CheckState::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    fn run(id: u64, name: &str, status: &str, conclusion: Option<&str>, at: &str) -> GhCheckRun {
        GhCheckRun {
            id,
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(Into::into),
            started_at: t(at),
            completed_at: None,
            details_url: None,
            output: None,
            app: None,
        }
    }

    fn status(id: u64, context: &str, state: &str, at: &str) -> GhStatus {
        GhStatus {
            id,
            context: context.into(),
            state: state.into(),
            created_at: t(at),
            updated_at: t(at),
            description: None,
            creator: None,
            target_url: None,
        }
    }

    #[test]
    fn check_run_conclusions_map_to_outcomes() {
        for c in ["success", "neutral", "skipped"] {
            assert_eq!(check_run_state("completed", Some(c)), CheckState::Success);
        }
        for c in [
            "failure",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
        ] {
            assert_eq!(check_run_state("completed", Some(c)), CheckState::Failure);
        }
        for s in ["queued", "in_progress", "waiting", "requested", "pending"] {
            assert_eq!(check_run_state(s, None), CheckState::Pending);
        }
    }

    #[test]
    fn the_latest_of_a_status_and_a_check_run_with_one_name_wins() {
        let checks = merge_checks(
            vec![
                status(1, "ci", "failure", "2026-01-01T10:00:00Z"),
                status(2, "baton/dev", "pending", "2026-01-01T10:00:00Z"),
                status(3, "error-ctx", "error", "2026-01-01T10:00:00Z"),
            ],
            vec![
                run(
                    10,
                    "ci",
                    "completed",
                    Some("success"),
                    "2026-01-01T11:00:00Z",
                ),
                run(11, "lint", "in_progress", None, "2026-01-01T11:00:00Z"),
            ],
        );
        let got: Vec<_> = checks
            .iter()
            .map(|c| (c.context.as_str(), c.state))
            .collect();
        assert_eq!(
            got,
            [
                ("baton/dev", CheckState::Pending),
                ("ci", CheckState::Success),
                ("error-ctx", CheckState::Failure),
                ("lint", CheckState::Pending),
            ]
        );
    }

    fn update(state: StatusState, description: &str) -> StatusUpdate {
        StatusUpdate {
            context: "baton/dev".into(),
            state,
            description: description.into(),
            target_url: None,
        }
    }

    #[test]
    fn a_status_becomes_a_check_run_that_reads_back_as_the_same_status() {
        let long = "x".repeat(200);
        for (state, status, conclusion) in [
            (StatusState::Pending, "in_progress", None),
            (StatusState::Success, "completed", Some("success")),
            (StatusState::Failure, "completed", Some("failure")),
            (StatusState::Error, "completed", Some("failure")),
        ] {
            let w = CheckRunWrite::of(&update(state, &long));
            assert_eq!((w.status, w.conclusion), (status, conclusion));
            assert_eq!(w.title.chars().count(), STATUS_DESCRIPTION_LIMIT);
            assert_eq!(w.summary, long, "the summary keeps it all");
            let body = w.body(Some("abc"));
            assert_eq!(body["head_sha"], "abc");
            assert_eq!(body["conclusion"].as_str(), conclusion);
            assert!(w.body(None).get("head_sha").is_none());

            let run: GhCheckRun = serde_json::from_value(json!({
                "id": 1, "name": "baton/dev", "status": status, "conclusion": conclusion,
                "started_at": "2026-01-01T10:00:00Z", "completed_at": null,
                "output": {"title": w.title, "summary": w.summary}, "app": {"id": 7},
            }))
            .unwrap();
            assert!(w.is_written(&run));
            let read = statuses_and_own_runs(vec![], vec![run], "baton[bot]");
            assert_eq!(read[0].context, "baton/dev");
            assert_eq!(read[0].creator, "baton[bot]");
            assert_eq!(read[0].description, w.title);
            let expected = if state == StatusState::Error {
                StatusState::Failure
            } else {
                state
            };
            assert_eq!(read[0].state, expected);
        }
        let pending = CheckRunWrite::of(&update(StatusState::Pending, "applying"));
        let success = CheckRunWrite::of(&update(StatusState::Success, "applying"));
        let run: GhCheckRun = serde_json::from_value(json!({
            "id": 1, "name": "baton/dev", "status": "in_progress", "conclusion": null,
            "started_at": null, "completed_at": null,
            "output": {"title": "applying", "summary": "applying"},
        }))
        .unwrap();
        assert!(pending.is_written(&run));
        assert!(!success.is_written(&run));
        assert_eq!(
            CheckRunWrite::of(&update(StatusState::Success, "")).title,
            "baton/dev: success"
        );
    }

    #[test]
    fn own_check_runs_and_statuses_read_newest_first() {
        let mut old = status(1, "baton/dev", "failure", "2026-01-01T10:00:00Z");
        old.creator = Some(GhUser {
            login: "baton[bot]".into(),
            kind: "Bot".into(),
        });
        let newer = status(2, "ci", "success", "2026-01-01T12:00:00Z");
        let run = run(
            10,
            "baton/dev",
            "completed",
            Some("success"),
            "2026-01-01T11:00:00Z",
        );
        let read = statuses_and_own_runs(vec![newer, old], vec![run], "baton[bot]");
        let got: Vec<_> = read.iter().map(|s| (s.context.as_str(), s.state)).collect();
        assert_eq!(
            got,
            [
                ("ci", StatusState::Success),
                ("baton/dev", StatusState::Success),
                ("baton/dev", StatusState::Failure),
            ]
        );
    }
}
