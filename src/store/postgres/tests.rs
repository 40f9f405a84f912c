//! The PostgreSQL backend against a real server (`engines::postgres`): the same contracts
//! the SQLite backend passes, the schema's migrations, and a database that goes away.
//!
//! Ignored by a plain `cargo test` (they need Debian's `postgresql`); `.ci/run` installs it
//! and runs them: `cargo test --locked -- --ignored postgres`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DatabaseTarget, LATEST_VERSION, PgDatabase, PgPollState, PgSessions, PgTokens};
use crate::engines::postgres::{Durability, Postgres};
use crate::store::{SessionStore, StoreError, TokenStore, poll_state, sessions, tokens};

async fn connect(server: &Postgres) -> PgDatabase {
    PgDatabase::connect(&target(&server.url("postgres")), 4)
        .await
        .expect("connects and migrates")
}

/// The bot's tree as objects in a local folder.
fn folder_tree(dir: &std::path::Path) -> crate::store::objects::ObjectTree {
    use crate::store::objects::{ObjectTree, S3Settings, StorageUrl};
    ObjectTree::open(&StorageUrl::File(dir.to_path_buf()), &S3Settings::default()).unwrap()
}

fn target(url: &str) -> DatabaseTarget {
    DatabaseTarget::parse(url).expect("a valid URL")
}

