//! The forge (GitHub): the [`Forge`] trait the promotion engine and the reconciler talk to,
//! and its GitHub implementation on octocrab (`github`). Everything the bot knows about PRs,
//! reviews, checks and comments comes through here, as plain values the pure `promote` code
//! can read.

pub mod github;

pub use github::GitHubForge;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::commands::Permission;
use crate::config::pipeline::MergeMethod;
use crate::promote::BaseRules;
use crate::promote::state::{Check, Review};

/// Labels baton puts on promotion PRs.
pub const PROMOTION_LABEL: &str = "baton:promotion";

/// The label for an environment.
pub fn env_label(env: &str) -> String {
    format!("env:{env}")
}

/// The bot-owned branch of a promotion.
pub fn promotion_branch(env: &str, app: &str) -> String {
    format!("baton/{env}/{app}")
}

/// `(env, app)` from a promotion branch name.
pub fn parse_promotion_branch(branch: &str) -> Option<(&str, &str)> {
    let rest = branch.strip_prefix("baton/")?;
    let (env, app) = rest.split_once('/')?;
    (!env.is_empty() && !app.is_empty() && !app.contains('/')).then_some((env, app))
}

/// A pull request as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestInfo {
    pub number: u64,
    pub title: String,
    pub body: String,
    /// Branch name, without `owner:`.
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub labels: Vec<String>,
    pub state: PrState,
    pub author: String,
    pub html_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

/// A PR to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// A comment on a PR (issue comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentInfo {
    pub id: u64,
    pub author: String,
    pub author_is_bot: bool,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CommentInfo {
    /// Edited after it was posted (GitHub moves `updated_at`; reactions do not). Such a
    /// comment is never taken as a command: what it says now is not what was posted, and
    /// approvals or pushes in between may have relied on the original.
    pub fn is_edited(&self) -> bool {
        self.updated_at > self.created_at
    }
}

/// Commit status states, as GitHub names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A commit status to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub context: String,
    pub state: StatusState,
    /// At most 140 characters (GitHub's limit); longer text is cut.
    pub description: String,
    pub target_url: Option<String>,
}

/// A commit status as listed, with who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitStatus {
    pub context: String,
    pub state: StatusState,
    pub description: String,
    /// The login that set it.
    pub creator: String,
    pub target_url: Option<String>,
}

/// GitHub's deployment status states. baton writes `in_progress`, `success`, `failure` and
/// `inactive`; the others are read as GitHub reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Error,
    Failure,
    Inactive,
    InProgress,
    Queued,
    Pending,
    Success,
}

impl DeploymentState {
    /// GitHub's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Failure => "failure",
            Self::Inactive => "inactive",
            Self::InProgress => "in_progress",
            Self::Queued => "queued",
            Self::Pending => "pending",
            Self::Success => "success",
        }
    }
}

/// A GitHub Deployment as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    pub id: u64,
    /// The commit deployed.
    pub sha: String,
    pub environment: String,
    /// What baton put there: `{"app", "digest", "tag"}`.
    pub payload: serde_json::Value,
    /// The login that created it.
    pub creator: String,
    pub created_at: DateTime<Utc>,
}

/// A Deployment to create: always of a commit sha, with GitHub's own merging and
/// required-context checks switched off (baton's gates already decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    pub sha: String,
    pub environment: String,
    pub description: String,
    pub payload: serde_json::Value,
}

/// A deployment status as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatusInfo {
    pub id: u64,
    pub state: DeploymentState,
    pub description: String,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
}

/// A deployment status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeploymentStatus {
    pub state: DeploymentState,
    /// At most 140 characters (GitHub's limit); longer text is cut.
    pub description: String,
    /// Where the rollout is told (the PR).
    pub log_url: Option<String>,
    /// Where the environment is shown (baton's status page).
    pub environment_url: Option<String>,
}

/// An issue (not a PR) as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueInfo {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub open: bool,
    pub labels: Vec<String>,
    pub html_url: String,
}

/// Which issues to list (pull requests are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueFilter {
    /// Only issues with this label.
    pub label: Option<String>,
    /// Only issues opened by this login.
    pub creator: Option<String>,
    /// Closed ones too.
    pub closed_too: bool,
}

/// A change to an issue; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    pub open: Option<bool>,
    /// Replaces the labels.
    pub labels: Option<Vec<String>>,
}

/// What a merge produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub sha: String,
}

