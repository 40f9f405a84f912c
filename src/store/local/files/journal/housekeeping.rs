//! The journal's own thread: it prepares the next segment and retires full ones.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::super::atomic::{flush_file, sync_dir};
use super::super::flush_failures;
use super::segment::{Segment, create_segment, mark_checkpoint_failed, reuse_segment};
use crate::store::StoreError;

/// A full segment handed to the housekeeper: flush what it touched, then reuse it.
#[derive(Debug)]
pub(super) struct Retired {
    pub(super) segment: PathBuf,
    pub(super) touched: HashSet<PathBuf>,
    pub(super) new_dirs: HashSet<PathBuf>,
    /// How long the segment took to fill: about how long its checkpoint may take.
    pub(super) life: Duration,
    /// The flush failures log's mark its checkpoint compares with (see `Active`).
    pub(super) failures_at: u64,
}

/// The full segments handed to the housekeeper and not yet checkpointed, shared with the
/// journal: it tells a checkpoint when to stop pacing itself, and shutdown when all is done.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    pub(super) unfinished: Mutex<usize>,
    pub(super) finished: Condvar,
    pub(super) stopping: AtomicBool,
}

impl Backlog {
    pub(super) fn handed_over(&self) {
        *self.count() += 1;
    }

    pub(super) fn checkpointed(&self) {
        *self.count() -= 1;
        self.finished.notify_all();
    }

    /// Another full segment is waiting behind the one in progress, or the server is stopping.
    fn in_a_hurry(&self) -> bool {
        self.stopping.load(Ordering::Relaxed) || *self.count() > 1
    }

