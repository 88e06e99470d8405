//! Bench: GitHub calls (and Git smart-HTTP requests) per promotion and per idle re-plan.
//!
//! Run: `cargo bench --bench promote` (optionally `-- 20` for another number of apps in the
//! busy scenarios, opening and idling with held PRs; default 10). Results: docs/performance.md.
//! `cargo bench --bench promote -- release [APPS] [SCALE]` runs only scenario 5: APPS (200)
//! releases at once under GitHub's secondary limits, their time base divided by SCALE (60).
//! Each scenario builds the promotion scenario tests' world (`baton_test_support::promote`: the
//! GitHub stand-in `sim::forge`, real HTTP, octocrab and git2 as in production, and the
//! project's example config repo), untimed, then counts and times only the passes it is named
//! for; median wall time of 5 runs. REST calls are counted by baton's client
//! (`GitHubForge::calls`: attempts, writes, `304`s) and cross-checked with the stand-in's
//! server-side count; Git requests come from the stand-in.
//!
//! "restart" builds a new engine (new GitHub client: no ETags, no permission cache) before
//! the pass, either on a new, empty workdir (a full clone) or on the workdir the previous
//! process left (a fetch); "running" is one engine kept across passes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton::engine::{Engine, Outcome};
use baton::forge::github::{CallStats, GitHubForge};
use baton::image::Digest;
use baton_test_support::example::example_files;
use baton_test_support::promote::{Workdir, World, merged, opened, waiting_on};

const RUNS: usize = 5;

/// How a measured pass gets its engine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A new process on an empty workdir: full clone, cold client.
    RestartNewWorkdir,
    /// A new process on the workdir the previous one left: fetch, cold client.
    RestartKeptWorkdir,
    /// One engine for every pass: warm ETag and permission caches, incremental fetch.
    Running,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::RestartNewWorkdir => "restart, new workdir",
            Self::RestartKeptWorkdir => "restart, kept workdir",
            Self::Running => "running engine",
        }
    }
}

/// Calls of the measured passes of one run.
#[derive(Default, Clone, PartialEq, Eq)]
struct Tally {
    /// Client side, by `METHOD /route`.
    rest: BTreeMap<String, u64>,
    not_modified: u64,
    retries: u64,
    /// Server side, REST only (a cross-check of `rest`).
    server_rest: u64,
    /// Server side, Git smart HTTP by `METHOD /route`.
    git: BTreeMap<String, u64>,
}

impl Tally {
    fn add_client(&mut self, s: &CallStats) {
        for (route, n) in &s.by_route {
            *self.rest.entry(route.clone()).or_default() += n;
        }
        self.not_modified += s.not_modified;
        self.retries += s.retries;
    }

    fn add_server(&mut self, calls: &BTreeMap<String, u64>) {
        for (route, n) in calls {
            if is_git(route) {
                *self.git.entry(route.clone()).or_default() += n;
            } else {
                self.server_rest += n;
            }
        }
    }

    fn total(&self) -> u64 {
        self.rest.values().sum()
    }

    fn writes(&self) -> u64 {
        self.rest
            .iter()
            .filter(|(k, _)| !k.starts_with("GET "))
            .map(|(_, n)| n)
            .sum()
    }

    fn git_total(&self) -> u64 {
        self.git.values().sum()
    }

