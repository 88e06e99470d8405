//! The base branch's rules: rulesets that apply to a branch and classic branch protection.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;

use super::{Me, Q, R, S, ok, paged, repo_route};
use crate::forge::mw::PrincipalKind;
use crate::forge::{Error, Inner, Permission};

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route(&repo_route("/rules/branches/{branch}"), get(branch_rules))
        .route(
            &repo_route("/branches/{branch}/protection"),
            get(branch_protection),
        )
}

/// The rules of the rulesets that apply to a branch; anyone who can read the repository may.
async fn branch_rules(
    State(inner): S,
    Path((owner, repo, branch)): Path<(String, String, String)>,
    uri: Uri,
    Query(q): Q,
) -> R {
    let items = {
        let st = inner.lock();
        let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
        crate::forge::protect::rules_json(&format!("{owner}/{repo}"), r.protection.get(&branch))
    };
    paged(&inner, &uri, &q, &items)
}

/// A branch's classic protection: admins only (an App needs *Administration: read*).
async fn branch_protection(
    State(inner): S,
    Extension(me): Me,
    Path((owner, repo, branch)): Path<(String, String, String)>,
) -> R {
    let st = inner.lock();
    if st.permission(&me.login) < Permission::Admin {
        return Err(match me.kind {
            PrincipalKind::Installation => {
                Error::new(403, "Resource not accessible by integration")
            }
            _ => Error::new(403, "Must have admin rights to Repository."),
        });
    }
    let r = st.repo(&owner, &repo).ok_or_else(Error::not_found)?;
    let url = format!(
        "{}/repos/{owner}/{repo}/branches/{branch}/protection",
        inner.base()
    );
    match crate::forge::protect::protection_json(&url, r.protection.get(&branch)) {
        Some(v) => ok(StatusCode::OK, v),
        None => Err(Error::new(404, "Branch not protected")),
    }
}
