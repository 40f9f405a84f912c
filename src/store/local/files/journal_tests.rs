//! The server's store: what the journal holds reaches the files after a crash.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{FileStore, journal};
use crate::domain::{PageId, SenderId};
use crate::store::StoreError;

fn page() -> PageId {
    PageId::parse("101").unwrap()
}

fn customer(n: usize) -> SenderId {
    SenderId::parse(&format!("{}", 2000 + n)).unwrap()
}

fn message(n: usize, ts: i64) -> Value {
    json!({"sender": {"id": "2000"}, "recipient": {"id": "101"}, "timestamp": ts,
           "message": {"mid": format!("m{n}"), "text": "Do you have this in blue?"}})
}

fn on_disk(store: &FileStore, who: &SenderId) -> Vec<String> {
    let path = store.conversation_path(&page(), who);
    let events: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    events
        .iter()
        .map(|e| e["message"]["mid"].as_str().unwrap().to_string())
        .collect()
}

/// Messages `m0`, `m1`, ... for `who`, one request each.
async fn add_messages(store: &FileStore, who: &SenderId, count: usize) {
    for n in 0..count {
        store
            .add_to_conversation(&page(), who, vec![message(n, n as i64)])
            .await
            .unwrap();
    }
}

fn segment_count(data_dir: &Path) -> usize {
    journal::segments(&journal::dir_of(data_dir)).unwrap().len()
}

#[tokio::test]
async fn acknowledged_events_survive_files_that_never_reached_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let (a, b) = (customer(1), customer(2));
    add_messages(&store, &a, 3).await;
    store
        .add_to_conversation(&page(), &b, vec![message(10, 1), message(11, 2)])
        .await
        .unwrap();
    let a_path = store.conversation_path(&page(), &a);
    let b_path = store.conversation_path(&page(), &b);
    // The crash: the journal is left as it is, but what the files got in the page cache is
    // lost: `a` is back to its first message, `b` never existed.
    drop(store);
    std::fs::write(&a_path, b"[\n").unwrap();
    std::fs::remove_file(&b_path).unwrap();

    let restarted = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&restarted, &a), ["m0", "m1", "m2"]);
    assert_eq!(on_disk(&restarted, &b), ["m10", "m11"]);
    drop(restarted);

    // Replaying again (nothing lost this time) adds nothing twice.
    let again = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&again, &a), ["m0", "m1", "m2"]);
    assert_eq!(on_disk(&again, &b), ["m10", "m11"]);
}

#[tokio::test]
async fn a_start_reads_recent_conversations_ahead_and_they_still_deduplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let (a, b) = (customer(1), customer(2));
    add_messages(&store, &a, 3).await;
    add_messages(&store, &b, 1).await;
    store.checkpoint().await.unwrap();
    drop(store);
    // What is not a conversation is passed over.
    let facebook = dir.path().join("facebook");
    std::fs::create_dir_all(facebook.join("not a page/conversations")).unwrap();
    std::fs::write(facebook.join("101/conversations/notes.txt"), b"x").unwrap();
    std::fs::write(facebook.join("101/conversations/bad name.json"), b"[]").unwrap();

    let restarted = FileStore::with_journal(dir.path()).unwrap();
    for who in [&a, &b] {
        let key = (page(), who.clone());
        assert!(restarted.conversations.is_cached(&key), "{who} read ahead");
    }
    let added = restarted
        .add_to_conversation(&page(), &a, vec![message(1, 1), message(9, 9)])
        .await
        .unwrap();
    assert_eq!(added, 1, "m1 is known, m9 is new");
    assert_eq!(on_disk(&restarted, &a), ["m0", "m1", "m2", "m9"]);
}

