//! `salesbot demo`: the whole product on this machine, with no account anywhere.
//!
//! Starts the sandbox (a stand-in for Meta and Shopify) and the real server configured to use
//! it through the URL settings, in a fresh `./demo-data`, then tells the story step by step:
//! shop connected, pages connected, a customer writes, the page answers, the page is renamed,
//! the nightly poll backfills older history, and the files that were written.

mod browser;
mod story;

pub use story::Summary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use secrecy::SecretString;

use crate::app::{Application, StartError};
use crate::config::{Config, ConfigError};
use crate::sandbox::world::Page;
use crate::sandbox::{AppCredentials, Sandbox, World};

/// Marks a folder as the demo's own, so that only such a folder is ever wiped.
const MARKER: &str = ".salesbot-demo";
pub(crate) const APP_SECRET: &str = "demo-facebook-app-secret";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub port: u16,
    pub data_dir: PathBuf,
    /// Exit after the story instead of serving for a try by hand.
    pub once: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} exists and was not made by the demo; choose another --data-dir or remove it")]
    ForeignFolder(PathBuf),
    #[error("cannot prepare {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the sandbox: {0}")]
    Sandbox(std::io::Error),
    #[error("demo configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("port {0} is taken; run the demo with --port <another>")]
    PortTaken(u16),
    #[error("the story stopped at \"{step}\": {reason}")]
    Step { step: &'static str, reason: String },
}

/// The demo's world: a shop, two pages, customers whose histories are longer than one page of
/// Graph results. Times are recent, so the story reads naturally.
pub fn world() -> World {
    let week_ago = crate::store::unix_now() - 7 * 24 * 3600;
    let mut demo = Page::new("100000000000101", "Demo Page", "EAA-demo-page-token-101")
        .with_conversation("7000000000001", 14, week_ago)
        .with_conversation("7000000000002", 9, week_ago + 3600)
        .with_conversation("7000000000003", 26, week_ago + 7200);
    demo.category = "Clothing store".into();
    let second = Page::new("100000000000202", "Demo Outlet", "EAA-demo-page-token-202")
        .with_conversation("7000000000004", 6, week_ago);
    World {
        pages: vec![demo, second],
        conversations_per_page: 2,
        messages_per_page: 5,
        ..World::default()
    }
}

/// The sandbox and the real server, running, configured for each other.
pub struct RunningDemo {
    pub addr: SocketAddr,
    pub sandbox: Sandbox,
    pub state: crate::state::AppState,
    /// This run's `ADMIN_TOKEN`, for `/status` and `/metrics` (random, shown to the user).
    pub admin_token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl RunningDemo {
    /// Stops the server the way Ctrl-C would, letting in-flight work finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Err(err)) = self.server.await {
            tracing::error!(error = %err, "demo server stopped with an error");
        }
    }
}

/// Prepares the folder and starts the sandbox and the server (the browser test uses this too).
pub async fn start(options: &DemoOptions) -> Result<RunningDemo, DemoError> {
    prepare_folder(&options.data_dir)?;
    let sandbox = Sandbox::start_with(
        world(),
        std::time::Duration::ZERO,
        AppCredentials::default(),
    )
    .await
    .map_err(DemoError::Sandbox)?;
    let admin_token = hex::encode(rand::random::<[u8; 16]>());
    let config = config(options, &sandbox, &admin_token)?;
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(StartError::Bind { .. }) => return Err(DemoError::PortTaken(options.port)),
        Err(err) => return Err(err.into()),
    };
    let addr = app.addr();
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Ok(RunningDemo {
        addr,
        sandbox,
        state,
        admin_token,
        stop,
        server,
    })
}

/// The whole demo: start, tell the story, then (unless `once`) serve until Ctrl-C.
pub async fn run(options: DemoOptions) -> Result<story::Summary, DemoError> {
    let demo = start(&options).await?;
    let result = story::tell(&demo.state, &demo.sandbox, demo.addr, &options.data_dir).await;
    if result.is_ok() && !options.once {
        println!(
            "\nThe server and the sandbox keep running. Try the flow yourself in a browser, in order:"
        );
        println!(
            "  1. http://{}/shopify/demo-store/login   connect the shop",
            demo.addr
        );
        println!(
            "  2. http://{}/facebook/login             then the pages, in the same browser",
            demo.addr
        );
        println!("     (the page step 1 ends on links to step 2)");
        println!(
            "  3. http://{}/status                     the operator's view (admin token: {})",
            demo.addr, demo.admin_token
        );
        println!("Press Ctrl-C to stop.");
        crate::app::shutdown_signal().await;
    }
    demo.stop().await;
    result
}

fn prepare_folder(dir: &Path) -> Result<(), DemoError> {
    let io = |source| DemoError::Folder {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(DemoError::ForeignFolder(dir.to_path_buf()));
        }
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join(MARKER),
        "made by `salesbot demo`; wiped at its next start\n",
    )
    .map_err(io)
}

fn config(
    options: &DemoOptions,
    sandbox: &Sandbox,
    admin_token: &str,
) -> Result<Config, DemoError> {
    let base = format!("http://127.0.0.1:{}", options.port);
    let data = options.data_dir.display().to_string();
    let key: [u8; 32] = rand::random();
    let credentials = AppCredentials::default();
    let pairs: Vec<(&str, String)> = vec![
        ("FACEBOOK_APP_ID", "100000000000001".into()),
        ("FACEBOOK_APP_SECRET", APP_SECRET.into()),
        ("FACEBOOK_REDIRECT_URI", format!("{base}/facebook/callback")),
        (
            "FACEBOOK_WEBHOOK_ADDRESS",
            format!("{base}/facebook/webhook"),
        ),
        ("FACEBOOK_VERIFY_TOKEN", "demo-verify-token".into()),
        ("SHOPIFY_API_KEY", credentials.shopify_api_key),
        ("SHOPIFY_API_SECRET", credentials.shopify_api_secret),
        ("SHOPIFY_REDIRECT_URI", format!("{base}/shopify/callback")),
        (
            "STATE_TOKEN_SECRET",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
        ),
        (
            "TOKEN_ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode(key),
        ),
        ("HOST", "127.0.0.1".into()),
        ("PORT", options.port.to_string()),
        ("TOKEN_DB_PATH", format!("{data}/data/tokens.db")),
        ("SESSION_DB_PATH", format!("{data}/data/sessions.db")),
        ("DATA_DIR", data),
        ("POLL_CRON", "off".into()),
        ("OAUTH_SELF_TEST", "true".into()),
        ("ADMIN_TOKEN", admin_token.into()),
        // The sandbox stands in for Meta's CDN too.
        ("ATTACHMENT_HOSTS", sandbox.url()),
        ("FACEBOOK_GRAPH_URL", sandbox.url()),
        ("FACEBOOK_DIALOG_URL", sandbox.url()),
        (
            "SHOPIFY_SHOP_URL",
            format!("{}/shops/{{shop}}", sandbox.url()),
        ),
    ];
    Ok(Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })?)
}

pub(crate) fn app_secret() -> SecretString {
    SecretString::from(APP_SECRET)
}

pub(crate) fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
