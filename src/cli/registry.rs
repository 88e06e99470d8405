//! `baton registry`: what the registries hold for each app, and how baton reaches them.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use std::path::PathBuf;

use super::{GlobalArgs, Output};

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

pub(super) fn run(global: &GlobalArgs, args: RegistryArgs) -> ExitCode {
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
