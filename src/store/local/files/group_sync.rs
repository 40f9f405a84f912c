//! Group commit: many writers, one flush round.
//!
//! Writers hand over the file they appended to (and, for a new file, its folder), then wait
//! for the round that takes it: one round at a time, each taking everything handed over
//! since the last began, making it durable at once, and waking exactly the writers it
//! covered. A round that ends with more work waiting queues the next behind the tasks already
//! runnable, and that queue is how long the next round gathers: short when the server is
//! idle, longer (so fewer, bigger rounds) when it is busy. Nothing is acknowledged before it
//! is on disk (see BENCHMARKS.md for the designs measured).
//!
//! A round makes its writes durable one of two ways: the server's store appends their records
//! to the [`Journal`] (one write, one flush, whatever the number of files); a store without a
//! journal (`salesbot poll`, which runs beside the server) flushes each file.
//!
//! What a failed round held is handed to the next round again: the writers it covered were
//! told of the failure, and when Meta redelivers, the event is deduplicated as already
//! written, so the next success must be the one that makes it durable. A journal record is
//! written again; a file whose flush failed is rewritten whole, not flushed again: once a
//! flush has reported a write-back error, Linux may have dropped the pages that failed, and
//! the next flush of the same file reports nothing and writes nothing ("fsyncgate").
//!
//! Writes that replace an existing file still fsync before their rename (a crash must never
//! leave the name pointing at half a file); only appends and brand-new files, whose loss in a
//! crash before the round would lose nothing acknowledged, go through here.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use super::conversation::{ConversationPaths, rewrite_whole};
use super::flush_failures;
use super::journal::{Entry, Journal};
use crate::store::StoreError;
use crate::telemetry::metrics::Metrics;

/// What must reach the disk for a write to count.
#[derive(Debug)]
pub(crate) enum Dirty {
    /// Without a journal: the file is flushed by the round.
    File(Unflushed),
    /// The journal record of what was written; the file is flushed when its segment retires.
    Journaled(Entry),
}

/// A file appended to or created without a flush: its data, and for a file that was just
/// created, the folder entry naming it.
#[derive(Debug)]
pub(crate) struct Unflushed {
    file: File,
    paths: ConversationPaths,
    new_in: Option<PathBuf>,
    /// A flush of `file` failed: what it held is made durable by a rewrite instead.
    in_doubt: AtomicBool,
}

impl Unflushed {
    pub(crate) fn new(file: File, paths: ConversationPaths, new_in: Option<PathBuf>) -> Unflushed {
        Unflushed {
            file,
            paths,
            new_in,
            in_doubt: AtomicBool::new(false),
        }
    }

    fn make_durable(&self) -> std::io::Result<()> {
        if self.in_doubt.load(Ordering::Relaxed) {
            return rewrite_whole(&self.paths).map_err(std::io::Error::other);
        }
        let flushed = self.file.sync_data();
        if let Err(err) = &flushed {
            self.in_doubt.store(true, Ordering::Relaxed);
            // The error is spent: a server's checkpoint of this file must learn of it here.
            flush_failures::record(&self.paths.flush_failures, &self.paths.file, err);
        }
        flushed
    }
}

/// The writers of one round wait on it; the round says once how it ended.
#[derive(Debug, Default)]
struct Round {
    done: Notify,
    /// `true` once what the round took is on disk.
    durable: OnceLock<bool>,
}

#[derive(Debug, Default)]
struct Rounds {
    /// Handed over since the last round started.
    pending: Vec<Dirty>,
    /// The round that will take `pending`.
    next: Arc<Round>,
    /// Somebody waits for `next`, even with nothing handed over (a repeat, or after a failure).
    wanted: bool,
    /// A round task is queued or running.
    scheduled: bool,
    /// Rounds finished so far (successfully or not).
    finished: u64,
}

#[derive(Debug, Default)]
struct Inner {
    rounds: Mutex<Rounds>,
    /// Where each round's duration is counted, once the application says.
    metrics: std::sync::OnceLock<Metrics>,
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

    /// Counts the duration of every round from now on.
    pub(crate) fn observe(&self, metrics: &Metrics) {
        let _ = self.inner.metrics.set(metrics.clone());
    }

