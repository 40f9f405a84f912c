//! The write-ahead journal of the server: how a webhook is acknowledged with one flush per
//! round instead of one per conversation file.
//!
//! ```text
//! DATA_DIR/.salesbot/journal/.lock                 flock'd by the one server using DATA_DIR
//! DATA_DIR/.salesbot/journal/<seq>.log             segments (layout: `segment.rs`)
//! record payload: {"page","customer","events":[...]}
//! ```
//!
//! Why: on this kind of disk every `fdatasync` of a conversation file is its own device flush,
//! and a round of 64 requests touched ~64 files. Now the events a round added are appended to
//! one segment and that segment alone is flushed before anyone is acknowledged; the
//! conversation files themselves were already written (in the page cache) before their record,
//! so when a full segment is retired, flushing the files it touched covers every record in it,
//! and the segment can be reused. Segments are zero-filled when created (and synced then), so
//! flushing a record never has to change the file's size or block map: `fdatasync` writes data
//! only.
//!
//! After a crash, [`recover`] reads every segment left, oldest first, up to its first record
//! that is incomplete or fails its checksum (a torn last round, never acknowledged), and merges
//! the events into their files again: merging is idempotent (dedup by `mid` or digest), so
//! replaying what already reached the files changes nothing.

mod housekeeping;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::atomic::{ensure_dir, flush_paths};
use super::flush_failures;
use crate::store::StoreError;
use housekeeping::{Backlog, Housekeeping, Retired};
#[cfg(test)]
pub(crate) use segment::read_segment;
pub(crate) use segment::{
    Addressee, Record, SegmentFile, checkpoint_failed, scan_segment, segments,
};
use segment::{
    START, Segment, create_segment, mark_checkpoint_failed, reuse_segment, salt_records,
    segment_name, zero,
};

/// Big enough that a segment is retired only every ~10 s under full load here: each
/// retirement flushes every file the segment touched (~1,000 at once, holding up the journal's
/// own flushes meanwhile), so fewer of them mean fewer slow requests (8 MiB: p99 at 64
/// connections 18.70 / 17.20 ms in 30 s runs, 32 MiB: 14.14 / 15.62; BENCHMARKS.md). A
/// crash leaves the active segment, and the retired one if its checkpoint was under way, to
/// replay at start-up: 2–6 s here for 100,000–300,000 records.
pub(crate) const SEGMENT_BYTES: u64 = 32 << 20;

/// One journal entry of a round: the record, and what its checkpoint must flush.
#[derive(Debug)]
pub(crate) struct Entry {
    pub framed: Vec<u8>,
    pub file: PathBuf,
    pub new_in: Option<PathBuf>,
}

/// The segment being written, and what its records touched.
#[derive(Debug)]
struct Active {
    segment: Segment,
    offset: u64,
    touched: HashSet<PathBuf>,
    new_dirs: HashSet<PathBuf>,
    since: Instant,
    /// The flush failures log's mark its checkpoint compares with (see `flush_failures`): the
    /// one of when the segment before it began, since a record's file is written before the
    /// record, and so maybe before the rotation that began this segment.
    failures_at: u64,
    /// The mark when this segment began: the next one's `failures_at`.
    began_at: u64,
}

/// How long shutdown waits for a full segment's checkpoint in progress (at full speed once the
/// server is stopping: about half a second for 1,000 files here).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Journal {
    writer: Mutex<Writer>,
    segment_bytes: u64,
    backlog: Arc<Backlog>,
    /// Waited for when the journal is dropped (see its `Drop`).
    housekeeper: Option<std::thread::JoinHandle<()>>,
    /// Held for the journal's lifetime: a second server on the same DATA_DIR must not start.
    _lock: File,
}

