//! Bench: GitHub calls (and Git smart-HTTP requests) per promotion and per idle re-plan.
//!
//! Run: `cargo bench --bench promote` (optionally `-- 20` for another number of apps in the
//! busy scenarios, opening and idling with held PRs; default 10). Results: docs/performance.md. Each scenario builds its world against
//! the GitHub stand-in (`sim::forge`, real HTTP, octocrab and git2 as in production) from the
//! project's example config repo, untimed, then counts and times only the passes it is named
//! for; median wall time of 5 runs. REST calls are counted by baton's client
//! (`GitHubForge::calls`: attempts, writes, `304`s) and cross-checked with the stand-in's
//! server-side count; Git requests come from the stand-in.
//!
//! "restart" builds a new engine (new GitHub client: no ETags, no permission cache) before
//! the pass, either on a new, empty workdir (a full clone) or on the workdir the previous
//! process left (a fetch); "running" is one engine kept across passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton::config::Secret;
use baton::engine::{Engine, Outcome};
use baton::forge::github::{CallStats, GitHubAuth, GitHubForge, GitHubOptions};
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::image::Digest;
use baton::promote::plan::Release;
use baton::promote::state::{DeployState, Deployment};
use chrono::{DateTime, TimeZone, Utc};
use sim::forge::{Forge, Permission, ReviewState};

const OWNER: &str = "shop";
const REPO: &str = "config";
const RUNS: usize = 5;
const EXAMPLE_DIRS: [&str; 4] = ["apps", "environments", "policies", "keys"];

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

/// Tuesday 2026-11-24 10:00 in Berlin: inside prod's window, outside the freeze.
fn tuesday_morning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_files() -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                let path = e.path();
                let rel = path.strip_prefix(root).unwrap();
                out.push((
                    rel.to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                ));
            }
        }
    }
    let root = project_root();
    let mut out = Vec::new();
    for d in EXAMPLE_DIRS {
        walk(&root, &root.join(d), &mut out);
    }
    out
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

struct World {
    forge: Forge,
    dir: tempfile::TempDir,
    workdirs: usize,
    releases: BTreeMap<String, Release>,
    deployments: BTreeMap<(String, String), Deployment>,
    now: DateTime<Utc>,
}

