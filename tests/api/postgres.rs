//! Replicas sharing one PostgreSQL (`DATABASE_URL`): any replica takes any OAuth step and any
//! webhook, a state spent on one is spent on all, and a database out of reach is a 503.
//!
//! Ignored by a plain `cargo test` (they need Debian's `postgresql`); `.ci/run` installs it
//! and runs them: `cargo test --locked -- --ignored postgres`.

use std::path::Path;
use std::time::{Duration, Instant};

use salesbot::engines::postgres::{Durability, Postgres};
use serde_json::{Value, json};

use crate::flow::*;
use crate::helpers::{Replica, TestApp, spawn_using};
use crate::stand_in::StandIn;
use crate::webhook::post;

/// A replica of the shared database, publishing the bot's tree into `objects` (a folder
/// every replica names, as they would all name one bucket).
pub(crate) async fn replica(stand_in: &StandIn, server: &Postgres, objects: &Path) -> TestApp {
    let storage = format!("file://{}", objects.display());
    spawn_using(
        stand_in,
        &[
            ("DATABASE_URL", &server.url("postgres")),
            ("STORAGE_URL", &storage),
            ("STORAGE_PUBLISH_INTERVAL", "0.5"),
        ],
    )
    .await
}

/// The conversation object once it holds `count` events (the replicas' publishers run on
/// this test's runtime: wait without blocking it).
async fn published(objects: &Path, page: &str, customer: &str, count: usize) -> Vec<Value> {
    let path = objects.join(format!("facebook/{page}/conversations/{customer}.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<Value> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        if events.len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {count} events after 30 s",
            path.display(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let objects = tempfile::tempdir().unwrap();
    let a = replica(&stand_in, &server, objects.path()).await;
    let b = replica(&stand_in, &server, objects.path()).await;

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
    // (an unknown page's would be skipped with a 200 too, so the stored events tell).
    for (app, mid) in [(&a, "m_on_a"), (&b, "m_on_b")] {
        let answer = post(app, &message("101", "7001", mid), true).await;
        assert_eq!(answer.status(), 200, "{mid}");
    }
    let events = published(objects.path(), "101", "7001", 2).await;
    let mids: Vec<&str> = events
        .iter()
        .map(|e| e["message"]["mid"].as_str().unwrap())
        .collect();
    assert_eq!(mids, ["m_on_a", "m_on_b"]);
    // Nothing goes to a replica's own facebook/ tree: the objects are the bot's tree.
    for app in [&a, &b] {
        assert!(!app.dir.path().join("facebook").exists());
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_800_webhooks_over_two_replicas_each_redelivered_are_stored_once_in_order() {
    const CUSTOMERS: usize = 40;
    const EACH: usize = 20;
    let server = Postgres::start(Durability::Fast).unwrap();
    let stand_in = StandIn::start().await;
    let objects = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(replica(&stand_in, &server, objects.path()).await);
    let b = std::sync::Arc::new(replica(&stand_in, &server, objects.path()).await);
    crate::poll::connect(&a.state, "101", "EAAPAGE101").await;

    // Message n of customer c, at time n: delivered to one replica and again to the other,
    // all at once, so deliveries and redeliveries race each other on both.
    let mut sends = tokio::task::JoinSet::new();
    for c in 0..CUSTOMERS {
        for n in 0..EACH {
            let (first, second) = match (c + n) % 2 {
                0 => (a.clone(), b.clone()),
                _ => (b.clone(), a.clone()),
            };
            let body = serde_json::to_vec(
                &json!({"object": "page", "entry": [{"id": "101", "messaging": [{
                "sender": {"id": format!("{}", 8000 + c)}, "recipient": {"id": "101"},
                "timestamp": 1_800_000_000_000_i64 + n as i64,
                "message": {"mid": format!("m_{c}_{n}"), "text": "hi"}}]}]}),
            )
            .unwrap();
            sends.spawn(async move {
                for app in [first, second] {
                    assert_eq!(post(&app, &body, true).await.status(), 200);
                }
            });
        }
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap();
    }
    for c in 0..CUSTOMERS {
        let events = published(objects.path(), "101", &format!("{}", 8000 + c), EACH).await;
        let mids: Vec<String> = events
            .iter()
            .map(|e| e["message"]["mid"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|n| format!("m_{c}_{n}")).collect();
        assert_eq!(
            mids, expected,
            "customer {c}: every mid once, in time order"
        );
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_out_of_reach_is_a_503_then_work_resumes() {
    let mut server = Postgres::start(Durability::Full).unwrap();
    let stand_in = StandIn::start().await;
    let objects = tempfile::tempdir().unwrap();
    let app = replica(&stand_in, &server, objects.path()).await;
    assert_eq!(health(&app).await, 200);

    server.halt().unwrap();
    // A page this replica has never seen must be looked up: the lookup cannot be made.
    let refused = post(&app, &message("101", "7001", "m_1"), true).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["detail"], "Service temporarily unavailable; try again");
    assert_eq!(health(&app).await, 503);
    let login = shopify_login_response(&app).await;
    assert_eq!(login, 307, "a login needs no database: it still starts");

    server.resume().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if health(&app).await == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database came back, the app did not"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_stopped_mid_load_acknowledges_nothing_it_loses_and_redeliveries_land_once() {
    let mut server = Postgres::start(Durability::Full).unwrap();
    let stand_in = StandIn::start().await;
    let objects = tempfile::tempdir().unwrap();
    let app = std::sync::Arc::new(replica(&stand_in, &server, objects.path()).await);
    crate::poll::connect(&app.state, "101", "EAAPAGE101").await;

    // Meta's side: every message is sent until it is answered 200; what got another answer
    // is delivered again later. The database goes away in the middle of it.
    let send_all = |range: std::ops::Range<usize>| {
        let app = app.clone();
        async move {
            let mut refused = Vec::new();
            for n in range {
                let body = message("101", &format!("{}", 7000 + n % 5), &format!("m_{n}"));
                if post(&app, &body, true).await.status() != 200 {
                    refused.push(n);
                }
            }
            refused
        }
    };
    let mut owed = send_all(0..50).await;
    assert!(owed.is_empty(), "all answered while the database was up");
    server.halt().unwrap();
    owed.extend(send_all(50..100).await);
    assert_eq!(
        owed.len(),
        50,
        "nothing is acknowledged while the database is away"
    );
    server.resume().unwrap();

    // Meta redelivers what it is owed, and some it was not (a lost answer), until all is 200.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut again: Vec<usize> = owed.into_iter().chain(40..50).collect();
    while !again.is_empty() {
        assert!(
            Instant::now() < deadline,
            "redeliveries still refused after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut still = Vec::new();
        for n in again {
            let body = message("101", &format!("{}", 7000 + n % 5), &format!("m_{n}"));
            if post(&app, &body, true).await.status() != 200 {
                still.push(n);
            }
        }
        again = still;
    }
    let page = salesbot::domain::PageId::parse("101").unwrap();
    for c in 0..5 {
        let customer = salesbot::domain::SenderId::parse(&format!("{}", 7000 + c)).unwrap();
        let stored = app
            .state
            .conversations
            .read(&page, &customer)
            .await
            .unwrap();
        let mut mids: Vec<String> = stored
            .iter()
            .map(|e| e["message"]["mid"].as_str().unwrap().to_string())
            .collect();
        mids.sort();
        let mut expected: Vec<String> = (0..100)
            .filter(|n| n % 5 == c)
            .map(|n| format!("m_{n}"))
            .collect();
        expected.sort();
        assert_eq!(mids, expected, "customer {c}: every message once");
    }
}

async fn health(app: &TestApp) -> u16 {
    let answer = app.client.get(app.url("/healthz")).send().await.unwrap();
    answer.status().as_u16()
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
    let deadline = Instant::now() + Duration::from_secs(15);
    while lists() == 0 {
        assert!(Instant::now() < deadline, "no scheduled poll");
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

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_replicas_keep_each_attachment_once_in_the_objects() {
    use crate::attachments::{Cdn, PHOTO, start_cdn, with_attachments};

    let server = Postgres::start(Durability::Fast).unwrap();
    let stand_in = StandIn::start().await;
    let objects = tempfile::tempdir().unwrap();
    let cdn = Cdn::default();
    let origin = start_cdn(cdn.clone()).await;
    let storage = format!("file://{}", objects.path().display());
    let settings = [
        ("DATABASE_URL", server.url("postgres")),
        ("STORAGE_URL", storage),
        ("ATTACHMENT_HOSTS", origin.clone()),
    ];
    let settings = borrowed(&settings);
    let a = spawn_using(&stand_in, &settings).await;
    let b = spawn_using(&stand_in, &settings).await;
    crate::poll::connect(&a.state, "101", "EAAPAGE101").await;
    // The same message with its photo, delivered to both replicas.
    let body = with_attachments("m_photo", &[format!("{origin}/photo.jpg")]);
    for app in [&a, &b] {
        assert_eq!(post(app, &body, true).await.status(), 200);
    }
    let kept = objects
        .path()
        .join("facebook/101/attachments/7001/m_photo-0.jpg");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kept.exists() {
        assert!(Instant::now() < deadline, "the photo was not kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read(&kept).unwrap(), PHOTO);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cdn.asked.lock().unwrap().len(),
        1,
        "fetched once across replicas"
    );
    for app in [&a, &b] {
        assert!(
            !app.dir.path().join("facebook").exists(),
            "nothing in a replica's own tree"
        );
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_salesbot_poll_publishes_what_it_stored_with_no_server_running() {
    use salesbot::sandbox::world::Page;
    use salesbot::sandbox::{Sandbox, World};

    let server = Postgres::start(Durability::Fast).unwrap();
    let page =
        Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 3, 1_750_000_000);
    let world = World {
        pages: vec![page],
        ..World::default()
    };
    let sandbox = Sandbox::start(world, Duration::ZERO).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let (graph, database) = (sandbox.url(), server.url("postgres"));
    let storage = format!("file://{}", objects.display());
    let env = crate::helpers::test_env(
        dir.path(),
        &[
            ("FACEBOOK_GRAPH_URL", &graph),
            ("DATABASE_URL", &database),
            ("STORAGE_URL", &storage),
        ],
    );
    // The page connected earlier (by a server that is gone now).
    let config = salesbot::config::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    crate::poll::connect(&state, "101", "EAAPAGE101").await;
    drop(state);

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_salesbot"))
        .arg("poll")
        .env_clear()
        .envs(&env)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("page 101: ok, 1 conversations, 3 new messages"),
        "{stdout}"
    );
    // Published before `poll` exited: no server is running to do it later.
    let object = objects.join("facebook/101/conversations/5000.json");
    let events: Vec<Value> = serde_json::from_slice(&std::fs::read(&object).unwrap()).unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        !dir.path().join("facebook").exists(),
        "nothing in the local tree"
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL and moto (apt-get install postgresql; pip install 'moto[server]'); run: cargo test -- --ignored postgres"]
async fn postgres_and_s3_the_bucket_holds_the_bots_tree() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let moto = Bucket::start("bot-tree", "merchant-1").await;
    let stand_in = StandIn::start().await;
    let mut settings = moto.settings();
    settings.push(("DATABASE_URL", server.url("postgres")));
    settings.push(("STORAGE_PUBLISH_INTERVAL", "0.5".into()));
    let app = spawn_using(&stand_in, &borrowed(&settings)).await;
    crate::poll::connect(&app.state, "101", "EAAPAGE101").await;
    let acknowledged = Instant::now();
    for mid in ["m_1", "m_2"] {
        assert_eq!(
            post(&app, &message("101", "7001", mid), true)
                .await
                .status(),
            200
        );
    }

    // Read back as a bot would, from the bucket, under the prefix and today's path.
    let bucket = moto.reader("s3://bot-tree/merchant-1");
    let key = "facebook/101/conversations/7001.json";
    let deadline = Instant::now() + Duration::from_secs(30);
    let bytes = loop {
        match bucket.get(key).await.unwrap() {
            Some(bytes) if String::from_utf8_lossy(&bytes).contains("m_2") => break bytes,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "nothing in the bucket after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let lag = acknowledged.elapsed();
    assert!(
        lag < Duration::from_secs(5),
        "published {lag:?} after the webhook"
    );
    let page = salesbot::domain::PageId::parse("101").unwrap();
    let customer = salesbot::domain::SenderId::parse("7001").unwrap();
    let expected = app
        .state
        .conversations
        .read(&page, &customer)
        .await
        .unwrap();
    let in_bucket: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(in_bucket, expected);
    assert!(
        bytes.starts_with(b"[\n{") && bytes.ends_with(b"}\n]\n"),
        "the files' layout"
    );
    // Nothing lands beside the prefix, nor in the replica's own folder.
    let outside = moto.reader("s3://bot-tree");
    assert!(outside.get(key).await.unwrap().is_none());
    assert!(!app.dir.path().join("facebook").exists());
}

#[tokio::test]
#[ignore = "needs PostgreSQL and moto (apt-get install postgresql; pip install 'moto[server]'); run: cargo test -- --ignored postgres"]
async fn postgres_and_s3_migrate_there_and_back_gives_byte_identical_files() {
    use salesbot::config::Config;
    use salesbot::domain::{PageId, SenderId};
    use salesbot::migrate::{self, Direction};
    use salesbot::store::conversations::Conversations;
    use salesbot::store::{FileStore, MessagingEvent, TokenKey, TokenKind, TokenStore};
    use secrecy::{ExposeSecret, SecretString};

    let server = Postgres::start(Durability::Fast).unwrap();
    let moto = Bucket::start("migrated", "shop-1").await;
    let (before, after) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &Path| {
        let mut settings = moto.settings();
        settings.push(("DATABASE_URL", server.url("postgres")));
        let env = crate::helpers::test_env(dir, &borrowed(&settings));
        Config::from_lookup(|name| env.get(name).cloned()).unwrap()
    };
    let bucket = moto.reader("s3://migrated/shop-1");

    // An install of the embedded backend: 100 conversations on two pages (late, untimed and
    // mid-less events among them), their metadata, a page token, a poll checkpoint.
    let files = FileStore::new(before.path());
    for c in 0..100 {
        let page = PageId::parse(if c % 2 == 0 { "101" } else { "202" }).unwrap();
        let customer = SenderId::parse(&format!("{}", 9000 + c)).unwrap();
        let event = |n: i64, mid: bool| {
            let mut e = json!({"sender": {"id": customer.as_str()}, "recipient": {"id": page.as_str()},
                "timestamp": 1_800_000_000_000_i64 + (n * 7919) % 23});
            match mid {
                true => {
                    e["message"] = json!({"mid": format!("m_{c}_{n}"), "text": format!("é {n}")})
                }
                false => e["read"] = json!({"watermark": n}),
            }
            MessagingEvent::from(e)
        };
        for n in 0..(1 + c % 9) {
            files
                .add_to_conversation(&page, &customer, vec![event(n, n % 4 != 3)])
                .await
                .unwrap();
        }
    }
    for page in ["101", "202"] {
        let page = PageId::parse(page).unwrap();
        files
            .write_metadata(
                &page,
                &json!({"id": page.as_str(), "name": "Shop é", "fan_count": 3}),
            )
            .await
            .unwrap();
    }
    let source = config(before.path());
    let cipher = salesbot::store::cipher::Cipher::new(&source.storage.encryption_key);
    let token_key = TokenKey::page_token(&PageId::parse("101").unwrap());
    TokenStore::open_sqlite(&source.storage.token_db_path, cipher.clone())
        .unwrap()
        .store(
            &token_key,
            &SecretString::from("EAA-token-101"),
            TokenKind::Token,
        )
        .await
        .unwrap();

    // A customer erased on request (nothing left of them but the mark) travels too.
    let (page_101, erased) = (
        PageId::parse("101").unwrap(),
        SenderId::parse("9999").unwrap(),
    );
    Conversations::erase_customer(&files, &page_101, &erased)
        .await
        .unwrap();
    let erased_at = Conversations::erased_at(&files, &page_101, &erased)
        .await
        .unwrap();

    let report = migrate::run(&source, Direction::Postgres).await.unwrap();
    assert_eq!(report.erasures, 1, "{report}");
    assert_eq!(report.conversations, 100, "{report}");
    assert_eq!(report.token_rows, 1);
    assert_eq!(report.metadata, 2);
    let again = migrate::run(&source, Direction::Postgres).await.unwrap();
    assert_eq!(again.new_events, 0, "a second run adds nothing: {again}");

    let back = config(after.path());
    let report = migrate::run(&back, Direction::Files).await.unwrap();
    assert_eq!(report.conversations, 100, "{report}");
    assert_eq!(report.erasures, 1, "{report}");
    let returned = FileStore::new(after.path());
    assert_eq!(
        Conversations::erased_at(&returned, &page_101, &erased)
            .await
            .unwrap(),
        erased_at
    );

    let tree = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut found: Vec<(String, Vec<u8>)> = crate::oauth_flow::walk(&root.join("facebook"))
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains("/.salesbot"))
            .map(|p| {
                let name = p.strip_prefix(root).unwrap().display().to_string();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        found.sort();
        found
    };
    let original = tree(before.path());
    assert_eq!(original.len(), 102);
    for (name, bytes) in &original {
        let object = bucket.get(name).await.unwrap();
        assert!(
            object.as_ref() == Some(bytes),
            "{name}: the bucket holds the file, byte for byte"
        );
    }
    assert!(
        tree(after.path()) == original,
        "and back again, byte for byte"
    );
    let token = TokenStore::open_sqlite(&back.storage.token_db_path, cipher)
        .unwrap()
        .get(&token_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.expose_secret(), "EAA-token-101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_800_webhooks_redelivered_across_replicas_one_killed_mid_load_lose_nothing() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let (dir_a, dir_b, objects) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let env_of = |dir: &Path| {
        let storage = format!("file://{}", objects.path().display());
        crate::helpers::test_env(
            dir,
            &[
                ("DATABASE_URL", &server.url("postgres")),
                ("STORAGE_URL", &storage),
            ],
        )
    };
    let (env_a, env_b) = (env_of(dir_a.path()), env_of(dir_b.path()));
    let config = salesbot::config::Config::from_lookup(|n| env_a.get(n).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    crate::poll::connect(&state, "101", "EAAPAGE101").await;
    let mut a = Replica::start(&env_a, dir_a.path());
    let b = Replica::start(&env_b, dir_b.path());

    let client = reqwest::Client::new();
    // 800 messages, each to one replica and redelivered to the other, 16 at a time; A is
    // SIGKILLed a third of the way in. A message is acknowledged when either answered 200.
    let mut acknowledged = Vec::new();
    let mut owed = Vec::new();
    let mut refused = 0;
    for wave in (0..800).collect::<Vec<usize>>().chunks(16) {
        if wave[0] == 256 {
            a.child.kill().unwrap(); // SIGKILL, as a crash or an OOM kill would
        }
        let answers = futures_join(wave.iter().map(|&n| {
            let addr = if n % 2 == 0 {
                a.addr.clone()
            } else {
                b.addr.clone()
            };
            let other = if n % 2 == 0 {
                b.addr.clone()
            } else {
                a.addr.clone()
            };
            let client = client.clone();
            async move {
                let first = deliver(client.clone(), addr, n).await;
                let again = deliver(client, other, n).await;
                (n, first || again, !(first && again))
            }
        }))
        .await;
        for (n, ok, refused_once) in answers {
            refused += usize::from(refused_once);
            if ok {
                acknowledged.push(n)
            } else {
                owed.push(n)
            }
        }
    }
    // Every message after the kill met the dead replica once (it is gone, not slow).
    assert!(refused >= 800 - 256, "{refused} deliveries refused");
    let owed_count = owed.len();
    // Meta redelivers what went unanswered; B takes it.
    for n in owed {
        assert!(
            deliver(client.clone(), b.addr.clone(), n).await,
            "m_{n} redelivered"
        );
    }
    // Each customer's history, in the database and in its published object: every message
    // once, in time order; so every acknowledged one is there.
    let page = salesbot::domain::PageId::parse("101").unwrap();
    for c in 0..8 {
        let id = format!("{}", 7000 + c);
        let customer = salesbot::domain::SenderId::parse(&id).unwrap();
        let expected: Vec<String> = (0..800)
            .filter(|n| n % 8 == c)
            .map(|n| format!("m_{n}"))
            .collect();
        let mids = |events: &[Value]| -> Vec<String> {
            events
                .iter()
                .map(|e| e["message"]["mid"].as_str().unwrap().to_string())
                .collect()
        };
        let stored = state.conversations.read(&page, &customer).await.unwrap();
        assert_eq!(mids(&stored), expected, "customer {id} in the database");
        let object = published(objects.path(), "101", &id, expected.len()).await;
        assert_eq!(
            mids(&object),
            expected,
            "customer {id} in the published tree"
        );
    }
    assert_eq!(acknowledged.len() + owed_count, 800);
}

/// One signed webhook for message `n` (customer `7000 + n % 8`, at time `n`); true when
/// answered 200.
async fn deliver(client: reqwest::Client, addr: String, n: usize) -> bool {
    let body = serde_json::to_vec(
        &json!({"object": "page", "entry": [{"id": "101", "messaging": [{
        "sender": {"id": format!("{}", 7000 + n % 8)}, "recipient": {"id": "101"},
        "timestamp": 1_800_000_000_000_i64 + n as i64,
        "message": {"mid": format!("m_{n}"), "text": "hello"}}]}]}),
    )
    .unwrap();
    let mut request = client
        .post(format!("http://{addr}/facebook/webhook"))
        .header("content-type", "application/json");
    for (name, value) in salesbot::facebook::webhook::signature::sign(
        &body,
        &secrecy::SecretString::from("test-facebook-app-secret"),
    ) {
        request = request.header(name, value);
    }
    matches!(request.body(body).send().await, Ok(r) if r.status() == 200)
}

/// Runs futures side by side (the JoinSet of a test without a futures crate).
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// moto's S3 server holding one bucket, and how a replica (its settings) and a reader (an
/// object tree) name `s3://<bucket>/<prefix>` on it.
struct Bucket {
    server: salesbot::engines::s3::S3Server,
    url: String,
}

impl Bucket {
    async fn start(bucket: &str, prefix: &str) -> Bucket {
        let server = salesbot::engines::s3::S3Server::start().await.unwrap();
        server.create_bucket(bucket).await.unwrap();
        Bucket {
            server,
            url: format!("s3://{bucket}/{prefix}"),
        }
    }

    /// `STORAGE_URL` and the `AWS_*` settings of a replica publishing there.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STORAGE_URL", self.url.clone()),
            ("AWS_ENDPOINT_URL", self.server.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test-key-id".into()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// The objects under `url` (on this server), read as a bot would.
    fn reader(&self, url: &str) -> salesbot::store::objects::ObjectTree {
        let settings = salesbot::config::S3Settings {
            endpoint: Some(self.server.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test-key-id".into()),
            secret_access_key: Some("test-secret-key".into()),
            allow_http: true,
        };
        let url = salesbot::config::StorageUrl::parse(url).unwrap();
        salesbot::store::objects::ObjectTree::open(&url, &settings).unwrap()
    }
}

fn borrowed<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
