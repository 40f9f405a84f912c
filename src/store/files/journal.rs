//! The write-ahead journal of the server: how a webhook is acknowledged with one flush per
//! round instead of one per conversation file.
//!
//! ```text
//! DATA_DIR/.salesbot/journal/.lock                 flock'd by the one server using DATA_DIR
//! DATA_DIR/.salesbot/journal/<seq>.log             segments, zero-filled at creation
//! record: len u32 LE | crc32 u32 LE | {"page","customer","events":[...]}
//! ```
//!
//! Why: on this kind of disk every `fdatasync` of a conversation file is its own device flush,
//! and a round of 64 requests touched ~64 files. Now the events a round added are appended to
//! one segment and that segment alone is flushed before anyone is acknowledged; the
//! conversation files themselves were already written (in the page cache) before their record,
//! so when a full segment is retired, flushing the files it touched covers every record in it,
//! and the segment can go. Segments are zero-filled when created (and synced then), so flushing
//! a record never has to change the file's size or block map: `fdatasync` writes data only.
//!
//! After a crash, [`recover`] reads every segment left, oldest first, up to its first record
//! that is incomplete or fails its checksum (a torn last round, never acknowledged), and merges
//! the events into their files again: merging is idempotent (dedup by `mid` or digest), so
//! replaying what already reached the files changes nothing.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::atomic::{ensure_dir, flush_file, flush_paths, parent, sync_dir};
use crate::store::StoreError;

/// Big enough that a segment is retired only every ~10 s under full load here: each
/// retirement flushes every file the segment touched (~1,000 at once, holding up the journal's
/// own flushes meanwhile), so fewer of them mean fewer slow requests (8 MiB: p99 at 64
/// connections 18.70 / 17.20 ms in 30 s runs, 32 MiB: 14.14 / 15.62; BENCHMARKS.md). A
/// crash leaves the active segment, and the retired one if its checkpoint was under way, to
/// replay at start-up: 2–6 s here for 100,000–300,000 records.
pub(crate) const SEGMENT_BYTES: u64 = 32 << 20;

const HEADER: usize = 8;

/// No record is larger than a webhook body (1 MiB); a bigger length is a damaged header.
const MAX_RECORD_BYTES: u64 = 4 << 20;

/// What one conversation gained: a record's payload. Its events stay raw: the replay stores
/// them as they were written, without building and serialising each one again.
#[derive(Debug, Deserialize)]
pub(crate) struct Record {
    pub page: String,
    pub customer: String,
    pub events: Vec<Box<RawValue>>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        (&self.page, &self.customer) == (&other.page, &other.customer)
            && self.events.len() == other.events.len()
            && (self.events.iter().zip(&other.events)).all(|(a, b)| a.get() == b.get())
    }
}

/// One journal entry of a round: the record, and what its checkpoint must flush.
#[derive(Debug)]
pub(crate) struct Entry {
    pub framed: Vec<u8>,
    pub file: PathBuf,
    pub new_in: Option<PathBuf>,
}

impl Record {
    /// The record with its length and checksum in front.
    #[cfg(test)]
    pub(crate) fn framed(&self) -> Vec<u8> {
        let events = serde_json::to_vec(&self.events).expect("raw JSON always serialises");
        Record::frame(&self.page, &self.customer, &[&events])
    }

