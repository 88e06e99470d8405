//! `baton dora`: wiring only (history from the checkout, facts from the registry and GitHub
//! when a runtime config is given, the report from `crate::dora`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{GlobalArgs, Output, parse_since};

#[derive(Debug, Args)]
pub struct DoraArgs {
    /// Only this environment.
    #[arg(long = "env")]
    pub env: Option<String>,
    /// Only this app.
    #[arg(long)]
    pub app: Option<String>,
    /// Start of the window: a date (2026-11-01), a time (RFC 3339) or an age (7d, 12h).
    #[arg(long, value_name = "WHEN", default_value = "30d")]
    pub since: String,
    /// Read history from this revision instead of HEAD (e.g. origin/main).
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// A runtime config (baton.yaml): read image metadata from the registries and source
    /// commits and verification statuses from GitHub with its credentials.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub fn run(global: &GlobalArgs, args: &DoraArgs) -> anyhow::Result<ExitCode> {
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
    let now = chrono::Utc::now();
    let since = parse_since(&args.since, now)?;
    let pipeline = crate::config::Pipeline::load(&global.repo)?.pipeline;
    if let Some(app) = args.app.as_deref().filter(|a| pipeline.app(a).is_none()) {
        anyhow::bail!(
            "unknown app {app:?}; the pipeline defines: {}",
            pipeline.app_names().join(", ")
        );
    }
    if let Some(env) = args
        .env
        .as_deref()
        .filter(|e| pipeline.environment(e).is_none())
    {
        anyhow::bail!(
            "unknown environment {env:?}; the pipeline defines: {}",
            pipeline.environment_names().join(", ")
        );
    }
    let entries = history::read(&repo, start, &Default::default())?;
    let facts = match &args.config {
        None => crate::dora::Facts::default(),
        Some(path) => {
            let cfg = crate::config::RuntimeConfig::load(path, std::env::vars())?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let (scanner, github) = crate::dora::gather::clients(&cfg).await?;
                    let host = crate::dora::gather::web_host(&cfg);
                    anyhow::Ok(
                        crate::dora::gather(
                            &entries,
                            &pipeline,
                            &scanner,
                            github.as_ref(),
                            &host,
                            since,
                        )
                        .await,
                    )
                })?
        }
    };
    let window = crate::dora::Window {
        since,
        until: now,
        env: args.env.clone(),
        app: args.app.clone(),
    };
    let envs: Vec<String> = pipeline
        .environment_names()
        .into_iter()
        .map(String::from)
        .collect();
    let report = crate::dora::compute(&entries, &envs, &facts, &window);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            print!("{}", crate::dora::table(&report));
            if args.config.is_none() {
                println!(
                    "lead times need image metadata: pass --config baton.yaml to read the registries and GitHub"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
