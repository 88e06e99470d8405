//! The plain values the promotion decisions read: what the forge says about a PR, what the
//! reconciler says about a deployment. Built by the I/O edges, consumed by pure code.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::commands::{Actor, Command, Permission};
use crate::image::Digest;

/// A promotion PR as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub app: String,
    pub env: String,
    /// The digest the PR's head pins.
    pub digest: Digest,
    pub tag: Option<String>,
    pub head_sha: String,
    /// When the current head was pushed; approvals and commands before it are stale.
    pub head_pushed_at: DateTime<Utc>,
    pub labels: Vec<String>,
    /// Why it is held, when a `/hold` gave a reason.
    pub hold_reason: Option<String>,
    pub reviews: Vec<Review>,
    /// Statuses and check runs on the head, one per context (the latest).
    pub checks: Vec<Check>,
    /// Commands from comments, parsed, in comment order.
    pub commands: Vec<CommandEvent>,
    /// The release train (pipeline `groups:`) when this is a group's PR. A group's PR is
    /// given to the planner once per member app it pins, with the same number: `app`, `digest`
    /// and `tag` are that member's.
    pub group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
}

/// A submitted review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub user: String,
    pub state: ReviewState,
    /// The head the review was made on.
    pub commit_id: String,
    pub submitted_at: DateTime<Utc>,
    /// The reviewer's permission on the repo (approvals count only from write access when
    /// the environment names no approvers).
    pub permission: Permission,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckState {
    Pending,
    Success,
    Failure,
}

/// A commit status or check run, reduced to its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub context: String,
    pub state: CheckState,
}

/// A command someone posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEvent {
    pub comment_id: u64,
    pub command: Command,
    pub actor: Actor,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeployState {
    Progressing,
    Healthy,
    Failed,
}

/// What an environment runs for an app, as reported by the reconciler (commit status
/// `baton/<env>` on the merged commit until the reconciler reports directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub env: String,
    pub app: String,
    pub digest: Digest,
    pub state: DeployState,
    /// Since when it has been continuously healthy.
    pub healthy_since: Option<DateTime<Utc>>,
    /// The last time its health was interrupted while it ran this digest: the soak clock
    /// started over at `healthy_since` after it.
    pub restarted: Option<SoakRestart>,
}

/// Why a soak clock started over: when the digest was seen unhealthy, and why
/// (`Deployment/web: ProgressDeadlineExceeded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakRestart {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// One promotion as the config repo's history records it: `gitrepo::trailers` writes it as
/// `Baton-*` trailers on the merge commit and reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    pub app: String,
    pub environment: String,
    /// The digest the environment ran before (absent for a first promotion).
    pub from: Option<Digest>,
    pub to: Digest,
    pub tag: Option<String>,
    pub approved_by: Vec<String>,
    pub promoted_by: Option<String>,
    pub pull_request: Option<u64>,
    /// Set on a rollback: the digest it rolled back. The planner holds that digest back from
    /// the environment (see `promote::plan::held_digests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<Digest>,
}
