//! Moving in from the Python original: its Fernet-sealed stores (written by Python's
//! `cryptography`, tests/fixtures/legacy/make_fixture.py) and a `facebook/` tree with
//! redeliveries stored twice, tokens in the metadata and a file that does not parse.

use std::path::{Path, PathBuf};

use salesbot::domain::{PageId, SenderId};
use salesbot::legacy::{ImportOptions, Report, import};
use salesbot::shopify::ShopDomain;
use salesbot::store::{TokenKey, unix_now};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::binary::salesbot;
use crate::helpers::{TestApp, spawn_with_stand_in, test_env};
use crate::webhook;

const SECRET: &str = "the-original-state-token-secret";
const MERCHANT: &str = "6f1c2a9e-4b7d-4e3a-9c51-2d8f0b7a1e64";
/// Every secret the original held: none may appear in any file of ours.
const SECRETS: [&str; 4] = [
    "EAAPAGE101SECRETTOKEN",
    "EAALEGACYREVOKED303SECRET",
    "shpat_LEGACY_SHOP_SECRET",
    "EAALEGACYUSERSECRET",
];

/// The original's install in `dir/legacy`: tokens.db, sessions.db (one session ten minutes
/// old, one a day old) and its facebook/ tree.
fn legacy_install(dir: &Path) -> PathBuf {
    let root = dir.join("legacy");
    std::fs::create_dir_all(&root).unwrap();
    let load = |db: &str, sql: &str| {
        let connection = rusqlite::Connection::open(root.join(db)).unwrap();
        connection.execute_batch(sql).unwrap();
    };
    load("tokens.db", include_str!("../fixtures/legacy/tokens.sql"));
    let now = unix_now();
    load(
        "sessions.db",
        &include_str!("../fixtures/legacy/sessions.sql")
            .replace("@FRESH@", &(now - 600).to_string())
            .replace("@OLD@", &(now - 86_400).to_string()),
    );
    let accounts = json!({"data": [
        {"id": "101", "name": "Demo Page", "category": "Shopping & retail", "access_token": SECRETS[0]},
        {"id": "303", "name": "Old Page", "category": "Shopping & retail", "access_token": SECRETS[1]},
    ], "paging": {"cursors": {"before": "QVFI", "after": "QVFJ"}}});
    let message = |mid: &str, ts: i64| {
        json!({"sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": ts,
               "message": {"mid": mid, "text": format!("text of {mid}")}})
    };
    let read = json!({"sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 2_500,
                      "read": {"watermark": 2_400}});
    let files: Vec<(&str, String)> = vec![
        ("facebook/101/page_metadata.json", accounts.to_string()),
        ("facebook/303/page_metadata.json", accounts.to_string()),
        (
            // Redeliveries stored twice, a receipt twice, an older message appended late.
            "facebook/101/conversations/7001.json",
            json!([
                message("m.2", 2_000),
                message("m.3", 3_000),
                message("m.2", 2_000),
                read,
                read,
                message("m.1", 1_000),
                message("m.3", 3_000),
            ])
            .to_string(),
        ),
        (
            "facebook/101/conversations/7002.json",
            "[{\"sender\": ".into(),
        ),
        (
            "facebook/303/conversations/8001.json",
            json!([{"sender": {"id": "8001"}, "recipient": {"id": "303"}, "timestamp": 5_000,
                    "message": {"mid": "m.303", "text": "hello"}}])
            .to_string(),
        ),
    ];
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    root
}

fn options(legacy: &Path, dry_run: bool) -> ImportOptions {
    ImportOptions {
        tokens_db: legacy.join("tokens.db"),
        sessions_db: Some(legacy.join("sessions.db")),
        data_dir: Some(legacy.to_path_buf()),
        dry_run,
        secret: SecretString::from(SECRET),
    }
}

/// Every file below `dir` with its bytes, sorted by path.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let name = path.strip_prefix(base).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn mids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e.pointer("/message/mid")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string()
        })
        .collect()
}

/// The message ids of a conversation as the app's store holds it.
async fn stored_mids(app: &TestApp, page: &str, customer: &str) -> Vec<String> {
    let (page, customer) = (
        PageId::parse(page).unwrap(),
        SenderId::parse(customer).unwrap(),
    );
    mids(
        &app.state
            .conversations
            .read(&page, &customer)
            .await
            .unwrap(),
    )
}

async fn run(app: &TestApp, legacy: &Path, dry_run: bool) -> Report {
    import(&app.state, &options(legacy, dry_run)).await.unwrap()
}

