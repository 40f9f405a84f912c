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
        Command::Poll => poll(config).await,
        Command::Demo => {
            let name = format!("{command:?}").to_lowercase();
            eprintln!("salesbot: `{name}` is not available in this version yet");
            Ok(ExitCode::from(3))
        }
    }
}

/// `salesbot poll`: one poll now, a line per page, non-zero exit if any page failed.
async fn poll(config: Config) -> Result<ExitCode, crate::app::StartError> {
    let state = crate::app::build_state(config)?;
    let outcome = match state.poller.poll_once().await {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("salesbot: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for page in &outcome.pages {
        match &page.result {
            Ok(r) => println!(
                "page {}: ok, {} conversations, {} new messages, {} Graph calls{}",
                page.page,
                r.conversations,
                r.new_messages,
                r.graph_calls,
                if r.resubscribed {
                    ", webhook subscription restored"
                } else {
                    ""
                }
            ),
            Err(f) if f.needs_reauth => {
                println!("page {}: NEEDS RE-AUTHORISATION: {}", page.page, f.reason)
            }
            Err(f) => println!("page {}: FAILED: {}", page.page, f.reason),
        }
    }
    println!("{}", outcome.summary());
    Ok(if outcome.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
