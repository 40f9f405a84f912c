//! `spawn_app()`: the real server on 127.0.0.1 with a random port and throw-away storage.

use std::collections::HashMap;
use std::net::SocketAddr;

use salesbot::app::Application;
use salesbot::config::Config;
use salesbot::state::AppState;
use tokio::sync::oneshot;

use crate::stand_in::StandIn;

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
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
        (
            "STATE_TOKEN_SECRET",
            "test-state-secret-of-at-least-32-bytes",
        ),
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

/// The app wired to a fresh stand-in for Meta and Shopify, self-tests posting to the stand-in.
pub async fn spawn_with_stand_in(overrides: &[(&str, &str)]) -> (TestApp, StandIn) {
    let stand_in = StandIn::start().await;
    (spawn_using(&stand_in, overrides).await, stand_in)
}

/// Another app (a replica, say) wired to an existing stand-in, with a data folder of its own.
pub async fn spawn_using(stand_in: &StandIn, overrides: &[(&str, &str)]) -> TestApp {
    let base = stand_in.url();
    let shops = format!("{base}/shops/{{shop}}");
    let webhook = format!("{base}/webhook");
    let mut all: Vec<(&str, &str)> = vec![
        ("FACEBOOK_GRAPH_URL", &base),
        ("FACEBOOK_DIALOG_URL", &base),
        ("SHOPIFY_SHOP_URL", &shops),
        ("FACEBOOK_WEBHOOK_ADDRESS", &webhook),
    ];
    all.extend_from_slice(overrides);
    spawn_app_with(&all).await
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
    let state = app.state().clone();
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
        state,
        dir,
        stop: Some(stop),
        server: Some(server),
    }
}

/// Everything any test app logged, at debug level, so tests can search it for secrets.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        // Also through the harness's capture, so a failing test shows its logs.
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(|| LogSink)
        .try_init();
}

/// A port nobody listens on right now, for a server that must know its own address before it
/// starts (OAuth redirect URIs, the self-test webhook address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `salesbot serve` process (a replica on its own machine, as far as it can tell).
pub struct Replica {
    pub child: std::process::Child,
    pub addr: String,
}

impl Replica {
    pub fn start(env: &HashMap<String, String>, dir: &std::path::Path) -> Replica {
        let port = crate::helpers::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_salesbot"))
            .arg("serve")
            .env_clear()
            .envs(env)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "replica did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Replica { child, addr }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
