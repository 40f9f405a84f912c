//! The conversation file under concurrency, crashes and out-of-order delivery.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::domain::{PageId, SenderId};
use crate::store::FileStore;

fn ids() -> (PageId, SenderId) {
    (
        PageId::parse("101").unwrap(),
        SenderId::parse("2001").unwrap(),
    )
}

fn message(mid: &str, ts: i64) -> Value {
    json!({
        "sender": {"id": "2001"}, "recipient": {"id": "101"}, "timestamp": ts,
        "message": {"mid": mid, "text": format!("text of {mid}")}
    })
}

use crate::store::conversations::contract::mids;

fn parse_file(store: &FileStore) -> Vec<Value> {
    let (page, sender) = ids();
    let bytes = std::fs::read(store.conversation_path(&page, &sender)).unwrap();
    serde_json::from_slice(&bytes).expect("the file always parses as a JSON array")
}

#[tokio::test]
async fn events_are_stored_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();

    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m1", 10), message("m3", 30)])
            .await
            .unwrap(),
        2
    );
    // A redelivery and a repeat inside one batch are both skipped.
    assert_eq!(
        store
            .add_to_conversation(
                &page,
                &sender,
                vec![message("m1", 10), message("m4", 40), message("m4", 40)]
            )
            .await
            .unwrap(),
        1
    );
    // An older event goes in its place, not at the end.
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m2", 20)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m2", 20)])
            .await
            .unwrap(),
        0
    );

    let on_disk = parse_file(&store);
    assert_eq!(mids(&on_disk), ["m1", "m2", "m3", "m4"]);
    assert_eq!(on_disk[0], message("m1", 10), "events are stored whole");
    assert_eq!(
        store.read_conversation(&page, &sender).await.unwrap(),
        on_disk
    );
}

/// A 200 for a redelivery must not come before the write it repeats is on disk, however soon
/// after that write it arrives: it waits for a round of its own, which ends after the round
/// that took the write (or retries it, should that round have failed).
#[tokio::test]
async fn a_repeat_waits_for_a_round_that_covers_the_write_it_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    let add = || store.add_to_conversation(&page, &sender, vec![message("m1", 10)]);
    assert_eq!(add().await.unwrap(), 1);
    let rounds = store.conversations.sync.rounds_finished();
    assert_eq!(add().await.unwrap(), 0);
    assert!(
        store.conversations.sync.rounds_finished() > rounds,
        "the repeat was answered without waiting for a round"
    );
    assert_eq!(mids(&parse_file(&store)), ["m1"]);
}

/// A request cancelled after its write (a client hanging up) still has that write made
/// durable: it goes to a flush round in the same step as the write, even on a blocking thread.
/// Otherwise Meta's redelivery would find the events in memory, wait for a round that never
/// took them, and be answered 200 for a write that no round flushed.
#[tokio::test]
async fn a_write_whose_request_is_cancelled_still_reaches_a_flush_round() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    // A file's first write goes to a blocking thread; the request is dropped while it waits.
    let add = store.add_to_conversation(&page, &sender, vec![message("m1", 10)]);
    tokio::select! {
        biased;
        _ = add => panic!("the first write of a file returned without waiting"),
        () = std::future::ready(()) => {}
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.conversations.sync.rounds_finished() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no flush round ever took the write"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(mids(&parse_file(&store)), ["m1"]);
}

#[tokio::test]
async fn identical_events_without_mid_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    let read = json!({"sender": {"id": "2001"}, "recipient": {"id": "101"}, "timestamp": 50, "read": {"watermark": 49}});
    let later_read = json!({"sender": {"id": "2001"}, "recipient": {"id": "101"}, "timestamp": 60, "read": {"watermark": 59}});
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![read.clone(), read.clone()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![read.clone(), later_read])
            .await
            .unwrap(),
        1
    );
    assert_eq!(parse_file(&store).len(), 2);
}

