//! Issue comments on PRs: reading, posting (never twice), editing, reacting.

use super::*;

impl GitHubForge {
    /// A comment by the bot with exactly `body`, updated since `since`.
    pub(super) async fn find_own_comment(
        &self,
        number: u64,
        body: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let path = self.repo_path(&format!(
            "/issues/{number}/comments?since={}&per_page=100",
            query(&since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        ));
        let comments: Vec<GhComment> = self.list(ROUTE_COMMENTS, path).await?;
        Ok(comments
            .into_iter()
            .rev()
            .find(|c| {
                c.user.as_ref().is_some_and(|u| u.login == self.bot_login)
                    && c.body.as_deref() == Some(body)
            })
            .map(|c| c.id))
    }
}

pub(super) async fn comments(forge: &GitHubForge, number: u64) -> Result<Vec<CommentInfo>> {
    let path = forge.repo_path(&format!("/issues/{number}/comments?per_page=100"));
    let comments: Vec<GhComment> = forge.list(ROUTE_COMMENTS, path).await?;
    let mut out: Vec<CommentInfo> = comments
        .into_iter()
        .map(|c| {
            let (author, kind) = c
                .user
                .map(|u| (u.login, u.kind))
                .unwrap_or_else(|| ("ghost".to_owned(), String::new()));
            CommentInfo {
                id: c.id,
                author_is_bot: kind == "Bot" || author.ends_with("[bot]"),
                author,
                body: c.body.unwrap_or_default(),
                created_at: c.created_at,
                updated_at: c.updated_at,
            }
        })
        .collect();
    out.sort_by_key(|c| (c.created_at, c.id));
    Ok(out)
}

pub(super) async fn create_comment(forge: &GitHubForge, number: u64, body: &str) -> Result<u64> {
    let call = Call::new(
        Method::POST,
        ROUTE_COMMENTS,
        forge.repo_path(&format!("/issues/{number}/comments")),
        Some(json!({ "body": body })),
    )
    .no_retry();
    // Clocks differ; a minute of slack only widens the search.
    let since = Utc::now() - chrono::Duration::minutes(1);
    let mut failures = 0;
    loop {
        match forge.json::<GhComment>(&call).await {
            Ok(c) => return Ok(c.id),
            Err(e @ ForgeError::Unavailable { .. }) if failures < forge.options.max_retries => {
                failures += 1;
                forge.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(forge.backoff(failures)).await;
                if let Some(id) = forge.find_own_comment(number, body, since).await? {
                    tracing::info!(error = %e, "an earlier attempt posted the comment");
                    return Ok(id);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) async fn update_comment(forge: &GitHubForge, comment_id: u64, body: &str) -> Result<()> {
    let call = Call::new(
        Method::PATCH,
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        forge.repo_path(&format!("/issues/comments/{comment_id}")),
        Some(json!({ "body": body })),
    );
    forge.ok(&call).await.map(drop)
}

pub(super) async fn react(forge: &GitHubForge, comment_id: u64, content: &str) -> Result<()> {
    let call = Call::new(
        Method::POST,
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
        forge.repo_path(&format!("/issues/comments/{comment_id}/reactions")),
        Some(json!({ "content": content })),
    );
    forge.ok(&call).await.map(drop)
}