    /// A framed record whose events are already serialised: `events` put together is a JSON
    /// array.
    pub(crate) fn frame(page: &str, customer: &str, events: &[&[u8]]) -> Vec<u8> {
        // Sized once: the keys and quotes around the ids and events take 35 bytes (more if an
        // id needed escaping, which valid ids never do).
        let events_len: usize = events.iter().map(|part| part.len()).sum();
        let mut out = Vec::with_capacity(HEADER + 35 + page.len() + customer.len() + events_len);
        out.resize(HEADER, 0);
        out.extend_from_slice(b"{\"page\":");
        serde_json::to_writer(&mut out, page).expect("a string always serialises");
        out.extend_from_slice(b",\"customer\":");
        serde_json::to_writer(&mut out, customer).expect("a string always serialises");
        out.extend_from_slice(b",\"events\":");
        events.iter().for_each(|part| out.extend_from_slice(part));
        out.push(b'}');
        let len = (out.len() - HEADER) as u32;
        let crc = crc32fast::hash(&out[HEADER..]);
        out[..4].copy_from_slice(&len.to_le_bytes());
        out[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
}

/// The segment being written, and what its records touched.
#[derive(Debug)]
struct Active {
    segment: Segment,
    offset: u64,
    touched: HashSet<PathBuf>,
    new_dirs: HashSet<PathBuf>,
    since: Instant,
}

/// A full segment handed to the housekeeper: flush what it touched, then delete it.
#[derive(Debug)]
struct Retired {
    segment: PathBuf,
    touched: HashSet<PathBuf>,
    new_dirs: HashSet<PathBuf>,
    /// How long the segment took to fill: about how long its checkpoint may take.
    life: Duration,
}

/// The full segments handed to the housekeeper and not yet checkpointed, shared with the
/// journal: it tells a checkpoint when to stop pacing itself, and shutdown when all is done.
#[derive(Debug, Default)]
struct Backlog {
    unfinished: Mutex<usize>,
    finished: Condvar,
    stopping: AtomicBool,
}

impl Backlog {
    fn handed_over(&self) {
        *self.count() += 1;
    }

    fn checkpointed(&self) {
        *self.count() -= 1;
        self.finished.notify_all();
    }

    /// Another full segment is waiting behind the one in progress, or the server is stopping.
    fn in_a_hurry(&self) -> bool {
        self.stopping.load(Ordering::Relaxed) || *self.count() > 1
    }

    /// Waits up to `limit` for every segment handed over to be checkpointed; `false` if some
    /// are left (the next start replays them).
    fn wait_until_empty(&self, limit: Duration) -> bool {
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

/// How long shutdown waits for a full segment's checkpoint in progress (at full speed once the
/// server is stopping: about half a second for 1,000 files here).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Journal {
    writer: Mutex<Writer>,
    segment_bytes: u64,
    backlog: Arc<Backlog>,
    /// Held for the journal's lifetime: a second server on the same DATA_DIR must not start.
    _lock: File,
}

#[derive(Debug)]
struct Writer {
    active: Active,
    /// Segments prepared ahead by the housekeeper (zero-filling takes a while).
    spares: Receiver<std::io::Result<Segment>>,
    retired: Sender<Retired>,
    backlog: Arc<Backlog>,
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

/// The segments left in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let path = entry.map_err(StoreError::io("list", dir))?.path();
        if let Some((seq, _)) = parse_segment_name(&path) {
            found.push((seq, path));
        }
    }
    found.sort();
    Ok(found)
}

/// What a segment's name gains when its checkpoint fails: a flush of its files reported an
/// error, after which what those files hold on disk is in doubt even where a later flush
/// succeeds. The next start rewrites them whole (see `Replay::finish`).
const FAILED: &str = ".checkpoint-failed";

/// Whether `segment` is one whose checkpoint failed.
pub(crate) fn checkpoint_failed(segment: &Path) -> bool {
    parse_segment_name(segment).is_some_and(|(_, failed)| failed)
}

/// Renames `segment` to say that its checkpoint failed; returns its new path (the old one if
/// even that fails: the next start then flushes its files as after a crash).
fn mark_checkpoint_failed(segment: &Path) -> PathBuf {
    let Some((seq, false)) = parse_segment_name(segment) else {
        return segment.to_path_buf(); // marked already
    };
    let marked = segment.with_file_name(failed_segment_name(seq));
    let renamed = fs::rename(segment, &marked)
        .map_err(StoreError::io("rename", segment))
        .and_then(|()| sync_dir(parent(segment)));
    match renamed {
        Ok(()) => marked,
        Err(err) => {
            tracing::error!(error = %err, "cannot mark a journal segment whose checkpoint failed");
            segment.to_path_buf()
        }
    }
}

/// [`scan_segment`] for whole records, without their offsets.
#[cfg(test)]
pub(crate) fn read_segment(
    path: &Path,
    mut each: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    scan_segment(path, |_, record| each(record))
}

/// Who a record is for, without its events: what a first pass over a segment needs. It
/// accepts exactly what a [`Record`] does (the events an array of anything), so that a second
/// pass never meets a record the first took for the end of the segment, or the other way.
#[derive(Debug, Deserialize)]
pub(crate) struct Addressee {
    pub page: String,
    pub customer: String,
    #[serde(rename = "events")]
    _events: Vec<serde::de::IgnoredAny>,
}

/// Calls `each` with the records of a segment in order, and each one's offset in it (for
/// [`read_record_at`]), up to the first one that is incomplete or damaged; returns how many
/// there were. Reads one record at a time, so a replay never holds a whole segment in memory.
/// A record is read as `T`: a [`Record`], or an [`Addressee`] that skips the events.
pub(crate) fn scan_segment<T: serde::de::DeserializeOwned>(
    path: &Path,
    mut each: impl FnMut(u64, T) -> Result<(), StoreError>,
) -> Result<usize, StoreError> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut reader = std::io::BufReader::new(file);
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    let mut count = 0;
    let mut offset = 0;
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let Some((len, crc)) = record_header(&header) else {
            break;
        };
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        match serde_json::from_slice(&payload) {
            Ok(record) => each(offset, record)?,
            Err(_) => break,
        }
        offset += (HEADER + len) as u64;
        count += 1;
    }
    Ok(count)
}