#[tokio::test]
async fn the_original_moves_in_and_serves_and_a_second_run_changes_nothing() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    let legacy = legacy_install(app.dir.path());
    let legacy_before = contents(&legacy);
    let ours = app.dir.path().join("facebook");
    let page = |id: &str| PageId::parse(id).unwrap();
    let shop = ShopDomain::parse("demo-store").unwrap();
    let tokens = &app.state.tokens;

    // A dry run says what would happen and writes nothing.
    let dry = run(&app, &legacy, true).await;
    assert_eq!((dry.shops_imported, dry.pages_imported), (1, 2), "{dry}");
    assert_eq!(
        (dry.conversations, dry.messages, dry.duplicates_removed),
        (2, 5, 3),
        "{dry}"
    );
    assert!(
        dry.to_string().contains("dry run: nothing was written"),
        "{dry}"
    );
    assert!(
        tokens
            .get(&TokenKey::shopify_token(&shop.key()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(app.state.pages.token(&page("101")).await.unwrap().is_none());
    assert!(contents(&ours).is_empty());

    let report = run(&app, &legacy, false).await;
    let said = report.to_string();
    assert_eq!(
        (report.shops_imported, report.pages_imported),
        (1, 2),
        "{said}"
    );
    assert_eq!(report.needs_reauth, ["303"], "{said}");
    // 7001: m.1, m.2, m.3 and the receipt (three copies too many); 8001: one message.
    assert_eq!(
        (
            report.conversations,
            report.messages,
            report.duplicates_removed
        ),
        (2, 5, 3),
        "{said}"
    );
    assert_eq!(report.metadata_written, 2, "{said}");
    assert_eq!(report.kept_aside.len(), 1, "{said}");
    assert_eq!(
        report.kept_aside[0].0,
        "facebook/101/conversations/7002.json"
    );
    assert_eq!(
        (report.sessions_adopted, report.sessions_expired),
        (1, 1),
        "{said}"
    );
    assert!(report.user_token_left, "{said}");
    assert!(
        said.contains("FACEBOOK_USER_ACCESS_TOKEN: not imported"),
        "{said}"
    );

    // The stores: the shop (its UUID kept), both pages with their owner, 303 marked.
    let pair = tokens
        .get(&TokenKey::shopify_token(&shop.key()))
        .await
        .unwrap()
        .unwrap();
    let pair: Value = serde_json::from_str(pair.expose_secret()).unwrap();
    assert_eq!(pair["access_token"], SECRETS[2]);
    let merchant = tokens
        .get(&TokenKey::shop_uuid(&shop.key()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(merchant.expose_secret(), MERCHANT);
    for id in ["101", "303"] {
        let owner = tokens
            .get(&TokenKey::page_uuid(&page(id)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner.expose_secret(), MERCHANT);
    }
    let marked = app.state.poller.state().needing_reauth().await.unwrap();
    assert_eq!(
        marked.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["303"]
    );
    let merchant_uuid = uuid::Uuid::parse_str(MERCHANT).unwrap();
    assert_eq!(
        app.state
            .sessions
            .resolve("legacy-session-fresh")
            .await
            .unwrap(),
        Some(merchant_uuid)
    );
    assert_eq!(
        app.state
            .sessions
            .resolve("legacy-session-old")
            .await
            .unwrap(),
        None
    );

    // The files: each event once, in time order; metadata without tokens; the bad file aside.
    assert_eq!(
        stored_mids(&app, "101", "7001").await,
        ["m.1", "m.2", "-", "m.3"]
    );
    let metadata: Value =
        serde_json::from_slice(&std::fs::read(ours.join("101/page_metadata.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["data"][0]["name"], "Demo Page", "{metadata}");
    assert_eq!(
        metadata["data"].as_array().unwrap().len(),
        1,
        "only the page's own entry"
    );
    let aside = app
        .dir
        .path()
        .join(".salesbot/legacy-aside/facebook/101/conversations/7002.json");
    assert_eq!(std::fs::read(aside).unwrap(), b"[{\"sender\": ");
    assert!(!ours.join("101/conversations/7002.json").exists());
    for (path, bytes) in contents(app.dir.path()) {
        if path.starts_with("legacy/") {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{path} holds {secret}");
        }
    }
    assert_eq!(
        contents(&legacy),
        legacy_before,
        "the legacy install is only read"
    );

    // Again: nothing changes, and no Graph call is made for pages already here.
    let ours_before = contents(&ours);
    let checks_before = stand_in.requests_to("/101").len();
    let again = run(&app, &legacy, false).await;
    assert!(!again.changes(), "{again}");
    assert_eq!(
        (again.shops_already_here, again.pages_already_here),
        (1, 2),
        "{again}"
    );
    assert!(again.to_string().contains("nothing to change"), "{again}");
    assert_eq!(contents(&ours), ours_before);
    assert_eq!(stand_in.requests_to("/101").len(), checks_before);

    // The server serves the imported page, and the poll uses its imported token.
    let event = json!({"object": "page", "entry": [{"id": "101", "time": 1, "messaging": [
        {"sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 4_000,
         "message": {"mid": "m.4", "text": "still there?"}}]}]});
    let answered = webhook::post(&app, event.to_string().as_bytes(), true).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(
        stored_mids(&app, "101", "7001").await,
        ["m.1", "m.2", "-", "m.3", "m.4"]
    );
    app.state.poller.poll_once().await.unwrap();
    let polled = stand_in.requests_to("/101/conversations");
    assert!(!polled.is_empty());
    assert_eq!(polled[0].param("access_token"), Some(SECRETS[0]));
}

#[test]
fn a_wrong_secret_names_the_first_row_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_install(dir.path());
    let ours = dir.path().join("ours");
    std::fs::create_dir_all(&ours).unwrap();
    let run = |secret: Option<&str>, extra: &[&str]| {
        let mut env = test_env(&ours, &[]);
        if let Some(secret) = secret {
            env.insert("LEGACY_STATE_TOKEN_SECRET".into(), secret.into());
        }
        let tokens_db = legacy.join("tokens.db").display().to_string();
        let legacy_dir = legacy.display().to_string();
        let mut args = vec![
            "import-legacy",
            "--tokens-db",
            &tokens_db,
            "--data-dir",
            &legacy_dir,
        ];
        args.extend_from_slice(extra);
        salesbot(dir.path()).args(&args).envs(env).output().unwrap()
    };

    let refused = run(Some("not-the-original-secret"), &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("row FACEBOOK_ACCESS_TOKEN_101 of")
            && stderr.contains("does not decrypt with LEGACY_STATE_TOKEN_SECRET")
            && stderr.contains("Nothing was imported"),
        "{stderr}"
    );
    let written = contents(&ours);
    assert!(
        written
            .iter()
            .all(|(path, _)| !path.starts_with("facebook")),
        "{:?}",
        written.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let connection = rusqlite::Connection::open(ours.join("data/tokens.db")).unwrap();
    let rows: i64 = connection
        .query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);

    let mistyped = salesbot(dir.path())
        .args(["import-legacy", "--tokens-db", "no-such.db"])
        .envs(test_env(&ours, &[("LEGACY_STATE_TOKEN_SECRET", SECRET)]))
        .output()
        .unwrap();
    assert_eq!(mistyped.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&mistyped.stderr).contains("no-such.db: no such file"));
    assert!(!dir.path().join("no-such.db").exists(), "not created");

    let unset = run(None, &[]);
    assert_eq!(unset.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains("LEGACY_STATE_TOKEN_SECRET is not set")
    );

    // The right secret, as a dry run through the binary: the report, nothing written.
    let dry = run(Some(SECRET), &["--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(stdout.contains("shops: 1 would be imported"), "{stdout}");
    assert!(
        stdout.contains("facebook/101/conversations/7002.json: is not JSON"),
        "{stdout}"
    );
    for secret in SECRETS {
        assert!(!stdout.contains(secret), "{stdout}");
    }
    assert!(contents(&ours.join("facebook")).is_empty());
}

#[tokio::test]
async fn the_legacy_folder_cannot_be_data_dir_itself() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    let legacy = legacy_install(app.dir.path());
    let mut options = options(&legacy, false);
    options.data_dir = Some(app.dir.path().to_path_buf());
    let err = import(&app.state, &options).await.unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains("is DATA_DIR itself"), "{err}");
    assert!(
        app.state
            .pages
            .token(&PageId::parse("101").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_the_original_moves_into_the_database_and_the_objects() {
    use salesbot::engines::postgres::{Durability, Postgres};

    let server = Postgres::start(Durability::Fast).unwrap();
    let stand_in = crate::stand_in::StandIn::start().await;
    let objects = tempfile::tempdir().unwrap();
    let app = crate::postgres::replica(&stand_in, &server, objects.path()).await;
    let legacy = legacy_install(app.dir.path());

    let report = run(&app, &legacy, false).await;
    assert_eq!(
        (report.shops_imported, report.pages_imported),
        (1, 2),
        "{report}"
    );
    assert_eq!(
        (report.messages, report.duplicates_removed),
        (5, 3),
        "{report}"
    );
    // Published before the import returns: the bot's tree in the objects, each event once.
    let object = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(objects.path().join(name)).unwrap()).unwrap()
    };
    let conversation = object("facebook/101/conversations/7001.json");
    assert_eq!(
        mids(conversation.as_array().unwrap()),
        ["m.1", "m.2", "-", "m.3"]
    );
    let metadata = object("facebook/101/page_metadata.json");
    assert_eq!(metadata["data"][0]["name"], "Demo Page");
    for (path, bytes) in contents(objects.path()) {
        let text = String::from_utf8_lossy(&bytes);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{path} holds {secret}");
        }
    }
    let page = PageId::parse("101").unwrap();
    assert!(app.state.pages.token(&page).await.unwrap().is_some());
    let again = run(&app, &legacy, false).await;
    assert!(!again.changes(), "{again}");
}