#[tokio::test]
async fn the_most_recently_written_conversations_are_the_last_a_full_cache_forgets() {
    use super::conversation::CACHED_CONVERSATIONS;

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    add_messages(&store, &customer(0), 2).await;
    store.checkpoint().await.unwrap();
    // More conversations than the cache keeps, each written a second after the one before.
    let count = CACHED_CONVERSATIONS + 6;
    let first = store.conversation_path(&page(), &customer(0));
    let written = std::time::SystemTime::now() - Duration::from_secs(count as u64);
    for n in 0..count {
        let path = store.conversation_path(&page(), &customer(n));
        if n > 0 {
            std::fs::copy(&first, &path).unwrap();
        }
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(written + Duration::from_secs(n as u64))
            .unwrap();
    }
    drop(store);

    let restarted = FileStore::with_journal(dir.path()).unwrap();
    let cached = |n: usize| restarted.conversations.is_cached(&(page(), customer(n)));
    assert!(
        !cached(5) && cached(6) && cached(count - 1),
        "the newest read ahead"
    );
    // A new conversation makes room: the least recently written go, the newest stay.
    add_messages(&restarted, &customer(count), 1).await;
    assert!(cached(count) && cached(count - 1) && cached(count - 100));
    assert!(
        !cached(6) && !cached(7),
        "the oldest read ahead were forgotten first"
    );
}

#[tokio::test]
async fn a_start_removes_the_temp_files_of_a_killed_process_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    add_messages(&store, &customer(1), 1).await;
    let file = store.conversation_path(&page(), &customer(1));
    drop(store);
    let conversations = file.parent().unwrap();
    let page_dir = conversations.parent().unwrap();
    // 4294967: above any pid Linux hands out.
    let stale = [
        conversations.join(".2001.json.tmp-4294967-1"),
        page_dir.join(".metadata.json.tmp-4294967-2"),
        conversations.join(".salesbot/.2001.json.damaged-1.tmp-4294967-3"),
    ];
    let live = conversations.join(format!(".2001.json.tmp-{}-4", std::process::id()));
    for path in stale.iter().chain([&live]) {
        std::fs::write(path, b"[").unwrap();
    }

    let restarted = FileStore::with_journal(dir.path()).unwrap();
    for path in &stale {
        assert!(!path.exists(), "{} removed", path.display());
    }
    assert!(live.exists(), "the temp file of a running process stays");
    assert_eq!(on_disk(&restarted, &customer(1)), ["m0"]);
}

/// Message `m<n>` of customer `who`, framed as the journal writes it.
fn framed(who: usize, n: usize) -> Vec<u8> {
    let events = serde_json::to_vec(&[message(n, n as i64)]).unwrap();
    journal::Record::frame("101", customer(who).as_str(), &[&events])
}

/// Journal segment `seq` as a crash leaves it: `records`, then the zero-filled rest.
fn write_segment(data_dir: &Path, seq: u64, records: &[Vec<u8>]) {
    let journal_dir = journal::dir_of(data_dir);
    std::fs::create_dir_all(&journal_dir).unwrap();
    let mut bytes = records.concat();
    bytes.resize(bytes.len() + 64, 0);
    std::fs::write(journal_dir.join(format!("{seq:016}.log")), bytes).unwrap();
}

/// The replay goes one conversation at a time (holding one file's ids): records of several
/// conversations, interleaved across segments, must still reach each file, in journal order.
#[tokio::test]
async fn interleaved_records_across_segments_are_replayed_one_conversation_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = [framed(1, 0), framed(2, 10), framed(1, 1), framed(3, 20)];
    write_segment(dir.path(), 1, &first);
    write_segment(dir.path(), 2, &[framed(2, 11), framed(1, 2), framed(2, 12)]);

    let store = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&store, &customer(1)), ["m0", "m1", "m2"]);
    assert_eq!(on_disk(&store, &customer(2)), ["m10", "m11", "m12"]);
    assert_eq!(on_disk(&store, &customer(3)), ["m20"]);
    assert_eq!(
        records_in_journal(dir.path()),
        0,
        "the old segments are gone"
    );
}