impl Drop for Journal {
    /// Cuts the housekeeper off and waits for it, before the folder's lock is released: a
    /// journal opened on the same folder next (a restart within one process) must not meet it
    /// still checkpointing and renaming the segments it is replaying.
    fn drop(&mut self) {
        let writer = self.writer.get_mut().unwrap_or_else(|p| p.into_inner());
        writer.retired = mpsc::channel().0;
        writer.spares = mpsc::sync_channel(1).1;
        if let Some(housekeeper) = self.housekeeper.take()
            && housekeeper.join().is_err()
        {
            tracing::error!("the journal's housekeeper panicked");
        }
    }
}

#[derive(Debug)]
struct Writer {
    active: Active,
    /// Segments prepared ahead by the housekeeper (zero-filling takes a while).
    spares: Receiver<std::io::Result<Segment>>,
    retired: Sender<Retired>,
    backlog: Arc<Backlog>,
    flush_failures: Arc<PathBuf>,
}

/// The journal folder of a data folder.
pub(crate) fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join(".salesbot").join("journal")
}

/// Locks the journal folder for this process; fails when another server holds it.
pub(crate) fn lock(dir: &Path) -> Result<File, StoreError> {
    ensure_dir(dir)?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(err)) => Err(StoreError::io("lock", &path)(err)),
    }
}

impl Journal {
    /// Starts a journal in `dir` holding `lock`. `replayed`: the segments left in `dir`, every
    /// record of which is in durable files now; up to three are reused, the others deleted.
    pub(crate) fn start(
        dir: &Path,
        lock: File,
        segment_bytes: u64,
        replayed: Vec<PathBuf>,
        flush_failures: Arc<PathBuf>,
    ) -> Result<Journal, StoreError> {
        let first = segments(dir)?.last().map_or(1, |(seq, _)| seq + 1);
        let mut replayed = replayed.into_iter();
        let segment = next_segment(dir, &mut replayed, first, segment_bytes)
            .map_err(StoreError::io("create", dir.join(segment_name(first))))?;
        // The spares are ready before the server listens: zero-filling one under load held the
        // journal's flushes up (later spares are retired segments, reused).
        let spare = next_segment(dir, &mut replayed, first + 1, segment_bytes);
        if let Err(err) = &spare {
            tracing::warn!(error = %err, "cannot prepare the next journal segment yet; retrying in the background");
        }
        let mut reusable: VecDeque<Segment> = spare.into_iter().collect();
        let mut seq = first + 1 + reusable.len() as u64;
        for old in replayed {
            let kept = (reusable.len() < 2)
                .then(|| reuse_segment(&old, seq, segment_bytes).ok())
                .flatten();
            match kept {
                Some(kept) => {
                    reusable.push_back(kept);
                    seq += 1;
                }
                None => fs::remove_file(&old).map_err(StoreError::io("remove", &old))?,
            }
        }
        // Room for the one spare made ahead: handing it over never waits for a rotation.
        let (spare_tx, spares) = mpsc::sync_channel(1);
        let (retired, retired_rx) = mpsc::channel();
        let folder = dir.to_path_buf();
        let backlog = Arc::new(Backlog::default());
        let housekeeping = Housekeeping {
            dir: folder,
            seq,
            segment_bytes,
            spares: spare_tx,
            retired: retired_rx,
            backlog: Arc::clone(&backlog),
            reusable,
            flush_failures: Arc::clone(&flush_failures),
        };
        let housekeeper = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || housekeeping.run())
            .map_err(StoreError::io("start the housekeeper of", dir))?;
        Ok(Journal {
            writer: Mutex::new(Writer {
                active: Active::new(segment, flush_failures::mark(&flush_failures)),
                spares,
                retired,
                backlog: Arc::clone(&backlog),
                flush_failures,
            }),
            segment_bytes,
            backlog,
            housekeeper: Some(housekeeper),
            _lock: lock,
        })
    }

    /// Appends a round's records with one write and one `fdatasync`. Blocking.
    pub(crate) fn append(&self, batch: &[Entry]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(batch.iter().map(|e| e.framed.len()).sum());
        for entry in batch {
            bytes.extend_from_slice(&entry.framed);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.active.offset > START
            && writer.active.offset + bytes.len() as u64 > self.segment_bytes
        {
            writer.rotate()?;
        }
        let active = &mut writer.active;
        salt_records(&mut bytes, active.segment.salt);
        // On failure the offset stays: the next round overwrites whatever got through.
        active.segment.file.write_all_at(&bytes, active.offset)?;
        active.segment.file.sync_data()?;
        active.offset += bytes.len() as u64;
        for entry in batch {
            if !active.touched.contains(&entry.file) {
                active.touched.insert(entry.file.clone());
            }
            active.new_dirs.extend(entry.new_in.iter().cloned());
        }
        Ok(())
    }

    /// Flushes the files the active segment's records touched, then zeroes what the segment
    /// holds: a replay reads nothing from it, and the journal goes on from its start.
    ///
    /// Asked at shutdown: a full segment's checkpoint in progress stops pacing itself, and is
    /// waited for, so the next start has nothing to replay.
    pub(crate) fn checkpoint(&self) -> Result<(), StoreError> {
        self.backlog.stopping.store(true, Ordering::Relaxed);
        {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let Writer {
                active,
                flush_failures: log,
                ..
            } = &mut *writer;
            let flushed = flush_failures::checkpoint_outcome(
                log,
                &active.segment.path,
                active.failures_at,
                flush_paths(&active.touched, &active.new_dirs),
            );
            if let Err(err) = flushed {
                // Kept for the next start, which rewrites its files.
                active.segment.path = mark_checkpoint_failed(&active.segment.path);
                return Err(err);
            }
            let path = &active.segment.path;
            zero(&active.segment.file, START, active.offset)
                .and_then(|()| active.segment.file.sync_data())
                .map_err(StoreError::io("empty", path))?;
            active.offset = START;
            active.touched.clear();
            active.new_dirs.clear();
        }
        if !self.backlog.wait_until_empty(SHUTDOWN_WAIT) {
            tracing::warn!(
                "a full journal segment is still being flushed into its files; the next start replays it"
            );
        }
        Ok(())
    }
}