    pub(crate) fn is_journaled(&self) -> bool {
        self.journal.is_some()
    }

    pub(crate) fn journal(&self) -> Option<Arc<Journal>> {
        self.journal.clone()
    }

    /// Returns once `dirty` (and everything handed over before it) is on disk.
    #[cfg(test)]
    pub(crate) async fn commit(&self, dirty: Option<Dirty>) -> Result<(), StoreError> {
        self.hand_over(dirty).durable().await
    }

    /// Hands `dirty` (nothing, to wait for what others handed over) to the next round, and
    /// returns that round: it covers everything handed over before it too, and the round in
    /// progress, if any, ends first. Not async, so that a writer can hand over while it still
    /// holds its conversation: whoever then finds its events there waits for the same round.
    pub(crate) fn hand_over(&self, dirty: Option<Dirty>) -> Ticket {
        let (round, start) = {
            let mut rounds = self.lock();
            rounds.pending.extend(dirty);
            rounds.wanted = true;
            let start = !rounds.scheduled;
            rounds.scheduled = true;
            (Arc::clone(&rounds.next), start)
        };
        if start {
            // Its own task: a caller that is cancelled (a client hanging up) must not leave
            // the rounds stopped.
            tokio::spawn(run_rounds(Arc::clone(&self.inner), self.journal.clone()));
        }
        Ticket(round)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.inner.lock()
    }

    #[cfg(test)]
    pub(crate) fn rounds_finished(&self) -> u64 {
        self.lock().finished
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs rounds while anybody waits for one. Between two, it lets the tasks already runnable
/// go first: the writers that join meanwhile go in the next round. The journal is released
/// before anyone is told: once every writer has returned, the store can be dropped and its
/// journal opened again (a restart in the same process).
async fn run_rounds(inner: Arc<Inner>, mut journal: Option<Arc<Journal>>) {
    loop {
        let (round, batch) = {
            let mut rounds = inner.lock();
            rounds.wanted = false;
            // The next round is likely as big as this one: room for it in one allocation.
            let room = rounds.pending.len();
            (
                std::mem::take(&mut rounds.next),
                std::mem::replace(&mut rounds.pending, Vec::with_capacity(room)),
            )
        };
        let started = std::time::Instant::now();
        let (outcome, batch) = flush(batch, journal.clone()).await;
        if let Some(metrics) = inner.metrics.get() {
            metrics.flush(started.elapsed());
        }
        if let Err(err) = &outcome {
            tracing::error!(error = %err, "flushing conversation files failed; those writes are not acknowledged");
        }
        let again = {
            let mut rounds = inner.lock();
            rounds.finished += 1;
            if outcome.is_err() {
                rounds.pending.splice(0..0, batch);
            }
            rounds.scheduled = rounds.wanted;
            rounds.wanted
        };
        if !again {
            journal = None;
        }
        let _ = round.durable.set(outcome.is_ok());
        round.done.notify_waiters();
        if !again {
            return;
        }
        tokio::task::yield_now().await;
    }
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
            Dirty::File(unflushed) => {
                folders.extend(unflushed.new_in.clone());
                files.push(Arc::new(unflushed));
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
        tasks.spawn_blocking(move || file.make_durable());
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
    let files = files
        .into_iter()
        .map(|file| Dirty::File(Arc::into_inner(file).expect("no task holds the file any more")));
    (result, batch.chain(files).collect())
}

/// A place in a round, from [`GroupSync::hand_over`].
#[derive(Debug)]
pub(crate) struct Ticket(Arc<Round>);

impl Ticket {
    /// Returns once the round has ended: `Ok` if what it took is on disk.
    pub(crate) async fn durable(self) -> Result<(), StoreError> {
        let round = self.0;
        // Registered before looking, so an ending between the look and the wait is not missed.
        let notified = round.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if round.durable.get().is_none() {
            notified.await;
        }
        match round.durable.get() {
            Some(true) => Ok(()),
            _ => Err(failure()),
        }
    }
}

fn failure() -> StoreError {
    StoreError::io("flush", "conversation files")(std::io::Error::other("an earlier flush failed"))
}

#[cfg(test)]
mod tests;