/// A record whose checksum holds but whose events are not a list ends its segment, as a
/// damaged one does, in the pass that finds whom records are for as in the one that merges.
#[tokio::test]
async fn a_record_that_is_not_one_ends_its_segment_and_the_start_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_record = journal::Record::frame("101", customer(1).as_str(), &[b"5"]);
    write_segment(dir.path(), 1, &[framed(1, 0), not_a_record, framed(1, 1)]);

    let store = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&store, &customer(1)), ["m0"]);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FileStore::with_journal(dir.path()).unwrap();
    let second = FileStore::with_journal(dir.path()).unwrap_err();
    assert!(matches!(second, StoreError::InUse { .. }), "{second}");
    // A process writing beside the server (`salesbot poll`) still can.
    let beside = FileStore::new(dir.path());
    beside
        .add_to_conversation(&page(), &customer(1), vec![message(1, 1)])
        .await
        .unwrap();
}

#[tokio::test]
async fn full_segments_are_retired_and_their_events_stay_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal_segments(dir.path(), 4096).unwrap();
    let customers: Vec<_> = (0..5).map(customer).collect();
    for n in 0..200 {
        store
            .add_to_conversation(&page(), &customers[n % 5], vec![message(n, n as i64)])
            .await
            .unwrap();
    }
    // Many segments were filled; the retired ones are checkpointed in the background,
    // leaving the active one, the one prepared next and one kept to be reused after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while segment_count(dir.path()) > 3 {
        assert!(Instant::now() < deadline, "full segments never retired");
        std::thread::sleep(Duration::from_millis(20));
    }
    // What the reused segments held before is not read as records of theirs.
    assert!(records_in_journal(dir.path()) < 200);
    for (i, who) in customers.iter().enumerate() {
        let expected: Vec<String> = (0..200)
            .filter(|n| n % 5 == i)
            .map(|n| format!("m{n}"))
            .collect();
        assert_eq!(on_disk(&store, who), expected);
    }
}

fn records_in_journal(data_dir: &Path) -> usize {
    journal::segments(&journal::dir_of(data_dir))
        .unwrap()
        .iter()
        .map(|(_, path)| journal::read_segment(path, |_| Ok(())).unwrap())
        .sum()
}

#[tokio::test]
async fn a_checkpoint_leaves_nothing_to_replay_and_the_journal_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let who = customer(1);
    add_messages(&store, &who, 3).await;
    assert_eq!(records_in_journal(dir.path()), 3);
    store.checkpoint().await.unwrap();
    assert_eq!(records_in_journal(dir.path()), 0);

    // Written after the checkpoint: journaled again, and replayed should the file lose it.
    store
        .add_to_conversation(&page(), &who, vec![message(3, 3)])
        .await
        .unwrap();
    assert_eq!(records_in_journal(dir.path()), 1);
    let path = store.conversation_path(&page(), &who);
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 20);
    std::fs::write(&path, bytes).unwrap();
    let restarted = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&restarted, &who), ["m0", "m1", "m2", "m3"]);
    assert_eq!(records_in_journal(dir.path()), 0);
}

