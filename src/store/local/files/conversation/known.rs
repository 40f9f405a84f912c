//! What this process knows of a conversation file between updates (its fingerprint, its
//! recent message ids, whether it is in line format), and how that is learnt from the disk:
//! read once, re-read only when another process changed the file, repaired when a crash tore
//! its tail.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::super::atomic::write_atomic;
use super::format::{EventKey, Summary, parse, render, summarize};
use super::handles::Kept;
use super::recent_keys::RecentKeys;
use super::{ConversationPaths, MessagingEvent};
use crate::store::StoreError;

/// Identity of a file's content as last seen by this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) len: u64,
    pub(super) mtime_ns: i64,
}

impl Fingerprint {
    #[inline]
    pub(super) fn of(meta: &fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }
}

/// What this process knows about a file, valid while the fingerprint matches.
#[derive(Debug)]
pub(super) struct Known {
    /// `None`: the file does not exist.
    pub(super) fingerprint: Option<Fingerprint>,
    /// The file itself, kept open by the fast path while `fingerprint` is current, so an
    /// append costs no `open`/`close` (their path walks were ~10% of the webhook's CPU).
    pub(super) file: Option<Kept>,
    pub(super) keys: RecentKeys,
    pub(super) last_timestamp: Option<i64>,
    pub(super) count: usize,
    pub(super) line_format: bool,
    /// Read from the disk and not flushed by this process since. What it holds may have been
    /// written by a process that died before its flush (a `salesbot poll` killed mid-round),
    /// so a repeat of those events must flush the file before it is acknowledged.
    pub(super) read_unflushed: bool,
}

impl Known {
    /// What is known of a file that does not exist.
    pub(super) fn absent(keys: RecentKeys) -> Known {
        Known {
            fingerprint: None,
            file: None,
            keys,
            last_timestamp: None,
            count: 0,
            line_format: false,
            read_unflushed: false,
        }
    }

    /// Whether some of `events` are stored already in a file whose content may not be on
    /// disk: acknowledging them takes a flush of the file (see [`add_waiting`](super::write::add_waiting)).
    #[inline]
    pub(super) fn repeats_unflushed(&self, events: &[MessagingEvent]) -> bool {
        self.read_unflushed && events.iter().any(|event| self.keys.contains(&event.key()))
    }

    /// Whether `events` can go after the last stored event: the file is in line format and
    /// none of them is older (an older one takes the rewrite, to keep the file in time order).
    #[inline]
    pub(super) fn appendable(&self, events: &[MessagingEvent]) -> bool {
        self.line_format
            && events
                .iter()
                .all(|event| match (event.timestamp(), self.last_timestamp) {
                    (Some(ts), Some(last)) => ts >= last,
                    _ => true,
                })
    }

    /// Whether an event older than the last stored may be slotted in near the end, in place:
    /// only with a journal (its record carries the events the write moves), and only into a
    /// non-empty file in line format.
    #[inline]
    pub(super) fn can_slot_in(&self, journaled: bool) -> bool {
        journaled && self.line_format && self.count > 0
    }

    /// Takes note of `fresh` having been written, leaving the file as `fingerprint`.
    #[inline]
    pub(super) fn stored(&mut self, fresh: &[MessagingEvent], fingerprint: Option<Fingerprint>) {
        let inode = |fp: Option<Fingerprint>| fp.map(|f| (f.dev, f.ino));
        if inode(fingerprint) != inode(self.fingerprint) {
            self.file = None; // a handle of the file this one replaced
        }
        for event in fresh {
            self.keys.note(event);
        }
        self.count += fresh.len();
        self.last_timestamp = fresh
            .iter()
            .filter_map(MessagingEvent::timestamp)
            .chain(self.last_timestamp)
            .max();
        self.line_format = true;
        self.fingerprint = fingerprint;
    }
}

#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Made on the conversation's first update in this process, not on every one (joining
    /// the folder names and formatting the file names was ~1.5% of the webhook's CPU).
    pub(super) paths: Option<Arc<ConversationPaths>>,
    pub(super) known: Option<Known>,
    /// The conversation's lock file, kept open by the fast path between updates.
    pub(super) lock: Option<Kept>,
    /// Keep every key of the file in memory, not only the recent ones: for a pass over many
    /// records of the same files, each of which would otherwise re-read its file.
    pub(super) every_key: bool,
    /// Every file is flushed by the caller before anything is acknowledged (the replay), so
    /// a repeat needs no flush of its own.
    pub(super) flushed_later: bool,
}

