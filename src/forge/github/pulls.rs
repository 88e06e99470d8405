//! Pull requests: listing, opening (idempotently), editing, labels and merging.

use super::*;

impl GitHubForge {
    pub(super) fn pull_info(&self, p: GhPull) -> PullRequestInfo {
        let state = if p.merged_at.is_some() || p.merged == Some(true) {
            PrState::Merged
        } else if p.state == "open" {
            PrState::Open
        } else {
            PrState::Closed
        };
        PullRequestInfo {
            number: p.number,
            title: p.title,
            body: p.body.unwrap_or_default(),
            head_ref: p.head.ref_,
            head_sha: p.head.sha,
            base_ref: p.base.ref_,
            labels: p.labels.into_iter().map(|l| l.name).collect(),
            state,
            author: p.user.map(|u| u.login).unwrap_or_default(),
            html_url: p.html_url,
        }
    }

    pub(super) fn is_own_head(&self, p: &GhPull) -> bool {
        p.head
            .repo
            .as_ref()
            .is_some_and(|r| r.full_name.eq_ignore_ascii_case(&self.repository()))
    }

    /// The open PR from `head` into `base`, if there is one.
    pub(super) async fn find_open_pull(&self, head: &str, base: &str) -> Result<Option<GhPull>> {
        let path = self.repo_path(&format!(
            "/pulls?state=open&head={}&base={}&per_page=100",
            query(&format!("{}:{head}", self.owner)),
            query(base)
        ));
        let pulls: Vec<GhPull> = self.json(&Call::get(ROUTE_PULLS, path)).await?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.ref_ == head && p.base.ref_ == base && self.is_own_head(p)))
    }

    pub(super) async fn labels_added(&self, number: u64, labels: &[String]) -> Result<Vec<String>> {
        let call = Call::new(
            Method::POST,
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            self.repo_path(&format!("/issues/{number}/labels")),
            Some(json!({ "labels": labels })),
        );
        let added: Vec<GhLabel> = self.json(&call).await?;
        Ok(added.into_iter().map(|l| l.name).collect())
    }
}

pub(super) async fn open_promotion_prs(forge: &GitHubForge) -> Result<Vec<PullRequestInfo>> {
    let path = forge.repo_path("/pulls?state=open&per_page=100");
    let pulls: Vec<GhPull> = forge.list(ROUTE_PULLS, path).await?;
    let mut out: Vec<_> = pulls
        .into_iter()
        // A fork's branch may be called `baton/...` too; only the bot's own branches count.
        .filter(|p| p.head.ref_.starts_with("baton/") && forge.is_own_head(p))
        .map(|p| forge.pull_info(p))
        .collect();
    out.sort_by_key(|p| p.number);
    Ok(out)
}

pub(super) async fn recently_closed_promotion_prs(
    forge: &GitHubForge,
    limit: u8,
) -> Result<Vec<PullRequestInfo>> {
    let path = forge.repo_path(&format!(
        "/pulls?state=closed&sort=updated&direction=desc&per_page={}",
        limit.clamp(1, 100)
    ));
    let pulls: Vec<GhPull> = forge.json(&Call::get(ROUTE_PULLS, path)).await?;
    Ok(pulls
        .into_iter()
        .filter(|p| p.head.ref_.starts_with("baton/") && forge.is_own_head(p))
        .map(|p| forge.pull_info(p))
        .collect())
}

pub(super) async fn open_pull_requests(forge: &GitHubForge) -> Result<Vec<PullRequestInfo>> {
    let path = forge.repo_path("/pulls?state=open&per_page=100");
    let pulls: Vec<GhPull> = forge.list(ROUTE_PULLS, path).await?;
    let mut out: Vec<_> = pulls.into_iter().map(|p| forge.pull_info(p)).collect();
    out.sort_by_key(|p| p.number);
    Ok(out)
}

pub(super) async fn pull_request(forge: &GitHubForge, number: u64) -> Result<PullRequestInfo> {
    let path = forge.repo_path(&format!("/pulls/{number}"));
    let pull: GhPull = forge.json(&Call::get(ROUTE_PULL, path)).await?;
    Ok(forge.pull_info(pull))
}

