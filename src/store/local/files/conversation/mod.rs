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
//! Durability: appends and new files are made durable in group rounds (see `group_sync`:
//! by the journal in the server, by flushing each file elsewhere) before `add` returns;
//! rewrites of existing files fsync before their rename.

mod event;
mod format;
mod handles;
mod known;
mod near_tail;
mod recent_keys;
mod replay;
mod slots;
mod write;

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::atomic::{parent, sync_dir, write_atomic};
use super::group_sync::GroupSync;
use super::journal::Journal;
use crate::domain::{PageId, SenderId};
use crate::store::StoreError;
pub use event::MessagingEvent;

/// A whole conversation document from its events in arrival order: sorted as the files sort
/// them and laid out line by line as they are, byte for byte (another backend renders with it).
pub(crate) fn render_document(mut events: Vec<MessagingEvent>) -> Vec<u8> {
    sort_chronologically(&mut events);
    format::render(&events)
}
use format::{parse, sort_chronologically};
use known::{Slot, refresh};
pub(crate) use replay::Replay;
pub(in crate::store::local::files) use replay::rewrite_whole;
use slots::Slots;
use write::{add_locked, append_now, lock_exclusive};

/// How many conversations keep their message ids in memory while idle.
pub(super) const CACHED_CONVERSATIONS: usize = 1024;

/// Where one conversation lives on disk.
#[derive(Debug, Clone)]
pub(crate) struct ConversationPaths {
    pub file: PathBuf,
    pub lock_dir: PathBuf,
    pub lock: PathBuf,
    /// Left by an erasure: when it was (Unix milliseconds, as text).
    pub erased: PathBuf,
    /// The log every failed flush goes to (see `flush_failures`).
    pub flush_failures: Arc<PathBuf>,
}

type SlotHandle = Arc<tokio::sync::Mutex<Slot>>;

#[derive(Debug)]
pub(crate) struct Conversations {
    slots: Mutex<Slots<Key, tokio::sync::Mutex<Slot>>>,
    sync: GroupSync,
}

/// Who a conversation is, as its journal records name it.
type Key = (PageId, SenderId);

impl Conversations {
    /// Conversation files made durable by flushing each file a round touched.
    pub(crate) fn new() -> Conversations {
        Conversations::with_sync(GroupSync::default())
    }

    /// Conversation files made durable by the records of `journal`.
    pub(crate) fn journaled(journal: Journal) -> Conversations {
        Conversations::with_sync(GroupSync::journaled(journal))
    }

    /// Counts the duration of every flush round from now on.
    pub(crate) fn observe(&self, metrics: &crate::telemetry::metrics::Metrics) {
        self.sync.observe(metrics);
    }

    fn with_sync(sync: GroupSync) -> Conversations {
        Conversations {
            slots: Mutex::new(Slots::new(CACHED_CONVERSATIONS)),
            sync,
        }
    }

    /// Merges `events` into the file (where `paths` says, asked once per conversation);
    /// returns how many were new.
    pub(crate) async fn add(
        &self,
        key: Key,
        paths: impl FnOnce() -> ConversationPaths,
        events: Vec<MessagingEvent>,
    ) -> Result<usize, StoreError> {
        let journal_as = self.sync.is_journaled().then(|| key.clone());
        // The conversation is held only while its file is written, not while it is flushed.
        // What was written is handed over to a flush round while the conversation is still
        // held, and in the same step as the write, even on a blocking thread: a repeat that
        // finds these events in memory next waits for this round (or a later one), and a
        // request cancelled meanwhile (a client hanging up) cannot leave a write that no
        // round will ever make durable. A repeat with nothing new hands over nothing, but still
        // waits for the next round, so that its 200 never comes before the write it repeats is
        // on disk (or was retried, should its round have failed).
        let handle = self.slot(key);
        let (added, round) = {
            let mut slot = Arc::clone(&handle).lock_owned().await;
            let paths = Arc::clone(slot.paths.get_or_insert_with(|| Arc::new(paths())));
            match append_now(&mut slot, &paths, events, journal_as.as_ref()) {
                Ok(Ok(written)) => (written.added, self.sync.hand_over(written.dirty)),
                Ok(Err(events)) => {
                    let sync = self.sync.clone();
                    tokio::task::spawn_blocking(move || {
                        let written = add_locked(&mut slot, &paths, events, journal_as.as_ref())?;
                        Ok::<_, StoreError>((written.added, sync.hand_over(written.dirty)))
                    })
                    .await??
                }
                Err(err) => {
                    // What the cache believes may not be on disk: forget it, re-read next time.
                    slot.known = None;
                    return Err(err);
                }
            }
        };
        if let Err(err) = round.durable().await {
            // Without a journal the retry rewrites the file as it reads then (see
            // `group_sync`); should that read miss these events, the cache must not claim
            // them when they come again.
            handle.lock().await.known = None;
            return Err(err);
        }
        Ok(added)
    }

