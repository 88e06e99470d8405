//! The command-line surface. Each subcommand parses its arguments here and calls into the
//! library; no decisions are made in this module.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::{self, LogFormat};

mod dora;
mod registry;
mod review;

pub use registry::{RegistryAccessArgs, RegistryArgs, RegistryCommand, RegistryScanArgs};

/// baton: promote blessed image digests through environments by pull request, and apply the
/// merged state to Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "baton", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A checkout of the config repo (holds environments/ and policies/).
    #[arg(
        long,
        global = true,
        default_value = ".",
        env = "BATON_REPO",
        value_name = "DIR"
    )]
    pub repo: PathBuf,

    /// How log lines on stderr are written.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "BATON_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Output format for commands that print records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policies/pipeline.yaml against the repo: schema, environment chain, windows,
    /// overlay directories, and that every app is pinned by digest in every environment; for
    /// an environment with `allow:`, that it renders nothing outside its namespaces and kinds.
    ///
    /// Exit status: 0 when valid, 1 when problems were found, 2 on usage errors.
    Validate(ValidateArgs),

    /// Pin an app to a digest in one environment, changing only the image line(s).
    ///
    /// Edits the environment's kustomization `images:` entry (adding it if missing), or the
    /// values file / manifest the app's `pin:` names. Prints a unified diff; `--write`
    /// applies it (atomically: the file is replaced whole or not at all).
    Bump(BumpArgs),

    /// Every promotion recorded in the config repo, newest first.
    ///
    /// Reads the first-parent log of the checkout's current branch (or --rev) and the
    /// Baton-* trailers of merge and squash commits: time, environment, app, tag, from → to
    /// digest, approvers, promoter and pull request. Needs nothing but Git.
    History(HistoryArgs),

    /// The four DORA metrics per environment and app, from the audit log in Git.
    ///
    /// Deployment frequency, lead time for changes, change failure rate and time to restore,
    /// each with its DORA band, computed from the Baton-* trailers on the first-parent log
    /// (definitions: docs/dora.md). With --config, also reads each image's metadata from its
    /// registry and its source commit from GitHub (lead time), and the `baton/<env>/verify`
    /// statuses (failed verifications); without it, lead times are unknown.
    Dora(dora::DoraArgs),

    /// Read the OCI registries of the pipeline's apps.
    Registry(RegistryArgs),

    /// Show what the promotion engine would do now, and why, without doing anything.
    ///
    /// Fetches the config repo, scans the registries for each app's newest blessed digest,
    /// reads open promotion PRs from GitHub, and prints the planned actions (open, update,
    /// close, merge, wait) with each PR's gate evaluation. Needs a runtime config
    /// (baton.yaml). What each environment runs and since when it has been healthy (soak)
    /// comes from the state the running bot keeps in its home cluster (ConfigMaps
    /// `baton-state-<env>`), so the verdicts match the bot's own.
    Plan(PlanArgs),

    /// Render an environment (or any kustomization directory) the way `kubectl kustomize`
    /// would, with baton's built-in renderer.
    ///
    /// The argument is a directory relative to --repo when one exists there; otherwise an
    /// environment name from policies/pipeline.yaml (its `path`, default
    /// `environments/<name>`). Prints a YAML stream (or a JSON `List` with -o json).
    /// Exit status: 0 when rendered, 1 when the tree does not render, 2 on usage errors.
    Render(RenderArgs),

    /// Run the bot: webhook and status server, registry watcher, promotion engine, and one
    /// reconciler per cluster, until SIGTERM or Ctrl-C.
    ///
    /// Needs a runtime config (baton.yaml: the config repo, GitHub credentials, clusters).
    /// Serves /webhooks/github, /webhooks/registry, /healthz, /readyz, /metrics and the
    /// status page on `listen`. On SIGTERM it finishes the promotion step in flight and stops.
    Run(RunArgs),

    /// Try baton with no GitHub token and no cluster: start local stand-ins for GitHub, a
    /// Kubernetes API server and an OCI registry, seed a config repo from the example, and
    /// run the bot against them.
    ///
    /// Prints the URLs of the status page and of the stand-in's pull requests. With --demo,
    /// plays a release through dev, staging and prod (approvals and /promote prod included),
    /// rolls back a broken one, prints the history, and exits: 0 when the story completed,
    /// 1 with the step that failed otherwise. Without --demo, runs until Ctrl-C.
    Sandbox(SandboxArgs),

    /// Run the `baton/validate` check on the open pull requests to the config branch now (or
    /// on one), as the bot does: validate and render every environment at each head, post the
    /// commit status and the one summary comment. Heads already checked are skipped.
    ///
    /// Needs a runtime config (baton.yaml). Exit status: 0 when every checked head passed,
    /// 1 when one failed or could not be checked, 2 on usage errors.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The runtime config.
    #[arg(
        long,
        env = "BATON_CONFIG",
        default_value = "baton.yaml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Elect a leader among replicas on a Kubernetes Lease; only the leader acts and reports
    /// ready. The Lease lives in the cluster marked `inCluster: true` (else the first one).
    #[arg(long, env = "BATON_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,
    /// The Lease's name.
    #[arg(long, env = "BATON_LEASE_NAME", default_value = "baton-leader")]
    pub lease_name: String,
    /// The Lease's namespace (default: that cluster's `namespace` in baton.yaml).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a dead leader's lease blocks the others (whole seconds).
    #[arg(long, env = "BATON_LEASE_DURATION", default_value = "15s")]
    pub lease_duration: crate::config::HumanDuration,
    /// This replica's identity among the candidates (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Play the release story, then exit.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: after the story, keep everything running (the status page shows its
    /// pipeline, history and DORA tiles) until Ctrl-C or SIGTERM; the exit status still says
    /// whether the story completed. `scripts/screenshot` uses it.
    #[arg(long, requires = "demo")]
    pub stay: bool,
    /// Where baton listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The soak of staging and prod in the sandbox (the example says 10m and 1h).
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub soak: crate::config::HumanDuration,
    /// Keep the sandbox's files (config repo, baton.yaml, workdir) in this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Run a real Kubernetes control plane (etcd, kube-apiserver, controller-manager,
    /// scheduler, kwok) from this directory of binaries instead of the stand-in; build it with
    /// `scripts/kube-assets`, which prints the directory. Needs nothing else: no Docker, no
    /// kubelet, no root.
    #[arg(long, env = "BATON_KUBE_ASSETS", value_name = "DIR")]
    pub kube_assets: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The runtime config.
    #[arg(
        long,
        env = "BATON_CONFIG",
        default_value = "baton.yaml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Only this pull request.
    #[arg(long, value_name = "N")]
    pub pr: Option<u64>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output of `baton render`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum RenderOutput {
    /// A YAML stream, byte-compatible with `kubectl kustomize`.
    #[default]
    Yaml,
    /// A JSON `v1/List`.
    Json,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// An environment name, or a kustomization directory relative to --repo.
    #[arg(value_name = "ENV | PATH")]
    pub target: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = RenderOutput::Yaml)]
    pub output: RenderOutput,
    /// Inflate `helmCharts` by running helm (like `kubectl kustomize --enable-helm`); also
    /// on when the runtime config given with --config says `render: { helm: true }`.
    #[arg(long)]
    pub enable_helm: bool,
    /// The helm binary (default: `render.helmCommand` from --config, else `helm` on PATH).
    #[arg(long, env = "BATON_HELM_COMMAND", value_name = "PATH")]
    pub helm_command: Option<PathBuf>,
    /// A runtime config whose `render:` settings apply (optional).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Instead of the objects, print every field of one object with the file, patch,
    /// generator, replacement or transformer that last changed it.
    #[arg(long, value_name = "KIND/[NAMESPACE/]NAME")]
    pub explain: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The runtime config.
    #[arg(
        long,
        env = "BATON_CONFIG",
        default_value = "baton.yaml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// Evaluate gates as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Only this environment.
    #[arg(long = "env")]
    pub env: Option<String>,
    /// Only promotions since a date (2026-11-01), a time (RFC 3339) or an age (7d, 12h).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Start from this revision instead of HEAD (e.g. origin/main).
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// At most this many entries.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct BumpArgs {
    /// Environment name from policies/pipeline.yaml.
    pub env: String,
    /// App name from policies/pipeline.yaml.
    pub app: String,
    /// `sha256:<64 hex>` or `<tag>@sha256:<64 hex>`.
    #[arg(value_name = "DIGEST | TAG@DIGEST")]
    pub pin: String,
    /// Write the change instead of only printing the diff.
    #[arg(long)]
    pub write: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Also check the environments against the clusters of this runtime config: each
    /// environment's cluster is defined, and under `scope: namespaces` it renders no
    /// cluster-scoped objects and nothing outside the cluster's `namespaces`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Exit status for "ran, and found a problem".