fn session_store(db: &PgDatabase) -> SessionStore {
    SessionStore::new(
        Arc::new(PgSessions::new(db.clone())),
        tokens::tests::cipher(3),
    )
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_passes_every_store_contract() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let db = connect(&server).await;
    let token_store = |key: u8| {
        TokenStore::new(
            Arc::new(PgTokens::new(db.clone())),
            tokens::tests::cipher(key),
        )
    };
    tokens::tests::contract::round_trip(&token_store(1)).await;
    tokens::tests::contract::kinds_are_listed_apart_in_key_order(&token_store(1)).await;
    tokens::tests::contract::another_key_is_a_clear_error_naming_the_row(
        &token_store(1),
        &token_store(2),
    )
    .await;
    tokens::tests::contract::rekey_moves_every_row_to_the_current_key(|cipher| {
        TokenStore::new(Arc::new(PgTokens::new(db.clone())), cipher)
    })
    .await;

    let sessions = session_store(&db);
    sessions::tests::contract::round_trip(&sessions).await;
    sessions::tests::contract::sessions_expire_after_an_hour(&sessions).await;
    // Another replica: its own pool on the same database.
    let other = session_store(&connect(&server).await);
    sessions::tests::contract::a_state_is_spent_once_everywhere(&sessions, &other).await;

    poll_state::contract::checkpoints_and_reauth_marks(
        &(Arc::new(PgPollState::new(db.clone())) as _),
    )
    .await;
    let replica = connect(&server).await;
    poll_state::contract::runs_are_claimed_once_and_polls_kept_apart(
        &(Arc::new(PgPollState::new(db)) as _),
        &(Arc::new(PgPollState::new(replica)) as _),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_a_state_raced_by_many_replicas_is_spent_once() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let replicas = [
        session_store(&connect(&server).await),
        session_store(&connect(&server).await),
    ];
    let now = crate::store::unix_now();
    let tries = (0..40).map(|i| {
        let store = replicas[i % 2].clone();
        tokio::spawn(async move { store.spend_state_at("1:race:sig", now + 300, now).await })
    });
    let mut first_uses = 0;
    for attempt in tries {
        if attempt.await.unwrap().unwrap() {
            first_uses += 1;
        }
    }
    assert_eq!(first_uses, 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let url = target(&server.url("postgres"));
    // Replicas starting together: one migrates, the others find it done.
    let starts = (0..3).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgDatabase::connect(&url, 2).await.map(|_| ()) })
    });
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let db = connect(&server).await;
    let client = db.client().await.unwrap();
    let version: i32 = client
        .query_one("SELECT version FROM salesbot_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, LATEST_VERSION);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM salesbot_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);

    // A database left at version 1 by an older build is brought up to date.
    client
        .batch_execute(
            "DROP TABLE events, conversations, poll_runs, attachments, erasures;
             ALTER TABLE poll_pages DROP COLUMN connected_at, DROP COLUMN subscribed,
                 DROP COLUMN subscription_seen_at;
             UPDATE salesbot_schema SET version = 1",
        )
        .await
        .unwrap();
    connect(&server).await;
    let version: i32 = client
        .query_one("SELECT version FROM salesbot_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, LATEST_VERSION);
    client
        .execute("SELECT count(*) FROM poll_runs", &[])
        .await
        .unwrap();

    client
        .execute(
            "UPDATE salesbot_schema SET version = $1",
            &[&(LATEST_VERSION + 1)],
        )
        .await
        .unwrap();
    match PgDatabase::connect(&url, 2).await {
        Err(err @ StoreError::SchemaTooNew { .. }) => {
            let said = err.to_string();
            assert!(said.contains("newer than this build"), "{said}");
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_down_is_unavailable_and_comes_back() {
    // Full: an immediate stop is a crash, and a Fast server may lose its last commits in one.
    let mut server = Postgres::start(Durability::Full).unwrap();
    let db = connect(&server).await;
    let tokens = TokenStore::new(
        Arc::new(PgTokens::new(db.clone())),
        tokens::tests::cipher(1),
    );
    let key = crate::store::TokenKey::shop_uuid("demo-store_myshopify_com");
    tokens
        .store(
            &key,
            &secrecy::SecretString::from("u"),
            crate::store::TokenKind::Uuid,
        )
        .await
        .unwrap();

    server.halt().unwrap();
    let began = Instant::now();
    let err = tokens.get(&key).await.expect_err("the database is down");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "answered in bounded time"
    );
    assert!(db.ping().await.unwrap_err().is_unavailable());

    server.resume().unwrap();
    // The pool replaces its broken connections by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match tokens.get(&key).await {
            Ok(value) => {
                assert!(value.is_some());
                break;
            }
            Err(err) if err.is_unavailable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the database came back but the store did not: {err:?}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_conversations_match_the_files_byte_for_byte() {
    use crate::domain::{PageId, SenderId};
    use crate::store::FileStore;
    use crate::store::conversations::{Conversations, contract};

    use super::{PgConversations, Publisher};

    let server = Postgres::start(Durability::Fast).unwrap();
    let db = connect(&server).await;
    let store = PgConversations::new(db.clone());
    contract::deduplicates_and_orders(&store).await;

    // The same deliveries through the files and through PostgreSQL + a published object.
    let dir = tempfile::tempdir().unwrap();
    let files = FileStore::new(&dir.path().join("files"));
    let objects = folder_tree(&dir.path().join("objects"));
    let (page, customer) = (
        PageId::parse("101").unwrap(),
        SenderId::parse("7001").unwrap(),
    );
    for delivery in contract::sequence() {
        files
            .add_to_conversation(&page, &customer, delivery)
            .await
            .unwrap();
    }
    // Two publishers (two replicas) at once: each conversation is published, once per change.
    let publishers = [
        Publisher::new(db.clone(), objects.clone(), Duration::ZERO),
        Publisher::new(connect(&server).await, objects.clone(), Duration::ZERO),
    ];
    let (a, b) = tokio::join!(
        publishers[0].pass(Duration::ZERO),
        publishers[1].pass(Duration::ZERO)
    );
    assert_eq!(
        a.unwrap() + b.unwrap(),
        1,
        "one conversation, published once"
    );
    let object = objects
        .conversation(&page, &customer)
        .await
        .unwrap()
        .unwrap();
    let file = std::fs::read(files.conversation_path(&page, &customer)).unwrap();
    assert_eq!(
        String::from_utf8(object).unwrap(),
        String::from_utf8(file).unwrap()
    );
    // Nothing changed: nothing to publish. A change: published again.
    assert_eq!(publishers[0].pass(Duration::ZERO).await.unwrap(), 0);
    let late = vec![contract::event("7001", Some("m9"), Some(9_000))];
    assert_eq!(store.add(&page, &customer, late).await.unwrap(), 1);
    // Within the interval a changed conversation waits; after it, it goes out.
    assert_eq!(
        publishers[1].pass(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(publishers[1].pass(Duration::ZERO).await.unwrap(), 1);
    let object = objects
        .conversation(&page, &customer)
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8(object).unwrap().contains("\"m9\""));
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_over_tls_is_encrypted_and_the_certificate_verified() {
    let server = Postgres::start_with_tls(Durability::Fast).unwrap();
    let ca = server.ca_file().unwrap();
    let url = server.url("postgres");
    let port = server.port();
    let encrypted = |db: PgDatabase| async move {
        let client = db.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, bool>(0)
    };
    // The CA named: encrypted, whether TLS is required or only preferred.
    for mode in ["require", "verify-full", "prefer"] {
        let trusted = target(&format!(
            "{url}?sslmode={mode}&sslrootcert={}",
            ca.display()
        ));
        let db = PgDatabase::connect(&trusted, 2).await.expect(mode);
        assert!(encrypted(db).await, "sslmode={mode} is encrypted");
    }
    // `disable` is plain, as asked.
    let plain = PgDatabase::connect(&target(&format!("{url}?sslmode=disable")), 2)
        .await
        .unwrap();
    assert!(!encrypted(plain).await);

    // A certificate nobody vouches for (the system's CAs do not know the test CA) is refused,
    // even when TLS is only preferred: no silent fall back to an unverified channel.
    for mode in ["require", "prefer"] {
        let untrusted = target(&format!("{url}?sslmode={mode}"));
        let err = PgDatabase::connect(&untrusted, 2).await.unwrap_err();
        assert!(err.is_unavailable());
        let said = err.to_string();
        assert!(said.contains("UnknownIssuer"), "sslmode={mode}: {said}");
    }
    // The right CA but another name than the certificate's (127.0.0.1): refused too.
    let misnamed = target(&format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=require&sslrootcert={}",
        ca.display()
    ));
    let said = PgDatabase::connect(&misnamed, 2)
        .await
        .unwrap_err()
        .to_string();
    assert!(said.contains("not valid for name"), "{said}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_without_tls_is_refused_when_tls_is_required() {
    let server = Postgres::start(Durability::Fast).unwrap();
    let required = target(&format!("{}?sslmode=require", server.url("postgres")));
    let err = PgDatabase::connect(&required, 2).await.unwrap_err();
    let said = err.to_string();
    assert!(said.to_lowercase().contains("tls"), "{said}");
    // Preferred only: the plain connection it offers is taken.
    let preferred = target(&server.url("postgres"));
    PgDatabase::connect(&preferred, 2).await.unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_publishing_leases_are_renewed_and_taken_over_when_they_lapse() {
    use crate::domain::{PageId, SenderId};
    use crate::store::conversations::{Conversations, contract};

    use super::{PgConversations, Publisher};

    let server = Postgres::start(Durability::Fast).unwrap();
    let db = connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let objects = folder_tree(dir.path());
    let lease = Duration::from_millis(800);
    let publisher =
        || Publisher::new(db.clone(), objects.clone(), Duration::ZERO).with_lease(lease);
    let (a, b) = (publisher(), publisher());
    let (page, customer) = (
        PageId::parse("101").unwrap(),
        SenderId::parse("7001").unwrap(),
    );
    let store = PgConversations::new(db.clone());
    let first = vec![contract::event("7001", Some("m1"), Some(1_000))];
    store.add(&page, &customer, first).await.unwrap();

    // A holds its lease past its length by renewing it: B finds nothing to take.
    let held = a.lease_due(Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 1);
    for _ in 0..3 {
        tokio::time::sleep(lease / 2).await;
        a.renew().await.unwrap();
    }
    assert_eq!(
        b.pass(Duration::ZERO).await.unwrap(),
        0,
        "A's lease was renewed"
    );
    assert_eq!(a.publish_leased(&held).await.unwrap(), 1);
    assert_eq!(
        b.pass(Duration::ZERO).await.unwrap(),
        0,
        "published: nothing due"
    );

    // A replica that stops renewing (it died) holds the conversation back for one lease.
    let second = vec![contract::event("7001", Some("m2"), Some(2_000))];
    store.add(&page, &customer, second).await.unwrap();
    let lapsed = a.lease_due(Duration::ZERO).await.unwrap();
    assert_eq!(b.pass(Duration::ZERO).await.unwrap(), 0, "still leased");
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert_eq!(
        b.pass(Duration::ZERO).await.unwrap(),
        1,
        "taken over after the lease"
    );
    // A was only slow: its late render may land after B's, so the conversation is due again
    // and the next pass writes a fresh one.
    assert_eq!(a.publish_leased(&lapsed).await.unwrap(), 1);
    assert_eq!(
        b.pass(Duration::ZERO).await.unwrap(),
        1,
        "due again after a takeover"
    );
    let object = objects
        .conversation(&page, &customer)
        .await
        .unwrap()
        .unwrap();
    let object = String::from_utf8(object).unwrap();
    assert!(
        object.contains("\"m1\"") && object.contains("\"m2\""),
        "{object}"
    );
    assert_eq!(b.pass(Duration::ZERO).await.unwrap(), 0);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_attachment_queue_keeps_each_download_once_and_replicas_apart() {
    use crate::store::attachments::{AttachmentQueue, contract};

    let server = Postgres::start(Durability::Fast).unwrap();
    let queue = super::PgAttachments::new(connect(&server).await);
    contract::owed_once_retried_and_finished(&queue).await;

    // Two replicas asking at once never get the same download.
    let other = super::PgAttachments::new(connect(&server).await);
    let owed: Vec<_> = (0..20)
        .map(|n| contract::owed(&format!("r{n}"), 0))
        .collect();
    queue.enqueue(owed).await.unwrap();
    let now = crate::store::unix_now();
    let (a, b) = tokio::join!(queue.due(now, 15), other.due(now, 15));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 20, "every due download handed out");
    assert!(a.iter().all(|owed| !b.contains(owed)), "none twice");
    // Claimed: not handed out again while a replica works on it.
    assert!(queue.due(now, 50).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_a_page_is_erased_from_the_database_and_the_objects() {
    use crate::domain::{PageId, SenderId};
    use crate::store::attachments::{AttachmentFiles, AttachmentQueue, contract as queue};
    use crate::store::conversations::{Conversations, PageMetadata, contract};

    let server = Postgres::start(Durability::Fast).unwrap();
    let db = connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let objects = folder_tree(dir.path());
    let store = super::PgConversations::new(db.clone());
    let (page, other) = (PageId::parse("101").unwrap(), PageId::parse("202").unwrap());
    let customer = SenderId::parse("7001").unwrap();
    for p in [&page, &other] {
        let events = vec![contract::event("7001", Some("m1"), Some(1_000))];
        store.add(p, &customer, events).await.unwrap();
        objects
            .write(p, &serde_json::json!({"id": p.as_str()}))
            .await
            .unwrap();
        AttachmentFiles::put(&objects, p, &customer, "m1-0.png", b"photo".to_vec())
            .await
            .unwrap();
    }
    let attachments = super::PgAttachments::new(db.clone());
    attachments
        .enqueue(vec![queue::owed("m1", 0)])
        .await
        .unwrap();
    let state = PgPollState::new(db.clone());
    use crate::store::poll_state::PollState;
    state.record_connected(&page, 1).await.unwrap();

    assert_eq!(store.erase_page(&page).await.unwrap(), 1);
    objects.erase_page(&page).await.unwrap();
    attachments.forget_page(&page).await.unwrap();
    state.forget(&page).await.unwrap();

    assert_eq!(store.counts(&page).await.unwrap().messages, 0);
    assert_eq!(
        store.counts(&other).await.unwrap().messages,
        1,
        "another page untouched"
    );
    assert!(
        !dir.path().join("facebook/101").exists(),
        "no object of the page left"
    );
    assert!(
        dir.path()
            .join("facebook/202/attachments/7001/m1-0.png")
            .exists()
    );
    assert_eq!(attachments.pending().await.unwrap(), 0);
    assert!(state.all().await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run: cargo test -- --ignored postgres"]
async fn postgres_a_customer_is_erased_from_the_database_and_the_objects_and_stays_so() {
    use crate::domain::{PageId, SenderId};
    use crate::store::attachments::{AttachmentFiles, AttachmentQueue, contract as queue};
    use crate::store::conversations::{Conversations, PageMetadata, contract};

    use super::Publisher;

    let server = Postgres::start(Durability::Fast).unwrap();
    let db = connect(&server).await;
    let store = super::PgConversations::new(db.clone());
    contract::erases_one_customer(&store).await;

    // The published object, the attachments and their queue go too; another's stay.
    let dir = tempfile::tempdir().unwrap();
    let objects = folder_tree(dir.path());
    let publisher = Publisher::new(db.clone(), objects.clone(), Duration::ZERO);
    let page = PageId::parse("202").unwrap();
    let (customer, other) = (
        SenderId::parse("7001").unwrap(),
        SenderId::parse("7002").unwrap(),
    );
    for who in [&customer, &other] {
        let events = vec![contract::event(who.as_str(), Some("m1"), Some(1_000))];
        store.add(&page, who, events).await.unwrap();
        AttachmentFiles::put(&objects, &page, who, "m1-0.png", b"photo".to_vec())
            .await
            .unwrap();
    }
    publisher.publish_all().await.unwrap();
    let attachments = super::PgAttachments::new(db.clone());
    let mut owed = queue::owed("m1", 0);
    owed.page = page.clone();
    attachments.enqueue(vec![owed]).await.unwrap();

    assert_eq!(
        attachments.forget_customer(&page, &customer).await.unwrap(),
        1
    );
    assert_eq!(store.erase_customer(&page, &customer).await.unwrap(), 1);
    assert_eq!(objects.erase_customer(&page, &customer).await.unwrap(), 1);
    assert!(
        objects
            .conversation(&page, &customer)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!dir.path().join("facebook/202/attachments/7001").exists());
    assert!(objects.conversation(&page, &other).await.unwrap().is_some());
    assert!(
        dir.path()
            .join("facebook/202/attachments/7002/m1-0.png")
            .exists()
    );
    assert_eq!(
        publisher.publish_all().await.unwrap(),
        0,
        "nothing left to publish"
    );

    // A render on its way while the customer is erased: the object does not come back.
    let later = vec![contract::event("7002", Some("m2"), Some(2_000))];
    store.add(&page, &other, later).await.unwrap();
    let leased = publisher.lease_due(Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 1);
    store.erase_customer(&page, &other).await.unwrap();
    objects.erase_customer(&page, &other).await.unwrap();
    publisher.publish_leased(&leased).await.unwrap();
    assert!(objects.conversation(&page, &other).await.unwrap().is_none());
}
