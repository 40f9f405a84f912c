//! The journal's replay at start-up: records merged back into their files, then every file
//! they name made durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::super::atomic::{flush_paths, write_atomic};
use super::known::Slot;
use super::write::{add_locked, lock_exclusive};
use super::{ConversationPaths, MessagingEvent};
use crate::store::StoreError;

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

    pub(super) fn to_flush(&self) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
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
pub(in crate::store::local::files) fn rewrite_whole(
    paths: &ConversationPaths,
) -> Result<(), StoreError> {
    let _lock = lock_exclusive(paths)?;
    match fs::read(&paths.file) {
        Ok(bytes) => write_atomic(&paths.file, &bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io("read", &paths.file)(err)),
    }
}
