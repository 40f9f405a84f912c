//! Group commit: many writers, one flush round.
//!
//! Writers hand over the file they appended to (and, for a new file, its folder), then wait
//! for a flush round that *started after* they did so. Whoever finds no round running starts
//! one; it `fdatasync`s every file handed over since the last round, all at once, and releases
//! everybody it covered. Nothing is acknowledged before it is on disk, and the request that
//! starts a round does not pay for it alone: the rounds follow the load (see BENCHMARKS.md for
//! the designs measured).
//!
//! A round makes its writes durable one of two ways: the server's store appends their records
//! to the [`Journal`] (one write, one flush, whatever the number of files); a store without a
//! journal (`salesbot poll`, which runs beside the server) flushes each file.
//!
//! What a failed round held is handed to the next round again: the writers it covered were
//! told of the failure, and when Meta redelivers, the event is deduplicated as already
//! written, so the next success must be the one that makes it durable.
//!
//! Writes that replace an existing file still fsync before their rename (a crash must never
//! leave the name pointing at half a file); only appends and brand-new files, whose loss in a
//! crash before the round would lose nothing acknowledged, go through here.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::journal::{Entry, Journal};
use crate::store::StoreError;

/// What must reach the disk for a write to count.
#[derive(Debug)]
pub(crate) enum Dirty {
    /// The file's data, and for a file that was just created, the folder entry naming it.
    File { file: File, new_in: Option<PathBuf> },
    /// The journal record of what was written; the file is flushed when its segment retires.
    Journaled(Entry),
}

#[derive(Debug, Default)]
struct Rounds {
    /// Handed over since the last round started.
    pending: Vec<Dirty>,
    /// Rounds started so far.
    started: u64,
    /// Rounds finished so far (successfully or not).
    finished: u64,
    running: bool,
    /// The most recent round that failed; 0 for none.
    last_failed: u64,
}

#[derive(Debug, Default)]
struct Inner {
    rounds: Mutex<Rounds>,
    done: Notify,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupSync {
    inner: Arc<Inner>,
    journal: Option<Arc<Journal>>,
}

impl GroupSync {
    /// Rounds that append to `journal` instead of flushing files.
    pub(crate) fn journaled(journal: Journal) -> GroupSync {
        GroupSync {
            inner: Arc::default(),
            journal: Some(Arc::new(journal)),
        }
    }

    pub(crate) fn is_journaled(&self) -> bool {
        self.journal.is_some()
    }

    pub(crate) fn journal(&self) -> Option<Arc<Journal>> {
        self.journal.clone()
    }

    /// Returns once `dirty` (and everything handed over before it) is on disk.
    pub(crate) async fn commit(&self, dirty: Option<Dirty>) -> Result<(), StoreError> {
        let ticket = {
            let mut rounds = self.lock();
            rounds.pending.extend(dirty);
            rounds.started + 1
        };
        loop {
            let notified = self.inner.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Decide under the lock, act without it.
            let lead = {
                let mut rounds = self.lock();
                if rounds.finished >= ticket {
                    return if rounds.last_failed >= ticket {
                        Err(failure())
                    } else {
                        Ok(())
                    };
                }
                if rounds.running {
                    None
                } else {
                    rounds.running = true;
                    rounds.started += 1;
                    Some((rounds.started, std::mem::take(&mut rounds.pending)))
                }
            };
            if let Some((round, batch)) = lead {
                // Its own task: a caller that is cancelled (a client hanging up) must not
                // leave a round marked running forever.
                let (inner, journal) = (Arc::clone(&self.inner), self.journal.clone());
                tokio::spawn(run_round(inner, journal, round, batch));
            }
            notified.await;
        }
    }

