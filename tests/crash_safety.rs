//! Crash safety (DESIGN: "restarting the bot at any moment must not duplicate a PR, a merge or a
//! comment"): a promotion is first run once without faults, counting the bot's write calls
//! (REST writes and Git pushes). Then, for every one of those writes, a fresh world runs the same
//! promotion where that write is applied on the server but its answer is lost
//! (`Fault::lost_response`): the pass fails right after the write, as if the bot had been
//! killed between the write and its reply; the engine is dropped and a brand-new one (new clone,
//! new client) carries on. At the end every run must have left exactly what the clean run left:
//! one PR per promotion, one merge, one status comment per PR, one answer per command, the same
//! promotion commits with the same trailers, the same labels.
//!
//! The bot's clients retry nothing here (`max_retries: 0`), so a lost answer ends the pass at
//! once instead of being repaired inside it: what is tested is the restart.

mod common;

use std::collections::BTreeMap;

use baton::config::Secret;
use baton::engine::{Engine, text};
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::gitrepo::trailers::Promotion;
use baton::image::Digest;
use baton::promote::plan::Release;
use baton::promote::state::{DeployState, Deployment};
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{example_files, git};
use sim::forge::{Fault, Forge, Permission, ReviewState};

const OWNER: &str = "shop";
const REPO: &str = "config";
const STATUS_MARKER: &str = "<!-- baton:status -->";
/// Passes one phase may take to settle (a crash costs one; a phase needs at most three).
const MAX_PASSES: usize = 8;

/// One write of the clean run: the `occurrence`-th call (from 0) of `route`.
#[derive(Debug, Clone)]
struct Step {
    route: String,
    occurrence: u32,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call #{} of `{}`", self.occurrence + 1, self.route)
    }
}

struct World {
    forge: Forge,
    dir: tempfile::TempDir,
    passes: usize,
    releases: BTreeMap<String, Release>,
    deployments: BTreeMap<(String, String), Deployment>,
    now: DateTime<Utc>,
}

impl World {
    async fn new() -> Self {
        let forge = Forge::start().await.unwrap();
        let files = example_files();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        forge
            .create_repo_with_files(OWNER, REPO, "main", &refs)
            .unwrap();
        for (login, perm) in [
            ("alice", Permission::Write),
            ("bob", Permission::Write),
            ("carol", Permission::Maintain),
            ("dev", Permission::Write),
            ("ci", Permission::Write),
        ] {
            forge.add_user(login, perm);
        }
        forge.add_team("shop", "release-managers", &["alice", "bob", "carol"]);
        Self {
            forge,
            dir: tempfile::tempdir().unwrap(),
            passes: 0,
            releases: BTreeMap::new(),
            deployments: BTreeMap::new(),
            // Tuesday 2026-11-24 10:00 in Berlin: inside prod's window, outside the freeze.
            now: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap(),
        }
    }

    /// A brand-new engine, as after a restart: a fresh clone and a fresh client that does not
    /// retry, so a lost answer ends the pass where it happened.
    fn engine(&mut self) -> Engine<GitHubForge> {
        self.passes += 1;
        let token = Secret::new(self.forge.bot_token());
        let repo = ConfigRepo::open(
            &self.dir.path().join(format!("clone-{}", self.passes)),
            Remote {
                url: self.forge.git_url(OWNER, REPO),
                branch: "main".into(),
                auth: Auth::Token(token.clone()),
            },
            Identity::default(),
        )
        .unwrap();
        let forge = GitHubForge::new(
            &self.forge.url(),
            "shop/config",
            GitHubAuth::Token(token),
            self.forge.bot_login(),
            GitHubOptions {
                max_retries: 0,
                ..GitHubOptions::default()
            },
        )
        .unwrap();
        Engine::new(forge, repo)
    }

    /// The bot's write calls so far, by route (a Git fetch is a POST to git-upload-pack but
    /// reads).
    fn writes(&self) -> BTreeMap<String, u64> {
        self.forge
            .calls()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GET ") && !k.ends_with("/git-upload-pack"))
            .collect()
    }

