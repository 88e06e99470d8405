//! GitHub's answers as baton reads them: small types that keep only the fields it uses.

use super::*;

#[derive(Deserialize)]
pub(super) struct GhUser {
    pub(super) login: String,
    #[serde(rename = "type", default)]
    pub(super) kind: String,
}

#[derive(Deserialize)]
pub(super) struct GhLabel {
    pub(super) name: String,
}

#[derive(Deserialize)]
pub(super) struct GhRepo {
    pub(super) full_name: String,
}

#[derive(Deserialize)]
pub(super) struct GhBranch {
    #[serde(rename = "ref")]
    pub(super) ref_: String,
    pub(super) sha: String,
    pub(super) repo: Option<GhRepo>,
}

#[derive(Deserialize)]
pub(super) struct GhPull {
    pub(super) number: u64,
    /// The GraphQL id (`enqueuePullRequest` takes it).
    #[serde(default)]
    pub(super) node_id: String,
    #[serde(default)]
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) head: GhBranch,
    pub(super) base: GhBranch,
    #[serde(default)]
    pub(super) labels: Vec<GhLabel>,
    pub(super) state: String,
    pub(super) merged_at: Option<String>,
    /// Only in single-PR answers.
    pub(super) merged: Option<bool>,
    pub(super) merge_commit_sha: Option<String>,
    pub(super) user: Option<GhUser>,
    #[serde(default)]
    pub(super) html_url: String,
}

#[derive(Deserialize)]
pub(super) struct GhComment {
    pub(super) id: u64,
    pub(super) user: Option<GhUser>,
    pub(super) body: Option<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
pub(super) struct GhReview {
    pub(super) user: Option<GhUser>,
    pub(super) state: String,
    pub(super) commit_id: Option<String>,
    pub(super) submitted_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
pub(super) struct GhCombinedStatus {
    #[serde(default)]
    pub(super) statuses: Vec<GhStatus>,
}

#[derive(Deserialize)]
pub(super) struct GhStatus {
    #[serde(default)]
    pub(super) id: u64,
    pub(super) context: String,
    pub(super) state: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) creator: Option<GhUser>,
    #[serde(default)]
    pub(super) target_url: Option<String>,
    pub(super) created_at: Option<DateTime<Utc>>,
    pub(super) updated_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
pub(super) struct GhCheckRuns {
    #[serde(default)]
    pub(super) check_runs: Vec<GhCheckRun>,
}

#[derive(Deserialize)]
pub(super) struct GhCheckRun {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) status: String,
    pub(super) conclusion: Option<String>,
    pub(super) started_at: Option<DateTime<Utc>>,
    pub(super) completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) details_url: Option<String>,
    #[serde(default)]
    pub(super) output: Option<GhCheckOutput>,
    #[serde(default)]
    pub(super) app: Option<GhApp>,
}

#[derive(Deserialize)]
pub(super) struct GhCheckOutput {
    pub(super) title: Option<String>,
    pub(super) summary: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct GhApp {
    pub(super) id: u64,
}

#[derive(Deserialize)]
pub(super) struct GhPermission {
    pub(super) permission: String,
    pub(super) role_name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct GhAppInfo {
    pub(super) slug: String,
}

#[derive(Deserialize)]
pub(super) struct GhMerge {
    pub(super) sha: String,
}

/// One rule of `GET /repos/{owner}/{repo}/rules/branches/{branch}`.
#[derive(Deserialize)]
pub(super) struct GhRule {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) parameters: Value,
    #[serde(default)]
    pub(super) ruleset_id: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct GhProtection {
    #[serde(default)]
    pub(super) required_status_checks: Option<GhRequiredChecks>,
    #[serde(default)]
    pub(super) required_pull_request_reviews: Option<GhRequiredReviews>,
    #[serde(default)]
    pub(super) required_signatures: Option<GhEnabled>,
}

#[derive(Deserialize)]
pub(super) struct GhRequiredChecks {
    #[serde(default)]
    pub(super) strict: Option<bool>,
    #[serde(default)]
    pub(super) contexts: Vec<String>,
    #[serde(default)]
    pub(super) checks: Vec<GhRequiredCheck>,
}

#[derive(Deserialize)]
pub(super) struct GhRequiredCheck {
    pub(super) context: String,
}

#[derive(Deserialize)]
pub(super) struct GhRequiredReviews {
    #[serde(default)]
    pub(super) dismiss_stale_reviews: bool,
    #[serde(default)]
    pub(super) require_code_owner_reviews: bool,
    #[serde(default)]
    pub(super) required_approving_review_count: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct GhEnabled {
    pub(super) enabled: bool,
}

/// One entry of `GET /repos/{owner}/{repo}/activity`.
#[derive(Deserialize)]
pub(super) struct GhActivity {
    pub(super) after: String,
    pub(super) timestamp: DateTime<Utc>,
    pub(super) activity_type: String,
}
