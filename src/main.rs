//! The `salesbot` binary: parse the command line, start logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use salesbot::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing `.env` is normal in production; the process environment is enough.
    // Loaded before logging starts so that `RUST_LOG` may live in `.env` too.
    let _ = dotenvy::dotenv();
    salesbot::telemetry::init(cli.default_log_filter());
    salesbot::cli::run(cli).await
}