#[tokio::test]
async fn two_hundred_concurrent_appends_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::new(dir.path()));
    let (page, sender) = ids();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (store, page, sender) = (Arc::clone(&store), page.clone(), sender.clone());
            tokio::spawn(async move {
                store
                    .add_to_conversation(
                        &page,
                        &sender,
                        vec![message(&format!("m{i:03}"), 1000 + i)],
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    let on_disk = parse_file(&store);
    assert_eq!(on_disk.len(), 200);
    let mut expected: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    expected.sort();
    assert_eq!(
        mids(&on_disk),
        expected,
        "every message once, in timestamp order"
    );
}

#[tokio::test]
async fn a_torn_append_is_repaired_on_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    store
        .add_to_conversation(&page, &sender, vec![message("m1", 1), message("m2", 2)])
        .await
        .unwrap();

    // Simulate a crash half-way through an in-place append: the closing `]` was overwritten
    // and the new event is cut off mid-entry.
    let path = store.conversation_path(&page, &sender);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 3);
    bytes.extend_from_slice(
        br#",
{"message":{"mid":"m3","text":"cut o"#,
    );
    std::fs::write(&path, &bytes).unwrap();
    assert!(serde_json::from_slice::<Vec<Value>>(&bytes).is_err());

    // A fresh store (a restarted process) repairs it, and the redelivered event lands.
    let restarted = FileStore::new(dir.path());
    assert_eq!(
        restarted
            .add_to_conversation(&page, &sender, vec![message("m3", 3)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(mids(&parse_file(&restarted)), ["m1", "m2", "m3"]);
    // The same process notices a torn tail too, without a restart.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        restarted
            .add_to_conversation(&page, &sender, vec![message("m4", 4)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(mids(&parse_file(&restarted)), ["m1", "m2", "m3", "m4"]);
}

#[tokio::test]
async fn damage_in_the_middle_keeps_a_copy_and_every_readable_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    let path = store.conversation_path(&page, &sender);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let line = |e: Value| e.to_string();
    std::fs::write(
        &path,
        format!(
            "[\n{},\nNOT JSON,\n{}\n]\n",
            line(message("m1", 1)),
            line(message("m3", 3))
        ),
    )
    .unwrap();

    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m4", 4)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(mids(&parse_file(&store)), ["m1", "m3", "m4"]);
    let kept: Vec<_> = std::fs::read_dir(path.parent().unwrap().join(".salesbot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("2001.json.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged original is kept for a human");
}

#[tokio::test]
async fn a_file_written_by_the_original_is_merged_into() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    let path = store.conversation_path(&page, &sender);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Python's json.dump: one line, no trailing newline, not necessarily in order.
    std::fs::write(
        &path,
        serde_json::to_vec(&vec![message("m2", 2), message("m1", 1)]).unwrap(),
    )
    .unwrap();
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m1", 1), message("m3", 3)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(mids(&parse_file(&store)), ["m1", "m2", "m3"]);
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m4", 4)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(mids(&parse_file(&store)), ["m1", "m2", "m3", "m4"]);
}

#[tokio::test]
async fn another_writer_between_two_appends_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::new(dir.path());
    let b = FileStore::new(dir.path()); // its own cache, like a second process
    let (page, sender) = ids();
    a.add_to_conversation(&page, &sender, vec![message("m1", 1)])
        .await
        .unwrap();
    b.add_to_conversation(&page, &sender, vec![message("m2", 2)])
        .await
        .unwrap();
    // `a` must not trust its cached view: m2 is known, m3 is new.
    assert_eq!(
        a.add_to_conversation(&page, &sender, vec![message("m2", 2), message("m3", 3)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.add_to_conversation(&page, &sender, vec![message("m0", 0)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        a.add_to_conversation(&page, &sender, vec![message("m0", 0)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(mids(&parse_file(&a)), ["m0", "m1", "m2", "m3"]);
}

#[tokio::test]
async fn files_are_written_under_the_data_dir_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = FileStore::new(&data);
    let (page, sender) = ids();
    store
        .add_to_conversation(&page, &sender, vec![message("m1", 1)])
        .await
        .unwrap();
    store
        .write_metadata(&page, &json!({"id": "101", "name": "P"}))
        .await
        .unwrap();
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("data")]);
    assert!(data.join("facebook/101/conversations/2001.json").is_file());
    assert!(data.join("facebook/101/page_metadata.json").is_file());
}

/// Appends `SALESBOT_WORKER_COUNT` messages tagged `SALESBOT_WORKER_TAG` to the conversation in
/// `SALESBOT_WORKER_DIR`. Run as a separate process by the test below; ignored otherwise.
#[tokio::test]
#[ignore = "helper process for two_processes_appending_lose_nothing"]
async fn worker_process_appends() {
    let Ok(dir) = std::env::var("SALESBOT_WORKER_DIR") else {
        return;
    };
    let tag = std::env::var("SALESBOT_WORKER_TAG").unwrap();
    let count: i64 = std::env::var("SALESBOT_WORKER_COUNT")
        .unwrap()
        .parse()
        .unwrap();
    let store = FileStore::new(std::path::Path::new(&dir));
    let (page, sender) = ids();
    for i in 0..count {
        // Interleaved timestamps, so both processes also insert into each other's history.
        let ts = 1_000 + i * 2 + i64::from(tag == "b");
        let added = store
            .add_to_conversation(&page, &sender, vec![message(&format!("{tag}{i:04}"), ts)])
            .await
            .unwrap();
        assert_eq!(added, 1);
    }
}

#[test]
fn two_processes_appending_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let count = 200;
    let spawn = |tag: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::local::files::conversation::tests::worker_process_appends",
                "--ignored",
                "--nocapture",
            ])
            .env("SALESBOT_WORKER_DIR", dir.path())
            .env("SALESBOT_WORKER_TAG", tag)
            .env("SALESBOT_WORKER_COUNT", count.to_string())
            // The child's own "test result" lines would read as this run's summary.
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn("a");
    let mut b = spawn("b");
    assert!(a.wait().unwrap().success(), "worker a failed");
    assert!(b.wait().unwrap().success(), "worker b failed");

    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    let bytes = std::fs::read(store.conversation_path(&page, &sender)).unwrap();
    let events: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        events.len(),
        2 * count,
        "both processes' messages are all there"
    );
    let timestamps: Vec<i64> = events
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        timestamps.windows(2).all(|w| w[0] <= w[1]),
        "chronological order"
    );
    let unique: std::collections::HashSet<String> = mids(&events).into_iter().collect();
    assert_eq!(unique.len(), 2 * count);
}

#[tokio::test]
async fn a_file_missing_only_its_closing_bracket_is_repaired_when_next_touched() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    let path = store.conversation_path(&page, &sender);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (a, b) = (message("m1", 1).to_string(), message("m2", 2).to_string());
    std::fs::write(&path, format!("[\n{a},\n{b}\n")).unwrap();
    // Nothing new arrives (a redelivery), yet the file must parse again afterwards.
    assert_eq!(
        store
            .add_to_conversation(&page, &sender, vec![message("m2", 2)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(mids(&parse_file(&store)), ["m1", "m2"]);
}

#[tokio::test]
async fn a_kept_lock_file_that_was_deleted_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::new(dir.path()));
    let (page, sender) = ids();
    for (mid, ts) in [("m1", 1), ("m2", 2)] {
        store
            .add_to_conversation(&page, &sender, vec![message(mid, ts)])
            .await
            .unwrap();
    }
    // The store now keeps the lock file open. Someone deletes it, and another writer (a poll
    // process) locks the new one: the store must wait for that writer, not lock the old file.
    let lock_path = dir
        .path()
        .join("facebook/101/conversations/.salesbot/2001.lock");
    std::fs::remove_file(&lock_path).unwrap();
    let other = std::fs::File::create(&lock_path).unwrap();
    other.lock().unwrap();
    let writer = {
        let (store, page, sender) = (Arc::clone(&store), page.clone(), sender.clone());
        tokio::spawn(async move {
            store
                .add_to_conversation(&page, &sender, vec![message("m3", 3)])
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "wrote while another writer held the lock"
    );
    assert_eq!(mids(&parse_file(&store)), ["m1", "m2"]);
    other.unlock().unwrap();
    assert_eq!(writer.await.unwrap().unwrap(), 1);
    assert_eq!(mids(&parse_file(&store)), ["m1", "m2", "m3"]);
}

/// A cached conversation keeps the keys of its recent events only; what it forgot is still
/// deduplicated, against the file: with a journal (late events slotted in place) and without
/// (late events rewrite the file).
#[tokio::test]
async fn a_long_conversation_keeps_only_recent_keys_and_still_stores_each_event_once() {
    for journaled in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store = match journaled {
            true => FileStore::with_journal(dir.path()).unwrap(),
            false => FileStore::new(dir.path()),
        };
        forgotten_keys_are_checked_against_the_file(&store).await;
    }
}

async fn forgotten_keys_are_checked_against_the_file(store: &FileStore) {
    use super::recent_keys::KEPT;

    let (page, sender) = ids();
    let add = |events: Vec<Value>| store.add_to_conversation(&page, &sender, events);
    let kept = || {
        let slots = store.conversations.slots.lock().unwrap();
        let slot = slots.peek(&ids()).unwrap().try_lock().unwrap();
        slot.known.as_ref().map(|known| known.keys.len())
    };
    let total = 4 * KEPT as i64;
    for i in 0..total {
        let ts = 1000 + 10 * i;
        assert_eq!(add(vec![message(&format!("m{i}"), ts)]).await.unwrap(), 1);
    }
    assert_eq!(kept(), Some(KEPT));

    // Redeliveries, forgotten or not, alone or beside a new event: none stored twice.
    for i in [
        0,
        1,
        total - KEPT as i64 - 1,
        total - KEPT as i64,
        total - 1,
    ] {
        let again = message(&format!("m{i}"), 1000 + 10 * i);
        assert_eq!(add(vec![again]).await.unwrap(), 0, "m{i}");
    }
    let newer = message("new", 1000 + 10 * total);
    let forgotten = message(
        &format!("m{}", total - KEPT as i64 - 1),
        1000 + 10 * (total - KEPT as i64 - 1),
    );
    assert_eq!(add(vec![forgotten, newer]).await.unwrap(), 1);
    // New but older than every key kept: stored once, in its place.
    assert_eq!(add(vec![message("late", 1005)]).await.unwrap(), 1);
    assert_eq!(add(vec![message("late", 1005)]).await.unwrap(), 0);

    let stored = mids(&parse_file(store));
    assert_eq!(stored.len(), total as usize + 2);
    assert_eq!(&stored[..3], ["m0", "late", "m1"]);
    assert_eq!(stored.last().map(String::as_str), Some("new"));
    assert!(kept().is_some_and(|n| n <= KEPT + 1));
}

#[tokio::test]
async fn a_replay_flushes_the_files_it_finds_complete_and_their_folders() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (page, sender) = ids();
    // The crashed process had appended it: in the file (the page cache), never flushed.
    store
        .add_to_conversation(&page, &sender, vec![message("m1", 10)])
        .await
        .unwrap();
    let paths = store.conversation_paths(&page, &sender);
    let elsewhere = store.conversation_paths(&PageId::parse("102").unwrap(), &sender);

    let mut replay = super::Replay::default();
    replay
        .add(&paths, vec![message("m1", 10).into()], false)
        .unwrap();
    replay
        .add(&elsewhere, vec![message("m2", 20).into()], false)
        .unwrap();
    // Another page's folder, removed by hand before the flush: nothing of it to flush.
    std::fs::remove_dir_all(elsewhere.file.parent().unwrap().parent().unwrap()).unwrap();
    let (files, folders) = replay.to_flush();
    assert!(files.contains(&paths.file), "{files:?}");
    assert!(
        folders.contains(paths.file.parent().unwrap()),
        "{folders:?}"
    );
    assert!(!folders.contains(elsewhere.file.parent().unwrap()));
    assert_eq!(replay.finish().unwrap(), 1, "only m2 was missing");
    assert_eq!(mids(&parse_file(&store)), ["m1"]);
}

/// A process that dies between its write and its flush (a `salesbot poll` killed mid-round)
/// leaves events in the page cache only. Whoever finds them there and acknowledges them as
/// already stored must flush the file first, once.
#[tokio::test]
async fn a_repeat_of_events_read_from_the_disk_flushes_the_file_once() {
    use crate::store::local::files::atomic::times_flushed;

    for journaled in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (page, sender) = ids();
        FileStore::new(dir.path())
            .add_to_conversation(&page, &sender, vec![message("m0", 1000)])
            .await
            .unwrap();
        let store = match journaled {
            true => FileStore::with_journal(dir.path()).unwrap(),
            false => FileStore::new(dir.path()),
        };
        let path = store.conversation_path(&page, &sender);
        let add = |events: Vec<Value>| store.add_to_conversation(&page, &sender, events);
        assert_eq!(times_flushed(&path), 0);

        let repeat_and_new = vec![message("m0", 1000), message("m1", 1001)];
        assert_eq!(
            add(repeat_and_new).await.unwrap(),
            1,
            "journaled: {journaled}"
        );
        assert_eq!(times_flushed(&path), 1, "journaled: {journaled}");
        // Flushed since it was read: later repeats need no flush of their own.
        assert_eq!(add(vec![message("m0", 1000)]).await.unwrap(), 0);
        assert_eq!(times_flushed(&path), 1, "journaled: {journaled}");
        assert_eq!(mids(&parse_file(&store)), ["m0", "m1"]);
    }
}

/// A file rewritten whole was flushed by the rewrite: a repeat of its events after that needs
/// no flush, though the file had been read from the disk before.
#[tokio::test]
async fn a_repeat_after_a_rewrite_needs_no_flush_of_its_own() {
    use crate::store::local::files::atomic::times_flushed;

    let dir = tempfile::tempdir().unwrap();
    let (page, sender) = ids();
    FileStore::new(dir.path())
        .add_to_conversation(
            &page,
            &sender,
            vec![message("m0", 1000), message("m1", 1001)],
        )
        .await
        .unwrap();
    let store = FileStore::new(dir.path());
    let path = store.conversation_path(&page, &sender);
    let add = |events: Vec<Value>| store.add_to_conversation(&page, &sender, events);
    // Older than everything: the file is read, then rewritten in order.
    assert_eq!(add(vec![message("m-1", 10)]).await.unwrap(), 1);
    assert_eq!(add(vec![message("m0", 1000)]).await.unwrap(), 0);
    assert_eq!(times_flushed(&path), 0);
    assert_eq!(mids(&parse_file(&store)), ["m-1", "m0", "m1"]);
}