/// Why a forge call failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// Rate limited; retry after the given time.
    #[error("GitHub rate limit: retry after {retry_after:?}")]
    RateLimited { retry_after: Option<DateTime<Utc>> },
    /// The PR cannot be merged as asked: its head moved (the next pass plans again).
    #[error("PR #{pr} cannot be merged: {reason}")]
    NotMergeable { pr: u64, reason: String },
    /// GitHub refused the merge (`405`/`422`): branch protection, a ruleset, a merge method
    /// the repository does not allow, a required merge queue, conflicts. `reason` is GitHub's.
    /// Retrying at once changes nothing; someone has to act, or time has to pass.
    #[error("GitHub refused to merge PR #{pr}: {reason}")]
    MergeRefused { pr: u64, reason: String },
    /// Something does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The credentials lack a permission.
    #[error("GitHub refused {what}: {message}")]
    Forbidden { what: String, message: String },
    /// A 5xx, a timeout or a connection failure.
    #[error("GitHub is unavailable ({what}): {message}")]
    Unavailable { what: String, message: String },
    /// Anything else GitHub answered that baton did not expect.
    #[error("GitHub {what}: {message}")]
    Other { what: String, message: String },
    /// This replica's lease ran out before the write was sent; another replica acts now.
    #[error("{what} was not sent: this replica no longer holds its lease")]
    Fenced { what: String },
    /// The forge is misconfigured (credentials missing or unreadable, a bad URL or key).
    #[error("GitHub configuration: {0}")]
    Config(String),
}

impl ForgeError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }
}

pub type Result<T> = std::result::Result<T, ForgeError>;

/// Everything baton does on the forge, for one repository.
/// Methods return `Send` futures so that engines generic over a forge can be spawned;
/// implementations write them as plain `async fn`.
pub trait Forge: Send + Sync {
    /// The bot's own login (its comments and reviews are ignored).
    fn bot_login(&self) -> &str;

