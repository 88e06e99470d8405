//! The command-line surface. Each subcommand parses its arguments here and calls into the
//! library; no decisions are made in this module.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::{self, LogFormat};

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
    /// Read the OCI registries of the pipeline's apps.
    Registry(RegistryArgs),
}

/// Run a parsed command line; the exit code follows the convention 0 = success,
/// 1 = the command ran and found a problem, 2 = usage error.
pub fn run(cli: Cli) -> ExitCode {
    logging::init(cli.global.log_format);
    match cli.command {
        Command::Registry(args) => registry(&cli.global, args),
    }
}

/// How baton reaches registries.
#[derive(Debug, Args)]
pub struct RegistryAccessArgs {
    /// A Docker `config.json` whose `auths` hold registry credentials (default:
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, when present).
    #[arg(long, global = true, env = "BATON_DOCKER_CONFIG", value_name = "FILE")]
    pub docker_config: Option<PathBuf>,

    /// A YAML map of registry host to credentials, e.g.
    /// `registry.example.com: {username: ci, password: {env: REGISTRY_PASSWORD}}`.
    #[arg(
        long,
        global = true,
        env = "BATON_REGISTRY_CREDENTIALS",
        value_name = "FILE"
    )]
    pub registry_credentials: Option<PathBuf>,

    /// Registry hosts reached over plain HTTP (loopback registries always are).
    #[arg(
        long = "plain-http",
        global = true,
        env = "BATON_PLAIN_HTTP_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub plain_http: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub access: RegistryAccessArgs,

    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Per app: the blessed tags, their digests, creation times and signature status, and
    /// the newest.
    Scan(RegistryScanArgs),
}

#[derive(Debug, Args)]
pub struct RegistryScanArgs {
    /// Only this app.
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,

    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Also say why each rejected tag was rejected.
    #[arg(long)]
    pub explain: bool,
}

fn registry(global: &GlobalArgs, args: RegistryArgs) -> ExitCode {
    use crate::config::Pipeline;
    use crate::registry::{self, ClientOptions, Detail, RegistryClient, ScanOptions, Scanner};

    let RegistryCommand::Scan(scan) = args.command;
    let loaded = match Pipeline::load(&global.repo) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let pipeline = loaded.pipeline;
    if let Some(app) = &scan.app
        && pipeline.app(app).is_none()
    {
        eprintln!(
            "error: no app `{app}` in {}; apps: {}",
            loaded.file,
            pipeline.app_names().join(", ")
        );
        return ExitCode::from(2);
    }
    let credentials = match registry_credentials(&args.access) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let client = RegistryClient::new(
        credentials,
        ClientOptions {
            plain_http: args.access.plain_http.clone(),
            ..ClientOptions::default()
        },
    );
    let scanner = Scanner::new(
        client,
        ScanOptions {
            detail: Detail::Full,
            ..ScanOptions::default()
        },
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let results =
        runtime.block_on(scanner.scan_pipeline(&pipeline, &global.repo, scan.app.as_deref()));
    let text = match scan.output {
        Output::Table => registry::report::render_table(&results, scan.explain),
        Output::Json => format!(
            "{:#}\n",
            registry::report::render_json(&results, scan.explain, &scanner.client().stats())
        ),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    tracing::debug!(requests = %scanner.client().stats(), "registry scan done");
    if results.iter().any(Result::is_err) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn registry_credentials(
    access: &RegistryAccessArgs,
) -> anyhow::Result<crate::registry::CredentialStore> {
    use crate::registry::CredentialStore;
    use crate::registry::auth::CredentialConfig;
    use anyhow::Context as _;

    let mut store = match &access.registry_credentials {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let entries: indexmap::IndexMap<String, CredentialConfig> = yaml_serde::from_str(&text)
                .with_context(|| {
                    format!("{}: not a map of registry credentials", path.display())
                })?;
            CredentialStore::from_config(&entries)
                .with_context(|| format!("credentials in {}", path.display()))?
        }
        None => CredentialStore::new(),
    };
    let docker = access
        .docker_config
        .clone()
        .or_else(|| CredentialStore::default_docker_config().filter(|p| p.exists()));
    if let Some(path) = docker {
        store.merge_docker_config(&path)?;
    }
    Ok(store)
}
