//! The write paths of one update: in place on the caller's thread when only page-cache work
//! is left ([`append_now`]), else on a blocking thread ([`add_waiting`]), and what each leaves
//! for the group flush.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::super::atomic::{create_unsynced, ensure_dir, flush_file, write_atomic};
use super::super::flush_failures;
use super::super::group_sync::{Dirty, Unflushed};
use super::super::journal::{Entry, Record};
use super::format::{
    EventKey, TAIL, as_json_array, keep_unseen, render, render_append, sort_chronologically,
};
use super::handles::{HeldLock, Kept};
use super::known::{Known, Slot, fingerprint_of, keys_on_disk, read_events, refresh, stat};
use super::near_tail::insert_near_tail;
use super::{ConversationPaths, Key, MessagingEvent};
use crate::store::StoreError;

/// What one update did to its file.
pub(super) struct Written {
    /// How many events were new.
    pub(super) added: usize,
    /// Appended or created without fsync: durable only after a group flush.
    pub(super) dirty: Option<Dirty>,
}

impl Written {
    /// Every event was stored already.
    pub(super) fn nothing() -> Written {
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

pub(super) fn add_locked(
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
pub(super) fn append_now(
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

pub(super) fn add_waiting(
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
pub(super) fn lock_exclusive(paths: &ConversationPaths) -> Result<File, StoreError> {
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
