//! The command line: `salesbot [serve|poll|demo]`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "salesbot",
    version,
    about = "Data backend of a GPT sales bot on Facebook Messenger",
    long_about = "Connects a merchant's Shopify store and Facebook Pages (browser OAuth), keeps their \
tokens encrypted in SQLite, stores Meta's webhook events and polls each page's metadata and \
conversation history into JSON files under DATA_DIR/facebook/<page_id>/.\n\n\
Configuration comes from the environment and an optional .env file; see .env.example.",
    after_help = "Without a subcommand, `serve` runs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the HTTP server (OAuth, webhook, health) and the nightly poll schedule (POLL_CRON).
    Serve,
    /// Poll every connected page's metadata and conversations once now, then exit; the exit
    /// status is non-zero if any page failed.
    Poll,
    /// Run the whole product on this machine against a built-in stand-in for Meta and Shopify,
    /// with no account needed, narrating each step.
    Demo,
}

/// Runs one subcommand to completion.
pub async fn run(command: Command, config: Config) -> Result<ExitCode, crate::app::StartError> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until_stopped(crate::app::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Poll | Command::Demo => {
            let name = format!("{command:?}").to_lowercase();
            eprintln!("salesbot: `{name}` is not available in this version yet");
            Ok(ExitCode::from(3))
        }
    }
}