pub const EXIT_PROBLEM: u8 = 1;

/// Run a parsed command line; the exit code follows the convention 0 = success,
/// 1 = the command ran and found a problem, 2 = usage error.
pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        // The demo's story is the output; logs only for problems (RUST_LOG overrides).
        Command::Sandbox(a) if a.demo => logging::init_with_default(cli.global.log_format, "warn"),
        _ => logging::init(cli.global.log_format),
    }
    let result = match cli.command {
        Command::Validate(args) => validate(&cli.global, &args),
        Command::Bump(args) => bump(&cli.global, &args),
        Command::History(args) => history(&cli.global, &args),
        Command::Dora(args) => dora::run(&cli.global, &args),
        Command::Plan(args) => review::plan(&args),
        Command::Registry(args) => Ok(registry::run(&cli.global, args)),
        Command::Render(args) => render(&cli.global, &args),
        Command::Run(args) => run_service(&args),
        Command::Sandbox(args) => sandbox(&args),
        Command::Check(args) => review::check(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(EXIT_PROBLEM)
        }
    }
}

fn validate(global: &GlobalArgs, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut diagnostics = crate::config::validate::validate_repo(&global.repo);
    if diagnostics.is_empty()
        && let Ok(loaded) = crate::config::Pipeline::load(&global.repo)
    {
        diagnostics.extend(crate::reconcile::scope::check_allowed(
            &global.repo,
            &loaded.pipeline,
        ));
    }
    if let Some(path) = &args.config {
        let runtime = crate::config::RuntimeConfig::load(path, std::env::vars())?;
        if let Ok(loaded) = crate::config::Pipeline::load(&global.repo) {
            diagnostics.extend(crate::reconcile::scope::check_environments(
                &global.repo,
                &loaded.pipeline,
                &runtime,
                &path.display().to_string(),
            ));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let known: Vec<&str> = loaded
                .pipeline
                .environments
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            diagnostics.extend(crate::config::notify::check_environments(
                &runtime.notify,
                &known,
                &path.display().to_string(),
                crate::yaml::parse(&text).ok().as_ref(),
            ));
        }
    }
    let valid = diagnostics.is_empty();
    match args.output {
        Output::Json => {
            let out = serde_json::json!({ "valid": valid, "diagnostics": diagnostics });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Table => {
            for d in &diagnostics {
                println!("error: {d}");
            }
            if valid {
                let loaded = crate::config::Pipeline::load(&global.repo)?;
                let p = &loaded.pipeline;
                let order: Vec<_> = p
                    .promotion_order()
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect();
                println!(
                    "ok: {} is valid: {} app(s) ({}), environments {}",
                    crate::config::pipeline::PIPELINE_FILE,
                    p.apps.len(),
                    p.app_names().join(", "),
                    order.join(" → ")
                );
            } else {
                println!("{} problem(s) found", diagnostics.len());
            }
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    })
}

/// Load the pipeline, turning a load failure into a located one-paragraph error.
fn load_pipeline(global: &GlobalArgs) -> anyhow::Result<crate::config::LoadedPipeline> {
    crate::config::Pipeline::load(&global.repo).map_err(|e| match e {
        crate::config::pipeline::LoadError::Read { .. } => {
            anyhow::anyhow!(
                "{e} (is --repo {} a config repo checkout?)",
                global.repo.display()
            )
        }
        crate::config::pipeline::LoadError::Invalid(d) => {
            anyhow::anyhow!("{d}\n(run `baton validate` for every problem)")
        }
    })
}

fn bump(global: &GlobalArgs, args: &BumpArgs) -> anyhow::Result<ExitCode> {
    let pinned: crate::image::Pinned = args
        .pin
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}; pass sha256:<64 hex> or <tag>@sha256:<64 hex>"))?;
    let loaded = load_pipeline(global)?;
    let change = crate::gitrepo::bump::plan(
        &crate::gitrepo::files::FsFiles(&global.repo),
        &loaded.pipeline,
        &args.env,
        &args.app,
        &pinned,
    )?;
    if change.is_noop() {
        println!(
            "{} already pins {} to {pinned} in {}; nothing to change",
            change.path, args.app, args.env
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", change.unified_diff());
    if args.write {
        change.write(&global.repo)?;
        eprintln!("wrote {}", change.path);
    } else {
        eprintln!("(dry run: pass --write to apply)");
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn run_service(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::RuntimeConfig::load(&args.config, std::env::vars())?;
    let leader = args.leader_election.then(|| crate::service::LeaderOptions {
        lease_name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: args.identity.clone().unwrap_or_else(host_name),
        lease_duration: args.lease_duration.0,
    });
    runtime()?.block_on(async {
        let service = crate::service::Service::start(
            cfg,
            crate::service::RunOptions {
                leader,
                ..Default::default()
            },
        )
        .await?;
        eprintln!("baton listening on http://{}", service.local_addr());
        match service.run(shutdown_signal()).await {
            crate::service::Exit::Shutdown => anyhow::Ok(ExitCode::SUCCESS),
        }
    })
}

/// The host name (a pod's name in Kubernetes), for the lease identity.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("baton-{}", std::process::id()))
}

fn sandbox(args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    use crate::sandbox::{Sandbox, SandboxOptions, demo};
    let options = SandboxOptions {
        listen: args.listen,
        soak: args.soak.0,
        dir: args.dir.clone(),
        kube_assets: args.kube_assets.clone(),
    };
    runtime()?.block_on(async {
        let sb = Sandbox::start(&options).await?;
        let service = sb
            .start_baton(crate::service::RunOptions::sandbox())
            .await?;
        let addr = service.local_addr();
        println!("baton sandbox");
        println!("  status page       http://{addr}/");
        println!("  metrics           http://{addr}/metrics");
        println!("  pull requests     {}", sb.pulls_url());
        println!(
            "  config repo       {}",
            sb.forge
                .git_url(crate::sandbox::OWNER, crate::sandbox::REPO)
        );
        println!(
            "  registry          http://{}/v2/_catalog",
            sb.registry.host()
        );
        println!(
            "  kubernetes API    {} ({})",
            sb.cluster.url(),
            if sb.cluster.is_real() {
                "real control plane"
            } else {
                "stand-in"
            }
        );
        println!("  baton.yaml        {}", sb.config_file.display());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(service.run(async {
            let _ = stop_rx.await;
        }));
        let code = if args.demo {
            println!();
            let code = match demo::run(&sb, std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            };
            if args.stay {
                println!("\nstill running (--stay): status page http://{addr}/; Ctrl-C stops");
                shutdown_signal().await;
            }
            code
        } else {
            println!(
                "\nrunning; push an image with the registry API or comment on a PR; Ctrl-C stops"
            );
            shutdown_signal().await;
            ExitCode::SUCCESS
        };
        let _ = stop_tx.send(());
        let _ = running.await;
        anyhow::Ok(code)
    })
}

/// `2026-11-01`, an RFC 3339 time, or an age such as `7d` counted back from now.
pub(crate) fn parse_since(
    s: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(chrono::Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN)));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(age) = s.parse::<crate::config::HumanDuration>() {
        return Ok(now - chrono::Duration::from_std(age.0)?);
    }
    anyhow::bail!("--since {s:?}: write a date (2026-11-01), an RFC 3339 time, or an age (7d, 12h)")
}

fn history(global: &GlobalArgs, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    use crate::gitrepo::history;
    let repo = git2::Repository::discover(&global.repo).map_err(|e| {
        anyhow::anyhow!(
            "{} is not inside a Git repository ({}); pass --repo with a config repo checkout",
            global.repo.display(),
            e.message()
        )
    })?;
    let start = repo
        .revparse_single(&args.rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| anyhow::anyhow!("--rev {}: {}", args.rev, e.message()))?
        .id();
    let filter = history::Filter {
        app: args.app.clone(),
        environment: args.env.clone(),
        since: args
            .since
            .as_deref()
            .map(|s| parse_since(s, chrono::Utc::now()))
            .transpose()?,
        limit: args.limit,
    };
    let entries = history::read(&repo, start, &filter)?;
    if entries.is_empty() {
        // A typo in --app/--env should not look like "no promotions yet".
        if let Ok(loaded) = crate::config::Pipeline::load(&global.repo) {
            let p = &loaded.pipeline;
            if let Some(app) = args.app.as_deref().filter(|a| p.app(a).is_none()) {
                anyhow::bail!(
                    "unknown app {app:?}; the pipeline defines: {}",
                    p.app_names().join(", ")
                );
            }
            if let Some(env) = args.env.as_deref().filter(|e| p.environment(e).is_none()) {
                anyhow::bail!(
                    "unknown environment {env:?}; the pipeline defines: {}",
                    p.environment_names().join(", ")
                );
            }
        }
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        Output::Table if entries.is_empty() => {
            println!("no promotions recorded (no commits with Baton-* trailers)")
        }
        Output::Table => print!("{}", history::table(&entries)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The directory `baton render <target>` renders: `target` itself when it is a directory
/// under the repo, else the path the pipeline gives that environment, else
/// `environments/<target>`.
fn render_dir(repo: &std::path::Path, target: &str) -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from(target);
    if repo.join(&direct).is_dir() {
        return Ok(direct);
    }
    let pipeline = crate::config::Pipeline::load(repo).ok();
    let from_pipeline = pipeline
        .as_ref()
        .and_then(|l| l.pipeline.environment(target))
        .map(|e| e.path());
    let dir = from_pipeline.unwrap_or_else(|| PathBuf::from("environments").join(target));
    if repo.join(&dir).is_dir() {
        return Ok(dir);
    }
    let known = pipeline
        .map(|l| l.pipeline.environment_names().join(", "))
        .filter(|s| !s.is_empty())
        .map(|s| format!(" (environments in the pipeline: {s})"))
        .unwrap_or_default();
    anyhow::bail!(
        "{target:?} is neither a directory under {} nor an environment with a directory ({} does not exist){known}",
        repo.display(),
        dir.display()
    )
}

fn render(global: &GlobalArgs, args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let dir = render_dir(&global.repo, &args.target)?;
    let mut settings = match &args.config {
        Some(path) => crate::config::RuntimeConfig::load(path, std::env::vars())?.render,
        None => crate::config::runtime::RenderSettings::default(),
    };
    settings.helm |= args.enable_helm;
    if args.helm_command.is_some() {
        settings.helm_command = args.helm_command.clone();
    }
    let options = crate::render::Options {
        helm: settings.helm_binary(),
        explain: false,
    };
    if let Some(what) = &args.explain {
        return explain(global, &dir, &options, what);
    }
    let (objects, warnings) = crate::render::render_with(&global.repo, &dir, &options)?;
    for w in warnings {
        eprintln!("{w}");
    }
    let text = match args.output {
        RenderOutput::Yaml => crate::render::to_yaml_stream(&objects),
        RenderOutput::Json => {
            serde_json::to_string_pretty(&crate::render::to_json_list(&objects))? + "\n"
        }
    };
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A closed pipe (`baton render prod | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `baton render --explain KIND/[NAMESPACE/]NAME`.
fn explain(
    global: &GlobalArgs,
    dir: &Path,
    options: &crate::render::Options,
    what: &str,
) -> anyhow::Result<ExitCode> {
    let parts: Vec<&str> = what.split('/').collect();
    let (kind, namespace, name) = match parts.as_slice() {
        [kind, name] => (*kind, None, *name),
        [kind, ns, name] => (*kind, Some(*ns), *name),
        _ => anyhow::bail!("--explain takes KIND/NAME or KIND/NAMESPACE/NAME, not {what:?}"),
    };
    let (id, fields) = crate::render::explain(&global.repo, dir, options, kind, namespace, name)?;
    let width = fields
        .iter()
        .map(|f| f.path.len() + f.value.chars().count().min(40) + 2)
        .max()
        .unwrap_or(0);
    let mut out = format!("{id}\n");
    for f in &fields {
        let mut value: String = f.value.chars().take(40).collect();
        if f.value.chars().count() > 40 {
            value.push('…');
        }
        let value = value.replace('\n', "\\n");
        let left = format!("{}: {value}", f.path);
        let pad = width.saturating_sub(left.chars().count());
        out.push_str(&format!("  {left}{}  ← {}\n", " ".repeat(pad), f.source));
    }
    use std::io::Write;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes on one line, skipping a cause whose text the message before it
/// already contains (many errors here print their source themselves).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn error_text_does_not_repeat_a_cause_already_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(crate::config::runtime::RuntimeConfigError::Read {
            path: "b.yaml".into(),
            source: io,
        });
        assert_eq!(error_text(&e), "cannot read b.yaml: no such file");
        let wrapped = anyhow::anyhow!("outer").context("context");
        assert_eq!(error_text(&wrapped), "context: outer");
    }

    #[test]
    fn since_accepts_dates_times_and_ages() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .unwrap();
        assert_eq!(
            parse_since("2026-11-01", now).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-01T10:00:00+02:00", now).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("7d", now).unwrap(),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 14, 12, 0, 0)
                .unwrap()
        );
        assert!(parse_since("last week", now).is_err());
    }
}
