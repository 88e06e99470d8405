//! GitHub's Git data API on the bare repositories: blobs, trees, commits and refs made over
//! REST. A commit an installation (a GitHub App) makes this way without naming an author or a
//! committer is signed by GitHub: it is recorded as verified (`verification.verified: true`,
//! reason `valid`) and passes `required_signatures`; any other API commit is `unsigned`.

use chrono::{TimeZone, Utc};
use git2::Oid;
use serde_json::{Value, json};

use super::json::ts;
use super::ops::on_push;
use super::{Error, Inner, gitops};
use crate::git::{PushNotice, RefChange};

fn git_err(e: git2::Error) -> Error {
    Error::new(500, e.message().to_owned())
}

fn invalid(resource: &str, field: &str) -> Error {
    Error::validation(resource, Some(field), "invalid", None)
}

fn oid(s: &str, resource: &str, field: &str) -> Result<Oid, Error> {
    if s.len() != 40 {
        return Err(invalid(resource, field));
    }
    Oid::from_str(s).map_err(|_| invalid(resource, field))
}

fn repo_url(inner: &Inner, owner: &str, repo: &str) -> String {
    format!("{}/repos/{owner}/{repo}", inner.base())
}

/// `POST .../git/blobs`: `{url, sha}`.
pub(crate) fn create_blob(
    inner: &Inner,
    owner: &str,
    repo: &str,
    content: &str,
    encoding: &str,
) -> Result<Value, Error> {
    use base64::Engine as _;
    let bytes = match encoding {
        "utf-8" | "utf8" => content.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.replace('\n', ""))
            .map_err(|_| invalid("Blob", "content"))?,
        _ => return Err(invalid("Blob", "encoding")),
    };
    let r = gitops::open(&inner.repo_path(owner, repo)).map_err(git_err)?;
    let sha = r.blob(&bytes).map_err(git_err)?.to_string();
    Ok(json!({"url": format!("{}/git/blobs/{sha}", repo_url(inner, owner, repo)), "sha": sha}))
}

/// One entry of a tree to create.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TreeEntry {
    pub path: Option<String>,
    pub mode: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `null` deletes the path.
    #[serde(default, deserialize_with = "present")]
    pub sha: Option<Option<String>>,
    pub content: Option<String>,
}

/// Tell a missing field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    use serde::Deserialize;
    Option::<String>::deserialize(d).map(Some)
}

/// `POST .../git/trees`: the entries applied to `base_tree` (or to an empty tree).
pub(crate) fn create_tree(
    inner: &Inner,
    owner: &str,
    repo: &str,
    base_tree: Option<&str>,
    entries: &[TreeEntry],
) -> Result<Value, Error> {
    let r = gitops::open(&inner.repo_path(owner, repo)).map_err(git_err)?;
    let base = match base_tree {
        Some(b) => r
            .find_tree(oid(b, "Tree", "base_tree")?)
            .map_err(|_| invalid("Tree", "base_tree"))?,
        None => {
            let empty = r
                .treebuilder(None)
                .map_err(git_err)?
                .write()
                .map_err(git_err)?;
            r.find_tree(empty).map_err(git_err)?
        }
    };
    let mut update = git2::build::TreeUpdateBuilder::new();
    for e in entries {
        let path = e.path.as_deref().ok_or_else(|| invalid("Tree", "path"))?;
        let mode = match e.mode.as_deref() {
            Some("100644") => git2::FileMode::Blob,
            Some("100755") => git2::FileMode::BlobExecutable,
            Some("120000") => git2::FileMode::Link,
            Some("040000") => git2::FileMode::Tree,
            _ => return Err(invalid("Tree", "mode")),
        };
        if !matches!(e.kind.as_deref(), Some("blob" | "tree")) {
            return Err(invalid("Tree", "type"));
        }
        match (&e.sha, &e.content) {
            (Some(None), _) => {
                update.remove(path);
            }
            (Some(Some(sha)), _) => {
                let id = oid(sha, "Tree", "sha")?;
                if r.find_object(id, None).is_err() {
                    return Err(Error::validation("Tree", Some("sha"), "invalid", None));
                }
                update.upsert(path, id, mode);
            }
            (None, Some(content)) => {
                let id = r.blob(content.as_bytes()).map_err(git_err)?;
                update.upsert(path, id, mode);
            }
            (None, None) => return Err(invalid("Tree", "sha")),
        }
    }
    let id = update.create_updated(&r, &base).map_err(git_err)?;
    let tree = r.find_tree(id).map_err(git_err)?;
    let url = repo_url(inner, owner, repo);
    let listed: Vec<Value> = tree
        .iter()
        .map(|e| {
            let kind = match e.kind() {
                Some(git2::ObjectType::Tree) => "tree",
                _ => "blob",
            };
            let mut v = json!({
                "path": e.name().unwrap_or(""),
                "mode": format!("{:06o}", e.filemode()),
                "type": kind,
                "sha": e.id().to_string(),
                "url": format!("{url}/git/{kind}s/{}", e.id()),
            });
            if kind == "blob"
                && let Ok(b) = r.find_blob(e.id())
            {
                v["size"] = json!(b.size());
            }
            v
        })
        .collect();
    Ok(
        json!({"sha": id.to_string(), "url": format!("{url}/git/trees/{id}"), "tree": listed, "truncated": false}),
    )
}