#[tokio::test]
async fn a_late_event_is_slotted_in_near_the_end_and_a_torn_slot_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let who = customer(1);
    for n in [1, 2, 3, 5, 6] {
        store
            .add_to_conversation(&page(), &who, vec![message(n, n as i64 * 10)])
            .await
            .unwrap();
    }
    // Flushed into the file: from here on the journal no longer holds m5 and m6.
    store.checkpoint().await.unwrap();
    // Older than the last two: goes between m3 and m5, which are written again after it.
    store
        .add_to_conversation(&page(), &who, vec![message(4, 40)])
        .await
        .unwrap();
    let all = ["m1", "m2", "m3", "m4", "m5", "m6"];
    assert_eq!(on_disk(&store, &who), all);

    // A crash tears that write: everything after m3 (m4, and m5 and m6, acknowledged long
    // before) never reached the disk. m4's journal record carries the moved m5 and m6.
    let path = store.conversation_path(&page(), &who);
    drop(store);
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let m3_line_end =
        text.find("\"m3\"").unwrap() + text[text.find("\"m3\"").unwrap()..].find('\n').unwrap();
    std::fs::write(&path, &text[..m3_line_end + 1]).unwrap();
    let restarted = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&restarted, &who), all);

    // Older than everything: the whole file is rewritten, still in order.
    restarted
        .add_to_conversation(&page(), &who, vec![message(0, 0)])
        .await
        .unwrap();
    assert_eq!(on_disk(&restarted, &who)[..2], ["m0", "m1"]);
}

#[tokio::test]
async fn late_events_find_their_place_however_far_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let who = customer(1);
    // ~130 bytes an event: 100 events are ~13 KiB, past the first 4 KiB looked at.
    for n in 0..100 {
        store
            .add_to_conversation(&page(), &who, vec![message(n * 10, n as i64 * 10)])
            .await
            .unwrap();
    }
    let expect = |extra: &[usize]| {
        let mut ns: Vec<usize> = (0..100)
            .map(|n| n * 10)
            .chain(extra.iter().copied())
            .collect();
        ns.sort();
        ns.iter().map(|n| format!("m{n}")).collect::<Vec<_>>()
    };
    // ~6 KiB back (the second look), right after the first event, then two at once.
    for (late, so_far) in [(505, vec![505]), (5, vec![505, 5])] {
        store
            .add_to_conversation(&page(), &who, vec![message(late, late as i64)])
            .await
            .unwrap();
        assert_eq!(on_disk(&store, &who), expect(&so_far));
    }
    store
        .add_to_conversation(&page(), &who, vec![message(985, 985), message(975, 975)])
        .await
        .unwrap();
    assert_eq!(on_disk(&store, &who), expect(&[505, 5, 985, 975]));
    // Older than everything: the whole file is rewritten.
    store
        .add_to_conversation(&page(), &who, vec![message(3, -1)])
        .await
        .unwrap();
    let now = on_disk(&store, &who);
    assert_eq!((now[0].as_str(), now.len()), ("m3", 105));
}

#[tokio::test]
async fn shutdown_waits_for_a_paced_checkpoint_so_nothing_is_left_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal_segments(dir.path(), 4096).unwrap();
    let customers: Vec<_> = (0..5).map(customer).collect();
    // A segment that took ~1 s to fill: its checkpoint spreads its flushes over ~0.5 s.
    let mut n = 0;
    while segment_count(dir.path()) < 3 {
        assert!(n < 1000, "the first segment never filled");
        store
            .add_to_conversation(&page(), &customers[n % 5], vec![message(n, n as i64)])
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Retired, new spare made, checkpoint under way: the shutdown's checkpoint waits for it.
    store.checkpoint().await.unwrap();
    assert_eq!(
        segment_count(dir.path()),
        3,
        "the active segment, the spare and the one kept for reuse"
    );
    // Nothing to replay: not even the retired segment, whose records are all still there.
    assert_eq!(records_in_journal(dir.path()), 0);
    for (i, who) in customers.iter().enumerate() {
        let expected: Vec<String> = (0..n)
            .filter(|k| k % 5 == i)
            .map(|k| format!("m{k}"))
            .collect();
        assert_eq!(on_disk(&store, who), expected);
    }
}

