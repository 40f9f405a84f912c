//! Replicas sharing one PostgreSQL (`DATABASE_URL`): any replica takes any OAuth step and any
//! webhook, a state spent on one is spent on all, and a database out of reach is a 503.
//!
//! Ignored by a plain `cargo test` (they need Debian's `postgresql`); `.ci/run` installs it
//! and runs them: `cargo test --locked -- --ignored postgres`.

use salesbot::engines::postgres::{Durability, Postgres};
use serde_json::{Value, json};

use crate::flow::*;
use crate::helpers::{TestApp, spawn_using};
use crate::stand_in::StandIn;
use crate::webhook::post;

async fn replica(stand_in: &StandIn, server: &Postgres) -> TestApp {
    spawn_using(stand_in, &[("DATABASE_URL", &server.url("postgres"))]).await
}

fn message(page: &str, sender: &str, mid: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"object": "page", "entry": [{"id": page, "messaging": [{
        "sender": {"id": sender}, "recipient": {"id": page}, "timestamp": 1_800_000_000_000_i64,
        "message": {"mid": mid, "text": "hello"}}]}]}),
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_any_replica_takes_any_oauth_step_and_any_webhook() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let stand_in = StandIn::start().await;
    let a = replica(&stand_in, &server).await;
    let b = replica(&stand_in, &server).await;

    // Shopify: login on A, Shopify sends the browser back to B.
    let started = shopify_login(&a, "demo-store").await;
    let query = signed_shopify_query(&[
        ("code", "shop-code"),
        ("shop", "demo-store.myshopify.com"),
        ("state", &started.state),
    ]);
    let cookie = [("shopify_oauth_state", started.state_cookie.as_str())];
    let shop = shopify_callback(&b, &query, &cookie).await;
    assert_eq!(shop.status(), 200);
    let session = cookie_value(&set_cookie(&shop, "session_id").unwrap());
    let user = shop.json::<Value>().await.unwrap()["user_uuid"].clone();
    // The state is spent for every replica.
    let replayed = shopify_callback(&a, &query, &cookie).await;
    assert_eq!(replayed.status(), 400);

    // Facebook: the session made by B is good on A; the callback lands on B again.
    let fb = facebook_start(&a, &session).await;
    let callback = form(&[("code", "fbcode"), ("state", &fb.state)]);
    let cookies = [
        ("facebook_oauth_state", fb.state_cookie.as_str()),
        ("session_id", session.as_str()),
    ];
    let pages = facebook_callback(&b, &callback, &cookies).await;
    assert_eq!(pages.status(), 200);
    let pages: Value = pages.json().await.unwrap();
    assert_eq!(pages["user_uuid"], user, "one merchant across replicas");
    assert_eq!(
        facebook_callback(&a, &callback, &cookies).await.status(),
        400,
        "spent on B, refused on A"
    );

    // A connected nothing itself, yet knows the pages B connected: it stores their events
    // (an unknown page's would be skipped with a 200 too, so the file is what tells).
    for (app, mid) in [(&a, "m_on_a"), (&b, "m_on_b")] {
        let answer = post(app, &message("101", "7001", mid), true).await;
        assert_eq!(answer.status(), 200, "{mid}");
        let file = app.dir.path().join("facebook/101/conversations/7001.json");
        let stored: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0]["message"]["mid"], mid);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_out_of_reach_is_a_503_then_work_resumes() {
    let mut server = Postgres::start(Durability::Full).unwrap();
    let stand_in = StandIn::start().await;
    let app = replica(&stand_in, &server).await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    server.halt().unwrap();
    // A page this replica has never seen must be looked up: the lookup cannot be made.
    let refused = post(&app, &message("101", "7001", "m_1"), true).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["detail"], "Service temporarily unavailable; try again");
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let login = shopify_login_response(&app).await;
    assert_eq!(login, 307, "a login needs no database: it still starts");

    server.resume().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        if health.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database came back, the app did not"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn shopify_login_response(app: &TestApp) -> u16 {
    app.client
        .get(app.url("/shopify/demo-store/login"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_three_replicas_firing_together_poll_once() {
    use salesbot::sandbox::world::Page;
    use salesbot::sandbox::{Sandbox, World};
    use std::time::Duration;

    let server = Postgres::start(Durability::Fast).unwrap();
    let page =
        Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 3, 1_750_000_000);
    let sandbox = Sandbox::start(
        World {
            pages: vec![page],
            ..World::default()
        },
        Duration::ZERO,
    )
    .await
    .unwrap();
    // One run, a few seconds from now (UTC, seconds first), on all three.
    let at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let cron = at.format("%S %M %H %d %m *").to_string();
    let (graph, database) = (sandbox.url(), server.url("postgres"));
    let settings = [
        ("FACEBOOK_GRAPH_URL", graph.as_str()),
        ("DATABASE_URL", database.as_str()),
        ("POLL_CRON", cron.as_str()),
    ];
    let replicas = [
        crate::helpers::spawn_app_with(&settings).await,
        crate::helpers::spawn_app_with(&settings).await,
        crate::helpers::spawn_app_with(&settings).await,
    ];
    crate::poll::connect(&replicas[0].state, "101", "EAAPAGE101").await;

    let lists = || {
        sandbox
            .calls()
            .iter()
            .filter(|c| c.path.ends_with("/101/conversations"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while lists() == 0 {
        assert!(std::time::Instant::now() < deadline, "no scheduled poll");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every replica has fired by now (the scheduler ticks every 500 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lists(), 1, "one poll for the one run, not one per replica");
    let written = replicas
        .iter()
        .filter(|r| {
            r.dir
                .path()
                .join("facebook/101/conversations/5000.json")
                .exists()
        })
        .count();
    assert_eq!(written, 1, "one replica polled");

    // A run is taken once even when the replicas fire one after the other, each after the
    // previous one's poll has finished (a late clock, a slow start).
    let slot = at.timestamp() + 86_400;
    assert!(replicas[1].state.poller.poll_scheduled(slot).await.is_ok());
    for late in [&replicas[2], &replicas[0]] {
        assert!(matches!(
            late.state.poller.poll_scheduled(slot).await,
            Err(salesbot::facebook::poll::PollError::TakenElsewhere)
        ));
    }
    assert!(
        replicas[0]
            .state
            .poller
            .poll_scheduled(slot + 86_400)
            .await
            .is_ok()
    );
}