/// `POST .../git/commits`. `verified`: GitHub signs it (an App's commit without a custom
/// author or committer).
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_commit(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    message: &str,
    tree: &str,
    parents: &[String],
    verified: bool,
) -> Result<Value, Error> {
    let path = inner.repo_path(owner, repo);
    let r = gitops::open(&path).map_err(git_err)?;
    let tree = r
        .find_tree(oid(tree, "Commit", "tree")?)
        .map_err(|_| invalid("Commit", "tree"))?;
    let parents = parents
        .iter()
        .map(|p| {
            r.find_commit(oid(p, "Commit", "parents")?)
                .map_err(|_| invalid("Commit", "parents"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let uid = inner.lock().user_id(login);
    let sig = git2::Signature::now(login, &format!("{uid}+{login}@users.noreply.github.com"))
        .map_err(git_err)?;
    let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    let id = r
        .commit(None, &sig, &sig, message, &tree, &refs)
        .map_err(git_err)?;
    if verified {
        let mut st = inner.lock();
        if let Some(repo) = st.repo_mut(owner, repo) {
            repo.verified.insert(id.to_string());
        }
    }
    commit_json(inner, owner, repo, &id.to_string())
}

/// `GET .../git/commits/{sha}` (also the answer to a create).
pub(crate) fn commit_json(
    inner: &Inner,
    owner: &str,
    repo: &str,
    sha: &str,
) -> Result<Value, Error> {
    let path = inner.repo_path(owner, repo);
    let r = gitops::open(&path).map_err(git_err)?;
    let c = Oid::from_str(sha)
        .ok()
        .and_then(|id| r.find_commit(id).ok())
        .ok_or_else(Error::not_found)?;
    let verified = inner
        .lock()
        .repo(owner, repo)
        .is_some_and(|rp| rp.verified.contains(sha));
    let url = repo_url(inner, owner, repo);
    let web = format!("{}/{owner}/{repo}", inner.base());
    let person = |s: git2::Signature<'_>| {
        let when = Utc
            .timestamp_opt(s.when().seconds(), 0)
            .single()
            .unwrap_or_default();
        json!({"name": s.name().unwrap_or(""), "email": s.email().unwrap_or(""), "date": ts(when)})
    };
    let parents: Vec<Value> = c
        .parent_ids()
        .map(|p| json!({"sha": p.to_string(), "url": format!("{url}/git/commits/{p}"), "html_url": format!("{web}/commit/{p}")}))
        .collect();
    let signed = c.header_field_bytes("gpgsig").is_ok();
    Ok(json!({
        "sha": sha,
        "node_id": format!("C_sim{}", &sha[..12]),
        "url": format!("{url}/git/commits/{sha}"),
        "html_url": format!("{web}/commit/{sha}"),
        "author": person(c.author()),
        "committer": person(c.committer()),
        "message": String::from_utf8_lossy(c.message_bytes()),
        "tree": {"sha": c.tree_id().to_string(), "url": format!("{url}/git/trees/{}", c.tree_id())},
        "parents": parents,
        "verification": {
            "verified": verified,
            "reason": if verified { "valid" } else if signed { "unknown_key" } else { "unsigned" },
            "signature": null,
            "payload": null,
            "verified_at": if verified { json!(ts(Utc::now())) } else { Value::Null },
        },
    }))
}

fn ref_json(inner: &Inner, owner: &str, repo: &str, full: &str, sha: &str) -> Value {
    let u = repo_url(inner, owner, repo);
    json!({"ref": full, "node_id": format!("REF_sim{}", &sha[..12]), "url": format!("{u}/git/{full}"), "object": {"sha": sha, "type": "commit", "url": format!("{u}/git/commits/{sha}")}})
}

/// `POST .../git/refs` (`refs/heads/...`): `422 Reference already exists`.
pub(crate) fn create_ref(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    full: &str,
    sha: &str,
) -> Result<Value, Error> {
    if !full.starts_with("refs/") || full.split('/').count() < 3 {
        return Err(Error::new(
            422,
            "Reference name must start with 'refs/' and have at least two slashes.",
        ));
    }
    let path = inner.repo_path(owner, repo);
    let id = oid(sha, "Reference", "sha")?;
    let r = gitops::open(&path).map_err(git_err)?;
    if r.find_commit(id).is_err() {
        return Err(Error::new(422, "Object does not exist"));
    }
    if r.find_reference(full).is_ok() {
        return Err(Error::new(422, "Reference already exists"));
    }
    r.reference(full, id, false, "create ref")
        .map_err(git_err)?;
    moved(inner, login, owner, repo, full, None, sha);
    Ok(ref_json(inner, owner, repo, full, sha))
}

/// `PATCH .../git/refs/{ref}`: `422 Update is not a fast forward` unless `force`;
/// `422 Reference does not exist`.
pub(crate) fn update_ref(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    full: &str,
    sha: &str,
    force: bool,
) -> Result<Value, Error> {
    let path = inner.repo_path(owner, repo);
    let id = oid(sha, "Reference", "sha")?;
    let r = gitops::open(&path).map_err(git_err)?;
    if r.find_commit(id).is_err() {
        return Err(Error::new(422, "Object does not exist"));
    }
    let old = r
        .find_reference(full)
        .ok()
        .and_then(|rf| rf.target())
        .ok_or_else(|| Error::new(422, "Reference does not exist"))?;
    if !force && old != id && !gitops::is_ancestor(&path, &old.to_string(), sha) {
        return Err(Error::new(422, "Update is not a fast forward"));
    }
    r.reference_matching(full, id, true, old, "update ref")
        .map_err(git_err)?;
    if old != id {
        moved(inner, login, owner, repo, full, Some(old.to_string()), sha);
    }
    Ok(ref_json(inner, owner, repo, full, sha))
}

fn moved(
    inner: &Inner,
    login: &str,
    owner: &str,
    repo: &str,
    full: &str,
    old: Option<String>,
    new: &str,
) {
    on_push(
        inner,
        PushNotice {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            pusher: login.to_owned(),
            changes: vec![RefChange {
                name: full.to_owned(),
                old,
                new: Some(new.to_owned()),
            }],
        },
    );
}

/// Whether a commit is verified: recorded as signed by GitHub.
pub(crate) fn is_verified(verified: &std::collections::BTreeSet<String>, sha: &str) -> bool {
    verified.contains(sha)
}