    /// Open PRs whose head branch is `baton/…`.
    fn open_promotion_prs(&self) -> impl Future<Output = Result<Vec<PullRequestInfo>>> + Send;
    /// The `limit` most recently updated closed (or merged) PRs whose head branch is
    /// `baton/…`, newest first: one page, for a restarted bot to find commands it was
    /// answering when it died.
    fn recently_closed_promotion_prs(
        &self,
        limit: u8,
    ) -> impl Future<Output = Result<Vec<PullRequestInfo>>> + Send;
    /// Every open PR of the repository, whoever opened it (the config-repo PR check reads
    /// them all), by number.
    fn open_pull_requests(&self) -> impl Future<Output = Result<Vec<PullRequestInfo>>> + Send;
    /// One PR.
    fn pull_request(&self, number: u64) -> impl Future<Output = Result<PullRequestInfo>> + Send;
    /// Open a PR (labels are added after creation).
    fn open_pull_request(
        &self,
        pr: &NewPullRequest,
    ) -> impl Future<Output = Result<PullRequestInfo>> + Send;
    /// Change title and body.
    fn update_pull_request(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Close without merging.
    fn close_pull_request(&self, number: u64) -> impl Future<Output = Result<()>> + Send;
    fn add_labels(&self, number: u64, labels: &[String])
    -> impl Future<Output = Result<()>> + Send;
    /// Remove a label; removing an absent one is not an error.
    fn remove_label(&self, number: u64, label: &str) -> impl Future<Output = Result<()>> + Send;
    /// Ask `approvers` to review the PR, written as in `approvals.from`: logins, and teams as
    /// `@org/slug`. Requesting someone already requested changes nothing. Teams of another
    /// organization than the repository's (GitHub cannot request them) and the bot itself are
    /// left out; when nobody is left, no call is made.
    fn request_reviewers(
        &self,
        number: u64,
        approvers: &[String],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Submitted reviews, with each reviewer's permission.
    fn reviews(&self, number: u64) -> impl Future<Output = Result<Vec<Review>>> + Send;
    /// Issue comments on the PR, oldest first.
    fn comments(&self, number: u64) -> impl Future<Output = Result<Vec<CommentInfo>>> + Send;
    fn create_comment(&self, number: u64, body: &str) -> impl Future<Output = Result<u64>> + Send;
    fn update_comment(
        &self,
        comment_id: u64,
        body: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Add a reaction (`+1`, `eyes`, `rocket`, `confused`…) as the bot.
    fn react(&self, comment_id: u64, content: &str) -> impl Future<Output = Result<()>> + Send;

    /// Statuses and check runs on a commit, the latest per context.
    fn checks(&self, sha: &str) -> impl Future<Output = Result<Vec<Check>>> + Send;
    /// Report `status` on a commit: a commit status, or (where the forge prefers them) a
    /// check run named after the context, kept one per name and commit.
    fn set_status(
        &self,
        sha: &str,
        status: &StatusUpdate,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Commit statuses on a commit, newest first, with their creators (the most recent 100).
    /// Whatever [`Forge::set_status`] wrote is among them, also where it wrote a check run.
    fn statuses(&self, sha: &str) -> impl Future<Output = Result<Vec<CommitStatus>>> + Send;

    /// The user's permission on the repository.
    fn permission(&self, login: &str) -> impl Future<Output = Result<Permission>> + Send;
    /// Logins of a team's members (`org`, `slug`).
    fn team_members(
        &self,
        org: &str,
        slug: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// When GitHub recorded the push that made `sha` the tip of `branch` (its repository
    /// activity), if it kept a record: the time "after the latest push" counts from, which the
    /// pusher cannot choose as they choose a committer date.
    fn head_pushed_at(
        &self,
        branch: &str,
        sha: &str,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send;

    /// What GitHub itself requires before a PR merges into `branch`: its rulesets and branch
    /// protection, merged. Rules the credentials may not read are listed as unreadable, not
    /// errors.
    fn base_rules(&self, branch: &str) -> impl Future<Output = Result<BaseRules>> + Send;

    /// The Deployments of `sha` to `environment`, newest first.
    fn deployments(
        &self,
        environment: &str,
        sha: &str,
    ) -> impl Future<Output = Result<Vec<DeploymentInfo>>> + Send;
    /// Create a Deployment. After an ambiguous failure (a `5xx`: GitHub may have created it and
    /// lost the answer) the one of that sha and environment is looked up before trying again,
    /// so a retry never makes a second.
    fn create_deployment(
        &self,
        deployment: &NewDeployment,
    ) -> impl Future<Output = Result<DeploymentInfo>> + Send;
    /// A Deployment's statuses, newest first.
    fn deployment_statuses(
        &self,
        deployment_id: u64,
    ) -> impl Future<Output = Result<Vec<DeploymentStatusInfo>>> + Send;
    /// Post a status on a Deployment. After an ambiguous failure the statuses are read again
    /// first: when the newest already has this state, it is not posted twice.
    fn create_deployment_status(
        &self,
        deployment_id: u64,
        status: &NewDeploymentStatus,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Issues (not PRs) matching `filter`, by number.
    fn issues(&self, filter: &IssueFilter) -> impl Future<Output = Result<Vec<IssueInfo>>> + Send;
    /// Open an issue as the bot. After an ambiguous failure an issue by the bot with the same
    /// title and body is looked up (among those with the first label) before trying again.
    fn create_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> impl Future<Output = Result<IssueInfo>> + Send;
    /// Change an issue.
    fn update_issue(
        &self,
        number: u64,
        update: &IssueUpdate,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Merge if the head is still `sha`.
    fn merge(
        &self,
        number: u64,
        sha: &str,
        method: MergeMethod,
        title: &str,
        message: &str,
    ) -> impl Future<Output = Result<Merged>> + Send;

    /// Put the PR into the merge queue of its base branch (where GitHub requires one) if its
    /// head is still `sha`; the queue merges it once its checks pass on the merge group.
    /// Queueing a queued PR again is harmless. GitHub's refusal is `MergeRefused`.
    fn enqueue(&self, number: u64, sha: &str) -> impl Future<Output = Result<()>> + Send;

    /// Whether bot commits are made by the forge itself ([`Forge::create_commit`]), which then
    /// vouches for them (GitHub marks commits its API makes for an App as verified), rather than
    /// with git2 and pushed.
    fn makes_verified_commits(&self) -> bool;

    /// Commit `files` (path, new text) on `parent`, whose tree is `base_tree`, through the
    /// forge, and point `branch` at the commit (created or forced). Returns the commit's sha.
    fn create_commit(
        &self,
        branch: &str,
        parent: &str,
        base_tree: &str,
        message: &str,
        files: &[(String, String)],
    ) -> impl Future<Output = Result<String>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_branches_round_trip() {
        assert_eq!(promotion_branch("prod", "web"), "baton/prod/web");
        assert_eq!(
            parse_promotion_branch("baton/prod/web"),
            Some(("prod", "web"))
        );
        assert_eq!(parse_promotion_branch("baton/prod"), None);
        assert_eq!(parse_promotion_branch("feature/x/y"), None);
        assert_eq!(parse_promotion_branch("baton/prod/web/x"), None);
    }
}