    /// Run passes, each with a new engine, until one succeeds without writing. A failed pass
    /// (the injected crash) is followed by a restart. Returns how many passes failed.
    async fn settle(&mut self, phase: &str) -> Result<usize, String> {
        let mut failed = 0;
        for _ in 0..MAX_PASSES {
            let before = self.writes();
            let engine = self.engine();
            let result = engine
                .run_once(&self.releases, &self.deployments, self.now)
                .await;
            drop(engine);
            match result {
                Ok(_) if self.writes() == before => return Ok(failed),
                Ok(_) => {}
                Err(_) => failed += 1,
            }
        }
        Err(format!(
            "{phase}: still writing after {MAX_PASSES} passes: {:?}",
            self.writes()
        ))
    }

    /// Run passes until a PR from `baton/<env>/<app>` is open (the next pass could merge it).
    async fn until_open(&mut self, env: &str, app: &str) -> Result<u64, String> {
        for _ in 0..MAX_PASSES {
            let engine = self.engine();
            let _ = engine
                .run_once(&self.releases, &self.deployments, self.now)
                .await;
            drop(engine);
            if let Some(n) = self.open_pr(env, app) {
                return Ok(n);
            }
        }
        Err(format!(
            "no PR for {env}/{app} opened after {MAX_PASSES} passes"
        ))
    }

    fn release(&mut self, app: &str, tag: &str) -> Digest {
        let digest = Digest::of(format!("{app}:{tag}").as_bytes());
        self.releases.insert(
            app.into(),
            Release {
                tag: Some(tag.into()),
                digest: digest.clone(),
            },
        );
        digest
    }

    fn healthy(&mut self, env: &str, app: &str, digest: &Digest, since: Duration) {
        self.deployments.insert(
            (env.into(), app.into()),
            Deployment {
                env: env.into(),
                app: app.into(),
                digest: digest.clone(),
                state: DeployState::Healthy,
                healthy_since: Some(self.now - since),
            },
        );
    }

    fn open_pr(&self, env: &str, app: &str) -> Option<u64> {
        let head = format!("baton/{env}/{app}");
        self.forge
            .pulls(OWNER, REPO)
            .into_iter()
            .find(|p| p.open && p.head_ref == head)
            .map(|p| p.number)
    }

    fn pass_checks(&self, env: &str, app: &str) -> Result<u64, String> {
        let head = format!("baton/{env}/{app}");
        let pr = self
            .forge
            .pulls(OWNER, REPO)
            .into_iter()
            .find(|p| p.open && p.head_ref == head)
            .ok_or_else(|| format!("no open PR for {head}"))?;
        self.forge
            .set_status_as(
                "ci",
                OWNER,
                REPO,
                &pr.head_sha,
                "baton/validate",
                "success",
            )
            .map_err(|e| e.to_string())?;
        Ok(pr.number)
    }

