#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    baton::tls::install_crypto_provider();
    let cli = baton::cli::Cli::parse();
    baton::cli::run(cli)
}
