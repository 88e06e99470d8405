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

use std::collections::BTreeMap;

use baton::engine::text;
use baton::forge::github::GitHubOptions;
use baton::gitrepo::trailers::Promotion;
use baton_test_support::promote::{OWNER, REPO, STATUS_MARKER, World, grouped_example};
use chrono::Duration;
use sim::forge::{Fault, ReviewState};

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

/// What is promoted, and how.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// web through every environment, then a hold and a rollback ([`promotion`]).
    App,
    /// the group shop (web and worker) in one PR per environment ([`group_promotion`]).
    Group,
}

impl Scenario {
    async fn run(self, w: &mut World) -> Result<(), String> {
        match self {
            Self::App => promotion(w).await,
            Self::Group => group_promotion(w).await,
        }
    }
}

/// A world whose engines' clients retry nothing, so a lost answer ends the pass where it
/// happened.
async fn world(scenario: Scenario) -> World {
    let mut w = match scenario {
        Scenario::App => World::new().await,
        Scenario::Group => World::with_files(&grouped_example()).await,
    };
    w.options = GitHubOptions {
        max_retries: 0,
        ..GitHubOptions::default()
    };
    w
}

/// Run passes, each with a new engine, until one succeeds without writing. A failed pass
/// (the injected crash) is followed by a restart. Returns how many passes failed.
async fn settle(w: &mut World, phase: &str) -> Result<usize, String> {
    let mut failed = 0;
    for _ in 0..MAX_PASSES {
        let before = w.write_calls();
        let engine = w.engine();
        // What the service does once when it starts, then its promotion pass.
        let result = match engine.answer_recently_closed(10).await {
            Ok(_) => engine.run_once(&w.releases, &w.deployments, w.now).await,
            Err(e) => Err(e),
        };
        drop(engine);
        match result {
            Ok(_) if w.write_calls() == before => return Ok(failed),
            Ok(_) => {}
            Err(_) => failed += 1,
        }
    }
    Err(format!(
        "{phase}: still writing after {MAX_PASSES} passes: {:?}",
        w.write_calls()
    ))
}

/// Run passes until a PR from `baton/<env>/<app>` is open (the next pass could merge it).
async fn until_open(w: &mut World, env: &str, app: &str) -> Result<u64, String> {
    let head = format!("baton/{env}/{app}");
    for _ in 0..MAX_PASSES {
        let engine = w.engine();
        if engine.answer_recently_closed(10).await.is_ok() {
            let _ = engine.run_once(&w.releases, &w.deployments, w.now).await;
        }
        drop(engine);
        if let Some(p) = w.open_prs_from(&head).first() {
            return Ok(p.number);
        }
    }
    Err(format!("no PR from {head} after {MAX_PASSES} passes"))
}

/// CI reports the required check `baton/validate` green on the open PR of `app` to `env`.
fn pass_checks(w: &World, env: &str, app: &str) -> Result<u64, String> {
    let head = format!("baton/{env}/{app}");
    let pr = w
        .open_prs_from(&head)
        .into_iter()
        .next()
        .ok_or_else(|| format!("no open PR from {head}"))?;
    w.forge
        .set_status_as("ci", OWNER, REPO, &pr.head_sha, "baton/validate", "success")
        .map_err(|e| e.to_string())?;
    Ok(pr.number)
}