pub(super) async fn open_pull_request(
    forge: &GitHubForge,
    pr: &NewPullRequest,
) -> Result<PullRequestInfo> {
    let call = Call::new(
        Method::POST,
        ROUTE_PULLS,
        forge.repo_path("/pulls"),
        Some(json!({
            "title": pr.title,
            "head": pr.head,
            "base": pr.base,
            "body": pr.body,
        })),
    )
    .no_retry();
    let mut failures = 0;
    let pull = loop {
        match forge.send(&call).await {
            Ok(answer) if answer.status.is_success() => break answer.parse::<GhPull>(&call)?,
            // Already open (an earlier attempt or run opened it): that one is the answer.
            Ok(answer) if answer.status == StatusCode::UNPROCESSABLE_ENTITY => {
                match forge.find_open_pull(&pr.head, &pr.base).await? {
                    Some(existing) => break existing,
                    None => return Err(answer.error(&call)),
                }
            }
            Ok(answer) => return Err(answer.error(&call)),
            Err(e @ ForgeError::Unavailable { .. }) if failures < forge.options.max_retries => {
                failures += 1;
                forge.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(forge.backoff(failures)).await;
                if let Some(existing) = forge.find_open_pull(&pr.head, &pr.base).await? {
                    tracing::info!(error = %e, "an earlier attempt opened the pull request");
                    break existing;
                }
            }
            Err(e) => return Err(e),
        }
    };
    let mut info = forge.pull_info(pull);
    let missing: Vec<String> = pr
        .labels
        .iter()
        .filter(|l| !info.labels.contains(l))
        .cloned()
        .collect();
    if !missing.is_empty() {
        info.labels = forge.labels_added(info.number, &missing).await?;
    }
    Ok(info)
}

pub(super) async fn update_pull_request(
    forge: &GitHubForge,
    number: u64,
    title: &str,
    body: &str,
) -> Result<()> {
    let call = Call::new(
        Method::PATCH,
        ROUTE_PULL,
        forge.repo_path(&format!("/pulls/{number}")),
        Some(json!({ "title": title, "body": body })),
    );
    forge.ok(&call).await.map(drop)
}

pub(super) async fn close_pull_request(forge: &GitHubForge, number: u64) -> Result<()> {
    let call = Call::new(
        Method::PATCH,
        ROUTE_PULL,
        forge.repo_path(&format!("/pulls/{number}")),
        Some(json!({ "state": "closed" })),
    );
    forge.ok(&call).await.map(drop)
}

pub(super) async fn add_labels(forge: &GitHubForge, number: u64, labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    forge.labels_added(number, labels).await.map(drop)
}

pub(super) async fn remove_label(forge: &GitHubForge, number: u64, label: &str) -> Result<()> {
    let call = Call::new(
        Method::DELETE,
        "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
        forge.repo_path(&format!("/issues/{number}/labels/{}", seg(label))),
        None,
    );
    let answer = forge.send(&call).await?;
    if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
        Ok(())
    } else {
        Err(answer.error(&call))
    }
}

