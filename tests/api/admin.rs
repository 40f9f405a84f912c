//! `GET /metrics` behind `ADMIN_TOKEN`: off without the setting, refused without the token,
//! and every count exact.

use std::collections::VecDeque;
use std::time::Duration;

use salesbot::facebook::poll::PollSettings;
use salesbot::sandbox::world::{Fault, Page};
use salesbot::sandbox::{Sandbox, World};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::webhook::post;

pub const ADMIN_TOKEN: &str = "admin-token-for-the-tests-0123456789";

pub async fn admin_get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

/// The value of one series (`name{labels}`) in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn scrape(app: &TestApp) -> String {
    let response = admin_get(app, "/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_are_off_without_admin_token_and_refused_without_it() {
    let off = spawn_app().await;
    assert_eq!(
        admin_get(&off, "/metrics", Some(ADMIN_TOKEN))
            .await
            .status(),
        404
    );

    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    for token in [None, Some("wrong-token-of-the-same-length-0123"), Some("")] {
        let response = admin_get(&app, "/metrics", token).await;
        assert_eq!(response.status(), 401, "{token:?}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("salesbot_"), "{body}");
    }
    let response = admin_get(&app, "/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = response.text().await.unwrap();
    for name in [
        "salesbot_webhook_requests_total",
        "salesbot_events_stored_total",
        "salesbot_events_duplicate_total",
        "salesbot_webhook_duration_seconds_bucket",
        "salesbot_flush_duration_seconds_bucket",
        "salesbot_poll_pages_total",
        "salesbot_graph_requests_total",
        "salesbot_attachments_total",
        "salesbot_pages_needing_reauth",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

fn delivery(mids: &[&str]) -> Vec<u8> {
    let messaging: Vec<_> = mids
        .iter()
        .map(|mid| {
            json!({"sender": {"id": "7001"}, "recipient": {"id": "101"},
                   "timestamp": 1_800_000_000_000_i64, "message": {"mid": mid, "text": "hi"}})
        })
        .collect();
    serde_json::to_vec(&json!({"object": "page", "entry": [{"id": "101", "messaging": messaging}]}))
        .unwrap()
}

#[tokio::test]
async fn metrics_count_every_webhook_and_event_exactly() {
    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    crate::poll::connect(&app.state, "101", "EAAPAGE101").await;
    let mids: Vec<String> = (0..20).map(|n| format!("m.{n}")).collect();
    // 20 new; then 5 of them again; one with a new event beside a known one.
    for mid in &mids {
        assert_eq!(post(&app, &delivery(&[mid]), true).await.status(), 200);
    }
    for mid in &mids[..5] {
        assert_eq!(post(&app, &delivery(&[mid]), true).await.status(), 200);
    }
    assert_eq!(
        post(&app, &delivery(&["m.0", "m.new"]), true)
            .await
            .status(),
        200
    );
    // Refused: 3 unsigned, 1 not JSON.
    for _ in 0..3 {
        assert_eq!(post(&app, &delivery(&["m.x"]), false).await.status(), 401);
    }
    assert_eq!(post(&app, b"{not json", true).await.status(), 400);

    let text = scrape(&app).await;
    let stored_on_disk = crate::poll::file(app.dir.path(), "101", "7001").len();
    assert_eq!(stored_on_disk, 21);
    for (series, expected) in [
        (r#"salesbot_events_stored_total{source="webhook"}"#, 21.0),
        (r#"salesbot_events_stored_total{source="poll"}"#, 0.0),
        ("salesbot_events_duplicate_total", 6.0),
        (r#"salesbot_webhook_requests_total{outcome="stored"}"#, 26.0),
        (
            r#"salesbot_webhook_requests_total{outcome="bad_signature"}"#,
            3.0,
        ),
        (
            r#"salesbot_webhook_requests_total{outcome="rejected"}"#,
            1.0,
        ),
        (
            r#"salesbot_webhook_requests_total{outcome="unavailable"}"#,
            0.0,
        ),
        ("salesbot_webhook_duration_seconds_count", 30.0),
    ] {
        assert_eq!(value(&text, series), expected, "{series}");
    }
    assert!(value(&text, "salesbot_flush_duration_seconds_count") >= 1.0);
}

#[tokio::test]
async fn metrics_count_the_poll_and_every_graph_call_exactly() {
    let mut throttled =
        Page::new("101", "Busy", "EAABUSY").with_conversation("5000", 4, 1_750_000_000);
    throttled.faults = VecDeque::from([Fault::Throttled, Fault::ServerError]);
    let mut revoked =
        Page::new("202", "Revoked", "EAAREVOKED").with_conversation("5001", 2, 1_750_000_000);
    revoked.revoked = true;
    let world = World {
        pages: vec![throttled, revoked],
        ..World::default()
    };
    let sandbox = Sandbox::start(world, Duration::ZERO).await.unwrap();
    let graph = sandbox.url();
    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("FACEBOOK_GRAPH_URL", &graph)]).await;
    crate::poll::connect(&app.state, "101", "EAABUSY").await;
    crate::poll::connect(&app.state, "202", "EAAREVOKED").await;
    let poller = app.state.poller.clone().with_settings(PollSettings {
        concurrency: 2,
        min_call_interval: Duration::ZERO,
        max_attempts: 4,
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(20),
    });
    let outcome = poller.poll_once().await.unwrap();
    assert_eq!(outcome.failed(), 1);

    let text = scrape(&app).await;
    let calls = sandbox.calls().len() as f64;
    let outcomes = ["ok", "throttled", "error", "unreachable"].map(|o| {
        value(
            &text,
            &format!(r#"salesbot_graph_requests_total{{outcome="{o}"}}"#),
        )
    });
    assert_eq!(
        outcomes.iter().sum::<f64>(),
        calls,
        "every Graph call counted once"
    );
    assert_eq!(outcomes[1], 1.0, "the one throttled answer");
    // The server error, and every refusal of the revoked token.
    assert!(outcomes[2] >= 2.0, "{outcomes:?}");
    for (series, expected) in [
        (r#"salesbot_poll_pages_total{result="ok"}"#, 1.0),
        (r#"salesbot_poll_pages_total{result="needs_reauth"}"#, 1.0),
        (r#"salesbot_poll_pages_total{result="failed"}"#, 0.0),
        (r#"salesbot_events_stored_total{source="poll"}"#, 4.0),
        ("salesbot_pages_needing_reauth", 1.0),
    ] {
        assert_eq!(value(&text, series), expected, "{series}");
    }
    // A second poll finds nothing new: nothing more counts as stored.
    poller.poll_once().await.unwrap();
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, r#"salesbot_events_stored_total{source="poll"}"#),
        4.0
    );
    let polled_ok = value(&text, r#"salesbot_poll_pages_total{result="ok"}"#);
    assert_eq!(polled_ok, 2.0);
}

/// A shop and its two pages connected through both OAuth flows, and one message stored.
async fn connected_install() -> (TestApp, crate::stand_in::StandIn) {
    use crate::flow::{connect_pages, connect_shop};
    let (app, stand_in) = crate::helpers::spawn_with_stand_in(&[
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("POLL_CRON", "0 0 3 * * *"),
    ])
    .await;
    let connected = connect_shop(&app, "demo-store", "code-a").await;
    let r = connect_pages(&app, &connected.session, "fbcode").await;
    assert_eq!(r.status(), 200);
    assert_eq!(post(&app, &delivery(&["m.1"]), true).await.status(), 200);
    (app, stand_in)
}

#[tokio::test]
async fn status_shows_every_shop_and_page_and_never_a_token() {
    let (app, stand_in) = connected_install().await;
    let started = salesbot::store::unix_now();
    let response = admin_get(&app, "/status", Some(ADMIN_TOKEN)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for secret in stand_in.issued_secrets() {
        assert!(!text.contains(&secret), "{secret} in {text}");
    }
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shop = &status["shops"][0];
    assert_eq!(shop["shop"], "demo-store.myshopify.com");
    assert!((started - shop["connected_at"].as_i64().unwrap()).abs() < 60);
    assert!(shop["refresh_token_expires_at"].as_i64().unwrap() > started + 80 * 86_400);
    assert!(shop["needs_reauth"].is_null());

    let pages = status["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 2);
    let page = &pages[0];
    assert_eq!(
        (page["id"].as_str(), page["name"].as_str()),
        (Some("101"), Some("Demo Page"))
    );
    assert!((started - page["connected_at"].as_i64().unwrap()).abs() < 60);
    assert_eq!(page["webhook_subscribed"], true);
    assert!(page["needs_reauth"].is_null());
    assert_eq!(
        (page["conversations"].as_u64(), page["messages"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(pages[1]["messages"], 0);
    // POLL_CRON's next run: 03:00 UTC within a day.
    let next = status["next_poll"].as_i64().unwrap();
    assert!(next > started && next <= started + 86_400, "{next}");

    // A revoked page is shown as needing re-authorisation, with why.
    app.state
        .poller
        .state()
        .mark_needs_reauth(
            &salesbot::domain::PageId::parse("202").unwrap(),
            "Meta refused the page token",
        )
        .await
        .unwrap();
    let status: serde_json::Value = admin_get(&app, "/status", Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["pages"][1]["needs_reauth"],
        "Meta refused the page token"
    );

    // Off without ADMIN_TOKEN, refused without the token.
    assert_eq!(admin_get(&app, "/status", None).await.status(), 401);
    assert_eq!(
        admin_get(&spawn_app().await, "/status", Some(ADMIN_TOKEN))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_browser_signs_in_with_the_token_and_sees_the_status_table() {
    let (app, _stand_in) = connected_install().await;
    let html = |request: reqwest::RequestBuilder| request.header("accept", "text/html");
    // Without the cookie: a sign-in form, not the data.
    let response = html(app.client.get(app.url("/status")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("<form") && !body.contains("Demo Page"),
        "{body}"
    );

    let sign_in = |token: &str| {
        app.client
            .post(app.url("/status/login"))
            .form(&[("token", token)])
            .send()
    };
    let wrong = sign_in("not-the-admin-token-0123456789").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let right = sign_in(ADMIN_TOKEN).await.unwrap();
    assert_eq!(right.status(), 303);
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(ADMIN_TOKEN),
        "the cookie holds a MAC, not the token"
    );
    let pair = cookie.split(';').next().unwrap().to_string();

    let response = html(app.client.get(app.url("/status")))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    for cell in [
        "demo-store.myshopify.com",
        "Demo Page",
        "Second Page",
        "1 / 1",
        "subscribed",
    ] {
        assert!(body.contains(cell), "{cell} missing:\n{body}");
    }
    // A cookie of another value opens nothing.
    let forged = html(app.client.get(app.url("/status")))
        .header("cookie", "salesbot_admin=00")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn salesbot_status_prints_the_same_as_a_table_and_as_json() {
    let (app, stand_in) = connected_install().await;
    let env = crate::helpers::test_env(app.dir.path(), &[]);
    let run = |args: &'static [&'static str]| {
        let env = env.clone();
        let dir = app.dir.path().to_path_buf();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_salesbot"))
                .args(args)
                .env_clear()
                .envs(env)
                .current_dir(dir)
                .output()
                .await
                .unwrap()
        }
    };
    let table = run(&["status"]).await;
    assert_eq!(table.status.code(), Some(0));
    let text = String::from_utf8(table.stdout).unwrap();
    for cell in [
        "demo-store.myshopify.com",
        "Demo Page",
        "Second Page",
        "1 / 1",
        "pages (2)",
    ] {
        assert!(text.contains(cell), "{cell} missing:\n{text}");
    }
    let json = run(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(status["pages"][0]["messages"], 1);
    for secret in stand_in.issued_secrets() {
        assert!(!text.contains(&secret), "{secret}");
        assert!(
            !String::from_utf8_lossy(&json.stdout).contains(&secret),
            "{secret}"
        );
    }
}
