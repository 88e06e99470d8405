//! GitHub's Git data API: blobs, trees, commits and ref writes (see [`crate::forge::gitdata`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Me, R, S, body, missing, ok, repo_route};
use crate::forge::Error;
use crate::forge::gitdata::{self, TreeEntry};
use crate::forge::mw::PrincipalKind;
use crate::forge::{Inner, Permission};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(&repo_route("/git/blobs"), post(create_blob))
        .route(&repo_route("/git/trees"), post(create_tree))
        .route(&repo_route("/git/commits"), post(create_commit))
        .route(&repo_route("/git/commits/{commit_sha}"), get(get_commit))
        .route(&repo_route("/git/refs"), post(create_ref))
}

fn writer(inner: &Inner, login: &str) -> Result<(), Error> {
    if inner.lock().permission(login) < Permission::Write {
        return Err(Error::new(403, "Resource not accessible by integration"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct BlobBody {
    content: Option<String>,
    encoding: Option<String>,
}

async fn create_blob(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    writer(&inner, &me.login)?;
    let req: BlobBody = body(&b)?;
    let content = req.content.ok_or_else(|| missing("Blob", "content"))?;
    let encoding = req.encoding.unwrap_or_else(|| "utf-8".into());
    ok(
        StatusCode::CREATED,
        gitdata::create_blob(&inner, &owner, &repo, &content, &encoding)?,
    )
}

#[derive(Deserialize)]
struct TreeBody {
    base_tree: Option<String>,
    tree: Option<Vec<TreeEntry>>,
}

async fn create_tree(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    writer(&inner, &me.login)?;
    let req: TreeBody = body(&b)?;
    let tree = req.tree.ok_or_else(|| missing("Tree", "tree"))?;
    ok(
        StatusCode::CREATED,
        gitdata::create_tree(&inner, &owner, &repo, req.base_tree.as_deref(), &tree)?,
    )
}

#[derive(Deserialize)]
struct CommitBody {
    message: Option<String>,
    tree: Option<String>,
    #[serde(default)]
    parents: Vec<String>,
    author: Option<serde_json::Value>,
    committer: Option<serde_json::Value>,
    signature: Option<String>,
}

async fn create_commit(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    writer(&inner, &me.login)?;
    let req: CommitBody = body(&b)?;
    let message = req.message.ok_or_else(|| missing("Commit", "message"))?;
    let tree = req.tree.ok_or_else(|| missing("Commit", "tree"))?;
    // GitHub signs what its API makes for an App, unless the caller names who wrote it or
    // brings its own signature.
    let verified = me.kind == PrincipalKind::Installation
        && req.author.is_none()
        && req.committer.is_none()
        && req.signature.is_none();
    ok(
        StatusCode::CREATED,
        gitdata::create_commit(
            &inner,
            &me.login,
            &owner,
            &repo,
            &message,
            &tree,
            &req.parents,
            verified,
        )?,
    )
}

async fn get_commit(
    State(inner): S,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> R {
    ok(
        StatusCode::OK,
        gitdata::commit_json(&inner, &owner, &repo, &sha)?,
    )
}

#[derive(Deserialize)]
struct RefBody {
    #[serde(rename = "ref")]
    name: Option<String>,
    sha: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn create_ref(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo)): Path<(String, String)>,
    b: Bytes,
) -> R {
    writer(&inner, &me.login)?;
    let req: RefBody = body(&b)?;
    let name = req.name.ok_or_else(|| missing("Reference", "ref"))?;
    let sha = req.sha.ok_or_else(|| missing("Reference", "sha"))?;
    ok(
        StatusCode::CREATED,
        gitdata::create_ref(&inner, &me.login, &owner, &repo, &name, &sha)?,
    )
}

/// `PATCH .../git/refs/{ref}` (mounted with the other `git/refs/{ref}` methods in `git.rs`).
pub(super) async fn update_ref(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, reference)): Path<(String, String, String)>,
    b: Bytes,
) -> R {
    writer(&inner, &me.login)?;
    let req: RefBody = body(&b)?;
    let sha = req.sha.ok_or_else(|| missing("Reference", "sha"))?;
    ok(
        StatusCode::OK,
        gitdata::update_ref(
            &inner,
            &me.login,
            &owner,
            &repo,
            &format!("refs/{reference}"),
            &sha,
            req.force,
        )?,
    )
}