pub(super) async fn merge(
    forge: &GitHubForge,
    number: u64,
    sha: &str,
    method: MergeMethod,
    title: &str,
    message: &str,
) -> Result<Merged> {
    let call = Call::new(
        Method::PUT,
        "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
        forge.repo_path(&format!("/pulls/{number}/merge")),
        Some(json!({
            "sha": sha,
            "merge_method": match method {
                MergeMethod::Merge => "merge",
                MergeMethod::Squash => "squash",
            },
            "commit_title": title,
            "commit_message": message,
        })),
    )
    .no_retry();
    let mut failures = 0;
    loop {
        let answer = match forge.send(&call).await {
            Ok(answer) => answer,
            Err(e @ ForgeError::Unavailable { .. }) if failures < forge.options.max_retries => {
                failures += 1;
                forge.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(forge.backoff(failures)).await;
                // The failed attempt may have merged: then that merge is the answer.
                let pull: GhPull = forge
                    .json(&Call::get(
                        ROUTE_PULL,
                        forge.repo_path(&format!("/pulls/{number}")),
                    ))
                    .await?;
                if let (Some(merge_sha), true) = (&pull.merge_commit_sha, pull.merged_at.is_some())
                {
                    if pull.head.sha == sha {
                        tracing::info!(error = %e, pr = number, "an earlier attempt merged the pull request");
                        return Ok(Merged {
                            sha: merge_sha.clone(),
                        });
                    }
                    return Err(ForgeError::NotMergeable {
                        pr: number,
                        reason: format!("it was merged at head {}, not {sha}", pull.head.sha),
                    });
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        return match answer.status {
            s if s.is_success() => {
                let m: GhMerge = answer.parse(&call)?;
                Ok(Merged { sha: m.sha })
            }
            StatusCode::CONFLICT => Err(ForgeError::NotMergeable {
                pr: number,
                reason: format!("its head is no longer {sha} ({})", answer.message()),
            }),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNPROCESSABLE_ENTITY => {
                Err(ForgeError::MergeRefused {
                    pr: number,
                    reason: answer.message(),
                })
            }
            _ => Err(answer.error(&call)),
        };
    }
}

/// The GraphQL endpoint, relative to the GraphQL client's base (`github::graphql_url`).
pub(super) const GRAPHQL_ROUTE: &str = "/graphql";

/// The GraphQL document that puts a pull into its base branch's merge queue
/// (<https://docs.github.com/graphql/reference/mutations#enqueuepullrequest>).
pub(super) const ENQUEUE_MUTATION: &str = "mutation($input: EnqueuePullRequestInput!) { enqueuePullRequest(input: $input) { mergeQueueEntry { id position state } } }";

/// Put PR `number` into the merge queue if its head is still `sha` (`expectedHeadOid`): read
/// its GraphQL id, then `enqueuePullRequest`. Queueing a queued pull is harmless (GitHub answers
/// its entry), so an ambiguous failure is simply retried. GraphQL answers errors with `200`
/// and an `errors` list; those become `MergeRefused` with GitHub's message.
pub(super) async fn enqueue(forge: &GitHubForge, number: u64, sha: &str) -> Result<()> {
    let pull: GhPull = forge
        .json(&Call::get(
            ROUTE_PULL,
            forge.repo_path(&format!("/pulls/{number}")),
        ))
        .await?;
    if pull.merged_at.is_some() || pull.merged == Some(true) {
        return if pull.head.sha == sha {
            Ok(())
        } else {
            Err(ForgeError::NotMergeable {
                pr: number,
                reason: format!("it was merged at head {}, not {sha}", pull.head.sha),
            })
        };
    }
    if pull.head.sha != sha {
        return Err(ForgeError::NotMergeable {
            pr: number,
            reason: format!("its head is no longer {sha}"),
        });
    }
    let call = Call::new(
        Method::POST,
        GRAPHQL_ROUTE,
        GRAPHQL_ROUTE.to_string(),
        Some(json!({
            "query": ENQUEUE_MUTATION,
            "variables": {"input": {"pullRequestId": pull.node_id, "expectedHeadOid": sha}},
        })),
    );
    let answer = forge.ok(&call).await?;
    let v: serde_json::Value = answer.parse(&call)?;
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array())
        && !errors.is_empty()
    {
        let reason = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(|m| m.as_str()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ForgeError::MergeRefused { pr: number, reason });
    }
    if v.pointer("/data/enqueuePullRequest/mergeQueueEntry")
        .is_none_or(|e| e.is_null())
    {
        return Err(ForgeError::Other {
            what: call.what(),
            message: "GitHub answered enqueuePullRequest without a merge queue entry".into(),
        });
    }
    Ok(())
}

/// The time of the newest push GitHub recorded that left `branch` at `sha`
/// (`GET /repos/{owner}/{repo}/activity`, newest first; one page is enough for a head).
pub(super) async fn head_pushed_at(
    forge: &GitHubForge,
    branch: &str,
    sha: &str,
) -> Result<Option<DateTime<Utc>>> {
    let path = forge.repo_path(&format!(
        "/activity?ref={}&per_page=30",
        query(&format!("refs/heads/{branch}"))
    ));
    let activity: Vec<GhActivity> = forge
        .json(&Call::get("/repos/{owner}/{repo}/activity", path))
        .await?;
    Ok(activity
        .into_iter()
        .find(|a| a.after == sha && a.activity_type != "branch_deletion")
        .map(|a| a.timestamp))
}
