//! GitHub Deployments: one per rollout of a promotion to an environment, and their statuses
//! (`engine::deployments` decides what to write). Creating either is not idempotent on GitHub,
//! so after an ambiguous failure baton looks before it tries again.

use super::*;
use crate::forge::{DeploymentInfo, DeploymentState, DeploymentStatusInfo};
use crate::forge::{NewDeployment, NewDeploymentStatus};

const ROUTE_DEPLOYMENTS: &str = "/repos/{owner}/{repo}/deployments";
const ROUTE_STATUSES: &str = "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses";

#[derive(Deserialize)]
struct GhDeployment {
    id: u64,
    sha: String,
    environment: String,
    /// An object, or a string GitHub kept as given.
    #[serde(default)]
    payload: Value,
    creator: Option<GhUser>,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct GhDeploymentStatus {
    id: u64,
    state: DeploymentState,
    #[serde(default)]
    description: Option<String>,
    creator: Option<GhUser>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    log_url: Option<String>,
    #[serde(default)]
    environment_url: Option<String>,
}

fn deployment_info(d: GhDeployment) -> DeploymentInfo {
    DeploymentInfo {
        id: d.id,
        sha: d.sha,
        environment: d.environment,
        payload: d.payload,
        creator: d.creator.map(|u| u.login).unwrap_or_default(),
        created_at: d.created_at,
    }
}

pub(super) async fn deployments(
    forge: &GitHubForge,
    environment: &str,
    sha: &str,
) -> Result<Vec<DeploymentInfo>> {
    let path = forge.repo_path(&format!(
        "/deployments?environment={}&sha={}&per_page=100",
        query(environment),
        query(sha)
    ));
    let mut out: Vec<DeploymentInfo> = forge
        .list::<GhDeployment>(ROUTE_DEPLOYMENTS, path)
        .await?
        .into_iter()
        .map(deployment_info)
        // GitHub matches `environment` and `sha` itself; checked again so that a stand-in or
        // proxy ignoring a filter cannot make baton adopt another rollout's Deployment.
        .filter(|d| d.environment == environment && d.sha == sha)
        .collect();
    out.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
    Ok(out)
}

pub(super) async fn create_deployment(
    forge: &GitHubForge,
    new: &NewDeployment,
) -> Result<DeploymentInfo> {
    let call = Call::new(
        Method::POST,
        ROUTE_DEPLOYMENTS,
        forge.repo_path("/deployments"),
        Some(json!({
            "ref": new.sha,
            "environment": new.environment,
            "description": truncate_chars(&new.description, STATUS_DESCRIPTION_LIMIT),
            "payload": new.payload,
            // baton deploys the exact merged commit: GitHub must neither merge the default
            // branch into it nor wait for commit statuses (baton's own `baton/<env>` is pending
            // while it rolls out, and the gates already decided).
            "auto_merge": false,
            "required_contexts": [],
            "production_environment": false,
            "transient_environment": false,
        })),
    )
    .no_retry();
    let mut failures = 0;
    loop {
        match forge.json::<GhDeployment>(&call).await {
            Ok(d) => return Ok(deployment_info(d)),
            Err(e @ ForgeError::Unavailable { .. }) if failures < forge.options.max_retries => {
                failures += 1;
                forge.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(forge.backoff(failures)).await;
                let made = deployments(forge, &new.environment, &new.sha).await?;
                if let Some(d) = made.into_iter().find(|d| d.creator == forge.bot_login) {
                    tracing::info!(error = %e, id = d.id, "an earlier attempt created the deployment");
                    return Ok(d);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) async fn deployment_statuses(
    forge: &GitHubForge,
    deployment_id: u64,
) -> Result<Vec<DeploymentStatusInfo>> {
    let path = forge.repo_path(&format!(
        "/deployments/{deployment_id}/statuses?per_page=100"
    ));
    let mut out: Vec<DeploymentStatusInfo> = forge
        .list::<GhDeploymentStatus>(ROUTE_STATUSES, path)
        .await?
        .into_iter()
        .map(|s| DeploymentStatusInfo {
            id: s.id,
            state: s.state,
            description: s.description.unwrap_or_default(),
            creator: s.creator.map(|u| u.login).unwrap_or_default(),
            created_at: s.created_at,
            log_url: s.log_url.filter(|u| !u.is_empty()),
            environment_url: s.environment_url.filter(|u| !u.is_empty()),
        })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
    Ok(out)
}

pub(super) async fn create_deployment_status(
    forge: &GitHubForge,
    deployment_id: u64,
    status: &NewDeploymentStatus,
) -> Result<()> {
    let mut body = json!({
        "state": status.state.as_str(),
        "description": truncate_chars(&status.description, STATUS_DESCRIPTION_LIMIT),
    });
    if let Some(url) = &status.log_url {
        body["log_url"] = json!(url);
    }
    if let Some(url) = &status.environment_url {
        body["environment_url"] = json!(url);
    }
    let call = Call::new(
        Method::POST,
        ROUTE_STATUSES,
        forge.repo_path(&format!("/deployments/{deployment_id}/statuses")),
        Some(body),
    )
    .no_retry();
    let mut failures = 0;
    loop {
        match forge.ok(&call).await {
            Ok(_) => return Ok(()),
            Err(e @ ForgeError::Unavailable { .. }) if failures < forge.options.max_retries => {
                failures += 1;
                forge.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(forge.backoff(failures)).await;
                let newest = deployment_statuses(forge, deployment_id).await?;
                if newest.first().is_some_and(|s| s.state == status.state) {
                    tracing::info!(error = %e, "an earlier attempt posted the deployment status");
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}