#[tokio::test]
async fn a_failed_checkpoint_marks_its_segment_and_the_next_start_rewrites_its_files() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let who = customer(1);
    add_messages(&store, &who, 3).await;
    let file = store.conversation_path(&page(), &who);
    let inode = std::fs::metadata(&file).unwrap().ino();
    // The page's folder out of the way and a plain file in its place: the flush of the
    // conversation fails (not a folder), as a write-back error would make it.
    let page_dir = file.parent().unwrap().parent().unwrap().to_path_buf();
    let aside = dir.path().join("aside");
    std::fs::rename(&page_dir, &aside).unwrap();
    std::fs::write(&page_dir, b"").unwrap();
    assert!(store.checkpoint().await.is_err());
    drop(store);
    let segments = journal::segments(&journal::dir_of(dir.path())).unwrap();
    let failed: Vec<_> = segments
        .iter()
        .filter(|(_, path)| journal::checkpoint_failed(path))
        .collect();
    assert_eq!(failed.len(), 1, "{segments:?}");
    std::fs::remove_file(&page_dir).unwrap();
    std::fs::rename(&aside, &page_dir).unwrap();

    // The events are all in the file: a plain replay would write nothing. The file is
    // rewritten whole all the same (a new inode), its events intact, the journal emptied.
    let restarted = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&restarted, &who), ["m0", "m1", "m2"]);
    assert_ne!(std::fs::metadata(&file).unwrap().ino(), inode);
    assert!(
        !journal::segments(&journal::dir_of(dir.path()))
            .unwrap()
            .iter()
            .any(|(_, path)| journal::checkpoint_failed(path))
    );
    assert_eq!(records_in_journal(dir.path()), 0);
}

#[tokio::test]
async fn a_start_reuses_the_segments_it_replayed_and_replays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal_segments(dir.path(), 4096).unwrap();
    let who = customer(1);
    add_messages(&store, &who, 60).await;
    // A file made anew may get a deleted one's inode number, not its birth time as well.
    let inodes = |data_dir: &Path| -> BTreeSet<_> {
        let segments = journal::segments(&journal::dir_of(data_dir)).unwrap();
        (segments.iter())
            .map(|(_, path)| std::fs::metadata(path).unwrap())
            .map(|meta| {
                (
                    std::os::unix::fs::MetadataExt::ino(&meta),
                    meta.created().ok(),
                )
            })
            .collect()
    };
    let before = inodes(dir.path());
    assert!(records_in_journal(dir.path()) > 0);
    drop(store); // a crash: the journal is left as it is

    let restarted = FileStore::with_journal_segments(dir.path(), 4096).unwrap();
    assert_eq!(on_disk(&restarted, &who).len(), 60);
    // The same files, renumbered: none made anew, and none of their records read again.
    assert_eq!(inodes(dir.path()), before);
    assert_eq!(records_in_journal(dir.path()), 0);
    restarted
        .add_to_conversation(&page(), &who, vec![message(100, 100)])
        .await
        .unwrap();
    assert_eq!(records_in_journal(dir.path()), 1);
}

/// A flush of a conversation file failed in `salesbot poll`, which was told of the error: the
/// server's own flush of that file would now report nothing, so its checkpoint must not let
/// the journal's records go.
#[tokio::test]
async fn a_flush_failure_elsewhere_keeps_the_journal_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::with_journal(dir.path()).unwrap();
    let who = customer(1);
    add_messages(&store, &who, 3).await;
    let path = store.conversation_path(&page(), &who);
    let inode =
        |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    let before = inode(&path);
    let eio = std::io::Error::from_raw_os_error(5);
    super::flush_failures::record(&super::flush_failures::log_of(dir.path()), &path, &eio);

    let err = store.checkpoint().await.unwrap_err();
    assert!(err.to_string().contains("flush-failures.log"), "{err}");
    assert_eq!(records_in_journal(dir.path()), 3, "the records were let go");
    drop(store);

    // The next start replays them and rewrites the file whole rather than trust a flush.
    let restarted = FileStore::with_journal(dir.path()).unwrap();
    assert_eq!(on_disk(&restarted, &who), ["m0", "m1", "m2"]);
    assert_ne!(inode(&path), before);
    assert_eq!(records_in_journal(dir.path()), 0);
}
