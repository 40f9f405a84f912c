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
mod near_tail;
mod recent_keys;
mod slots;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::atomic::{create_unsynced, ensure_dir, flush_file, flush_paths, write_atomic};
use super::flush_failures;
use super::group_sync::{Dirty, GroupSync, Unflushed};
use super::journal::{Entry, Journal, Record};
use crate::domain::{PageId, SenderId};
use crate::store::StoreError;
pub use event::MessagingEvent;

/// A whole conversation document from its events in arrival order: sorted as the files sort
/// them and laid out line by line as they are, byte for byte (another backend renders with it).
pub(crate) fn render_document(mut events: Vec<MessagingEvent>) -> Vec<u8> {
    sort_chronologically(&mut events);
    format::render(&events)
}
use format::{
    EventKey, Summary, TAIL, as_json_array, keep_unseen, parse, render, render_append,
    sort_chronologically, summarize,
};
use handles::{HeldLock, Kept};
use near_tail::insert_near_tail;
use recent_keys::RecentKeys;
use slots::Slots;

/// How many conversations keep their message ids in memory while idle.
pub(super) const CACHED_CONVERSATIONS: usize = 1024;

/// Where one conversation lives on disk.
#[derive(Debug, Clone)]
pub(crate) struct ConversationPaths {
    pub file: PathBuf,
    pub lock_dir: PathBuf,
    pub lock: PathBuf,
    /// The log every failed flush goes to (see `flush_failures`).
    pub flush_failures: Arc<PathBuf>,
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
#[derive(Debug)]
struct Known {
    /// `None`: the file does not exist.
    fingerprint: Option<Fingerprint>,
    /// The file itself, kept open by the fast path while `fingerprint` is current, so an
    /// append costs no `open`/`close` (their path walks were ~10% of the webhook's CPU).
    file: Option<Kept>,
    keys: RecentKeys,
    last_timestamp: Option<i64>,
    count: usize,
    line_format: bool,
    /// Read from the disk and not flushed by this process since. What it holds may have been
    /// written by a process that died before its flush (a `salesbot poll` killed mid-round),
    /// so a repeat of those events must flush the file before it is acknowledged.
    read_unflushed: bool,
}

impl Known {
    /// What is known of a file that does not exist.
    fn absent(keys: RecentKeys) -> Known {
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
    /// disk: acknowledging them takes a flush of the file (see [`add_waiting`]).
    fn repeats_unflushed(&self, events: &[MessagingEvent]) -> bool {
        self.read_unflushed && events.iter().any(|event| self.keys.contains(&event.key()))
    }

    /// Whether `events` can go after the last stored event: the file is in line format and
    /// none of them is older (an older one takes the rewrite, to keep the file in time order).
    fn appendable(&self, events: &[MessagingEvent]) -> bool {
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
    fn can_slot_in(&self, journaled: bool) -> bool {
        journaled && self.line_format && self.count > 0
    }

    /// Takes note of `fresh` having been written, leaving the file as `fingerprint`.
    fn stored(&mut self, fresh: &[MessagingEvent], fingerprint: Option<Fingerprint>) {
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
struct Slot {
    /// Made on the conversation's first update in this process, not on every one (joining
    /// the folder names and formatting the file names was ~1.5% of the webhook's CPU).
    paths: Option<Arc<ConversationPaths>>,
    known: Option<Known>,
    /// The conversation's lock file, kept open by the fast path between updates.
    lock: Option<Kept>,
    /// Keep every key of the file in memory, not only the recent ones: for a pass over many
    /// records of the same files, each of which would otherwise re-read its file.
    every_key: bool,
    /// Every file is flushed by the caller before anything is acknowledged (the replay), so
    /// a repeat needs no flush of its own.
    flushed_later: bool,
}

impl Slot {
    fn new_keys(&self) -> fn() -> RecentKeys {
        match self.every_key {
            true => RecentKeys::complete,
            false => RecentKeys::bounded,
        }
    }
}

type SlotHandle = Arc<tokio::sync::Mutex<Slot>>;

#[derive(Debug)]
pub(crate) struct Conversations {
    slots: Mutex<Slots<Key, tokio::sync::Mutex<Slot>>>,
    sync: GroupSync,
}

/// Who a conversation is, as its journal records name it.
type Key = (PageId, SenderId);

/// What one update did to its file.
struct Written {
    /// How many events were new.
    added: usize,
    /// Appended or created without fsync: durable only after a group flush.
    dirty: Option<Dirty>,
}

impl Written {
    /// Every event was stored already.
    fn nothing() -> Written {
        Written {
            added: 0,
            dirty: None,
        }
    }
}

/// What a write left unflushed becomes for the group flush: with a journal (`journal_as`),
/// the record of every event in the bytes it `wrote` (those it added, and those it moved
/// when an older new one was slotted in before them, see [`insert_near_tail`]), which is why
/// no handle is needed; without, the file itself (from `handle`) to flush.
fn pending(
    journal_as: Option<&Key>,
    paths: &ConversationPaths,
    wrote: &[u8],
    new_in: Option<PathBuf>,
    handle: impl FnOnce() -> Result<File, StoreError>,
) -> Result<Dirty, StoreError> {
    Ok(match journal_as {
        Some((page, customer)) => Dirty::Journaled(Entry {
            // The very bytes written, not the events serialised a second time.
            framed: Record::frame(page.as_str(), customer.as_str(), &as_json_array(wrote)),
            file: paths.file.clone(),
            new_in,
        }),
        None => Dirty::File(Unflushed::new(handle()?, paths.clone(), new_in)),
    })
}

impl Conversations {
    /// Conversation files made durable by flushing each file a round touched.
    pub(crate) fn new() -> Conversations {
        Conversations::with_sync(GroupSync::default())
    }

    /// Conversation files made durable by the records of `journal`.
    pub(crate) fn journaled(journal: Journal) -> Conversations {
        Conversations::with_sync(GroupSync::journaled(journal))
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
    pub(in crate::store::files) fn is_cached(&self, key: &Key) -> bool {
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

    /// A conversation forgotten by the cache has its file read again when next touched.
    fn slot(&self, key: Key) -> SlotHandle {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(key)
    }
}

/// Merges journal records back into their files at start-up, outside the server's cache: each
/// file's ids are read once however many records name it (as long as the caller does not
/// [`Replay::release`] it in between), and every file a record names is made durable by
/// [`Replay::finish`], before the journal may be emptied.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    slots: HashMap<PathBuf, Slot>,
    /// Every file a record named.
    named: BTreeSet<PathBuf>,
    /// Files a failed checkpoint left in doubt: rewritten whole, not flushed.
    rewrite: BTreeMap<PathBuf, ConversationPaths>,
    restored: usize,
}

impl Replay {
    /// Merges a record's `events`; `in_doubt` when it comes from a segment whose checkpoint
    /// failed (see [`Replay::finish`]).
    pub(crate) fn add(
        &mut self,
        paths: &ConversationPaths,
        events: Vec<MessagingEvent>,
        in_doubt: bool,
    ) -> Result<(), StoreError> {
        let slot = self
            .slots
            .entry(paths.file.clone())
            .or_insert_with(|| Slot {
                every_key: true,
                flushed_later: true,
                ..Slot::default()
            });
        let written = add_locked(slot, paths, events, None)?;
        self.restored += written.added;
        if !self.named.contains(&paths.file) {
            self.named.insert(paths.file.clone());
        }
        if in_doubt {
            self.rewrite.insert(paths.file.clone(), paths.clone());
        }
        Ok(())
    }

    /// Forgets what was learnt of a file whose records are all merged: its ids (every one of
    /// them, for a busy conversation thousands) would otherwise stay in memory until
    /// [`Replay::finish`]. The file is still flushed then.
    pub(crate) fn release(&mut self, paths: &ConversationPaths) {
        self.slots.remove(&paths.file);
    }

    /// Makes every file the records name durable, with its folder; returns how many events
    /// the files had been missing.
    ///
    /// Every file, not only those the replay wrote to: after a crash of the process alone,
    /// the events it had appended are still in the page cache, so the replay finds them all
    /// there and writes nothing, but nothing has flushed them either. The journal is their
    /// only durable copy until this flush, and is deleted right after it. Their folders too:
    /// the entry naming a file created since the last checkpoint may not be on disk yet.
    ///
    /// A file a failed checkpoint left in doubt is rewritten whole instead: once a flush has
    /// reported a write-back error, Linux may have dropped the pages that failed, and a later
    /// flush reports nothing and writes nothing ("fsyncgate"). What reading the file gives
    /// now (the page cache's copy, or the disk's with the missing events just merged back in)
    /// goes to a new file, flushed before it replaces the old.
    pub(crate) fn finish(self) -> Result<usize, StoreError> {
        for paths in self.rewrite.values() {
            rewrite_whole(paths)?;
        }
        let (files, folders) = self.to_flush();
        flush_paths(&files, &folders)?;
        Ok(self.restored)
    }

    fn to_flush(&self) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
        let files: BTreeSet<PathBuf> = self
            .named
            .iter()
            .filter(|file| !self.rewrite.contains_key(*file))
            .cloned()
            .collect();
        let folders = files
            .iter()
            .filter_map(|file| file.parent())
            // A folder removed by hand since has nothing left to flush.
            .filter(|folder| folder.is_dir())
            .map(Path::to_path_buf)
            .collect();
        (files, folders)
    }
}

/// See [`Replay::finish`]: the file as it reads now, written to a new file and flushed.
pub(super) fn rewrite_whole(paths: &ConversationPaths) -> Result<(), StoreError> {
    let _lock = lock_exclusive(paths)?;
    match fs::read(&paths.file) {
        Ok(bytes) => write_atomic(&paths.file, &bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io("read", &paths.file)(err)),
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

fn add_locked(
    slot: &mut Slot,
    paths: &ConversationPaths,
    events: Vec<MessagingEvent>,
    journal_as: Option<&Key>,
) -> Result<Written, StoreError> {
    let result = add_waiting(slot, paths, events, journal_as);
    if result.is_err() {
        // What the cache believes may not be on disk: forget it, re-read next time.
        slot.known = None;
    }
    result
}

/// The common case, done on the caller's own thread because only page-cache work is left:
/// the file is known to this process and unchanged, nobody else holds its lock, and no event
/// is older than the last one stored, so the events go in place over the closing `]`.
/// Anything else (`Err(events)` back) may read, rewrite or flush a file, or wait for a lock,
/// and goes to a blocking thread ([`add_waiting`]).
fn append_now(
    slot: &mut Slot,
    paths: &ConversationPaths,
    events: Vec<MessagingEvent>,
    journal_as: Option<&Key>,
) -> Result<Result<Written, Vec<MessagingEvent>>, StoreError> {
    let Slot { known, lock, .. } = slot;
    let Some(known) = known.as_mut() else {
        return Ok(Err(events));
    };
    let appendable = known.appendable(&events);
    // Slotting a late event in near the end is page-cache work too.
    let late_ok = known.can_slot_in(journal_as.is_some());
    let decided = known.keys.decides(&events);
    let fast = decided && (appendable || late_ok) && !known.repeats_unflushed(&events);
    let (Some(fingerprint), true) = (known.fingerprint, fast) else {
        return Ok(Err(events));
    };
    // A lock file someone deleted would no longer exclude anybody: open the current one.
    let cached = lock
        .take()
        .filter(|file| file.metadata().is_ok_and(|meta| meta.nlink() > 0));
    let lock_file = match cached.map_or_else(|| open_lock(paths).map(Kept::new), Ok) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Err(events)),
        Err(err) => return Err(StoreError::io("open", &paths.lock)(err)),
    };
    match lock_file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            *lock = Some(lock_file);
            return Ok(Err(events));
        }
        Err(fs::TryLockError::Error(err)) => return Err(StoreError::io("lock", &paths.lock)(err)),
    }
    // Released (and the file kept for next time) at the end of this function.
    let _held = HeldLock {
        home: lock,
        file: Some(lock_file),
    };
    if stat(&paths.file)? != Some(fingerprint) {
        return Ok(Err(events));
    }
    if !appendable {
        return slot_in_now(known, paths, fingerprint.len, events, journal_as);
    }
    // Unchanged since this process read or wrote it, so it still ends with `TAIL`; and the
    // handle kept is of this very file (same inode).
    let file = match known.file.take() {
        Some(file) => file,
        None => OpenOptions::new()
            .write(true)
            .open(&paths.file)
            .map(Kept::new)
            .map_err(StoreError::io("open", &paths.file))?,
    };
    let mut fresh = keep_unseen(events, |key| known.keys.contains(key));
    if fresh.is_empty() {
        return Ok(Ok(Written::nothing()));
    }
    sort_chronologically(&mut fresh);
    let wrote = render_append(&fresh);
    write_at_tail(&file, &paths.file, fingerprint.len, &wrote)?;
    known.stored(&fresh, fingerprint_of(&file, &paths.file)?);
    // Without a journal the group flush gets its own descriptor of the file (no path walk).
    let dirty = pending(journal_as, paths, &wrote, None, || {
        file.try_clone()
            .map_err(StoreError::io("open", &paths.file))
    })?;
    known.file = file.counted.then_some(file);
    Ok(Ok(Written {
        added: fresh.len(),
        dirty: Some(dirty),
    }))
}

/// [`append_now`] for events older than the last stored: slotted in near the end, or back to
/// the caller untouched when their place is further back (a whole rewrite, which flushes).
fn slot_in_now(
    known: &mut Known,
    paths: &ConversationPaths,
    len: u64,
    events: Vec<MessagingEvent>,
    journal_as: Option<&Key>,
) -> Result<Result<Written, Vec<MessagingEvent>>, StoreError> {
    // `events` stay whole for the caller should the place be further back.
    let mut fresh = keep_unseen(events.iter().cloned(), |key| known.keys.contains(key));
    if fresh.is_empty() {
        return Ok(Ok(Written::nothing()));
    }
    sort_chronologically(&mut fresh);
    let Some((file, wrote)) = insert_near_tail(&paths.file, len, &fresh)? else {
        return Ok(Err(events));
    };
    known.stored(&fresh, fingerprint_of(&file, &paths.file)?);
    let dirty = pending(journal_as, paths, &wrote, None, || Ok(file))?;
    Ok(Ok(Written {
        added: fresh.len(),
        dirty: Some(dirty),
    }))
}

fn add_waiting(
    slot: &mut Slot,
    paths: &ConversationPaths,
    events: Vec<MessagingEvent>,
    journal_as: Option<&Key>,
) -> Result<Written, StoreError> {
    // Released when `_lock` is closed at the end of this function.
    let _lock = lock_exclusive(paths)?;
    let new_keys = slot.new_keys();
    let flushed_later = slot.flushed_later;
    let known = refresh(slot, paths)?;
    let received = events.len();
    let mut fresh = if known.keys.decides(&events) {
        keep_unseen(events, |key| known.keys.contains(key))
    } else {
        // A repeat of a key forgotten is possible: the file decides.
        let stored = keys_on_disk(&paths.file)?;
        keep_unseen(events, |key| stored.contains(key))
    };
    if fresh.len() < received && known.read_unflushed && !flushed_later {
        // The repeats are acknowledged with this update: what they found must be on disk.
        if let Err(err) = flush_file(&paths.file) {
            flush_failures::record(&paths.flush_failures, &paths.file, &err);
            return Err(err);
        }
        known.read_unflushed = false;
    }
    if fresh.is_empty() {
        return Ok(Written::nothing());
    }
    sort_chronologically(&mut fresh);
    let at_tail = match known.fingerprint {
        Some(fp) if known.count > 0 && known.appendable(&fresh) => {
            open_at_tail(&paths.file, fp.len)?.map(|file| (file, fp.len))
        }
        _ => None,
    };
    // With a journal, an event a little older than the last ones is slotted in near the end
    // in place: the journal record carries the events it moves, so a torn write loses none.
    let near_tail = match (&at_tail, known.fingerprint) {
        (None, Some(fp)) if known.can_slot_in(journal_as.is_some()) => {
            insert_near_tail(&paths.file, fp.len, &fresh)?
        }
        _ => None,
    };
    // The file written without a flush (its folder when it is new, the bytes written).
    let unflushed = match (at_tail, near_tail, known.fingerprint) {
        (Some((file, len)), _, _) => {
            let wrote = render_append(&fresh);
            write_at_tail(&file, &paths.file, len, &wrote)?;
            Some((file, None, wrote))
        }
        (None, Some((file, wrote)), _) => Some((file, None, wrote)),
        (None, None, None) => {
            let wrote = render(&fresh);
            let file = create_unsynced(&paths.file, &wrote)?;
            let folder = paths.file.parent().map(Path::to_path_buf);
            Some((file, folder, wrote))
        }
        // Replacing existing content: fsync before the rename, never left to the group.
        (None, None, Some(_)) => {
            let mut all = read_events(&paths.file)?;
            // What is on disk decides what is new, should this process's view be behind.
            let on_disk: HashSet<EventKey> = all.iter().map(MessagingEvent::key).collect();
            fresh.retain(|e| !on_disk.contains(&e.key()));
            known.count = all.len();
            all.extend(fresh.iter().cloned());
            sort_chronologically(&mut all);
            write_atomic(&paths.file, &render(&all))?;
            // Flushed whole: a repeat of what it held needs no flush of its own.
            known.read_unflushed = false;
            // The most recent keys are those of the file's last events, now it is in order.
            known.keys = new_keys();
            all.iter().for_each(|event| known.keys.note(event));
            None
        }
    };
    let fingerprint = match &unflushed {
        Some((file, ..)) => fingerprint_of(file, &paths.file)?,
        None => stat(&paths.file)?,
    };
    known.stored(&fresh, fingerprint);
    let dirty = unflushed
        .map(|(file, new_in, wrote)| pending(journal_as, paths, &wrote, new_in, || Ok(file)))
        .transpose()?;
    Ok(Written {
        added: fresh.len(),
        dirty,
    })
}

/// The conversation's lock, taken (waiting for it if need be) until the file returned closes.
fn lock_exclusive(paths: &ConversationPaths) -> Result<File, StoreError> {
    // The folders exist for every file but a page's first: create them only when missing.
    let lock = match open_lock(paths) {
        Err(err) if err.kind() == ErrorKind::NotFound => {
            ensure_dir(&paths.lock_dir)?;
            open_lock(paths)
        }
        opened => opened,
    }
    .map_err(StoreError::io("open", &paths.lock))?;
    lock.lock().map_err(StoreError::io("lock", &paths.lock))?;
    Ok(lock)
}

fn open_lock(paths: &ConversationPaths) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
}

/// Brings `slot` up to date with the file, re-reading it only when someone else changed it.
fn refresh<'a>(slot: &'a mut Slot, paths: &ConversationPaths) -> Result<&'a mut Known, StoreError> {
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

/// The file of `len` bytes opened for an append over its closing `\n]\n`; `None` when it does
/// not end the way it should (the caller rewrites it whole).
fn open_at_tail(path: &Path, len: u64) -> Result<Option<File>, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    let mut tail = [0u8; 3];
    let at = len.saturating_sub(TAIL.len() as u64);
    if len < 4 || file.read_exact_at(&mut tail, at).is_err() || tail != TAIL {
        return Ok(None);
    }
    Ok(Some(file))
}

/// One write of what [`render_append`] made: a crash can tear only the new events, and `load`
/// cuts a torn tail off. The caller makes it durable (as a group) before anyone is told.
fn write_at_tail(file: &File, path: &Path, len: u64, rendered: &[u8]) -> Result<(), StoreError> {
    let at = len.saturating_sub(TAIL.len() as u64);
    file.write_all_at(rendered, at)
        .map_err(StoreError::io("append to", path))
}

/// Of a file just written through `file` (nobody can replace it while the lock is held).
fn fingerprint_of(file: &File, path: &Path) -> Result<Option<Fingerprint>, StoreError> {
    let meta = file.metadata().map_err(StoreError::io("inspect", path))?;
    Ok(Some(Fingerprint::of(&meta)))
}

/// Every key in the file: what decides an event [`RecentKeys`] cannot.
fn keys_on_disk(path: &Path) -> Result<HashSet<EventKey>, StoreError> {
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

fn read_events(path: &Path) -> Result<Vec<MessagingEvent>, StoreError> {
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