impl Slot {
    #[inline]
    pub(super) fn new_keys(&self) -> fn() -> RecentKeys {
        match self.every_key {
            true => RecentKeys::complete,
            false => RecentKeys::bounded,
        }
    }
}

/// Brings `slot` up to date with the file, re-reading it only when someone else changed it.
pub(super) fn refresh<'a>(
    slot: &'a mut Slot,
    paths: &ConversationPaths,
) -> Result<&'a mut Known, StoreError> {
    let new_keys = slot.new_keys();
    let current = stat(&paths.file)?;
    let valid = matches!(&slot.known, Some(known) if known.fingerprint == current);
    if !valid {
        slot.known = Some(match current {
            None => Known::absent(new_keys()),
            Some(_) => load(paths, new_keys)?,
        });
    }
    Ok(slot.known.as_mut().expect("set just above"))
}

/// Reads a file whole, repairing it first if a crash tore its tail.
fn load(paths: &ConversationPaths, new_keys: fn() -> RecentKeys) -> Result<Known, StoreError> {
    let bytes = fs::read(&paths.file).map_err(StoreError::io("read", &paths.file))?;
    let (summary, line_format) = match summarize(&bytes, new_keys()) {
        Some(summary) => (summary, true),
        None => repair(paths, &bytes, new_keys())?,
    };
    Ok(Known {
        fingerprint: stat(&paths.file)?,
        file: None,
        keys: summary.keys,
        last_timestamp: summary.last_timestamp,
        count: summary.count,
        line_format,
        read_unflushed: true,
    })
}

/// What [`summarize`] refuses: parsed whole, and rewritten in line format when it was not a
/// clean JSON array (a torn append, or damage, of which a copy is kept). Returns its summary
/// and whether the file is now in line format.
fn repair(
    paths: &ConversationPaths,
    bytes: &[u8],
    keys: RecentKeys,
) -> Result<(Summary, bool), StoreError> {
    let parsed = parse(bytes);
    if !parsed.clean {
        if parsed.damaged_before_end {
            // Not the trace of a torn append: keep the original for a human to look at.
            let copy = paths.lock_dir.join(format!(
                "{}.damaged-{}",
                paths
                    .file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("conversation"),
                crate::store::unix_now()
            ));
            write_atomic(&copy, bytes)?;
            tracing::error!(file = %paths.file.display(), copy = %copy.display(), dropped = parsed.dropped_lines,
                "conversation file was damaged; kept a copy and rewrote the readable events");
        } else {
            tracing::warn!(file = %paths.file.display(), "repairing a conversation file whose last write was torn");
        }
        write_atomic(&paths.file, &render(&parsed.events))?;
    }
    Ok((
        Summary::of(&parsed.events, keys),
        parsed.line_format || !parsed.clean,
    ))
}

/// Of a file just written through `file` (nobody can replace it while the lock is held).
pub(super) fn fingerprint_of(file: &File, path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    let meta = file.metadata().map_err(StoreError::io("inspect", path))?;
    Ok(Some(Fingerprint::of(&meta)))
}

/// Every key in the file: what decides an event [`RecentKeys`] cannot.
pub(super) fn keys_on_disk(path: &Path) -> Result<HashSet<EventKey>, StoreError> {
    let bytes = fs::read(path).map_err(StoreError::io("read", path))?;
    Ok(match summarize(&bytes, RecentKeys::complete()) {
        Some(summary) => summary.keys.into_keys(),
        None => parse(&bytes)
            .events
            .iter()
            .map(MessagingEvent::key)
            .collect(),
    })
}

pub(super) fn read_events(path: &Path) -> Result<Vec<MessagingEvent>, StoreError> {
    let bytes = fs::read(path).map_err(StoreError::io("read", path))?;
    Ok(parse(&bytes).events)
}

pub(super) fn stat(path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Fingerprint::of(&meta))),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::io("inspect", path)(err)),
    }
}
