//! A customer erased from the files: by the server itself or by a process beside it, the
//! erasure holds through the server's cache and through a replay of its journal.

use serde_json::{Value, json};

use super::FileStore;
use crate::domain::{PageId, SenderId};
use crate::store::conversations::Conversations;

fn page() -> PageId {
    PageId::parse("101").unwrap()
}

fn message(who: &SenderId, mid: &str, ts: i64) -> Value {
    json!({"sender": {"id": who.as_str()}, "recipient": {"id": "101"}, "timestamp": ts,
           "message": {"mid": mid, "text": "Do you have this in blue?"}})
}

async fn mids(store: &FileStore, who: &SenderId) -> Vec<String> {
    let events = store.read(&page(), who).await.unwrap();
    events
        .iter()
        .map(|e| e["message"]["mid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_replay_after_a_crash_does_not_bring_an_erased_customer_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let (erased, kept) = (
        SenderId::parse("7001").unwrap(),
        SenderId::parse("7002").unwrap(),
    );
    for n in 0..3 {
        for (who, mid) in [(&erased, format!("e{n}")), (&kept, format!("k{n}"))] {
            let event = vec![message(who, &mid, n).into()];
            store.add(&page(), who, event).await.unwrap();
        }
    }
    assert_eq!(store.erase_customer(&page(), &erased).await.unwrap(), 3);
    let at = store.erased_at(&page(), &erased).await.unwrap().unwrap();
    // What the customer writes afterwards is journaled like anything else.
    let after = vec![message(&erased, "after", at + 1).into()];
    store.add(&page(), &erased, after).await.unwrap();
    drop(store); // a crash: every record is still in the journal

    let restarted = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(mids(&restarted, &erased).await, ["after"]);
    assert_eq!(mids(&restarted, &kept).await, ["k0", "k1", "k2"]);
}

#[tokio::test]
async fn an_erasure_beside_the_server_is_seen_by_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = FileStore::with_journal(dir.path()).unwrap();
    let who = SenderId::parse("7001").unwrap();
    for n in 0..3 {
        let event = vec![message(&who, &format!("m{n}"), n).into()];
        server.add(&page(), &who, event).await.unwrap();
    }
    // `salesbot erase`, another process with its own cache, while the server runs.
    let beside = FileStore::new(dir.path());
    assert_eq!(beside.erase_customer(&page(), &who).await.unwrap(), 3);
    assert!(!server.conversation_path(&page(), &who).exists());

    // The server's next event goes into a new file, not the one it had open; a repeat of an
    // erased message is stored as new (it is the poll that keeps those out).
    let later = vec![message(&who, "m3", 3).into()];
    assert_eq!(server.add(&page(), &who, later).await.unwrap(), 1);
    assert_eq!(mids(&beside, &who).await, ["m3"]);
    assert!(server.erased_at(&page(), &who).await.unwrap().is_some());
}
