//! GitHub Deployments: creating one (GitHub's defaults and its required-contexts check),
//! their statuses (with `auto_inactive`), their JSON, and what tests read back
//! ([`ForgeHandle::deployments`]).

use chrono::Utc;
use serde_json::{Value, json};

use super::json::{Shapes, latest_check_runs, latest_statuses, ts};
use super::ops::shapes;
use super::state::{DeploymentRec, DeploymentStatusRec, Repo};
use super::{Error, ForgeHandle, Inner, gitops};

/// GitHub's deployment status states.
pub(crate) const STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

/// `POST /repos/{owner}/{repo}/deployments`, parsed.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct NewDeployment {
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub task: Option<String>,
    pub auto_merge: Option<bool>,
    pub required_contexts: Option<Vec<String>>,
    pub payload: Option<Value>,
    pub environment: Option<String>,
    pub description: Option<String>,
    pub transient_environment: Option<bool>,
    pub production_environment: Option<bool>,
}

/// `POST .../deployments/{deployment_id}/statuses`, parsed.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct NewStatus {
    pub state: Option<String>,
    pub target_url: Option<String>,
    pub log_url: Option<String>,
    pub description: Option<String>,
    pub environment: Option<String>,
    pub environment_url: Option<String>,
    pub auto_inactive: Option<bool>,
}

/// Create a Deployment as GitHub does: `ref` resolved to a commit (`422` when it names none),
/// environment `production` and task `deploy` by default, and, unless `required_contexts` is
/// given (`[]` skips the check), every context on the commit must be successful (`409`).
pub(crate) fn create(
    inner: &Inner,
    login: &str,
    via_app: bool,
    owner: &str,
    repo: &str,
    new: NewDeployment,
) -> Result<Value, Error> {
    let ref_ = new
        .ref_
        .filter(|r| !r.is_empty())
        .ok_or_else(|| super::api::missing("Deployment", "ref"))?;
    let path = inner.repo_path(owner, repo);
    let sha = gitops::resolve_commit(&path, &ref_)
        .ok_or_else(|| Error::new(422, format!("No ref found for: {ref_}")))?;
    let mut st = inner.lock();
    let r = st.repo(owner, repo).ok_or_else(Error::not_found)?;
    let failing = failing_contexts(r, &sha, new.required_contexts.as_deref());
    if !failing.is_empty() {
        return Err(Error {
            status: 409,
            message: format!("Conflict: Commit status checks failed for {ref_}."),
            errors: Some(json!([{
                "contexts": failing,
                "resource": "Deployment",
                "field": "required_contexts",
                "code": "invalid",
            }])),
        });
    }
    let environment = new.environment.unwrap_or_else(|| "production".into());
    let now = Utc::now();
    let id = st.id();
    let rec = DeploymentRec {
        id,
        sha,
        ref_,
        task: new.task.unwrap_or_else(|| "deploy".into()),
        original_environment: environment.clone(),
        production: new
            .production_environment
            .unwrap_or(environment == "production"),
        environment,
        description: new.description,
        payload: match new.payload {
            None | Some(Value::Null) => json!({}),
            // A string holding JSON is stored as the object it holds, as GitHub does.
            Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            Some(v) => v,
        },
        creator: login.to_owned(),
        via_app,
        transient: new.transient_environment.unwrap_or(false),
        created_at: now,
        updated_at: now,
        statuses: Vec::new(),
    };
    let _ = new.auto_merge; // Not modelled: baton deploys shas (docs/sim.md).
    let r = st.repo_mut(owner, repo).expect("checked above");
    r.deployments.push(rec.clone());
    let r = st.repo(owner, repo).expect("checked above");
    Ok(shapes(inner, &st).deployment(r, &rec))
}

/// The contexts that are not `success` on `sha`: the named ones, or (when `required` is
/// absent) every commit status context and check run.
fn failing_contexts(r: &Repo, sha: &str, required: Option<&[String]>) -> Vec<Value> {
    let mut states: Vec<(String, String)> = latest_statuses(r, sha)
        .iter()
        .map(|s| (s.context.clone(), s.state.clone()))
        .collect();
    for c in latest_check_runs(r, sha) {
        let state = match c.conclusion.as_deref() {
            Some("success" | "neutral" | "skipped") => "success",
            Some(_) => "failure",
            None => "pending",
        };
        states.push((c.name.clone(), state.to_owned()));
    }
    let wanted = |context: &str| required.is_none_or(|r| r.iter().any(|c| c == context));
    let mut failing: Vec<Value> = states
        .iter()
        .filter(|(c, s)| wanted(c) && s != "success")
        .map(|(c, s)| json!({"context": c, "state": s}))
        .collect();
    if let Some(required) = required {
        for c in required {
            if !states.iter().any(|(have, _)| have == c) {
                failing.push(json!({"context": c, "state": "missing"}));
            }
        }
    }
    failing
}