    fn git_short(&self) -> String {
        let of = |suffix: &str| {
            self.git
                .iter()
                .filter(|(k, _)| k.ends_with(suffix))
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        format!(
            "{} ({} refs, {} upload, {} receive)",
            self.git_total(),
            of("/info/refs"),
            of("/git-upload-pack"),
            of("/git-receive-pack")
        )
    }
}

fn is_git(route: &str) -> bool {
    route.ends_with("/info/refs")
        || route.ends_with("/git-upload-pack")
        || route.ends_with("/git-receive-pack")
}

/// The example's two apps plus `svc01…` up to `apps` in all: each extra app is declared in the
/// pipeline and pinned in every environment's `images:` (the last block of each overlay).
fn extra_apps(apps: usize) -> Vec<String> {
    (1..=apps.saturating_sub(2))
        .map(|i| format!("svc{i:02}"))
        .collect()
}

/// The first `apps` app names of a world built for at least that many.
fn app_names(apps: usize) -> Vec<String> {
    let mut names = vec!["web".to_string(), "worker".to_string()];
    names.extend(extra_apps(apps));
    names.truncate(apps);
    names
}

fn with_apps(mut files: Vec<(String, String)>, extra: &[String]) -> Vec<(String, String)> {
    for (path, text) in &mut files {
        match path.as_str() {
            "policies/pipeline.yaml" => {
                let decl: String = extra
                    .iter()
                    .map(|a| {
                        format!(
                            "  {a}:\n    image: registry.example.com/shop/{a}\n    bless: {{ semver: \">=1.0.0\" }}\n"
                        )
                    })
                    .collect();
                assert!(text.contains("\napps:\n"), "{path} has no apps: block");
                *text = text.replacen("\napps:\n", &format!("\napps:\n{decl}"), 1);
            }
            p if p.starts_with("environments/") && p.ends_with("/kustomization.yaml") => {
                let prod = p.contains("/prod/");
                for a in extra {
                    let new_name = if prod {
                        format!("    newName: prod-registry.example.com/shop/{a}\n")
                    } else {
                        String::new()
                    };
                    text.push_str(&format!(
                        "  - name: registry.example.com/shop/{a}\n{new_name}    newTag: \"1.0.0\"\n    digest: {}\n",
                        Digest::of(format!("{a}:1.0.0").as_bytes())
                    ));
                }
            }
            _ => {}
        }
    }
    files
}

/// The example config repo with `apps` apps in all (see [`extra_apps`]).
async fn world(apps: usize) -> World {
    World::with_files(&with_apps(example_files(), &extra_apps(apps))).await
}

/// An unmeasured pass on a new engine over the kept workdir.
async fn pass(w: &mut World) -> Vec<Outcome> {
    w.pass_in(Workdir::Kept).await
}

/// A measured pass: its calls go into `tally`, its wall time is returned.
async fn measured(
    w: &mut World,
    mode: Mode,
    running: Option<&Engine<GitHubForge>>,
    tally: &mut Tally,
) -> (Vec<Outcome>, Duration) {
    w.forge.reset_calls();
    let start = Instant::now();
    let fresh;
    let engine = match (mode, running) {
        (Mode::Running, Some(e)) => e,
        (Mode::Running, None) => panic!("a running engine is needed"),
        (m, _) => {
            fresh = w.engine_in(if m == Mode::RestartNewWorkdir {
                Workdir::New
            } else {
                Workdir::Kept
            });
            &fresh
        }
    };
    engine.forge().reset_calls();
    let out = w.run(engine).await;
    let took = start.elapsed();
    tally.add_client(&engine.forge().calls());
    tally.add_server(&w.forge.calls());
    (out, took)
}

/// Unmeasured passes until one writes nothing (answers, status comments settle).
async fn settle(w: &mut World) {
    for _ in 0..4 {
        w.forge.reset_calls();
        pass(w).await;
        let writes = w
            .forge
            .calls()
            .iter()
            .filter(|(k, _)| !k.starts_with("GET ") && !is_git(k))
            .count();
        if writes == 0 {
            return;
        }
    }
    panic!("the world does not settle: {:?}", w.forge.calls());
}

/// Scenario 1: a new release to dev, open pass then merge pass.
async fn dev_promotion(mode: Mode) -> (Tally, Duration) {
    let mut w = world(2).await;
    w.release("web", "1.5.0");
    let running = (mode == Mode::Running).then(|| w.engine_in(Workdir::Kept));
    let mut tally = Tally::default();
    let (out, t1) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert_eq!(opened(&out, "dev"), 1, "{out:?}");
    let (out, t2) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert!(merged(&out, "dev"), "{out:?}");
    (tally, t1 + t2)
}

/// Scenario 1b: `apps` new releases at once: the pass that opens their dev PRs.
async fn dev_openings(mode: Mode, apps: usize) -> (Tally, Duration) {
    let mut w = world(apps).await;
    for a in app_names(apps) {
        w.release(&a, "1.5.0");
    }
    let running = (mode == Mode::Running).then(|| w.engine_in(Workdir::Kept));
    let mut tally = Tally::default();
    let (out, took) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert_eq!(opened(&out, "dev"), apps, "{out:?}");
    (tally, took)
}

/// Scenario 2: web walks dev → staging (unmeasured); then the prod PR's passes: the pass that
/// opens it, one after CI reports (gate table written, waiting for approvals), and one after two
/// team approvals and `/promote prod` (answer + merge).
async fn prod_promotion(mode: Mode) -> (Tally, Duration) {
    let mut w = world(2).await;
    let v = w.release("web", "1.5.0");
    pass(&mut w).await;
    pass(&mut w).await;
    w.healthy("dev", "web", &v, chrono::Duration::minutes(15));
    pass(&mut w).await;
    let staging = w.pr_for("staging", "web");
    w.validate_passes(&staging.head_sha);
    assert!(merged(&pass(&mut w).await, "staging"));
    w.healthy("staging", "web", &v, chrono::Duration::hours(2));

    let running = (mode == Mode::Running).then(|| w.engine_in(Workdir::Kept));
    let mut tally = Tally::default();
    let (out, t1) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert_eq!(opened(&out, "prod"), 1, "{out:?}");
    let prod = w.pr_for("prod", "web");
    w.validate_passes(&prod.head_sha);
    let (out, t2) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert!(waiting_on(&out, "approvals"), "{out:?}");
    w.team_approves(prod.number);
    w.comment("carol", prod.number, "/promote prod");
    let (out, t3) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert!(merged(&out, "prod"), "{out:?}");
    (tally, t1 + t2 + t3)
}

/// Scenarios 3 and 4: a re-plan with nothing changed. With `held` = 0, web 1.5.0 is already
/// merged to dev and nothing is open; otherwise each of `held` apps has an open dev PR held by
/// `/hold` (its command answered, its status comment written). The measured pass runs `later`
/// after the others.
async fn idle(mode: Mode, held: usize, later: chrono::Duration) -> (Tally, Duration) {
    let mut w = world(held.max(2)).await;
    if held == 0 {
        w.release("web", "1.5.0");
        pass(&mut w).await;
        assert!(merged(&pass(&mut w).await, "dev"));
    } else {
        for a in app_names(held) {
            w.release(&a, "1.5.0");
        }
        assert_eq!(opened(&pass(&mut w).await, "dev"), held);
        for p in w.open_prs() {
            w.comment("dev", p.number, "/hold benchmark");
        }
    }
    settle(&mut w).await;
    assert_eq!(w.open_prs().len(), held);

    let running = (mode == Mode::Running).then(|| w.engine_in(Workdir::Kept));
    if let Some(e) = &running {
        // What the previous passes of a long-running engine leave in its caches.
        w.run(e).await;
    }
    w.now += later;
    let mut tally = Tally::default();
    let (out, took) = measured(&mut w, mode, running.as_ref(), &mut tally).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Waiting { .. })),
        "{out:?}"
    );
    (tally, took)
}

