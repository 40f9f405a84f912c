//! The command line: `salesbot [serve|poll|status|rekey|migrate|erase|import-legacy|demo]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::Config;
use crate::config::env_file::{self, EnvFileError};
use crate::demo::{self, DemoOptions};
use crate::store::StoreError;
use crate::telemetry;

mod data;
use data::{erase, import_legacy, migrate, rekey};

#[derive(Debug, Parser)]
#[command(
    name = "salesbot",
    version,
    about = "Data backend of a GPT sales bot on Facebook Messenger",
    long_about = "Connects a merchant's Shopify store and Facebook Pages (browser OAuth), keeps their \
tokens encrypted in SQLite, stores Meta's webhook events and polls each page's metadata and \
conversation history into JSON files under DATA_DIR/facebook/<page_id>/.\n\n\
Configuration comes from the environment and an optional .env file; see .env.example. \
`salesbot demo` needs no configuration at all.",
    after_help = "Without a subcommand, `serve` runs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the HTTP server (OAuth, webhook, health; metrics and status with ADMIN_TOKEN), the
    /// nightly poll schedule (POLL_CRON), the attachment downloads and the daily Shopify token
    /// sweep.
    Serve,
    /// Poll every connected page's metadata and conversations once now, then exit; the exit
    /// status is non-zero if any page failed.
    Poll,
    /// Print every shop and page: connected since, last and next poll, webhook subscription,
    /// whether re-authorisation is needed, conversation and message counts, attachments
    /// pending (the same as GET /status). Never a token. `--json` for the JSON.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-seal every stored token under TOKEN_ENCRYPTION_KEY, opening them with it or with
    /// TOKEN_ENCRYPTION_KEY_PREVIOUS; says how many. Afterwards the previous keys can go.
    Rekey,
    /// Copy this install between the embedded backend (TOKEN_DB_PATH, DATA_DIR) and PostgreSQL
    /// (DATABASE_URL, STORAGE_URL), idempotently. Stop every `salesbot serve` first.
    Migrate {
        /// Where the data goes: `postgres` (from the SQLite files and DATA_DIR) or `files`
        /// (back from PostgreSQL).
        #[arg(long, value_enum)]
        to: crate::migrate::Direction,
    },
    /// Erase one customer of a page on request: their conversation, attachments and queued
    /// downloads, wherever this install keeps them (files, or the database and the bucket),
    /// and say what was removed. What Meta still serves from before now is not stored again;
    /// what the customer writes afterwards is. Safe beside a running server.
    Erase {
        /// The page (its numeric id).
        #[arg(long, value_parser = crate::domain::PageId::parse)]
        page: crate::domain::PageId,
        /// The customer: their page-scoped id (PSID), as in conversations/<psid>.json.
        #[arg(long, value_parser = crate::domain::SenderId::parse)]
        customer: crate::domain::SenderId,
    },
    /// Move in from the Python original: its shops, pages (tokens and owners) and, with
    /// --data-dir, its facebook/ tree (conversations deduplicated, metadata without tokens).
    /// The original's STATE_TOKEN_SECRET goes in LEGACY_STATE_TOKEN_SECRET. Its files are only
    /// read; what is here already is kept; a second run changes nothing.
    ImportLegacy {
        /// The original's tokens.db.
        #[arg(long, value_name = "PATH")]
        tokens_db: PathBuf,
        /// The original's sessions.db: sessions younger than an hour are adopted, so a
        /// merchant in the middle of connecting goes on; older ones are left.
        #[arg(long, value_name = "PATH")]
        sessions_db: Option<PathBuf>,
        /// The folder holding the original's facebook/ tree (not DATA_DIR itself).
        #[arg(long, value_name = "PATH")]
        data_dir: Option<PathBuf>,
        /// Say what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the whole product on this machine against a built-in stand-in for Meta and Shopify,
    /// with no account needed, narrating each step.
    Demo {
        /// Exit after the story instead of serving for a try by hand.
        #[arg(long)]
        once: bool,
        /// Port of the demo server (its OAuth redirect URIs use it, so it cannot be 0).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Folder for the demo's databases and files; wiped at each start (only if the demo made it).
        #[arg(long, default_value = "./demo-data")]
        data_dir: PathBuf,
    },
}

impl Cli {
    /// The log level when `RUST_LOG` is unset: the demo's story reads better without info logs.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Some(Command::Demo { .. }) => "warn",
            _ => "info",
        }
    }
}

