//! Source commits of other repositories: when the commit an image was built from was made
//! (for DORA lead time, `crate::dora`).

use super::*;

impl GitHubForge {
    /// The committer time of `sha` in `owner/repo`, or `None` when these credentials cannot
    /// see it there (no such repository or commit, no access). Other failures are errors.
    pub async fn source_commit_time(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        #[derive(serde::Deserialize)]
        struct Person {
            date: Option<DateTime<Utc>>,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            committer: Option<Person>,
        }
        #[derive(serde::Deserialize)]
        struct GhCommit {
            commit: Inner,
        }
        let call = Call::get(
            "/repos/{owner}/{repo}/commits/{ref}",
            format!("/repos/{}/{}/commits/{}", seg(owner), seg(repo), seg(sha)),
        );
        let answer = self.send(&call).await?;
        match answer.status {
            s if s.is_success() => Ok(answer
                .parse::<GhCommit>(&call)?
                .commit
                .committer
                .and_then(|c| c.date)),
            StatusCode::NOT_FOUND
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::FORBIDDEN
            | StatusCode::UNAUTHORIZED => Ok(None),
            _ => Err(answer.error(&call)),
        }
    }
}
