//! The OAuth flows in a real headless Chromium, driven over WebDriver: Shopify's install page,
//! then Facebook's dialog, both clicked like a merchant would, against the demo's sandbox.
//!
//! Needs Debian's `chromium` and `chromium-driver`, so it is ignored by a plain `cargo test`
//! (reported as ignored, not as passed); `.ci/run` installs both and runs it by name:
//! `cargo test --locked --test api browser -- --ignored`. Run that way without them, it fails.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use salesbot::demo::{self, DemoOptions};
use salesbot::store::TokenKey;
use secrecy::ExposeSecret;

use crate::helpers::free_port;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver in its own process group, killed with everything it started.
struct Driver {
    child: Child,
}

impl Driver {
    fn start(port: u16, home: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        for dir in ["home", "config", "cache", "tmp"] {
            std::fs::create_dir_all(home.join(dir)).unwrap();
        }
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", home.join("home"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("TMPDIR", home.join("tmp"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        Driver { child }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // `--` matters: procps' kill reads a bare `-<pgid>` after a signal name as something else.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

async fn connect(webdriver: &str, profile: &Path) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities.as_object().unwrap().clone());
        match builder.connect(webdriver).await {
            Ok(client) => return client,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("cannot start a WebDriver session: {err}"),
        }
    }
}

/// Clicks the consent page's button.
async fn consent(browser: &Client, expected_title: &str) {
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .expect("a consent page")
        .text()
        .await
        .unwrap();
    assert_eq!(heading, expected_title);
    browser
        .find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The text of the first `selector` once the page has one (after a redirect chain).
/// The visible text of the page.
async fn body_text(browser: &Client) -> String {
    let body = browser.find(Locator::Css("body")).await.unwrap();
    body.text().await.unwrap()
}

async fn wait_for(browser: &Client, selector: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(element) = browser.find(Locator::Css(selector)).await
            && let Ok(text) = element.text().await
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {selector} after the redirect back: {:?}",
            browser.current_url().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the consent page's button and returns the JSON the app answered with.
async fn approve(browser: &Client, expected_title: &str) -> Value {
    consent(browser, expected_title).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // Chromium shows a JSON answer as text in the page body.
        let text = match browser.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON answer after the redirect back: {:?}",
            browser.current_url().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver (apt-get install chromium chromium-driver); \
            run with: cargo test --test api browser -- --ignored"]
async fn a_merchant_connects_shopify_then_facebook_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "{CHROMIUM} or {CHROMEDRIVER} missing: apt-get install chromium chromium-driver"
    );
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        port: free_port(),
        data_dir: dir.path().join("demo-data"),
        once: true,
    };
    let running = demo::start(&options).await.expect("demo starts");
    let base = format!("http://{}", running.addr);

    let driver_port = free_port();
    let _driver = Driver::start(driver_port, &dir.path().join("chrome-home"));
    let browser = connect(
        &format!("http://127.0.0.1:{driver_port}"),
        &dir.path().join("profile"),
    )
    .await;

    async {
        // Facebook first: the page says the store comes first.
        browser
            .goto(&format!("{base}/facebook/login"))
            .await
            .unwrap();
        assert_eq!(
            wait_for(&browser, "h1").await,
            "Connect your Shopify store first"
        );

        browser
            .goto(&format!("{base}/shopify/demo-store/login"))
            .await
            .unwrap();
        consent(&browser, "Install app on demo-store").await;
        // A browser is shown a page with the next step, not the API's JSON.
        assert_eq!(wait_for(&browser, "h1").await, "Shopify store connected");
        let page = body_text(&browser).await;
        assert!(page.contains("demo-store.myshopify.com"), "{page}");
        assert!(!page.contains("shpat"), "no token shown: {page}");

        let cookies = browser.get_all_cookies().await.unwrap();
        let session = cookies
            .iter()
            .find(|c| c.name() == "session_id")
            .expect("session cookie set");
        assert_eq!(
            session.http_only(),
            Some(true),
            "the session cookie is HttpOnly"
        );
        let script_view = browser
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert!(
            !script_view
                .as_str()
                .unwrap_or_default()
                .contains("session_id"),
            "scripts cannot read it"
        );

        // The merchant follows the page's link, as they would.
        browser
            .find(Locator::Id("next"))
            .await
            .expect("a link to the next step")
            .click()
            .await
            .unwrap();
        let pages = approve(&browser, "Allow salesbot to manage Demo Page").await;
        let user = running
            .state
            .tokens
            .get(&TokenKey::shop_uuid("demo-store_myshopify_com"))
            .await
            .unwrap()
            .expect("the shop's merchant UUID is stored");
        assert_eq!(
            pages["user_uuid"],
            user.expose_secret(),
            "one merchant across both flows"
        );
        let ids: Vec<&str> = pages["pages"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["100000000000101", "100000000000202"]);
        for key in ["webhook_test", "polling_test"] {
            for check in pages[key].as_array().unwrap() {
                assert_eq!(check["result"]["status"], "success", "{key}: {check}");
            }
        }
        assert!(!pages.to_string().contains("EAA-demo-page-token"));

        // The operator's status page: a sign-in form, then the table.
        browser.goto(&format!("{base}/status")).await.unwrap();
        assert_eq!(wait_for(&browser, "h1").await, "Status: sign in");
        browser
            .form(Locator::Css("form"))
            .await
            .unwrap()
            .set_by_name("token", &running.admin_token)
            .await
            .unwrap()
            .submit()
            .await
            .unwrap();
        assert_eq!(wait_for(&browser, "h1").await, "Status");
        let table = body_text(&browser).await;
        for cell in [
            "demo-store.myshopify.com",
            "100000000000101",
            "Demo Page",
            "subscribed",
        ] {
            assert!(table.contains(cell), "{cell} missing: {table}");
        }
        assert!(!table.contains("EAA-demo-page-token") && !table.contains("shpat"));
    }
    .await;
    let _ = browser.close().await;
    running.stop().await;
}
