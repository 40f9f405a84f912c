//! Conversation files (`conversations/<sender_id>.json`): merge events in, never lose one.
//!
//! Safety across writers: each file has a lock file in `conversations/.salesbot/`, taken with
//! an exclusive `flock` for every update, so a `salesbot poll` process beside the server
//! cannot interleave with it. Within this process a per-conversation async mutex queues
//! writers without tying up blocking threads while they wait.
//!
//! Cost: the first update of a file in this process reads it once to learn its message ids;
//! later updates check the file's fingerprint (inode, size, mtime) instead of re-reading it and,
//! when the new events are not older than the last stored one, append in place over the
//! closing `]`. So an append costs the same at the 5,000th message as at the 10th.
//!
//! Durability: appends and new files are flushed in group rounds (see `group_sync`) before
//! `add` returns; rewrites of existing files fsync before their rename.

mod format;

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::atomic::{create_unsynced, ensure_dir, write_atomic};
use super::group_sync::{Dirty, GroupSync};
use crate::domain::{PageId, SenderId};
use crate::store::StoreError;
use format::{TAIL, keep_unseen, parse, render, render_append, sort_chronologically, timestamp};

/// How many conversations keep their message ids in memory while idle.
const CACHED_CONVERSATIONS: usize = 1024;

/// Where one conversation lives on disk.
#[derive(Debug, Clone)]
pub(crate) struct ConversationPaths {
    pub file: PathBuf,
    pub lock_dir: PathBuf,
    pub lock: PathBuf,
}

/// Identity of a file's content as last seen by this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Fingerprint {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }
}

/// What this process knows about a file, valid while the fingerprint matches.
#[derive(Debug, Default)]
struct Known {
    /// `None`: the file does not exist.
    fingerprint: Option<Fingerprint>,
    keys: HashSet<String>,
    last_timestamp: Option<i64>,
    count: usize,
    line_format: bool,
}

#[derive(Debug, Default)]
struct Slot {
    known: Option<Known>,
}

type SlotHandle = Arc<tokio::sync::Mutex<Slot>>;

#[derive(Debug)]
pub(crate) struct Conversations {
    slots: Mutex<HashMap<(PageId, SenderId), SlotHandle>>,
    sync: GroupSync,
}

/// What one update did to its file.
struct Written {
    new_events: usize,
    /// Appended or created without fsync: durable only after a group flush.
    dirty: Option<Dirty>,
}

impl Conversations {
    /// Conversation files under `root`, flushed by group commits of its filesystem.
    pub(crate) fn new() -> Conversations {
        Conversations {
            slots: Mutex::default(),
            sync: GroupSync::default(),
        }
    }

    /// Merges `events` into the file; returns how many were new.
    pub(crate) async fn add(
        &self,
        key: (PageId, SenderId),
        paths: ConversationPaths,
        events: Vec<Value>,
    ) -> Result<usize, StoreError> {
        let slot = self.slot(key);
        let mut slot = slot.lock_owned().await;
        let written = tokio::task::spawn_blocking(move || {
            let result = add_locked(&mut slot, &paths, events);
            if result.is_err() {
                // What the cache believes may not be on disk: forget it, re-read next time.
                slot.known = None;
            }
            result
        })
        .await??;
        // Acknowledged only once on disk; after a failed sync, even "nothing new" waits for one.
        if written.dirty.is_some() || self.sync.last_failed() {
            self.sync.commit(written.dirty).await?;
        }
        Ok(written.new_events)
    }

