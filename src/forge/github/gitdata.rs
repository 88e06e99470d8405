//! Commits made through GitHub's Git data API (blobs, a tree, a commit, the ref). Under App auth
//! GitHub signs a commit its API makes for the App, so it shows as verified and passes
//! `required_signatures`; a commit pushed with git2 would not be.

use super::*;

#[derive(Deserialize)]
struct Sha {
    sha: String,
}

impl GitHubForge {
    async fn post_sha(
        &self,
        route: &'static str,
        rest: &str,
        body: serde_json::Value,
    ) -> Result<String> {
        let call = Call::new(Method::POST, route, self.repo_path(rest), Some(body));
        let answer = self.ok(&call).await?;
        Ok(answer.parse::<Sha>(&call)?.sha)
    }
}

/// Commit `files` (path, UTF-8 text) on `parent`, whose tree is `base_tree`, and force
/// `branch` to it. Every step can be repeated safely: blobs and trees are addressed by content,
/// a commit made twice leaves one unreferenced, and the ref update is forced.
pub(super) async fn create_commit(
    forge: &GitHubForge,
    branch: &str,
    parent: &str,
    base_tree: &str,
    message: &str,
    files: &[(String, String)],
) -> Result<String> {
    let mut entries = Vec::new();
    for (path, content) in files {
        let blob = forge
            .post_sha(
                "/repos/{owner}/{repo}/git/blobs",
                "/git/blobs",
                json!({"content": content, "encoding": "utf-8"}),
            )
            .await?;
        entries.push(json!({"path": path, "mode": "100644", "type": "blob", "sha": blob}));
    }
    // A commit that changes no file (a promotion's record commit) keeps the parent's tree.
    let tree = if entries.is_empty() {
        base_tree.to_string()
    } else {
        forge
            .post_sha(
                "/repos/{owner}/{repo}/git/trees",
                "/git/trees",
                json!({"base_tree": base_tree, "tree": entries}),
            )
            .await?
    };
    let commit = forge
        .post_sha(
            "/repos/{owner}/{repo}/git/commits",
            "/git/commits",
            json!({"message": message, "tree": tree, "parents": [parent]}),
        )
        .await?;
    let update = Call::new(
        Method::PATCH,
        "/repos/{owner}/{repo}/git/refs/{ref}",
        forge.repo_path(&format!(
            "/git/refs/heads/{}",
            encode(branch, |b| b.is_ascii_alphanumeric()
                || b"-._~/".contains(&b))
        )),
        Some(json!({"sha": commit, "force": true})),
    );
    let answer = forge.send(&update).await?;
    if answer.status.is_success() {
        return Ok(commit);
    }
    // GitHub answers 422 "Reference does not exist" for a branch not there yet.
    if answer.status != StatusCode::UNPROCESSABLE_ENTITY {
        return Err(answer.error(&update));
    }
    let create = Call::new(
        Method::POST,
        "/repos/{owner}/{repo}/git/refs",
        forge.repo_path("/git/refs"),
        Some(json!({"ref": format!("refs/heads/{branch}"), "sha": commit})),
    );
    forge.ok(&create).await?;
    Ok(commit)
}
