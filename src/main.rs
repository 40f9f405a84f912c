//! The `salesbot` binary: parse the command line, load configuration, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use salesbot::cli::{Cli, Command};
use salesbot::{config::Config, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing `.env` is normal in production; the process environment is enough.
    // Loaded before logging starts so that `RUST_LOG` may live in `.env` too.
    let _ = dotenvy::dotenv();
    telemetry::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("salesbot: {err}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    match salesbot::cli::run(command, config).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = %err, "salesbot stopped");
            eprintln!("salesbot: {err}");
            ExitCode::FAILURE
        }
    }
}