    /// What the run left behind, in a form two runs can be compared by.
    fn outcome(&self) -> Outcome {
        let bot = self.forge.bot_login();
        let mut prs = BTreeMap::new();
        for p in self.forge.pulls(OWNER, REPO) {
            let comments = self.forge.comments(OWNER, REPO, p.number);
            let mine: Vec<String> = comments
                .into_iter()
                .filter(|c| c.user == bot)
                .map(|c| c.body)
                .collect();
            let mut labels = p.labels.clone();
            labels.sort();
            prs.entry(p.head_ref.clone())
                .or_insert_with(Vec::new)
                .push(Pr {
                    number: p.number,
                    title: p.title,
                    open: p.open,
                    merged: p.merged,
                    labels,
                    status_comments: mine.iter().filter(|b| b.starts_with(STATUS_MARKER)).count(),
                    answers: mine
                        .iter()
                        .filter_map(|b| text::answered(b))
                        .collect(),
                    replies: mine
                        .iter()
                        .filter(|b| !b.starts_with(STATUS_MARKER))
                        .map(|b| without_markers(b))
                        .collect(),
                });
        }
        let log = git(
            &self.forge.repo_path(OWNER, REPO),
            &["log", "--format=%B%x00", "main"],
        );
        let promotions = log
            .split('\0')
            .filter_map(Promotion::parse)
            .collect::<Vec<_>>();
        Outcome { prs, promotions }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pr {
    number: u64,
    title: String,
    open: bool,
    merged: bool,
    labels: Vec<String>,
    status_comments: usize,
    /// The replies, without the hidden marker naming the command they answer.
    replies: Vec<String>,
    /// `(comment id, command index)` of each reply, from that marker.
    answers: Vec<(u64, usize)>,
}

fn without_markers(body: &str) -> String {
    body.lines()
        .filter(|l| !l.trim_start().starts_with("<!-- baton:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// By head branch, in PR number order.
    prs: BTreeMap<String, Vec<Pr>>,
    /// Promotion commits on the config branch, newest first.
    promotions: Vec<Promotion>,
}

impl Outcome {
    /// What is wrong with `self` on its own (duplicates), whatever the clean run did.
    fn duplicates(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (head, prs) in &self.prs {
            if prs.iter().filter(|p| p.open).count() > 1 {
                out.push(format!("{head}: more than one open PR: {prs:?}"));
            }
            for p in prs {
                if p.status_comments != 1 {
                    out.push(format!(
                        "#{} ({head}): {} status comments, expected one",
                        p.number, p.status_comments
                    ));
                }
                let mut seen = std::collections::BTreeSet::new();
                for a in &p.answers {
                    if !seen.insert(a) {
                        out.push(format!(
                            "#{} ({head}): command {}.{} answered twice: {:?}",
                            p.number, a.0, a.1, p.replies
                        ));
                    }
                }
                let mut seen = std::collections::BTreeSet::new();
                for r in &p.replies {
                    if !seen.insert(r) {
                        out.push(format!("#{} ({head}): the same answer twice: {r:?}", p.number));
                    }
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.promotions {
            if !seen.insert((&p.environment, &p.app, &p.to)) {
                out.push(format!("promotion commit twice: {p:?}"));
            }
        }
        out
    }

    /// How `self` differs from `clean`, named part by part.
    fn differences(&self, clean: &Outcome) -> Vec<String> {
        let mut out = self.duplicates();
        for head in clean.prs.keys().chain(self.prs.keys()) {
            let (a, b) = (clean.prs.get(head), self.prs.get(head));
            if a == b {
                continue;
            }
            let (a, b) = (a.cloned().unwrap_or_default(), b.cloned().unwrap_or_default());
            if a.len() != b.len() {
                out.push(format!(
                    "{head}: {} PRs, the clean run opened {}: {b:#?}",
                    b.len(),
                    a.len()
                ));
                continue;
            }
            for (x, y) in a.iter().zip(&b) {
                // Numbers of PRs and comments may differ (ids are not the point); everything
                // else must match.
                let y_renumbered = Pr {
                    number: x.number,
                    answers: x.answers.clone(),
                    ..y.clone()
                };
                if *x != y_renumbered {
                    out.push(format!(
                        "{head} #{}: differs from the clean run\n  clean: {x:?}\n  here:  {y:?}",
                        y.number
                    ));
                }
            }
        }
        out.dedup();
        if self.promotions != clean.promotions {
            out.push(format!(
                "promotion commits differ\n  clean: {:#?}\n  here:  {:#?}",
                clean.promotions, self.promotions
            ));
        }
        out
    }
}

/// Web 1.5.0 from dev (autoMerge) through staging (a required check) to prod (two team
/// approvals and `/promote prod`), then 1.6.0 to dev, held with `/hold` before it merges.
async fn promotion(w: &mut World) -> Result<(), String> {
    let v15 = w.release("web", "1.5.0");
    w.settle("dev: open and auto-merge").await?;

    w.healthy("dev", "web", &v15, Duration::minutes(15));
    w.settle("staging: open").await?;
    w.pass_checks("staging", "web")?;
    w.settle("staging: merge on a green check").await?;

    w.healthy("staging", "web", &v15, Duration::hours(2));
    w.settle("prod: open").await?;
    let prod = w.pass_checks("prod", "web")?;
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod, ReviewState::Approved, "")
            .map_err(|e| e.to_string())?;
    }
    w.settle("prod: approved, waiting for /promote").await?;
    w.forge
        .comment_as("carol", OWNER, REPO, prod, "/promote prod")
        .map_err(|e| e.to_string())?;
    w.settle("prod: /promote prod and merge").await?;

    w.release("web", "1.6.0");
    let dev = w.until_open("dev", "web").await?;
    w.forge
        .comment_as("dev", OWNER, REPO, dev, "/hold checking the migration")
        .map_err(|e| e.to_string())?;
    w.settle("dev: /hold").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_write_of_a_promotion_duplicates_nothing() {
    baton::tls::install_crypto_provider();
    let started = std::time::Instant::now();

    let mut clean = World::new().await;
    promotion(&mut clean).await.unwrap();
    let expected = clean.outcome();
    let problems = expected.duplicates();
    assert!(problems.is_empty(), "the clean run: {problems:#?}");
    assert_eq!(
        expected.promotions.len(),
        3,
        "dev, staging and prod: {expected:#?}"
    );
    let writes = clean.writes();
    for route in writes.keys() {
        let overlapping: Vec<_> = writes
            .keys()
            .filter(|k| *k != route && k.contains(route.as_str()))
            .collect();
        assert!(
            overlapping.is_empty(),
            "a fault on `{route}` would also hit {overlapping:?}; the steps would be ambiguous"
        );
    }
    for route in [
        "POST /{owner}/{repo}/git-receive-pack",
        "POST /repos/{owner}/{repo}/pulls",
        "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
    ] {
        assert!(writes.contains_key(route), "{route} not in {writes:#?}");
    }
    let steps: Vec<Step> = writes
        .iter()
        .flat_map(|(route, n)| {
            (0..*n as u32).map(|occurrence| Step {
                route: route.clone(),
                occurrence,
            })
        })
        .collect();
    eprintln!(
        "clean run: {} writes over {} routes in {:?}",
        steps.len(),
        writes.len(),
        started.elapsed()
    );

    // Every write when CRASH_ALL is set; otherwise (CI has two cores) the first and last
    // write of every route and every third write in between: each route at least once.
    let all = std::env::var_os("CRASH_ALL").is_some();
    let chosen: Vec<(usize, Step)> = steps
        .iter()
        .enumerate()
        .filter(|(k, step)| {
            all || k % 3 == 0
                || step.occurrence == 0
                || u64::from(step.occurrence) + 1 == writes[&step.route]
        })
        .map(|(k, step)| (k, step.clone()))
        .collect();
    let runs = std::sync::Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = tokio::task::JoinSet::new();
    for (k, step) in chosen.iter().cloned() {
        let runs = runs.clone();
        let expected = expected.clone();
        tasks.spawn(async move {
            let _slot = runs.acquire_owned().await.unwrap();
            crash_at(k, &step, &expected).await
        });
    }
    let mut failures: Vec<String> = Vec::new();
    while let Some(result) = tasks.join_next().await {
        failures.extend(result.unwrap());
    }
    failures.sort();
    eprintln!(
        "{} of {} crash points run in {:?}",
        chosen.len(),
        steps.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} problems at {} crash points:\n{}",
        failures.len(),
        chosen.len(),
        failures.join("\n")
    );
}

/// Run the promotion in a fresh world where write `step` is applied but its answer is lost;
/// what went wrong, each line naming the step.
async fn crash_at(k: usize, step: &Step, expected: &Outcome) -> Vec<String> {
    let what = format!("step {k} (lost answer to {step})");
    let mut w = World::new().await;
    w.forge.inject(
        Fault::lost_response(500)
            .on(step.route.clone())
            .after(step.occurrence),
    );
    if let Err(e) = promotion(&mut w).await {
        return vec![format!("{what}: {e}")];
    }
    let mut failures = Vec::new();
    // The fault fired: this run made the call as often as the clean run had before it.
    let made = w.forge.calls().get(&step.route).copied().unwrap_or(0);
    if made <= u64::from(step.occurrence) {
        failures.push(format!("{what}: the call was made only {made} times"));
    }
    let mut outcome = w.outcome();
    if step.route.ends_with("/merge") {
        // The merge stands but the bot died before writing "Merged" on the PR; the PR is
        // closed now, so passes no longer look at it. The rollout report adds the status
        // comment (`Engine::report_rollout` creates it when missing). Lost, not duplicated.
        for pr in outcome.prs.values_mut().flatten() {
            if pr.merged && pr.status_comments == 0 {
                pr.status_comments = 1;
            }
        }
    }
    for d in outcome.differences(expected) {
        failures.push(format!("{what}: {d}"));
    }
    failures
}