/// Segment `seq`: a replayed one reused, or else a new one. A replayed one that cannot be
/// reused (another size, or written before segments had a header) is deleted.
fn next_segment(
    dir: &Path,
    replayed: &mut impl Iterator<Item = PathBuf>,
    seq: u64,
    segment_bytes: u64,
) -> std::io::Result<Segment> {
    for old in replayed {
        match reuse_segment(&old, seq, segment_bytes) {
            Ok(segment) => return Ok(segment),
            Err(err) => {
                tracing::info!(error = %err, segment = %old.display(), "journal segment not reused");
                fs::remove_file(&old)?;
            }
        }
    }
    create_segment(dir, seq, segment_bytes)
}

impl Active {
    fn new(segment: Segment, failures_mark: u64) -> Active {
        Active {
            segment,
            offset: START,
            touched: HashSet::new(),
            new_dirs: HashSet::new(),
            since: Instant::now(),
            failures_at: failures_mark,
            began_at: failures_mark,
        }
    }
}

impl Writer {
    /// Swaps in the prepared segment and hands the full one to the housekeeper.
    fn rotate(&mut self) -> std::io::Result<()> {
        let next = self
            .spares
            .recv()
            .map_err(|_| std::io::Error::other("the journal housekeeper stopped"))??;
        let mut next = Active::new(next, flush_failures::mark(&self.flush_failures));
        next.failures_at = self.active.began_at;
        let full = std::mem::replace(&mut self.active, next);
        self.backlog.handed_over();
        let handed = self.retired.send(Retired {
            segment: full.segment.path,
            touched: full.touched,
            new_dirs: full.new_dirs,
            life: full.since.elapsed(),
            failures_at: full.failures_at,
        });
        if handed.is_err() {
            // No housekeeper: the segment stays for the next start to replay.
            self.backlog.checkpointed();
        }
        Ok(())
    }
}