/// A record header's payload length and checksum; `None` where no record can start (the
/// zeros after the last record, or a damaged length).
fn record_header(header: &[u8; HEADER]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    (len != 0 && u64::from(len) <= MAX_RECORD_BYTES).then_some((len as usize, crc))
}

/// The record at `offset` of `segment`, which [`scan_segment`] found whole there.
pub(crate) fn read_record_at(segment: &File, offset: u64) -> std::io::Result<Record> {
    let mut header = [0u8; HEADER];
    segment.read_exact_at(&mut header, offset)?;
    let Some((len, crc)) = record_header(&header) else {
        return Err(std::io::Error::other("no journal record there"));
    };
    let mut payload = vec![0; len];
    segment.read_exact_at(&mut payload, offset + HEADER as u64)?;
    if crc32fast::hash(&payload) != crc {
        return Err(std::io::Error::other(
            "the journal record changed since it was read",
        ));
    }
    serde_json::from_slice(&payload).map_err(std::io::Error::other)
}

impl Journal {
    /// Starts a journal in `dir` (recovered and emptied already) holding `lock`.
    pub(crate) fn start(dir: &Path, lock: File, segment_bytes: u64) -> Result<Journal, StoreError> {
        let first = segments(dir)?.last().map_or(1, |(seq, _)| seq + 1);
        let segment = create_segment(dir, first, segment_bytes)
            .map_err(StoreError::io("create", dir.join(segment_name(first))))?;
        // Room for the one spare made ahead: handing it over never waits for a rotation.
        let (spare_tx, spares) = mpsc::sync_channel(1);
        let (retired, retired_rx) = mpsc::channel();
        let folder = dir.to_path_buf();
        let backlog = Arc::new(Backlog::default());
        let housekeeping = Housekeeping {
            dir: folder,
            seq: first + 1,
            segment_bytes,
            spares: spare_tx,
            retired: retired_rx,
            backlog: Arc::clone(&backlog),
        };
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || housekeeping.run())
            .map_err(StoreError::io("start the housekeeper of", dir))?;
        Ok(Journal {
            writer: Mutex::new(Writer {
                active: Active::new(segment),
                spares,
                retired,
                backlog: Arc::clone(&backlog),
            }),
            segment_bytes,
            backlog,
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
        if writer.active.offset > 0
            && writer.active.offset + bytes.len() as u64 > self.segment_bytes
        {
            writer.rotate()?;
        }
        let active = &mut writer.active;
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
            let active = &mut writer.active;
            if let Err(err) = flush_paths(&active.touched, &active.new_dirs) {
                // Kept for the next start, which rewrites its files.
                active.segment.path = mark_checkpoint_failed(&active.segment.path);
                return Err(err);
            }
            let path = &active.segment.path;
            zero(&active.segment.file, active.offset)
                .and_then(|()| active.segment.file.sync_data())
                .map_err(StoreError::io("empty", path))?;
            active.offset = 0;
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

impl Active {
    fn new(segment: Segment) -> Active {
        Active {
            segment,
            offset: 0,
            touched: HashSet::new(),
            new_dirs: HashSet::new(),
            since: Instant::now(),
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
        let full = std::mem::replace(&mut self.active, Active::new(next));
        self.backlog.handed_over();
        let handed = self.retired.send(Retired {
            segment: full.segment.path,
            touched: full.touched,
            new_dirs: full.new_dirs,
            life: full.since.elapsed(),
        });
        if handed.is_err() {
            // No housekeeper: the segment stays for the next start to replay.
            self.backlog.checkpointed();
        }
        Ok(())
    }
}

/// The journal's own thread: keeps a spare segment ready for the next rotation and retires
/// the full one each rotation hands over. The next spare is made before that checkpoint, so
/// however long a checkpoint takes, no rotation (and so no journal round) waits for it.
struct Housekeeping {
    dir: PathBuf,
    seq: u64,
    segment_bytes: u64,
    spares: SyncSender<std::io::Result<Segment>>,
    retired: Receiver<Retired>,
    backlog: Arc<Backlog>,
}

impl Housekeeping {
    fn run(mut self) {
        if !self.prepare() {
            return;
        }
        // The rotation that hands a full segment over has taken the spare.
        while let Ok(full) = self.retired.recv() {
            let ready = match self.create() {
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
            // speed: deleting the segment it retires frees a segment's worth of space for the
            // next try, where waiting for the spare first would hold that space forever.
            if let Err(err) = checkpoint(&full, &self.backlog, ready) {
                // Kept: the next start-up replays it, and rewrites its files.
                let kept = mark_checkpoint_failed(&full.segment);
                tracing::error!(error = %err, segment = %kept.display(),
                    "cannot flush the files of a journal segment; it stays for replay");
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
            match self.create() {
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

    fn create(&self) -> std::io::Result<Segment> {
        create_segment(&self.dir, self.seq, self.segment_bytes)
    }

    /// `false` when the journal is gone.
    fn hand_over(&mut self, next: std::io::Result<Segment>) -> bool {
        let created = next.is_ok();
        if self.spares.send(next).is_err() {
            return false;
        }
        if created {
            self.seq += 1;
        }
        true
    }

    fn report(&self, err: &std::io::Error) {
        tracing::error!(error = %err, folder = %self.dir.display(), "cannot prepare the next journal segment");
    }
}

/// The longest a checkpoint spreads its flushes over, however slowly its segment filled: what
/// it has not flushed yet is replayed after a crash, and a replay should stay short.
const MAX_SPREAD: Duration = Duration::from_secs(30);

/// Flushes every file a segment's records touched (and the folders of new files), then
/// deletes the segment: its records are all in durable files now.
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
    for (n, path) in full.touched.iter().enumerate() {
        let started = Instant::now();
        flush_file(path)?;
        // No pause after the last: the segment can go at once.
        if paced && n < last && !backlog.in_a_hurry() {
            std::thread::sleep(started.elapsed().max(spread));
        }
    }
    full.new_dirs.iter().try_for_each(|dir| sync_dir(dir))?;
    fs::remove_file(&full.segment).map_err(StoreError::io("remove", &full.segment))
}

/// Writes `bytes` zeros from the start of `file`.
fn zero(file: &File, bytes: u64) -> std::io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016}.log")
}

/// The name of segment `seq` once its checkpoint failed.
fn failed_segment_name(seq: u64) -> String {
    format!("{seq:016}{FAILED}.log")
}

/// A segment's number, and whether its checkpoint failed; `None` for any other file.
fn parse_segment_name(path: &Path) -> Option<(u64, bool)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let (number, failed) = match stem.strip_suffix(FAILED) {
        Some(number) => (number, true),
        None => (stem, false),
    };
    Some((number.parse().ok()?, failed))
}

/// A segment that cannot be made whole is deleted again: on a full disk, a half-made one
/// would hold the last free space, which conversation files and the next try need.
fn create_segment(dir: &Path, seq: u64, bytes: u64) -> std::io::Result<Segment> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    if let Err(err) = zero(&file, bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    sync_dir(dir).map_err(std::io::Error::other)?;
    Ok(Segment { path, file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(n: usize) -> Record {
        Record {
            page: "101".into(),
            customer: format!("{}", 2000 + n % 3),
            events: vec![
                serde_json::value::to_raw_value(
                    &json!({"message": {"mid": format!("m{n}")}, "timestamp": n}),
                )
                .unwrap(),
            ],
        }
    }

    fn entry(dir: &Path, n: usize) -> Entry {
        Entry {
            framed: record(n).framed(),
            file: dir.join(format!("{n}.json")),
            new_in: None,
        }
    }

    fn read_all(path: &Path) -> Vec<Record> {
        let mut records = Vec::new();
        read_segment(path, |r| {
            records.push(r);
            Ok(())
        })
        .unwrap();
        records
    }

    #[test]
    fn records_read_back_in_order_up_to_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::start(dir.path(), lock(dir.path()).unwrap(), 1 << 20).unwrap();
        journal
            .append(&(0..3).map(|n| entry(dir.path(), n)).collect::<Vec<_>>())
            .unwrap();
        journal.append(&[entry(dir.path(), 3)]).unwrap();
        let (_, path) = segments(dir.path()).unwrap().remove(0);
        assert_eq!(read_all(&path), (0..4).map(record).collect::<Vec<_>>());

        // A round torn by a crash: its record's last bytes never made it.
        let torn = record(4).framed();
        let end: u64 = (0..4).map(|n| record(n).framed().len() as u64).sum();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&torn[..torn.len() - 3], end).unwrap();
        assert_eq!(read_all(&path).len(), 4);

        // A flipped bit fails the checksum: that record and everything after it is ignored.
        file.write_all_at(b"X", HEADER as u64 + 3).unwrap();
        assert!(read_all(&path).is_empty());
    }

    #[test]
    fn a_second_journal_on_the_same_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("in use by another `salesbot serve`"),
            "{err}"
        );
    }

    #[test]
    fn full_segments_are_retired_once_their_files_are_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4096;
        let journal = Journal::start(dir.path(), lock(dir.path()).unwrap(), size).unwrap();
        let per_record = record(0).framed().len() as u64;
        let rounds = 3 * size / per_record;
        for n in 0..rounds as usize {
            std::fs::write(dir.path().join(format!("{n}.json")), b"[]").unwrap();
            journal.append(&[entry(dir.path(), n)]).unwrap();
        }
        // The housekeeper deletes retired segments in the background; the active one and one
        // prepared spare remain.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = segments(dir.path()).unwrap();
            if left.len() <= 2 {
                // Every record still on disk is in the newest segments, in order.
                let kept: Vec<_> = left.iter().flat_map(|(_, p)| read_all(p)).collect();
                assert!(!kept.is_empty() && kept.len() < rounds as usize);
                assert_eq!(kept.last().unwrap(), &record(rounds as usize - 1));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "segments never retired: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_spare_that_cannot_be_made_does_not_hold_up_the_checkpoint_that_frees_space() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4096;
        let journal = Journal::start(dir.path(), lock(dir.path()).unwrap(), size).unwrap();
        // Segment 1 is active and 2 the spare; 3 cannot be made while a folder has its name
        // (as on a full disk).
        let blocker = dir.path().join(segment_name(3));
        fs::create_dir(&blocker).unwrap();
        let first = dir.path().join(segment_name(1));
        let mut n = 0;
        let mut append = |journal: &Journal| {
            std::fs::write(dir.path().join(format!("{n}.json")), b"[]").unwrap();
            let appended = journal.append(&[entry(dir.path(), n)]);
            n += 1;
            appended
        };
        let per_record = record(0).framed().len() as u64;
        for _ in 0..=size / per_record {
            append(&journal).unwrap();
        }
        // Segment 1 is retired: its files are flushed and it is deleted although no spare
        // could be made (before, the housekeeper waited for the spare first, holding it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while first.exists() {
            assert!(
                Instant::now() < deadline,
                "the retired segment was never checkpointed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Once a spare can be made again, a rotation gets it: at most the failures reported
        // meanwhile fail their rounds.
        fs::remove_dir(&blocker).unwrap();
        let mut failed = 0;
        for _ in 0..=2 * size / per_record {
            if append(&journal).is_err() {
                failed += 1;
            }
        }
        assert!(
            failed <= 2,
            "{failed} rounds failed after the spare came back"
        );
        let last = segments(dir.path()).unwrap();
        assert!(last.iter().any(|(seq, _)| *seq >= 3), "{last:?}");
    }

    #[test]
    fn a_segment_whose_checkpoint_failed_keeps_its_place_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let first = create_segment(dir.path(), 7, 4096).unwrap();
        let second = create_segment(dir.path(), 8, 4096).unwrap();
        assert!(!checkpoint_failed(&first.path));
        let marked = mark_checkpoint_failed(&first.path);
        assert!(checkpoint_failed(&marked), "{}", marked.display());
        assert!(!first.path.exists() && marked.exists());
        // Marking again changes nothing; the replay order (by number) is kept.
        assert_eq!(mark_checkpoint_failed(&marked), marked);
        assert_eq!(
            segments(dir.path()).unwrap(),
            vec![(7, marked), (8, second.path)]
        );
    }

    #[test]
    fn a_segment_that_cannot_be_filled_is_not_left_behind() {
        let full_disk = Path::new("/dev/full");
        if !full_disk.exists() {
            eprintln!("no /dev/full here: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // Writes to the segment's name now fail as on a full disk (ENOSPC).
        let path = dir.path().join(segment_name(7));
        std::os::unix::fs::symlink(full_disk, &path).unwrap();
        let err = create_segment(dir.path(), 7, 4096).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}"); // ENOSPC
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "the half-made segment is still there"
        );
        // The next try starts clean.
        let made = create_segment(dir.path(), 7, 4096).unwrap();
        assert_eq!(made.file.metadata().unwrap().len(), 4096);
    }
}
