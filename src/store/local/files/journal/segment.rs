//! A journal segment on disk: its name, how a record is framed in it, and how it is read back.
//!
//! ```text
//! segment: "SBJRNL02" | seq u64 LE | record | record | ... (then what its last life left)
//! record:  len u32 LE | crc32 of the payload, xor the segment's salt, u32 LE | payload
//! ```
//!
//! A segment is reused once its records are all in durable files: writing 32 MiB of zeros for
//! each new one held the journal's own flushes up for 40–70 ms on this disk (BENCHMARKS.md).
//! What its previous life left after the new records must never be read as new, so each
//! record's checksum is salted with the number of the segment it was written to: a whole
//! record of an earlier life fails the check, always, not by chance. Segments written before
//! the header existed start with their first record and are read unsalted.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::atomic::{parent, sync_dir};
use crate::store::StoreError;

/// A record's length and checksum.
pub(super) const HEADER: usize = 8;

/// What a segment starts with, before its number.
const MAGIC: [u8; 8] = *b"SBJRNL02";

/// Where a segment's first record starts: after the mark and the number.
pub(super) const START: u64 = 16;

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
pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) salt: u32,
}

/// Where a segment's records start and how their checksums are salted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    start: u64,
    salt: u32,
}

impl Layout {
    /// Segments written before segments had a header (and were never reused).
    const UNSALTED: Layout = Layout { start: 0, salt: 0 };

    /// Reads it from the segment's first bytes.
    fn of(file: &File) -> std::io::Result<Layout> {
        let mut header = [0u8; START as usize];
        match file.read_exact_at(&mut header, 0) {
            Ok(()) if header[..8] == MAGIC => {
                let seq = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
                Ok(Layout {
                    start: START,
                    salt: salt(seq),
                })
            }
            Ok(()) => Ok(Layout::UNSALTED),
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Layout::UNSALTED),
            Err(err) => Err(err),
        }
    }

    fn checks(&self, payload: &[u8], crc: u32) -> bool {
        crc32fast::hash(payload) ^ self.salt == crc
    }
}

/// The salt of segment `seq`: a different one for every number up to 2^32, since multiplying
/// by an odd number is a bijection of u32 (and spreads the bits that differ).
fn salt(seq: u64) -> u32 {
    (seq as u32).wrapping_mul(0x9E37_79B1)
}

/// The first bytes of segment `seq`.
fn segment_header(seq: u64) -> [u8; START as usize] {
    let mut header = [0u8; START as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&seq.to_le_bytes());
    header
}

/// Salts the checksums of the framed records `records` holds, for the segment they go to.
pub(super) fn salt_records(records: &mut [u8], salt: u32) {
    let mut at = 0;
    while at + HEADER <= records.len() {
        let len = u32::from_le_bytes(records[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(records[at + 4..at + HEADER].try_into().expect("4 bytes"));
        records[at + 4..at + HEADER].copy_from_slice(&(crc ^ salt).to_le_bytes());
        at += HEADER + len as usize;
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
pub(super) fn mark_checkpoint_failed(segment: &Path) -> PathBuf {
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
    let segment = SegmentFile::open(path).map_err(StoreError::io("open", path))?;
    let mut reader = std::io::BufReader::new(&segment.file);
    let mut offset = segment.layout.start;
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(StoreError::io("read", path))?;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    let mut count = 0;
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let Some((len, crc)) = record_header(&header) else {
            break;
        };
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err() || !segment.layout.checks(&payload, crc) {
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

/// A segment opened for reading, with its layout.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    file: File,
    layout: Layout,
}

impl SegmentFile {
    pub(crate) fn open(path: &Path) -> std::io::Result<SegmentFile> {
        let file = File::open(path)?;
        let layout = Layout::of(&file)?;
        Ok(SegmentFile { file, layout })
    }

    /// The record at `offset`, which [`scan_segment`] found whole there.
    pub(crate) fn record_at(&self, offset: u64) -> std::io::Result<Record> {
        let mut header = [0u8; HEADER];
        self.file.read_exact_at(&mut header, offset)?;
        let Some((len, crc)) = record_header(&header) else {
            return Err(std::io::Error::other("no journal record there"));
        };
        let mut payload = vec![0; len];
        self.file
            .read_exact_at(&mut payload, offset + HEADER as u64)?;
        if !self.layout.checks(&payload, crc) {
            return Err(std::io::Error::other(
                "the journal record changed since it was read",
            ));
        }
        serde_json::from_slice(&payload).map_err(std::io::Error::other)
    }
}

/// Writes zeros over `file` from `from` up to `to`.
pub(super) fn zero(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

pub(super) fn segment_name(seq: u64) -> String {
    format!("{seq:016}.log")
}

/// The name of segment `seq` once its checkpoint failed.
pub(super) fn failed_segment_name(seq: u64) -> String {
    format!("{seq:016}{FAILED}.log")
}

/// A segment's number, and whether its checkpoint failed; `None` for any other file.
pub(super) fn parse_segment_name(path: &Path) -> Option<(u64, bool)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let (number, failed) = match stem.strip_suffix(FAILED) {
        Some(number) => (number, true),
        None => (stem, false),
    };
    Some((number.parse().ok()?, failed))
}

/// A segment that cannot be made whole is deleted again: on a full disk, a half-made one
/// would hold the last free space, which conversation files and the next try need.
pub(super) fn create_segment(dir: &Path, seq: u64, bytes: u64) -> std::io::Result<Segment> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let filled = zero(&file, 0, bytes)
        .and_then(|()| file.write_all_at(&segment_header(seq), 0))
        .and_then(|()| file.sync_all());
    if let Err(err) = filled {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    sync_dir(dir).map_err(std::io::Error::other)?;
    Ok(Segment {
        path,
        file,
        salt: salt(seq),
    })
}

/// Makes the retired segment `old`, whose records are all in durable files, segment `seq`:
/// its new number is written (and flushed) first, so that from then on, under either name,
/// none of its records is read again; then it takes its new name. Its blocks are written
/// already: flushing a record never changes its size or block map, as in a new one.
pub(super) fn reuse_segment(old: &Path, seq: u64, bytes: u64) -> std::io::Result<Segment> {
    let file = OpenOptions::new().read(true).write(true).open(old)?;
    let len = file.metadata()?.len();
    if len != bytes {
        return Err(std::io::Error::other(format!(
            "{len} bytes long, not {bytes}"
        )));
    }
    // Its records would start where the new ones do, unsalted: one could pass for new.
    if Layout::of(&file)? == Layout::UNSALTED {
        return Err(std::io::Error::other(
            "written before segments had a header",
        ));
    }
    file.write_all_at(&segment_header(seq), 0)?;
    file.sync_data()?;
    let path = old.with_file_name(segment_name(seq));
    fs::rename(old, &path)?;
    sync_dir(parent(&path)).map_err(std::io::Error::other)?;
    Ok(Segment {
        path,
        file,
        salt: salt(seq),
    })
}