/// Runs one subcommand to completion; the process exit code. `env_file` is what loading `.env`
/// gave: a file with a bad line stops `serve` and `poll` (exit 2); the demo, which needs no
/// configuration, only says it went without it.
pub async fn run(cli: Cli, env_file: Result<env_file::Loaded, EnvFileError>) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match load_config(env_file) {
            Ok(config) => serve(config).await,
            Err(code) => return code,
        },
        Command::Poll => match load_config(env_file) {
            Ok(config) => poll(config).await,
            Err(code) => return code,
        },
        Command::Rekey => match load_config(env_file) {
            Ok(config) => rekey(config).await,
            Err(code) => return code,
        },
        Command::Status { json } => match load_config(env_file) {
            Ok(config) => status(config, json).await,
            Err(code) => return code,
        },
        Command::Migrate { to } => match load_config(env_file) {
            Ok(config) => migrate(config, to).await,
            Err(code) => return code,
        },
        Command::Erase { page, customer } => match load_config(env_file) {
            Ok(config) => erase(config, &page, &customer).await,
            Err(code) => return code,
        },
        Command::ImportLegacy {
            tokens_db,
            sessions_db,
            data_dir,
            dry_run,
        } => {
            let Some(secret) = std::env::var("LEGACY_STATE_TOKEN_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
            else {
                eprintln!(
                    "salesbot: LEGACY_STATE_TOKEN_SECRET is not set: give it the original's \
                     STATE_TOKEN_SECRET (its stored tokens are sealed under a key derived from it)"
                );
                return ExitCode::from(2);
            };
            let options = crate::legacy::ImportOptions {
                tokens_db,
                sessions_db,
                data_dir,
                dry_run,
                secret: secret.into(),
            };
            match load_config(env_file) {
                Ok(config) => import_legacy(config, options).await,
                Err(code) => return code,
            }
        }
        Command::Demo {
            once,
            port,
            data_dir,
        } => {
            if let Err(err) = env_file {
                eprintln!("salesbot: warning: {err}; the demo needs none of it");
            }
            demo::run(DemoOptions {
                port,
                data_dir,
                once,
            })
            .await
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string())
        }
    };
    result.unwrap_or_else(|err| {
        // Once, on stderr where the log goes too: a second copy as a log line said nothing new.
        telemetry::flush();
        eprintln!("salesbot: {err}");
        ExitCode::FAILURE
    })
}

/// The environment's configuration, or exit code 2 with every problem named.
fn load_config(env_file: Result<env_file::Loaded, EnvFileError>) -> Result<Config, ExitCode> {
    let config = env_file
        .map_err(|err| err.to_string())
        .and_then(|_| Config::from_env().map_err(|err| err.to_string()));
    config.map_err(|err| {
        telemetry::flush();
        eprintln!("salesbot: {err}");
        ExitCode::from(2)
    })
}

async fn serve(config: Config) -> Result<ExitCode, String> {
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(crate::app::StartError::Store(err @ StoreError::Undecryptable { .. })) => {
            return Ok(wrong_key(&err));
        }
        Err(err) => return Err(err.to_string()),
    };
    app.run_until_stopped(crate::app::shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// A stored token that no configured key opens: a configuration problem (exit 2), with what
/// to do about it.
fn wrong_key(err: &StoreError) -> ExitCode {
    telemetry::flush();
    eprintln!(
        "salesbot: {err}\n  TOKEN_ENCRYPTION_KEY is not the key the tokens were sealed with: set it \
         back, or name the old key in TOKEN_ENCRYPTION_KEY_PREVIOUS (then `salesbot rekey`)"
    );
    ExitCode::from(2)
}

/// `salesbot status`: the status view as tables (or JSON).
async fn status(config: Config, json: bool) -> Result<ExitCode, String> {
    use crate::admin::status;
    let state = crate::app::build_state(config)
        .await
        .map_err(|e| e.to_string())?;
    let report = status::gather(&state).await.map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain data serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let attachments = report
        .attachments_pending
        .map_or_else(|| "off".to_string(), |n| n.to_string());
    println!(
        "next poll: {}; attachments pending: {attachments}\n",
        status::when(report.next_poll)
    );
    println!("shops ({})", report.shops.len());
    print!(
        "{}",
        status::text_table(status::SHOP_HEADERS, &status::shop_rows(&report))
    );
    println!("\npages ({})", report.pages.len());
    print!(
        "{}",
        status::text_table(status::PAGE_HEADERS, &status::page_rows(&report))
    );
    Ok(ExitCode::SUCCESS)
}

/// `salesbot poll`: one poll now, a line per page, non-zero exit if any page failed.
async fn poll(config: Config) -> Result<ExitCode, String> {
    let state = crate::app::build_state(config)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = state.poller.poll_once().await.map_err(|e| e.to_string())?;
    // With PostgreSQL, what the poll stored reaches the bot's tree now, server running or not.
    if let Some(publisher) = &state.publisher {
        let published = publisher.publish_all().await.map_err(|e| e.to_string())?;
        tracing::info!(conversations = published, "published what the poll stored");
    }
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