    fn slot(&self, key: (PageId, SenderId)) -> SlotHandle {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= CACHED_CONVERSATIONS && !slots.contains_key(&key) {
            // Forget idle conversations; their files are re-read when next touched.
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        Arc::clone(slots.entry(key).or_default())
    }
}

/// Reads a conversation under a shared lock, so no writer is half-way through it.
pub(crate) fn read(paths: &ConversationPaths) -> Result<Vec<Value>, StoreError> {
    let _lock = match OpenOptions::new().read(true).open(&paths.lock) {
        Ok(lock) => {
            lock.lock_shared()
                .map_err(StoreError::io("lock", &paths.lock))?;
            Some(lock)
        }
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => return Err(StoreError::io("open", &paths.lock)(err)),
    };
    match fs::read(&paths.file) {
        Ok(bytes) => Ok(parse(&bytes).events),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(StoreError::io("read", &paths.file)(err)),
    }
}

fn add_locked(
    slot: &mut Slot,
    paths: &ConversationPaths,
    events: Vec<Value>,
) -> Result<Written, StoreError> {
    ensure_dir(&paths.lock_dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
        .map_err(StoreError::io("open", &paths.lock))?;
    // Released when `lock` is closed at the end of this function.
    lock.lock().map_err(StoreError::io("lock", &paths.lock))?;

    let known = refresh(slot, paths)?;
    let mut fresh = keep_unseen(events, &mut known.keys);
    if fresh.is_empty() {
        return Ok(Written {
            new_events: 0,
            dirty: None,
        });
    }
    sort_chronologically(&mut fresh);
    let not_older = |event: &Value| match (timestamp(event), known.last_timestamp) {
        (Some(ts), Some(last)) => ts >= last,
        _ => true,
    };
    let in_place = match known.fingerprint {
        Some(fp) if known.line_format && known.count > 0 && fresh.iter().all(not_older) => {
            append_in_place(&paths.file, fp.len, &fresh)?
        }
        _ => None,
    };
    let dirty = match (in_place, known.fingerprint) {
        (Some(file), _) => Some(Dirty { file, new_in: None }),
        (None, None) => {
            let file = create_unsynced(&paths.file, &render(&fresh))?;
            Some(Dirty {
                file,
                new_in: paths.file.parent().map(Path::to_path_buf),
            })
        }
        // Replacing existing content: fsync before the rename, never left to the group.
        (None, Some(_)) => {
            let mut all = read_events(&paths.file)?;
            // What is on disk decides what is new, should this process's view be behind.
            let on_disk: HashSet<String> = all.iter().map(format::event_key).collect();
            fresh.retain(|e| !on_disk.contains(&format::event_key(e)));
            known.count = all.len();
            known.keys.extend(on_disk);
            all.extend(fresh.iter().cloned());
            sort_chronologically(&mut all);
            write_atomic(&paths.file, &render(&all))?;
            None
        }
    };
    known.count += fresh.len();
    known.last_timestamp = fresh
        .iter()
        .filter_map(timestamp)
        .chain(known.last_timestamp)
        .max();
    known.line_format = true;
    known.fingerprint = Some(
        stat(&paths.file)?
            .ok_or_else(|| StoreError::io("find", &paths.file)(ErrorKind::NotFound.into()))?,
    );
    Ok(Written {
        new_events: fresh.len(),
        dirty,
    })
}

/// Brings `slot` up to date with the file, re-reading it only when someone else changed it.
fn refresh<'a>(slot: &'a mut Slot, paths: &ConversationPaths) -> Result<&'a mut Known, StoreError> {
    let current = stat(&paths.file)?;
    let valid = matches!(&slot.known, Some(known) if known.fingerprint == current);
    if !valid {
        slot.known = Some(match current {
            None => Known::default(),
            Some(_) => load(paths)?,
        });
    }
    Ok(slot.known.as_mut().expect("set just above"))
}

/// Reads a file whole, repairing it first if a crash tore its tail.
fn load(paths: &ConversationPaths) -> Result<Known, StoreError> {
    let bytes = fs::read(&paths.file).map_err(StoreError::io("read", &paths.file))?;
    let parsed = parse(&bytes);
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
            write_atomic(&copy, &bytes)?;
            tracing::error!(file = %paths.file.display(), copy = %copy.display(), dropped = parsed.dropped_lines,
                "conversation file was damaged; kept a copy and rewrote the readable events");
        } else {
            tracing::warn!(file = %paths.file.display(), "repairing a conversation file whose last write was torn");
        }
        write_atomic(&paths.file, &render(&parsed.events))?;
    }
    Ok(Known {
        fingerprint: stat(&paths.file)?,
        keys: parsed.events.iter().map(format::event_key).collect(),
        last_timestamp: parsed.events.iter().filter_map(timestamp).max(),
        count: parsed.events.len(),
        line_format: parsed.line_format || !parsed.clean,
    })
}

/// Writes `events` over the closing `\n]\n` of a file of `len` bytes; the open file, for the
/// flush. `None` when the file does not end the way it should (the caller rewrites it whole).
fn append_in_place(
    path: &Path,
    len: u64,
    events: &[Value],
) -> Result<Option<std::fs::File>, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    let at = len.saturating_sub(TAIL.len() as u64);
    let mut tail = [0u8; 3];
    if len < 4 || file.read_exact_at(&mut tail, at).is_err() || tail != TAIL {
        return Ok(None);
    }
    // One write: a crash can tear only the new events, and `load` cuts a torn tail off. The
    // caller syncs (as a group) before anyone is told they are stored.
    file.write_all_at(&render_append(events), at)
        .map_err(StoreError::io("append to", path))?;
    Ok(Some(file))
}

fn read_events(path: &Path) -> Result<Vec<Value>, StoreError> {
    let bytes = fs::read(path).map_err(StoreError::io("read", path))?;
    Ok(parse(&bytes).events)
}

fn stat(path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Fingerprint::of(&meta))),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::io("inspect", path)(err)),
    }
}

#[cfg(test)]
mod tests;