    /// Waits up to `limit` for every segment handed over to be checkpointed; `false` if some
    /// are left (the next start replays them).
    pub(super) fn wait_until_empty(&self, limit: Duration) -> bool {
        let (count, _) = self
            .finished
            .wait_timeout_while(self.count(), limit, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *count == 0
    }

    fn count(&self) -> std::sync::MutexGuard<'_, usize> {
        self.unfinished.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The journal's own thread: keeps a spare segment ready for the next rotation and retires
/// the full one each rotation hands over. The next spare is handed over before that
/// checkpoint, so however long a checkpoint takes, no rotation (and so no journal round) waits
/// for it. A retired segment, once checkpointed, is kept to be the spare after that: only the
/// first rotations of a run make a new one.
pub(super) struct Housekeeping {
    pub(super) dir: PathBuf,
    pub(super) seq: u64,
    pub(super) segment_bytes: u64,
    pub(super) spares: SyncSender<std::io::Result<Segment>>,
    pub(super) retired: Receiver<Retired>,
    pub(super) backlog: Arc<Backlog>,
    /// Segments ready to be the next spares, in order: checkpointed (or replayed) and
    /// renumbered. One at most once running; two after a start.
    pub(super) reusable: VecDeque<Segment>,
    pub(super) flush_failures: Arc<PathBuf>,
}

impl Housekeeping {
    pub(super) fn run(mut self) {
        if !self.prepare() {
            return;
        }
        // The rotation that hands a full segment over has taken the spare.
        while let Ok(full) = self.retired.recv() {
            let ready = match self.spare() {
                Ok(segment) => {
                    if !self.hand_over(Ok(segment)) {
                        return;
                    }
                    true
                }
                Err(err) => {
                    self.report(&err);
                    false
                }
            };
            // Without a spare (a full disk, most likely) the checkpoint goes first, at full
            // speed: the segment it retires is the next spare, needing no space, where waiting
            // for a new spare first would hold up every round until space came back.
            let flushed = flush_failures::checkpoint_outcome(
                &self.flush_failures,
                &full.segment,
                full.failures_at,
                checkpoint(&full, &self.backlog, ready),
            );
            match flushed {
                Ok(()) => self.keep(&full.segment),
                Err(err) => {
                    // Kept: the next start-up replays it, and rewrites its files.
                    let kept = mark_checkpoint_failed(&full.segment);
                    tracing::error!(error = %err, segment = %kept.display(),
                        "cannot flush the files of a journal segment; it stays for replay");
                }
            }
            self.backlog.checkpointed();
            if !ready && !self.prepare() {
                return;
            }
        }
    }

    /// Returns once a spare is handed over; `false` when the journal is gone. Each failure is
    /// handed over too, so that a rotation waiting for the spare fails its round instead of
    /// holding every request up.
    fn prepare(&mut self) -> bool {
        loop {
            match self.spare() {
                Ok(segment) => return self.hand_over(Ok(segment)),
                Err(err) => {
                    self.report(&err);
                    if !self.hand_over(Err(err)) {
                        return false;
                    }
                }
            }
        }
    }

    /// The segment kept for reuse, or else a new one.
    fn spare(&mut self) -> std::io::Result<Segment> {
        if let Some(segment) = self.reusable.pop_front() {
            return Ok(segment);
        }
        let segment = create_segment(&self.dir, self.seq, self.segment_bytes)?;
        self.seq += 1;
        Ok(segment)
    }

    /// Keeps a checkpointed segment as the next spare, renumbered at once so that a crash
    /// before its reuse does not replay what its files hold already; deletes it when one is
    /// kept already or it cannot be renumbered.
    fn keep(&mut self, segment: &Path) {
        let reused = match self.reusable.is_empty() {
            true => reuse_segment(segment, self.seq, self.segment_bytes),
            false => Err(std::io::Error::other("a spare is kept already")),
        };
        match reused {
            Ok(spare) => {
                self.seq += 1;
                self.reusable.push_back(spare);
            }
            Err(err) => {
                if self.reusable.is_empty() {
                    tracing::warn!(error = %err, segment = %segment.display(),
                        "cannot reuse a retired journal segment; the next one is made anew");
                }
                if let Err(err) = fs::remove_file(segment) {
                    tracing::error!(error = %err, segment = %segment.display(),
                        "cannot delete a retired journal segment; the next start replays it again");
                }
            }
        }
    }

    /// `false` when the journal is gone.
    fn hand_over(&mut self, next: std::io::Result<Segment>) -> bool {
        self.spares.send(next).is_ok()
    }

    fn report(&self, err: &std::io::Error) {
        tracing::error!(error = %err, folder = %self.dir.display(), "cannot prepare the next journal segment");
    }
}

/// The longest a checkpoint spreads its flushes over, however slowly its segment filled: what
/// it has not flushed yet is replayed after a crash, and a replay should stay short.
const MAX_SPREAD: Duration = Duration::from_secs(30);

/// Flushes every file a segment's records touched (and the folders of new files): its records
/// are all in durable files then, and the segment can be reused.
///
/// Paced: every `fdatasync` is a device flush, and the journal's round flushes queue behind
/// those in progress. Back to back, ~1,000 of them held the rounds' p99 at 10 ms for half a
/// second per segment. So the flushes are spread over nine tenths of the time the segment took
/// to fill (the next one takes about as long), each followed by a pause at least as long as it
/// took, until another segment is waiting or the server is stopping. Over half the life, the
/// webhook's p99 at 64 connections was 10.0–10.8 ms; over nine tenths, 9.2–9.4, for a replay
/// after a crash of up to two segments instead of one (BENCHMARKS.md).
/// Not paced at all when no spare could be made first: a rotation may be waiting for one.
fn checkpoint(full: &Retired, backlog: &Backlog, paced: bool) -> Result<(), StoreError> {
    let files = u32::try_from(full.touched.len()).unwrap_or(u32::MAX).max(1);
    let spread = (full.life * 9 / 10).min(MAX_SPREAD) / files;
    let last = full.touched.len().saturating_sub(1);
    let began = Instant::now();
    let (mut flushing, mut hurried) = (Duration::ZERO, 0);
    for (n, path) in full.touched.iter().enumerate() {
        let started = Instant::now();
        flush_file(path)?;
        flushing += started.elapsed();
        // No pause after the last: the segment can go at once.
        if paced && n < last {
            match backlog.in_a_hurry() {
                false => std::thread::sleep(started.elapsed().max(spread)),
                true => hurried += 1,
            }
        }
    }
    full.new_dirs.iter().try_for_each(|dir| sync_dir(dir))?;
    // For an operator who wonders whether checkpoints keep up with the load.
    tracing::debug!(segment = %full.segment.display(), files = full.touched.len(),
        filled_in = ?full.life, took = ?began.elapsed(), flushing = ?flushing,
        unpaced = hurried, "journal segment checkpointed");
    Ok(())
}
