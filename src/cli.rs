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
pub enum Command {}

/// Run a parsed command line; the exit code follows the convention 0 = success,
/// 1 = the command ran and found a problem, 2 = usage error.
pub fn run(cli: Cli) -> ExitCode {
    logging::init(cli.global.log_format);
    match cli.command {}
}