/// Scenario 5: `apps` releases at once, against a stand-in enforcing GitHub's secondary limits
/// (80 writes a minute, 500 an hour) with baton pacing to the same limits, until every dev PR is
/// open and merged. The limits' time base is divided by `scale` on both sides (a minute lasts
/// `60/scale` s), so that hours of real pacing take minutes; the write counts and their order
/// are what they would be in real time. One run.
async fn release_under_limits(apps: usize, scale: u32) {
    let mut w = world(apps).await;
    let minute = Duration::from_secs(60) / scale;
    let hour = Duration::from_secs(3600) / scale;
    let limits = vec![(80, minute), (500, hour)];
    w.forge.set_write_limits(limits.clone());
    w.options.write_limits = limits;
    // A write may wait up to an (scaled) hour for its turn rather than give the pass up.
    w.options.max_rate_limit_wait = hour * 2;
    for a in app_names(apps) {
        w.release(&a, "1.5.0");
    }
    let engine = w.engine_in(Workdir::Kept);
    w.forge.reset_calls();
    let start = Instant::now();
    let (mut opened_n, mut merged_n, mut passes) = (0, 0, 0);
    while merged_n < apps {
        passes += 1;
        assert!(
            passes <= 20,
            "not done after 20 passes: {opened_n} opened, {merged_n} merged"
        );
        let out = engine
            .run_once(&w.releases, &w.deployments, w.now)
            .await
            .unwrap_or_else(|e| panic!("pass {passes}: {e}"));
        opened_n += opened(&out, "dev");
        merged_n += out
            .iter()
            .filter(|o| matches!(o, Outcome::Merged { env, .. } if env == "dev"))
            .count();
        eprintln!(
            "pass {passes}: {opened_n} opened, {merged_n} merged, {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let took = start.elapsed();
    let client = engine.forge().calls();
    let server = w.forge.calls();
    let server_rest: u64 = server
        .iter()
        .filter(|(k, _)| !is_git(k))
        .map(|(_, n)| n)
        .sum();
    let refusals = w.forge.secondary_refusals();
    println!(
        "| 5. {apps} releases at once → {apps} dev PRs opened and merged, limits 80/min + 500/h, time base ÷{scale} | {} | {} | {} | {} | {passes} passes | {:.1} s (= {:.1} min of GitHub time) | {refusals} secondary-limit refusals |",
        client.total(),
        client.writes(),
        client.not_modified,
        server_rest,
        took.as_secs_f64(),
        took.as_secs_f64() * f64::from(scale) / 60.0,
    );
    for (route, n) in &client.by_route {
        println!("  {n:>5}  {route}");
    }
    assert_eq!(refusals, 0, "GitHub refused writes for the secondary limit");
    assert_eq!(client.total(), server_rest, "client and stand-in disagree");
}

struct Row {
    scenario: String,
    tally: Tally,
    median: Duration,
}

async fn measure<F, Fut>(scenario: String, mut run: F) -> Row
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Tally, Duration)>,
{
    let mut times = Vec::new();
    let mut first: Option<Tally> = None;
    for _ in 0..RUNS {
        let (tally, took) = run().await;
        assert_eq!(
            tally.total(),
            tally.server_rest,
            "{scenario}: client and stand-in disagree on REST calls"
        );
        match &first {
            None => first = Some(tally),
            Some(f) if *f != tally => eprintln!("warning: {scenario}: calls differ between runs"),
            Some(_) => {}
        }
        times.push(took);
    }
    times.sort();
    let row = Row {
        scenario,
        tally: first.expect("at least one run"),
        median: times[times.len() / 2],
    };
    eprintln!("measured: {}", row.scenario);
    row
}

fn print(rows: &[Row]) {
    let w = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(0);
    println!(
        "| {:w$} | REST | writes | 304 | charged | Git requests | wall (median of {RUNS}) |",
        "scenario"
    );
    println!(
        "|{}|-----:|-------:|----:|--------:|--------------|---------:|",
        "-".repeat(w + 2)
    );
    for r in rows {
        let t = &r.tally;
        println!(
            "| {:w$} | {} | {} | {} | {} | {} | {:.1} ms |",
            r.scenario,
            t.total(),
            t.writes(),
            t.not_modified,
            t.total() - t.not_modified,
            t.git_short(),
            r.median.as_secs_f64() * 1000.0
        );
        if t.retries > 0 {
            println!("  ({} retries)", t.retries);
        }
    }
    println!();
    for r in rows {
        println!("{}:", r.scenario);
        for (route, n) in &r.tally.rest {
            println!("  {n:>4}  {route}");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "release") {
        // `-- release [APPS] [SCALE]`: scenario 5 alone.
        let mut numbers = args.iter().filter_map(|a| a.parse::<u32>().ok());
        let apps = numbers.next().unwrap_or(200) as usize;
        let scale = numbers.next().unwrap_or(60);
        release_under_limits(apps, scale).await;
        return;
    }
    let held: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10);
    let mut rows = Vec::new();
    for mode in [Mode::RestartNewWorkdir, Mode::Running] {
        rows.push(
            measure(
                format!("1. dev promotion, 2 passes ({})", mode.label()),
                || dev_promotion(mode),
            )
            .await,
        );
    }
    rows.push(
        measure(
            format!("1b. {held} new releases: the pass opening {held} dev PRs (running engine)"),
            || dev_openings(Mode::Running, held),
        )
        .await,
    );
    for mode in [Mode::RestartNewWorkdir, Mode::Running] {
        rows.push(
            measure(
                format!("2. prod promotion, 3 passes ({})", mode.label()),
                || prod_promotion(mode),
            )
            .await,
        );
    }
    for n in [0, held] {
        for mode in [
            Mode::RestartNewWorkdir,
            Mode::RestartKeptWorkdir,
            Mode::Running,
        ] {
            rows.push(
                measure(
                    format!("3/4. idle re-plan, {n} open PRs ({})", mode.label()),
                    || idle(mode, n, chrono::Duration::zero()),
                )
                .await,
            );
        }
    }
    rows.push(
        measure(
            format!("3b. idle re-plan, {held} open PRs, one hour later (running engine)"),
            || idle(Mode::Running, held, chrono::Duration::hours(1)),
        )
        .await,
    );
    print(&rows);
}