    /// Reads a conversation's file into the cache ahead of its first update (see
    /// `FileStore::warm_up`). Blocking; a conversation already in use is left alone.
    pub(crate) fn warm(&self, key: Key, paths: ConversationPaths) -> Result<(), StoreError> {
        let slot = self.slot(key);
        let Ok(mut slot) = slot.try_lock() else {
            return Ok(());
        };
        let _lock = lock_exclusive(&paths)?;
        let result = refresh(&mut slot, &paths).map(|_| ());
        if result.is_err() {
            slot.known = None;
        }
        slot.paths = Some(Arc::new(paths));
        result
    }

    #[cfg(test)]
    pub(in crate::store::local::files) fn is_cached(&self, key: &Key) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .peek(key)
            .is_some_and(|slot| slot.try_lock().is_ok_and(|slot| slot.known.is_some()))
    }

    pub(crate) async fn checkpoint(&self) -> Result<(), StoreError> {
        match self.sync.journal() {
            Some(journal) => tokio::task::spawn_blocking(move || journal.checkpoint()).await?,
            None => Ok(()),
        }
    }

    /// Deletes the conversation's file under its lock, first leaving the marker of when (see
    /// [`erased_at`]); how many events it held. The lock file stays: a writer beside this
    /// process may hold it open, and finds the file gone when it next looks.
    pub(crate) async fn erase(
        &self,
        key: Key,
        paths: ConversationPaths,
        at_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut slot = self.slot(key).lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _lock = lock_exclusive(&paths)?;
            let held = match fs::read(&paths.file) {
                Ok(bytes) => parse(&bytes).events.len(),
                Err(err) if err.kind() == ErrorKind::NotFound => 0,
                Err(err) => return Err(StoreError::io("read", &paths.file)(err)),
            };
            write_atomic(&paths.erased, at_ms.to_string().as_bytes())?;
            match fs::remove_file(&paths.file) {
                Ok(()) => sync_dir(parent(&paths.file))?,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io("remove", &paths.file)(err)),
            }
            slot.known = None;
            Ok(held)
        })
        .await?
    }

    /// A conversation forgotten by the cache has its file read again when next touched.
    fn slot(&self, key: Key) -> SlotHandle {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(key)
    }
}

/// When the conversation was erased (Unix milliseconds), if it was. A marker that does not
/// parse counts from when it was written.
pub(crate) fn erased_at(paths: &ConversationPaths) -> Result<Option<i64>, StoreError> {
    match fs::read_to_string(&paths.erased) {
        Ok(text) => match text.trim().parse() {
            Ok(at) => Ok(Some(at)),
            Err(_) => {
                let written = fs::metadata(&paths.erased)
                    .and_then(|meta| meta.modified())
                    .map_err(StoreError::io("read", &paths.erased))?;
                let ms = written
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                Ok(Some(ms))
            }
        },
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::io("read", &paths.erased)(err)),
    }
}

/// Reads a conversation under a shared lock, so no writer is half-way through it.
pub(crate) fn read(paths: &ConversationPaths) -> Result<Vec<Value>, StoreError> {
    Ok(read_locked(paths)?
        .iter()
        .map(MessagingEvent::to_value)
        .collect())
}

/// A conversation's events as the file holds them (each line's bytes), under a shared lock.
pub(crate) fn read_locked(paths: &ConversationPaths) -> Result<Vec<MessagingEvent>, StoreError> {
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

#[cfg(test)]
mod tests;
