//! Tracing initialisation: human-readable text on a terminal, JSON lines for log collectors.
//! The filter comes from `RUST_LOG` (default `info` for baton, `warn` for everything else).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber. Calling it twice is harmless (the second call is ignored),
/// so tests that run the CLI in-process can call it freely.
pub fn init(format: LogFormat) {
    init_with_default(format, "warn,baton=info,baton_sim=info")
}

/// [`init`] with another filter when `RUST_LOG` is unset (e.g. `warn` while the sandbox
/// tells its story on stdout).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