/// Post a status: `state` one of GitHub's; the environment follows the previous status
/// (or the deployment) unless named; `log_url` also sets `target_url`; a `success` with
/// `auto_inactive` (the default) marks the earlier successful non-transient, non-production
/// deployments of the same environment `inactive`.
pub(crate) fn create_status(
    inner: &Inner,
    login: &str,
    via_app: bool,
    owner: &str,
    repo: &str,
    deployment_id: u64,
    new: NewStatus,
) -> Result<Value, Error> {
    let state = new
        .state
        .ok_or_else(|| super::api::missing("DeploymentStatus", "state"))?;
    if !STATES.contains(&state.as_str()) {
        return Err(Error::validation(
            "DeploymentStatus",
            Some("state"),
            "invalid",
            Some(&format!("state is not included in the list: {state}")),
        ));
    }
    let description = new.description.unwrap_or_default();
    if description.chars().count() > 140 {
        return Err(Error::validation(
            "DeploymentStatus",
            Some("description"),
            "custom",
            Some("description is too long (maximum is 140 characters)"),
        ));
    }
    let mut st = inner.lock();
    let (id, auto_id) = (st.id(), st.id());
    let now = Utc::now();
    let r = st.repo_mut(owner, repo).ok_or_else(Error::not_found)?;
    let d = r
        .deployments
        .iter_mut()
        .find(|d| d.id == deployment_id)
        .ok_or_else(Error::not_found)?;
    let environment = new
        .environment
        .or_else(|| d.statuses.last().map(|s| s.environment.clone()))
        .unwrap_or_else(|| d.environment.clone());
    d.environment = environment.clone();
    let log_url = new.log_url.or(new.target_url).unwrap_or_default();
    let rec = DeploymentStatusRec {
        id,
        state: state.clone(),
        description,
        environment: environment.clone(),
        log_url,
        environment_url: new.environment_url.unwrap_or_default(),
        creator: login.to_owned(),
        via_app,
        created_at: now,
    };
    d.statuses.push(rec.clone());
    d.updated_at = now;
    if state == "success" && new.auto_inactive.unwrap_or(true) {
        for other in r.deployments.iter_mut().filter(|o| {
            o.id != deployment_id
                && o.environment == environment
                && !o.transient
                && !o.production
                && o.statuses.last().is_some_and(|s| s.state == "success")
        }) {
            other.statuses.push(DeploymentStatusRec {
                id: auto_id,
                state: "inactive".into(),
                description: String::new(),
                environment: environment.clone(),
                log_url: String::new(),
                environment_url: String::new(),
                creator: login.to_owned(),
                via_app,
                created_at: now,
            });
            other.updated_at = now;
        }
    }
    let r = st.repo(owner, repo).expect("checked above");
    let d = r
        .deployments
        .iter()
        .find(|d| d.id == deployment_id)
        .expect("found above");
    Ok(shapes(inner, &st).deployment_status(r, d, &rec))
}

impl Shapes<'_> {
    pub fn deployment(&self, r: &Repo, d: &DeploymentRec) -> Value {
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        let u = format!("{ru}/deployments/{}", d.id);
        json!({
            "url": u,
            "id": d.id,
            "node_id": format!("DE_sim{}", d.id),
            "sha": d.sha,
            "ref": d.ref_,
            "task": d.task,
            "payload": d.payload,
            "original_environment": d.original_environment,
            "environment": d.environment,
            "description": d.description,
            "creator": self.user(&d.creator),
            "created_at": ts(d.created_at),
            "updated_at": ts(d.updated_at),
            "statuses_url": format!("{u}/statuses"),
            "repository_url": ru,
            "transient_environment": d.transient,
            "production_environment": d.production,
            "performed_via_github_app": if d.via_app { self.app(super::state::AppRef::Bot) } else { Value::Null },
        })
    }

    pub fn deployment_status(&self, r: &Repo, d: &DeploymentRec, s: &DeploymentStatusRec) -> Value {
        let ru = format!("{}/repos/{}/{}", self.base, r.owner, r.name);
        let du = format!("{ru}/deployments/{}", d.id);
        json!({
            "url": format!("{du}/statuses/{}", s.id),
            "id": s.id,
            "node_id": format!("DES_sim{}", s.id),
            "state": s.state,
            "creator": self.user(&s.creator),
            "description": s.description,
            "environment": s.environment,
            "target_url": s.log_url,
            "log_url": s.log_url,
            "environment_url": s.environment_url,
            "created_at": ts(s.created_at),
            "updated_at": ts(s.created_at),
            "deployment_url": du,
            "repository_url": ru,
            "performed_via_github_app": if s.via_app { self.app(super::state::AppRef::Bot) } else { Value::Null },
        })
    }
}

/// A Deployment as a test reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    pub id: u64,
    pub sha: String,
    pub environment: String,
    pub payload: Value,
    pub creator: String,
    /// `(state, log_url, environment_url, creator)` of each status, oldest first.
    pub statuses: Vec<DeploymentStatusView>,
}

/// One status of a [`DeploymentView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatusView {
    pub state: String,
    pub description: String,
    pub log_url: String,
    pub environment_url: String,
    pub creator: String,
}

impl DeploymentView {
    /// The states of its statuses, oldest first.
    pub fn states(&self) -> Vec<&str> {
        self.statuses.iter().map(|s| s.state.as_str()).collect()
    }
}

impl ForgeHandle {
    /// The repository's Deployments, oldest first, with their statuses.
    pub fn deployments(&self, owner: &str, repo: &str) -> Vec<DeploymentView> {
        let st = self.inner.lock();
        st.repo(owner, repo)
            .map(|r| {
                r.deployments
                    .iter()
                    .map(|d| DeploymentView {
                        id: d.id,
                        sha: d.sha.clone(),
                        environment: d.environment.clone(),
                        payload: d.payload.clone(),
                        creator: d.creator.clone(),
                        statuses: d
                            .statuses
                            .iter()
                            .map(|s| DeploymentStatusView {
                                state: s.state.clone(),
                                description: s.description.clone(),
                                log_url: s.log_url.clone(),
                                environment_url: s.environment_url.clone(),
                                creator: s.creator.clone(),
                            })
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