    /// True when the latest round failed: what was written since may not be on disk, so even
    /// a request that writes nothing new must wait for a round that succeeds.
    pub(crate) fn last_failed(&self) -> bool {
        let rounds = self.lock();
        rounds.last_failed != 0 && rounds.last_failed == rounds.finished
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.inner.lock()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The journal is released before anyone is told: once every writer has returned, the store
/// can be dropped and its journal opened again (a restart in the same process).
async fn run_round(
    inner: Arc<Inner>,
    journal: Option<Arc<Journal>>,
    round: u64,
    batch: Vec<Dirty>,
) {
    let (outcome, batch) = flush(batch, journal).await;
    let failed = outcome.is_err();
    if let Err(err) = &outcome {
        tracing::error!(error = %err, "flushing conversation files failed; those writes are not acknowledged");
    }
    {
        let mut rounds = inner.lock();
        rounds.running = false;
        rounds.finished = round;
        if failed {
            rounds.last_failed = round;
            rounds.pending.splice(0..0, batch);
        }
    }
    inner.done.notify_waiters();
}

/// Appends the round's records to the journal, and flushes every file of the round at once,
/// each on a blocking-pool thread: flushes that are in flight together share the device's
/// cache flushes, where one after another each would wait for its own. Gives the batch back,
/// to be retried should the round fail.
async fn flush(
    batch: Vec<Dirty>,
    journal: Option<Arc<Journal>>,
) -> (std::io::Result<()>, Vec<Dirty>) {
    let (mut records, mut files) = (Vec::new(), Vec::new());
    let mut folders = BTreeSet::new();
    for dirty in batch {
        match dirty {
            Dirty::Journaled(entry) => records.push(entry),
            Dirty::File { file, new_in } => {
                folders.extend(new_in.clone());
                files.push(Arc::new((file, new_in)));
            }
        }
    }
    let records = Arc::new(records);
    let mut tasks = tokio::task::JoinSet::new();
    match (records.is_empty(), journal) {
        (true, _) => {}
        (false, Some(journal)) => {
            let records = Arc::clone(&records);
            tasks.spawn_blocking(move || journal.append(&records));
        }
        (false, None) => {
            tasks.spawn(async { Err(std::io::Error::other("no journal to append to")) });
        }
    }
    for file in &files {
        let file = Arc::clone(file);
        tasks.spawn_blocking(move || file.0.sync_data());
    }
    for folder in folders {
        tasks.spawn_blocking(move || File::open(&folder)?.sync_all());
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(err)) => result = Err(err),
            Err(err) => result = Err(std::io::Error::other(err)),
        }
    }
    // Every task is done: the batch is this function's alone again.
    let records = Arc::into_inner(records).expect("no task holds the records any more");
    let batch = records.into_iter().map(Dirty::Journaled);
    let files = files.into_iter().map(|file| {
        let (file, new_in) = Arc::into_inner(file).expect("no task holds the file any more");
        Dirty::File { file, new_in }
    });
    (result, batch.chain(files).collect())
}

fn failure() -> StoreError {
    StoreError::io("flush", "conversation files")(std::io::Error::other("an earlier flush failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(dir: &std::path::Path, name: &str) -> Dirty {
        let path = dir.join(name);
        std::fs::write(&path, b"x").unwrap();
        Dirty::File {
            file: File::options().write(true).open(&path).unwrap(),
            new_in: Some(dir.to_path_buf()),
        }
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
            rounds.started >= 1 && rounds.started < 64,
            "{} rounds for 64 commits",
            rounds.started
        );
        assert_eq!(rounds.started, rounds.finished);
        assert!(rounds.pending.is_empty());
    }

    #[tokio::test]
    async fn a_failed_round_is_retried_before_anything_later_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let sync = GroupSync::default();
        let failing = Dirty::File {
            file: File::create(dir.path().join("a.json")).unwrap(),
            new_in: Some(gone.clone()),
        };
        assert!(sync.commit(Some(failing)).await.is_err());
        assert!(sync.last_failed());
        // Nothing new, but the failed work is still not on disk: no success yet.
        assert!(sync.commit(None).await.is_err());
        std::fs::create_dir(&gone).unwrap();
        sync.commit(None).await.unwrap();
        assert!(!sync.last_failed());
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
}
