//! Issues that are not PRs (the promotion dashboard): listing, opening (never twice),
//! editing.

use super::*;
use crate::forge::{IssueFilter, IssueInfo, IssueUpdate};

const ROUTE_ISSUES: &str = "/repos/{owner}/{repo}/issues";

#[derive(Deserialize)]
struct GhIssue {
    number: u64,
    title: String,
    body: Option<String>,
    user: Option<GhUser>,
    state: String,
    #[serde(default)]
    labels: Vec<GhLabel>,
    html_url: String,
    /// Present on PRs, which the issues API lists too.
    #[serde(default)]
    pull_request: Option<Value>,
}

fn issue_info(i: GhIssue) -> IssueInfo {
    IssueInfo {
        number: i.number,
        title: i.title,
        body: i.body.unwrap_or_default(),
        author: i.user.map(|u| u.login).unwrap_or_default(),
        open: i.state == "open",
        labels: i.labels.into_iter().map(|l| l.name).collect(),
        html_url: i.html_url,
    }
}

pub(super) async fn issues(forge: &GitHubForge, filter: &IssueFilter) -> Result<Vec<IssueInfo>> {
    let mut q = format!(
        "/issues?state={}&sort=created&direction=asc&per_page=100",
        if filter.closed_too { "all" } else { "open" }
    );
    if let Some(label) = &filter.label {
        q.push_str(&format!("&labels={}", query(label)));
    }
    if let Some(creator) = &filter.creator {
        q.push_str(&format!("&creator={}", query(creator)));
    }
    let mut out: Vec<IssueInfo> = forge
        .list::<GhIssue>(ROUTE_ISSUES, forge.repo_path(&q))
        .await?
        .into_iter()
        .filter(|i| i.pull_request.is_none())
        .map(issue_info)
        .collect();
    out.sort_by_key(|i| i.number);
    Ok(out)
}

pub(super) async fn create_issue(
    forge: &GitHubForge,
    title: &str,
    body: &str,
    labels: &[String],
) -> Result<IssueInfo> {
    let call = Call::new(
        Method::POST,
        ROUTE_ISSUES,
        forge.repo_path("/issues"),
        Some(json!({ "title": title, "body": body, "labels": labels })),
    )
    .no_retry();
    let mut failures = 0;
    loop {
        match forge.json::<GhIssue>(&call).await {
            Ok(i) => return Ok(issue_info(i)),
            Err(e @ ForgeError::Unavailable { .. }) if failures < forge.options.max_retries => {
                failures += 1;
                forge.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(forge.backoff(failures)).await;
                let filter = IssueFilter {
                    label: labels.first().cloned(),
                    creator: Some(forge.bot_login.clone()),
                    closed_too: false,
                };
                let made = issues(forge, &filter).await?;
                if let Some(i) = made
                    .into_iter()
                    .find(|i| i.author == forge.bot_login && i.title == title && i.body == body)
                {
                    tracing::info!(error = %e, number = i.number, "an earlier attempt opened the issue");
                    return Ok(i);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) async fn update_issue(
    forge: &GitHubForge,
    number: u64,
    update: &IssueUpdate,
) -> Result<()> {
    let mut body = json!({});
    if let Some(title) = &update.title {
        body["title"] = json!(title);
    }
    if let Some(text) = &update.body {
        body["body"] = json!(text);
    }
    if let Some(open) = update.open {
        body["state"] = json!(if open { "open" } else { "closed" });
    }
    if let Some(labels) = &update.labels {
        body["labels"] = json!(labels);
    }
    let call = Call::new(
        Method::PATCH,
        "/repos/{owner}/{repo}/issues/{issue_number}",
        forge.repo_path(&format!("/issues/{number}")),
        Some(body),
    );
    forge.ok(&call).await.map(drop)
}
