use std::os::unix::fs::MetadataExt;

use super::*;

fn paths(dir: &std::path::Path, name: &str) -> ConversationPaths {
    ConversationPaths {
        file: dir.join(name),
        lock_dir: dir.join(".salesbot"),
        lock: dir.join(".salesbot").join(format!("{name}.lock")),
        erased: dir.join(".salesbot").join(format!("{name}.erased")),
        flush_failures: Arc::new(flush_failures::log_of(dir)),
    }
}

fn dirty(dir: &std::path::Path, name: &str) -> Dirty {
    let paths = paths(dir, name);
    std::fs::write(&paths.file, b"x").unwrap();
    let file = File::options().write(true).open(&paths.file).unwrap();
    Dirty::File(Unflushed::new(file, paths, Some(dir.to_path_buf())))
}

#[tokio::test]
async fn concurrent_commits_share_rounds_and_all_return() {
    let dir = tempfile::tempdir().unwrap();
    let sync = GroupSync::default();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (sync, item) = (sync.clone(), dirty(dir.path(), &format!("{i}.json")));
            tokio::spawn(async move { sync.commit(Some(item)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let rounds = sync.lock();
    assert!(
        rounds.finished >= 1 && rounds.finished < 64,
        "{} rounds for 64 commits",
        rounds.finished
    );
    assert!(rounds.pending.is_empty() && !rounds.wanted);
}

#[tokio::test]
async fn a_failed_round_is_retried_before_anything_later_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let sync = GroupSync::default();
    let paths = paths(dir.path(), "a.json");
    let file = File::create(&paths.file).unwrap();
    let failing = Dirty::File(Unflushed::new(file, paths, Some(gone.clone())));
    assert!(sync.commit(Some(failing)).await.is_err());
    // Nothing new, but the failed work is still not on disk: no success yet.
    assert!(sync.commit(None).await.is_err());
    std::fs::create_dir(&gone).unwrap();
    sync.commit(None).await.unwrap();
    assert!(sync.lock().pending.is_empty());
}

/// After a failed flush the retry must not trust a flush of the same file again.
#[tokio::test]
async fn a_file_whose_flush_failed_is_rewritten_whole_not_flushed_again() {
    let dir = tempfile::tempdir().unwrap();
    let sync = GroupSync::default();
    let paths = paths(dir.path(), "a.json");
    std::fs::write(&paths.file, b"[\n{\"m\":1}\n]\n").unwrap();
    let before = std::fs::metadata(&paths.file).unwrap().ino();
    // A handle whose every flush fails, as one would after a write-back error.
    let failing = File::options().write(true).open("/dev/null").unwrap();
    let unflushed = Unflushed::new(failing, paths.clone(), None);
    assert!(sync.commit(Some(Dirty::File(unflushed))).await.is_err());
    // Written down for a server's checkpoints, which could not learn of it otherwise.
    let log = std::fs::read_to_string(paths.flush_failures.as_path()).unwrap();
    assert!(log.contains("a.json"), "{log}");

    sync.commit(None).await.unwrap();
    let after = std::fs::metadata(&paths.file).unwrap().ino();
    assert_ne!(before, after, "a new file took the old one's place");
    assert_eq!(std::fs::read(&paths.file).unwrap(), b"[\n{\"m\":1}\n]\n");
    assert!(sync.lock().pending.is_empty());
}

#[tokio::test]
async fn each_sequential_commit_waits_for_its_own_round() {
    let dir = tempfile::tempdir().unwrap();
    let sync = GroupSync::default();
    sync.commit(Some(dirty(dir.path(), "a.json")))
        .await
        .unwrap();
    sync.commit(Some(dirty(dir.path(), "b.json")))
        .await
        .unwrap();
    assert_eq!(sync.lock().finished, 2);
}
