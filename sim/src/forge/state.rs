//! The forge's in-memory state: users, tokens, teams, repositories and everything hanging off
//! pull requests. Plain data; the HTTP layer and the control handle both go through it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A user's permission on the repositories of the forge, as GitHub's repository roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// The legacy base role GitHub reports in `permission`: `admin`, `write`, `read` or `none`.
    pub fn legacy(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read | Permission::Triage => "read",
            Permission::Write | Permission::Maintain => "write",
            Permission::Admin => "admin",
        }
    }

    /// The role name GitHub reports in `role_name`.
    pub fn role_name(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Triage => "triage",
            Permission::Write => "write",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }

    /// Parse a role name (`read`, `write`, `admin`, ... and the legacy `pull`/`push`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Permission::None,
            "read" | "pull" => Permission::Read,
            "triage" => Permission::Triage,
            "write" | "push" => Permission::Write,
            "maintain" => Permission::Maintain,
            "admin" => Permission::Admin,
            _ => return None,
        })
    }
}

/// The outcome of a review, as GitHub names it in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Approved => "APPROVED",
            ReviewState::ChangesRequested => "CHANGES_REQUESTED",
            ReviewState::Commented => "COMMENTED",
        }
    }

    /// From a review `event` (`APPROVE`, `REQUEST_CHANGES`, `COMMENT`).
    pub fn from_event(s: &str) -> Option<Self> {
        Some(match s {
            "APPROVE" => ReviewState::Approved,
            "REQUEST_CHANGES" => ReviewState::ChangesRequested,
            "COMMENT" => ReviewState::Commented,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: u64,
    pub bot: bool,
    pub permission: Permission,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// `ghs_...`: a GitHub App installation token (may create check runs, not call `/user`).
    Installation,
    /// `ghp_...`: a personal access token.
    Personal,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub login: String,
    pub kind: TokenKind,
    /// When a minted installation token stops working (REST and Git); `None`: never.
    pub expires: Option<Instant>,
}

impl Token {
    pub fn is_live(&self) -> bool {
        self.expires.is_none_or(|at| Instant::now() < at)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Team {
    pub id: u64,
    pub org: String,
    pub slug: String,
    pub name: String,
    /// login -> role (`member` or `maintainer`).
    pub members: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub(crate) struct LabelDef {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Reaction {
    pub id: u64,
    pub user: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Review {
    pub id: u64,
    pub user: String,
    pub state: ReviewState,
    pub body: String,
    pub commit_id: String,
    pub submitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pull {
    pub id: u64,
    pub head_ref: String,
    pub base_ref: String,
    /// Last known head commit; for open pulls the live branch wins when it exists.
    pub head_sha: String,
    pub draft: bool,
    pub merged: bool,
    pub merged_at: Option<DateTime<Utc>>,
    pub merged_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub requested_reviewers: Vec<String>,
    /// Team slugs (in the repository owner's organization).
    pub requested_teams: Vec<String>,
    pub reviews: Vec<Review>,
    /// The head GitHub has computed `mergeable` for; a read for another head answers `null`
    /// first, as GitHub does while it computes.
    pub mergeable_for: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub author: String,
    pub open: bool,
    pub labels: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reactions: Vec<Reaction>,
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub issue: u64,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub reactions: Vec<Reaction>,
}

#[derive(Debug, Clone)]
pub(crate) struct StatusRec {
    pub id: u64,
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub creator: String,
    pub created_at: DateTime<Utc>,
}

/// Which app created a check run: the bot's own app or the simulated CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppRef {
    Bot,
    Ci,
}

/// The simulated CI app's id (the bot's is [`State::app_id`]).
pub(crate) const CI_APP_ID: u64 = 4343;

#[derive(Debug, Clone)]
pub(crate) struct CheckRun {
    pub id: u64,
    pub sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    pub app: AppRef,
    pub suite_id: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct CheckSuite {
    pub id: u64,
    pub sha: String,
    pub head_branch: Option<String>,
    pub app: AppRef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    pub created_at: DateTime<Utc>,
    pub labels: Vec<LabelDef>,
    pub issues: BTreeMap<u64, Issue>,
    pub next_number: u64,
    pub statuses: Vec<StatusRec>,
    pub check_runs: Vec<CheckRun>,
    pub check_suites: Vec<CheckSuite>,
    /// Branch protection or ruleset rules by branch.
    pub protection: BTreeMap<String, super::protect::Protection>,
    /// Ref changes as GitHub records them (`GET .../activity`), oldest first.
    pub activity: Vec<Activity>,
    /// Pulls in the merge queue of any base branch, first queued first.
    pub queue: Vec<super::queue::Entry>,
    /// Commits GitHub signed (made through the Git data API by an App).
    pub verified: std::collections::BTreeSet<String>,
    /// Deployments, oldest first (`super::deployments`).
    pub deployments: Vec<DeploymentRec>,
}

/// A Deployment and its statuses (oldest first).
#[derive(Debug, Clone)]
pub(crate) struct DeploymentRec {
    pub id: u64,
    pub sha: String,
    pub ref_: String,
    pub task: String,
    pub environment: String,
    pub original_environment: String,
    pub description: Option<String>,
    pub payload: serde_json::Value,
    pub creator: String,
    /// Created by an App installation (`performed_via_github_app`).
    pub via_app: bool,
    pub transient: bool,
    pub production: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub statuses: Vec<DeploymentStatusRec>,
}

/// One status of a Deployment.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentStatusRec {
    pub id: u64,
    pub state: String,
    pub description: String,
    pub environment: String,
    pub log_url: String,
    pub environment_url: String,
    pub creator: String,
    pub via_app: bool,
    pub created_at: DateTime<Utc>,
}

/// One ref change: when GitHub saw it, not what the commits claim.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    pub id: u64,
    pub before: String,
    pub after: String,
    /// `refs/heads/...`.
    pub ref_: String,
    pub timestamp: DateTime<Utc>,
    /// `push`, `force_push`, `branch_creation`, `branch_deletion`.
    pub kind: &'static str,
    pub actor: String,
}

/// A fault waiting to be served instead of (or before) a real response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this 5xx status and GitHub's error body.
    ServerError(u16),
    /// A secondary rate limit: `status` (403 or 429) with `retry-after: <secs>`.
    SecondaryRateLimit { status: u16, retry_after_secs: u64 },
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Serve the call (its write is applied), then throw the answer away and answer with this
    /// 5xx instead: the connection that dropped after the server committed, which is what a
    /// client sees when it is killed between its write and the reply.
    LostResponse(u16),
}

/// A fault with how often it fires and which calls it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// How many matching calls it affects before it is used up.
    pub times: u32,
    /// Only calls whose counter key (`"GET /repos/{owner}/{repo}/pulls"`) contains this.
    pub route: Option<String>,
    /// How many matching calls pass untouched before the fault fires.
    pub after: u32,
}

impl Fault {
    /// One 5xx answer to the next call.
    pub fn server_error(status: u16) -> Self {
        Self {
            kind: FaultKind::ServerError(status),
            times: 1,
            route: None,
            after: 0,
        }
    }

    /// One secondary-rate-limit answer (403 with `retry-after`) to the next call.
    pub fn secondary_rate_limit(retry_after_secs: u64) -> Self {
        Self {
            kind: FaultKind::SecondaryRateLimit {
                status: 403,
                retry_after_secs,
            },
            times: 1,
            route: None,
            after: 0,
        }
    }

    /// The next call waits `delay` before it is answered.
    pub fn slow(delay: Duration) -> Self {
        Self {
            kind: FaultKind::Slow(delay),
            times: 1,
            route: None,
            after: 0,
        }
    }

    /// One call is served (its write is applied), but the client gets this 5xx instead of the
    /// answer: a crash or dropped connection after the server committed the write.
    pub fn lost_response(status: u16) -> Self {
        Self {
            kind: FaultKind::LostResponse(status),
            times: 1,
            route: None,
            after: 0,
        }
    }

    /// Let the first `n` matching calls through untouched, then fire (e.g. the third merge:
    /// `.on("/merge").after(2)`).
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }

    /// Affect the next `n` matching calls instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Only affect calls whose route key contains `route`, e.g. `"PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge"`
    /// or just `"/merge"`; a route ending in `$` must equal the whole key
    /// (`"POST /repos/{owner}/{repo}/pulls$"` leaves `.../requested_reviewers` alone).
    pub fn on(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }
}

/// The primary rate limit: one bucket shared by every token.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    pub reset_at: Instant,
    pub reset_epoch: i64,
}

impl RateLimit {
    pub fn new(limit: u64) -> Self {
        let mut r = Self {
            limit,
            remaining: limit,
            reset_at: Instant::now(),
            reset_epoch: 0,
        };
        r.restart(Duration::from_secs(3600));
        r
    }

    pub fn restart(&mut self, window: Duration) {
        self.reset_at = Instant::now() + window;
        self.reset_epoch = Utc::now().timestamp() + window.as_secs() as i64;
    }

    /// Refill when the window has passed; then take one call if any are left.
    pub fn take(&mut self) -> bool {
        if Instant::now() >= self.reset_at {
            self.remaining = self.limit;
            self.restart(Duration::from_secs(3600));
        }
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        true
    }
}

/// One webhook delivery attempt, for tests and the sandbox to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `X-GitHub-Delivery` GUID.
    pub id: String,
    /// The `X-GitHub-Event` name.
    pub event: String,
    /// The payload's `action`, when it has one.
    pub action: Option<String>,
    pub url: String,
    /// The receiver's status code, or `None` when the request failed.
    pub status: Option<u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct Hook {
    pub url: String,
    pub secret: String,
}

#[derive(Debug)]
pub(crate) struct State {
    next_id: u64,
    pub bot_login: String,
    pub app_id: u64,
    pub installation_id: u64,
    /// How long a minted installation token works (GitHub: one hour).
    pub installation_token_ttl: Duration,
    pub users: BTreeMap<String, User>,
    pub tokens: HashMap<String, Token>,
    pub teams: BTreeMap<(String, String), Team>,
    pub repos: BTreeMap<(String, String), Repo>,
    pub comments: BTreeMap<u64, Comment>,
    pub hooks: Vec<Hook>,
    pub faults: Vec<Fault>,
    pub rate: RateLimit,
    pub calls: BTreeMap<String, u64>,
    pub deliveries: Vec<Delivery>,
    /// Whether REST exchanges are kept in `exchanges` (for contract checks).
    pub recording: bool,
    pub exchanges: Vec<crate::contract::Exchange>,
    /// The installation lacks the Organization permission *Members: read*: team members are
    /// refused to it with `403`.
    pub members_unreadable: bool,
    /// GitHub's secondary limits on content creation: for each pair, at most `.0` writes
    /// (non-`GET` REST calls) per `.1` and principal; empty: not enforced.
    pub write_limits: Vec<(u32, Duration)>,
    /// Each principal's recent writes, oldest first.
    pub writes: HashMap<String, std::collections::VecDeque<std::time::Instant>>,
    /// Writes refused by the secondary limit.
    pub secondary_refusals: u64,
}

impl State {
    pub fn new(bot_login: &str) -> Self {
        Self {
            next_id: 1000,
            bot_login: bot_login.to_owned(),
            app_id: 4242,
            installation_id: 77,
            installation_token_ttl: Duration::from_secs(3600),
            users: BTreeMap::new(),
            tokens: HashMap::new(),
            teams: BTreeMap::new(),
            repos: BTreeMap::new(),
            comments: BTreeMap::new(),
            hooks: Vec::new(),
            faults: Vec::new(),
            rate: RateLimit::new(5000),
            calls: BTreeMap::new(),
            deliveries: Vec::new(),
            recording: false,
            exchanges: Vec::new(),
            members_unreadable: false,
            write_limits: Vec::new(),
            writes: HashMap::new(),
            secondary_refusals: 0,
        }
    }

    /// Count a write by `login` against the secondary limits; `Some(retry_after)` when it is
    /// over one of them (the write is refused and not counted).
    pub fn take_write(&mut self, login: &str) -> Option<Duration> {
        let longest = self.write_limits.iter().map(|(_, w)| *w).max()?;
        let now = std::time::Instant::now();
        let log = self.writes.entry(login.to_owned()).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            log.pop_front();
        }
        let retry = self
            .write_limits
            .iter()
            .filter_map(|&(max, window)| {
                let recent: Vec<_> = log
                    .iter()
                    .filter(|t| now.duration_since(**t) < window)
                    .collect();
                (max > 0 && recent.len() >= max as usize).then(|| {
                    let oldest = *recent[recent.len() - max as usize];
                    window.saturating_sub(now.duration_since(oldest))
                })
            })
            .max();
        if retry.is_some() {
            self.secondary_refusals += 1;
            return retry;
        }
        log.push_back(now);
        None
    }

    /// The live token `t` (an expired one is as unknown as a wrong one, as on GitHub).
    pub fn token(&self, t: &str) -> Option<&Token> {
        self.tokens.get(t).filter(|t| t.is_live())
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Add (or update the permission of) a user; returns its id.
    pub fn add_user(&mut self, login: &str, permission: Permission, bot: bool) -> u64 {
        if let Some(u) = self.users.get_mut(login) {
            u.permission = permission;
            return u.id;
        }
        let id = self.id();
        self.users.insert(
            login.to_owned(),
            User {
                id,
                bot,
                permission,
            },
        );
        id
    }

    pub fn user_id(&self, login: &str) -> u64 {
        self.users.get(login).map(|u| u.id).unwrap_or(0)
    }

    pub fn permission(&self, login: &str) -> Permission {
        self.users
            .get(login)
            .map(|u| u.permission)
            .unwrap_or(Permission::None)
    }

    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.repos.get(&(owner.to_owned(), name.to_owned()))
    }

    pub fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.repos.get_mut(&(owner.to_owned(), name.to_owned()))
    }

    /// Take the first fault matching `key` that is due, using one of its `times`. Matching
    /// faults still waiting (`after`) count this call. `git` calls (smart HTTP) only match
    /// faults that name a route, so a fault queued for "the next call" stays a REST fault.
    pub fn take_fault(&mut self, key: &str, git: bool) -> Option<FaultKind> {
        let mut due = None;
        for (i, f) in self.faults.iter_mut().enumerate() {
            let matches = match f.route.as_deref() {
                // `…$`: the whole key; otherwise any key containing it.
                Some(r) => match r.strip_suffix('$') {
                    Some(whole) => key == whole,
                    None => key.contains(r),
                },
                None => !git,
            };
            if !matches {
                continue;
            }
            if f.after > 0 {
                f.after -= 1;
            } else if due.is_none() {
                due = Some(i);
            }
        }
        let i = due?;
        let kind = self.faults[i].kind.clone();
        self.faults[i].times = self.faults[i].times.saturating_sub(1);
        if self.faults[i].times == 0 {
            self.faults.remove(i);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintain_and_triage_report_as_their_legacy_base_roles() {
        assert_eq!(Permission::Maintain.legacy(), "write");
        assert_eq!(Permission::Triage.legacy(), "read");
        assert_eq!(Permission::Admin.role_name(), "admin");
        assert_eq!(Permission::parse("push"), Some(Permission::Write));
    }

    #[test]
    fn a_fault_is_used_up_after_its_times_and_only_matches_its_route() {
        let mut st = State::new("baton[bot]");
        st.faults
            .push(Fault::server_error(502).times(2).on("/merge"));
        assert_eq!(
            st.take_fault("GET /repos/{owner}/{repo}/pulls", false),
            None
        );
        let merge = "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge";
        assert_eq!(
            st.take_fault(merge, false),
            Some(FaultKind::ServerError(502))
        );
        assert_eq!(
            st.take_fault(merge, false),
            Some(FaultKind::ServerError(502))
        );
        assert_eq!(st.take_fault(merge, false), None);
    }

    #[test]
    fn a_fault_with_after_lets_that_many_matching_calls_through_first() {
        let mut st = State::new("baton[bot]");
        st.faults
            .push(Fault::lost_response(500).on("/comments").after(2));
        let post = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";
        assert_eq!(
            st.take_fault("GET /repos/{owner}/{repo}/pulls", false),
            None
        );
        assert_eq!(st.take_fault(post, false), None);
        assert_eq!(st.take_fault(post, false), None);
        assert_eq!(
            st.take_fault(post, false),
            Some(FaultKind::LostResponse(500))
        );
        assert_eq!(st.take_fault(post, false), None);
    }

    #[test]
    fn git_calls_only_meet_faults_that_name_their_route() {
        let mut st = State::new("baton[bot]");
        st.faults.push(Fault::server_error(502));
        st.faults
            .push(Fault::lost_response(500).on("/git-receive-pack"));
        let push = "POST /{owner}/{repo}/git-receive-pack";
        assert_eq!(
            st.take_fault(push, true),
            Some(FaultKind::LostResponse(500))
        );
        assert_eq!(st.take_fault(push, true), None);
        assert_eq!(
            st.take_fault("GET /repos/{owner}/{repo}", false),
            Some(FaultKind::ServerError(502))
        );
    }

    #[test]
    fn the_primary_limit_runs_out_and_refills_after_its_window() {
        let mut r = RateLimit::new(2);
        assert!(r.take());
        assert!(r.take());
        assert!(!r.take());
        r.reset_at = Instant::now();
        assert!(r.take());
        assert_eq!(r.remaining, 1);
    }
}
