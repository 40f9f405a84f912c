//! A journal segment on disk: its name, how a record is framed in it, and how it is read back.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::atomic::{parent, sync_dir};
use crate::store::StoreError;

pub(super) const HEADER: usize = 8;

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

/// Writes `bytes` zeros from the start of `file`.
pub(super) fn zero(file: &File, bytes: u64) -> std::io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(zeros.len() as u64) as usize;
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
    if let Err(err) = zero(&file, bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    sync_dir(dir).map_err(std::io::Error::other)?;
    Ok(Segment { path, file })
}
