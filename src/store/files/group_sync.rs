//! Group commit: many writers, one `syncfs(2)`.
//!
//! An fsync per webhook request caps throughput at the disk's flush rate, and concurrent
//! fsyncs queue behind one another in the filesystem journal. Writers here append without
//! syncing, then wait for a `syncfs` of the data directory's filesystem that *started after*
//! their write. Whoever finds no sync running starts one; everybody who wrote before it
//! started is released when it ends. So a burst of 64 requests costs one flush, and nothing is
//! acknowledged before it is on disk.
//!
//! Writes that replace an existing file still fsync before their rename (a crash must never
//! leave the new name pointing at half a file); only appends and brand-new files, whose loss
//! in a crash would lose nothing acknowledged, are left to the group sync.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::store::StoreError;

#[derive(Debug, Default)]
struct Rounds {
    /// Number of syncs started so far.
    started: u64,
    /// Number of syncs finished so far (successfully or not).
    finished: u64,
    running: bool,
    /// The most recent round that failed; 0 for none.
    last_failed: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    rounds: Mutex<Rounds>,
    done: Notify,
}

#[derive(Debug, Clone)]
pub(crate) struct GroupSync {
    inner: Arc<Inner>,
}

impl GroupSync {
    /// Syncs the filesystem holding `dir` (created on first use if needed).
    pub(crate) fn new(dir: &Path) -> GroupSync {
        GroupSync {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                rounds: Mutex::default(),
                done: Notify::new(),
            }),
        }
    }

    /// Returns once everything written before this call is on disk.
    pub(crate) async fn commit(&self) -> Result<(), StoreError> {
        let ticket = self.lock().started + 1;
        loop {
            let notified = self.inner.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Decide under the lock, act (await) without it.
            let lead = {
                let mut rounds = self.lock();
                if rounds.finished >= ticket {
                    return if rounds.last_failed >= ticket {
                        Err(self.failure())
                    } else {
                        Ok(())
                    };
                }
                if rounds.running {
                    None
                } else {
                    rounds.running = true;
                    rounds.started += 1;
                    Some(rounds.started)
                }
            };
            if let Some(round) = lead {
                // Its own task: a caller that is cancelled (a client hanging up) must not leave
                // a round marked running forever.
                let this = self.clone();
                tokio::spawn(async move { this.run_round(round).await });
            }
            notified.await;
        }
    }

    /// One `syncfs`, then wakes everybody waiting.
    async fn run_round(self, round: u64) {
        let dir = self.inner.dir.clone();
        let outcome = tokio::task::spawn_blocking(move || sync_filesystem(&dir)).await;
        let failed = !matches!(outcome, Ok(Ok(())));
        if let Ok(Err(err)) = &outcome {
            tracing::error!(error = %err, dir = %self.inner.dir.display(), "syncfs failed; writes are not acknowledged");
        }
        {
            let mut rounds = self.lock();
            rounds.running = false;
            rounds.finished = round;
            if failed {
                rounds.last_failed = round;
            }
        }
        self.inner.done.notify_waiters();
    }

    /// True when the latest sync failed: what was written since may not be on disk, so even a
    /// request that writes nothing new must not be acknowledged without a fresh sync.
    pub(crate) fn last_failed(&self) -> bool {
        let rounds = self.lock();
        rounds.last_failed != 0 && rounds.last_failed == rounds.finished
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.inner.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failure(&self) -> StoreError {
        StoreError::io("sync", &self.inner.dir)(std::io::Error::other("syncfs failed"))
    }
}

fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let handle = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&handle)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_commits_share_syncs_and_all_return() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::new(dir.path());
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let sync = sync.clone();
                tokio::spawn(async move { sync.commit().await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let rounds = sync.lock();
        assert!(
            rounds.started >= 1 && rounds.started < 64,
            "{} syncs for 64 commits",
            rounds.started
        );
        assert_eq!(rounds.started, rounds.finished);
    }

    #[tokio::test]
    async fn a_commit_waits_for_a_sync_that_started_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let sync = GroupSync::new(dir.path());
        sync.commit().await.unwrap();
        sync.commit().await.unwrap();
        assert_eq!(
            sync.lock().finished,
            2,
            "each sequential commit needs its own sync"
        );
    }
}