impl World {
    async fn new(apps: usize) -> Self {
        let forge = Forge::start().await.unwrap();
        let files = with_apps(example_files(), &extra_apps(apps));
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
            workdirs: 0,
            releases: BTreeMap::new(),
            deployments: BTreeMap::new(),
            now: tuesday_morning(),
        }
    }

    /// A new engine (as a new process): on a new workdir, or on the last one used.
    fn engine(&mut self, new_workdir: bool) -> Engine<GitHubForge> {
        if new_workdir || self.workdirs == 0 {
            self.workdirs += 1;
        }
        let token = Secret::new(self.forge.bot_token());
        let repo = ConfigRepo::open(
            &self.dir.path().join(format!("workdir-{}", self.workdirs)),
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
            &format!("{OWNER}/{REPO}"),
            GitHubAuth::Token(token),
            self.forge.bot_login(),
            GitHubOptions::default(),
        )
        .unwrap();
        Engine::new(forge, repo)
    }

    async fn run(&self, engine: &Engine<GitHubForge>) -> Vec<Outcome> {
        engine
            .run_once(&self.releases, &self.deployments, self.now)
            .await
            .unwrap()
    }

    /// An unmeasured pass on a new engine over the kept workdir.
    async fn pass(&mut self) -> Vec<Outcome> {
        let engine = self.engine(false);
        self.run(&engine).await
    }

    /// A measured pass: its calls go into `tally`, its wall time is returned.
    async fn measured(
        &mut self,
        mode: Mode,
        running: Option<&Engine<GitHubForge>>,
        tally: &mut Tally,
    ) -> (Vec<Outcome>, Duration) {
        self.forge.reset_calls();
        let start = Instant::now();
        let fresh;
        let engine = match (mode, running) {
            (Mode::Running, Some(e)) => e,
            (Mode::Running, None) => panic!("a running engine is needed"),
            (m, _) => {
                fresh = self.engine(m == Mode::RestartNewWorkdir);
                &fresh
            }
        };
        engine.forge().reset_calls();
        let out = self.run(engine).await;
        let took = start.elapsed();
        tally.add_client(&engine.forge().calls());
        tally.add_server(&self.forge.calls());
        (out, took)
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

    fn healthy(&mut self, env: &str, app: &str, digest: &Digest, since: chrono::Duration) {
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

    fn open_prs(&self) -> Vec<sim::forge::PullView> {
        self.forge
            .pulls(OWNER, REPO)
            .into_iter()
            .filter(|p| p.open)
            .collect()
    }

    fn pr_for(&self, env: &str, app: &str) -> sim::forge::PullView {
        let head = format!("baton/{env}/{app}");
        let prs: Vec<_> = self
            .open_prs()
            .into_iter()
            .filter(|p| p.head_ref == head)
            .collect();
        assert_eq!(prs.len(), 1, "one open PR for {head}: {prs:?}");
        prs.into_iter().next().unwrap()
    }

    fn ci_green(&self, sha: &str) {
        self.forge
            .set_status_as("ci", OWNER, REPO, sha, "baton/validate", "success")
            .unwrap();
    }

    /// Unmeasured passes until one writes nothing (answers, status comments settle).
    async fn settle(&mut self) {
        for _ in 0..4 {
            self.forge.reset_calls();
            self.pass().await;
            let writes = self
                .forge
                .calls()
                .iter()
                .filter(|(k, _)| !k.starts_with("GET ") && !is_git(k))
                .count();
            if writes == 0 {
                return;
            }
        }
        panic!("the world does not settle: {:?}", self.forge.calls());
    }
}

fn merged(out: &[Outcome], env: &str) -> bool {
    out.iter()
        .any(|o| matches!(o, Outcome::Merged { env: e, .. } if e == env))
}

fn opened(out: &[Outcome], env: &str) -> usize {
    out.iter()
        .filter(|o| matches!(o, Outcome::Opened { env: e, .. } if e == env))
        .count()
}

/// Scenario 1: a new release to dev, open pass then merge pass.
async fn dev_promotion(mode: Mode) -> (Tally, Duration) {
    let mut w = World::new(2).await;
    w.release("web", "1.5.0");
    let running = (mode == Mode::Running).then(|| w.engine(false));
    let mut tally = Tally::default();
    let (out, t1) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert_eq!(opened(&out, "dev"), 1, "{out:?}");
    let (out, t2) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert!(merged(&out, "dev"), "{out:?}");
    (tally, t1 + t2)
}

/// Scenario 1b: `apps` new releases at once: the pass that opens their dev PRs.
async fn dev_openings(mode: Mode, apps: usize) -> (Tally, Duration) {
    let mut w = World::new(apps).await;
    for a in app_names(apps) {
        w.release(&a, "1.5.0");
    }
    let running = (mode == Mode::Running).then(|| w.engine(false));
    let mut tally = Tally::default();
    let (out, took) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert_eq!(opened(&out, "dev"), apps, "{out:?}");
    (tally, took)
}

/// Scenario 2: web walks dev → staging (unmeasured); then the prod PR's passes: the pass that
/// opens it, one after CI reports (gate table written, waiting for approvals), and one after two
/// team approvals and `/promote prod` (answer + merge).
async fn prod_promotion(mode: Mode) -> (Tally, Duration) {
    let mut w = World::new(2).await;
    let v = w.release("web", "1.5.0");
    w.pass().await;
    w.pass().await;
    w.healthy("dev", "web", &v, chrono::Duration::minutes(15));
    w.pass().await;
    let staging = w.pr_for("staging", "web");
    w.ci_green(&staging.head_sha);
    assert!(merged(&w.pass().await, "staging"));
    w.healthy("staging", "web", &v, chrono::Duration::hours(2));

    let running = (mode == Mode::Running).then(|| w.engine(false));
    let mut tally = Tally::default();
    let (out, t1) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert_eq!(opened(&out, "prod"), 1, "{out:?}");
    let prod = w.pr_for("prod", "web");
    w.ci_green(&prod.head_sha);
    let (out, t2) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert!(
        out.iter().any(
            |o| matches!(o, Outcome::Waiting { blocking, .. } if blocking.starts_with("approvals"))
        ),
        "{out:?}"
    );
    for who in ["alice", "bob"] {
        w.forge
            .review_as(who, OWNER, REPO, prod.number, ReviewState::Approved, "")
            .unwrap();
    }
    w.forge
        .comment_as("carol", OWNER, REPO, prod.number, "/promote prod")
        .unwrap();
    let (out, t3) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert!(merged(&out, "prod"), "{out:?}");
    (tally, t1 + t2 + t3)
}

/// Scenarios 3 and 4: a re-plan with nothing changed. With `held` = 0, web 1.5.0 is already
/// merged to dev and nothing is open; otherwise each of `held` apps has an open dev PR held by
/// `/hold` (its command answered, its status comment written). The measured pass runs `later`
/// after the others.
async fn idle(mode: Mode, held: usize, later: chrono::Duration) -> (Tally, Duration) {
    let mut w = World::new(held.max(2)).await;
    if held == 0 {
        w.release("web", "1.5.0");
        w.pass().await;
        assert!(merged(&w.pass().await, "dev"));
    } else {
        for a in app_names(held) {
            w.release(&a, "1.5.0");
        }
        assert_eq!(opened(&w.pass().await, "dev"), held);
        for p in w.open_prs() {
            w.forge
                .comment_as("dev", OWNER, REPO, p.number, "/hold benchmark")
                .unwrap();
        }
    }
    w.settle().await;
    assert_eq!(w.open_prs().len(), held);

    let running = (mode == Mode::Running).then(|| w.engine(false));
    if let Some(e) = &running {
        // What the previous passes of a long-running engine leave in its caches.
        w.run(e).await;
    }
    w.now += later;
    let mut tally = Tally::default();
    let (out, took) = w.measured(mode, running.as_ref(), &mut tally).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Waiting { .. })),
        "{out:?}"
    );
    (tally, took)
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
    let held: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
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