/// What the run left behind, in a form two runs can be compared by.
fn outcome(w: &World) -> Outcome {
    let mut prs = BTreeMap::new();
    for p in w.forge.pulls(OWNER, REPO) {
        let mine = w.bot_comments(p.number);
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
                answers: mine.iter().filter_map(|b| text::answered(b)).collect(),
                replies: mine
                    .iter()
                    .filter(|b| !b.starts_with(STATUS_MARKER))
                    .map(|b| without_markers(b))
                    .collect(),
            });
    }
    Outcome {
        prs,
        promotions: w.promotions(),
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

/// A reply without its hidden markers. A `/rollback` whose bot died after opening the
/// rollback PR and before answering is answered, once, with "A rollback of … is already open:
/// #N" instead of "Rolling back … #N restores …"; both read as the same answer here.
fn without_markers(body: &str) -> String {
    let text = body
        .lines()
        .filter(|l| !l.trim_start().starts_with("<!-- baton:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string();
    let rollback = text
        .strip_prefix("Rolling back ")
        .and_then(|r| r.split_once(": #"))
        .or_else(|| {
            text.strip_prefix("A rollback of ")
                .and_then(|r| r.split_once(" is already open: #"))
        });
    match rollback {
        Some((what, rest)) => {
            let pr: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("(rollback of {what}: #{pr})")
        }
        None => text,
    }
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
                        out.push(format!(
                            "#{} ({head}): the same answer twice: {r:?}",
                            p.number
                        ));
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
            let (a, b) = (
                a.cloned().unwrap_or_default(),
                b.cloned().unwrap_or_default(),
            );
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
/// approvals and `/promote prod`), then 1.6.0 to dev, held with `/hold` before it merges, and
/// `/rollback dev` there: the held PR is closed, a rollback to 1.4.0 opens and merges, and
/// 1.6.0 comes back in a new PR.
async fn promotion(w: &mut World) -> Result<(), String> {
    let v15 = w.release("web", "1.5.0");
    settle(w, "dev: open and auto-merge").await?;

    w.healthy("dev", "web", &v15, Duration::minutes(15));
    settle(w, "staging: open").await?;
    pass_checks(w, "staging", "web")?;
    settle(w, "staging: merge on a green check").await?;

    w.healthy("staging", "web", &v15, Duration::hours(2));
    settle(w, "prod: open").await?;
    let prod = pass_checks(w, "prod", "web")?;
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod, ReviewState::Approved, "")
            .map_err(|e| e.to_string())?;
    }
    settle(w, "prod: approved, waiting for /promote").await?;
    w.forge
        .comment_as("carol", OWNER, REPO, prod, "/promote prod")
        .map_err(|e| e.to_string())?;
    settle(w, "prod: /promote prod and merge").await?;

    w.release("web", "1.6.0");
    let dev = until_open(w, "dev", "web").await?;
    w.forge
        .comment_as("dev", OWNER, REPO, dev, "/hold checking the migration")
        .map_err(|e| e.to_string())?;
    settle(w, "dev: /hold").await?;
    w.forge
        .comment_as("alice", OWNER, REPO, dev, "/rollback dev")
        .map_err(|e| e.to_string())?;
    settle(
        w,
        "dev: /rollback closes the held PR, opens and merges a rollback, 1.6.0 comes back",
    )
    .await?;
    Ok(())
}

/// web and worker in group shop through dev (autoMerge) and staging (a required check), then
/// web 1.6.0 to dev, held with `/hold`, and `/rollback dev` there: the held group PR is closed,
/// one rollback restores both members, and web 1.6.0 comes back alone (worker's release is
/// held).
async fn group_promotion(w: &mut World) -> Result<(), String> {
    let web = w.release("web", "1.5.0");
    let worker = w.release("worker", "release-2.2.0");
    settle(w, "dev: open the group's PR and auto-merge").await?;

    w.healthy("dev", "web", &web, Duration::minutes(15));
    w.healthy("dev", "worker", &worker, Duration::minutes(15));
    settle(w, "staging: open the group's PR").await?;
    pass_checks(w, "staging", "shop")?;
    settle(w, "staging: merge the group on a green check").await?;

    w.release("web", "1.6.0");
    let dev = until_open(w, "dev", "shop").await?;
    w.forge
        .comment_as("dev", OWNER, REPO, dev, "/hold checking the migration")
        .map_err(|e| e.to_string())?;
    settle(w, "dev: /hold on the group's PR").await?;
    w.forge
        .comment_as("alice", OWNER, REPO, dev, "/rollback dev")
        .map_err(|e| e.to_string())?;
    settle(
        w,
        "dev: /rollback closes the held group PR, rolls back both members, web 1.6.0 comes back",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_write_of_a_promotion_duplicates_nothing() {
    crash_everywhere(
        Scenario::App,
        5,
        "dev, staging, prod, the rollback in dev and 1.6.0 in dev again",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_write_of_a_group_promotion_duplicates_nothing() {
    crash_everywhere(
        Scenario::Group,
        7,
        "two apps in dev and in staging, the rollback of both in dev, web 1.6.0 in dev",
    )
    .await;
}

/// Run `scenario` clean, expecting `promotions` recorded (`what`), then once per chosen write
/// with that write's answer lost, and compare.
async fn crash_everywhere(scenario: Scenario, promotions: usize, what: &str) {
    let started = std::time::Instant::now();

    let mut clean = world(scenario).await;
    scenario.run(&mut clean).await.unwrap();
    let expected = outcome(&clean);
    let problems = expected.duplicates();
    assert!(problems.is_empty(), "the clean run: {problems:#?}");
    assert_eq!(
        expected.promotions.len(),
        promotions,
        "{what}: {expected:#?}"
    );
    let writes = clean.write_calls();
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

    // Every write when CRASH_ALL is set (45 runs, about two minutes); otherwise (CI has two
    // cores) the first and the last write of every route: each route at least once, in the
    // first promotion and in the last phase that uses it.
    let all = std::env::var_os("CRASH_ALL").is_some();
    let chosen: Vec<(usize, Step)> = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| {
            all || step.occurrence == 0 || u64::from(step.occurrence) + 1 == writes[&step.route]
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
            crash_at(scenario, k, &step, &expected).await
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
async fn crash_at(scenario: Scenario, k: usize, step: &Step, expected: &Outcome) -> Vec<String> {
    let what = format!("step {k} (lost answer to {step})");
    let mut w = world(scenario).await;
    w.forge.inject(
        Fault::lost_response(500)
            .on(format!("{}$", step.route))
            .after(step.occurrence),
    );
    if let Err(e) = scenario.run(&mut w).await {
        return vec![format!("{what}: {e}")];
    }
    let mut failures = Vec::new();
    // The fault fired: this run made the call as often as the clean run had before it.
    let made = w.forge.calls().get(&step.route).copied().unwrap_or(0);
    if made <= u64::from(step.occurrence) {
        failures.push(format!("{what}: the call was made only {made} times"));
    }
    let mut found = outcome(&w);
    if step.route.ends_with("/merge") {
        // The merge stands but the bot died before writing "Merged" on the PR; the PR is
        // closed now, so passes no longer look at it. The rollout report adds the status
        // comment (`Engine::report_rollout` creates it when missing). Lost, not duplicated.
        for pr in found.prs.values_mut().flatten() {
            if pr.merged && pr.status_comments == 0 {
                pr.status_comments = 1;
            }
        }
    }
    for d in found.differences(expected) {
        failures.push(format!("{what}: {d}"));
    }
    failures
}
