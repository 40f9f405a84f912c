//! `spawn_app()`: the real server on 127.0.0.1 with a random port and throw-away storage.

use std::collections::HashMap;
use std::net::SocketAddr;

use salesbot::app::Application;
use salesbot::config::Config;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server the way SIGTERM would and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|tx| tx.send(()));
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

/// The environment every test app starts from; `overrides` wins.
pub fn test_env(dir: &std::path::Path, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let base = format!("{}", dir.display());
    let mut env: HashMap<String, String> = [
        ("FACEBOOK_APP_ID", "123456789012345"),
        ("FACEBOOK_APP_SECRET", "test-facebook-app-secret"),
        (
            "FACEBOOK_REDIRECT_URI",
            "http://127.0.0.1:5000/facebook/callback",
        ),
        (
            "FACEBOOK_WEBHOOK_ADDRESS",
            "http://127.0.0.1:5000/facebook/webhook",
        ),
        ("FACEBOOK_VERIFY_TOKEN", "test-verify-token"),
        ("SHOPIFY_API_KEY", "test-shopify-key"),
        ("SHOPIFY_API_SECRET", "test-shopify-secret"),
        (
            "SHOPIFY_REDIRECT_URI",
            "http://127.0.0.1:5000/shopify/callback",
        ),
        ("STATE_TOKEN_SECRET", "test-state-secret"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("POLL_CRON", "off"),
        ("OAUTH_SELF_TEST", "false"),
        // Nothing may leave the machine: point every provider at a closed local port.
        ("FACEBOOK_GRAPH_URL", "http://127.0.0.1:9"),
        ("FACEBOOK_DIALOG_URL", "http://127.0.0.1:9"),
        ("SHOPIFY_SHOP_URL", "http://127.0.0.1:9/shops/{shop}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("TOKEN_DB_PATH".into(), format!("{base}/data/tokens.db"));
    env.insert("SESSION_DB_PATH".into(), format!("{base}/data/sessions.db"));
    env.insert("DATA_DIR".into(), base);
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    init_test_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = test_env(dir.path(), overrides);
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("test config");
    let app = Application::build(config).await.expect("app builds");
    let addr = app.addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        addr,
        client,
        dir,
        stop: Some(stop),
        server: Some(server),
    }
}

/// Logs go through the test harness's capture, so only a failing test shows them.
fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_test_writer()
        .try_init();
}
