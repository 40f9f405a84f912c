//! The files the bot reads, under `DATA_DIR/facebook/`:
//!
//! ```text
//! facebook/<page_id>/page_metadata.json             {"data": [ {page fields, never a token} ]}
//! facebook/<page_id>/conversations/<sender_id>.json [ webhook-shaped events, oldest first ]
//! facebook/<page_id>/conversations/.salesbot/       lock files (and copies of damaged files)
//! .salesbot/journal/                                 the server's write-ahead journal
//! ```
//!
//! Paths are only ever built from [`PageId`] and [`SenderId`], which cannot leave their folder.
//! A reader that wants a guaranteed-complete view of a conversation takes a shared `flock` on
//! its lock file, as [`FileStore::read_conversation`] does.

mod atomic;
mod backend;
mod conversation;
mod erasures;
mod flush_failures;
mod group_sync;
mod journal;
pub(crate) mod metadata;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::domain::{PageId, SenderId};
use crate::store::StoreError;
pub use conversation::MessagingEvent;
pub(crate) use conversation::render_document;
use conversation::{ConversationPaths, Conversations};

pub use metadata::PAGE_FIELDS;

#[derive(Debug, Clone)]
pub struct FileStore {
    root: Arc<PathBuf>,
    conversations: Arc<Conversations>,
    /// Where every failed flush is written down (see `flush_failures`).
    flush_failures: Arc<PathBuf>,
}

impl FileStore {
    /// Files go under `data_dir/facebook/`; every write flushes its own files. For processes
    /// that run beside the server (`salesbot poll`), and tests.
    pub fn new(data_dir: &Path) -> FileStore {
        let root = data_dir.join("facebook");
        FileStore {
            conversations: Arc::new(Conversations::new()),
            root: Arc::new(root),
            flush_failures: Arc::new(flush_failures::log_of(data_dir)),
        }
    }

    /// Counts how long each round of flushes takes (`salesbot_flush_duration_seconds`).
    pub fn observe(&self, metrics: &crate::telemetry::metrics::Metrics) {
        self.conversations.observe(metrics);
    }

    /// The server's store: writes are made durable by a write-ahead journal in
    /// `data_dir/.salesbot/journal/`, owned by this process alone. Whatever a previous run
    /// left in the journal is merged into the files first. Blocking.
    pub fn with_journal(data_dir: &Path) -> Result<FileStore, StoreError> {
        Self::with_journal_segments(data_dir, journal::SEGMENT_BYTES)
    }

    fn with_journal_segments(data_dir: &Path, segment_bytes: u64) -> Result<FileStore, StoreError> {
        let dir = journal::dir_of(data_dir);
        let lock = journal::lock(&dir)?;
        let mut store = FileStore::new(data_dir);
        let replayed = store.recover(&dir)?;
        let failures = Arc::clone(&store.flush_failures);
        let journal = journal::Journal::start(&dir, lock, segment_bytes, replayed, failures)?;
        store.conversations = Arc::new(Conversations::journaled(journal));
        store.remove_stale_temp_files();
        store.warm_up();
        Ok(store)
    }

    /// Learns the recent message ids of the most recently written conversations, as many as
    /// the cache keeps, before the server takes its first request.
    ///
    /// Why: a conversation's first update after a start reads its whole file, on the request's
    /// path. Right after a start every conversation is cold at once: in the 64-connection
    /// benchmark the first 0.2 s ran at a third of the usual rate and held half of the run's
    /// slowest 1% of requests (BENCHMARKS.md). Reading them here costs ~0.15 ms a
    /// conversation, once. What cannot be read is left for the first update to read (and
    /// repair), as before.
    fn warm_up(&self) {
        let started = std::time::Instant::now();
        let mut warmed = 0;
        // Oldest first, so that the most recent ones are the last the cache would forget.
        let recent = self.recent_conversations(conversation::CACHED_CONVERSATIONS);
        for (page, customer) in recent.into_iter().rev() {
            let paths = self.conversation_paths(&page, &customer);
            match self.conversations.warm((page, customer), paths) {
                Ok(()) => warmed += 1,
                Err(err) => {
                    tracing::warn!(error = %err, "conversation not read ahead; its next update reads it")
                }
            }
        }
        if warmed > 0 {
            tracing::info!(conversations = warmed, elapsed = ?started.elapsed(), "read the recent conversations ahead");
        }
    }

    /// Removes what a process killed half-way through replacing a file left: its temp file,
    /// in a page's folder, its conversations folder or the latter's lock folder. Hidden and
    /// not named `*.json`, so no reader mistakes one for data, but a crash at every update
    /// of a busy server would leave them piling up.
    fn remove_stale_temp_files(&self) {
        let mut removed = 0;
        for page in std::fs::read_dir(self.root.as_path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let page = page.path();
            let conversations = page.join("conversations");
            for dir in [&page, &conversations, &conversations.join(".salesbot")] {
                removed += atomic::remove_stale_temp_files(dir);
            }
        }
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed the temp files of writes a crash cut short"
            );
        }
    }

    /// Up to `limit` conversations, most recently written first. Names that are not ids (a
    /// file someone put there) are passed over.
    fn recent_conversations(&self, limit: usize) -> Vec<(PageId, SenderId)> {
        let entries = |dir: &Path| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry)))
        };
        let mut found = Vec::new();
        for (name, _) in entries(&self.root) {
            let Ok(page) = PageId::parse(&name) else {
                continue;
            };
            for (file, entry) in entries(&self.page_dir(&page).join("conversations")) {
                let customer = file.strip_suffix(".json").map(SenderId::parse);
                let written = entry.metadata().and_then(|meta| meta.modified());
                if let (Some(Ok(customer)), Ok(written)) = (customer, written) {
                    found.push((written, page.clone(), customer));
                }
            }
        }
        found.sort_unstable_by_key(|(written, ..)| std::cmp::Reverse(*written));
        found.truncate(limit);
        found
            .into_iter()
            .map(|(_, page, customer)| (page, customer))
            .collect()
    }

    /// Replays every journal segment into the files and flushes them; returns the segments,
    /// which hold nothing the files lack now (the journal reuses them).
    ///
    /// In two passes, so that it holds the message ids of one file at a time: the first learns
    /// where each conversation's records are, the second merges them one conversation at a
    /// time, in journal order, and forgets each file's ids once done. Merging the records as
    /// they came kept every id of every file named until the end: a replay of ~150,000
    /// records naming 20,000 files peaked at 106 MB (BENCHMARKS.md).
    fn recover(&self, dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
        let segments = journal::segments(dir)?;
        let mut order = Vec::new();
        let mut places: HashMap<(PageId, SenderId), Vec<(usize, u64)>> = HashMap::new();
        let mut records = 0;
        for (index, (_, path)) in segments.iter().enumerate() {
            records += journal::scan_segment(path, |offset, to: journal::Addressee| {
                let (Ok(page), Ok(customer)) =
                    (PageId::parse(&to.page), SenderId::parse(&to.customer))
                else {
                    tracing::error!(segment = %path.display(), "journal record with invalid ids skipped");
                    return Ok(());
                };
                let key = (page, customer);
                match places.get_mut(&key) {
                    Some(found) => found.push((index, offset)),
                    None => {
                        order.push(key.clone());
                        places.insert(key, vec![(index, offset)]);
                    }
                }
                Ok(())
            })?;
        }
        let opened = (segments.iter())
            .map(|(_, path)| journal::SegmentFile::open(path).map_err(StoreError::io("open", path)))
            .collect::<Result<Vec<_>, _>>()?;
        let in_doubt: Vec<bool> = (segments.iter())
            .map(|(_, path)| journal::checkpoint_failed(path))
            .collect();
        let mut replay = conversation::Replay::default();
        for key in order {
            let paths = self.conversation_paths(&key.0, &key.1);
            // An erasure since: what the records hold from before it stays erased.
            let erased = conversation::erased_at(&paths)?;
            for (index, offset) in places.remove(&key).unwrap_or_default() {
                let segment = &segments[index].1;
                let record =
                    (opened[index].record_at(offset)).map_err(StoreError::io("read", segment))?;
                // Only objects were ever written; anything else is not an event to restore.
                let mut events: Vec<MessagingEvent> = (record.events.iter())
                    .filter_map(|event| MessagingEvent::from_json(event.get().as_bytes()))
                    .collect();
                if let Some(at) = erased {
                    crate::store::conversations::after_erasure(&mut events, at);
                }
                replay.add(&paths, events, in_doubt[index])?;
            }
            replay.release(&paths);
        }
        let restored = replay.finish()?;
        if records > 0 {
            tracing::info!(
                records,
                restored,
                "replayed the journal left by the previous run"
            );
        }
        Ok(segments.into_iter().map(|(_, path)| path).collect())
    }

    /// Merges events into a customer's conversation: new ones (by `message.mid`, or the whole
    /// event when it has none) are stored in chronological order, known ones are skipped.
    /// Returns how many were new; when it returns, they are on disk.
    pub async fn add_to_conversation(
        &self,
        page: &PageId,
        sender: &SenderId,
        events: impl IntoIterator<Item = impl Into<MessagingEvent>>,
    ) -> Result<usize, StoreError> {
        let events = events.into_iter().map(Into::into).collect();
        self.conversations
            .add(
                (page.clone(), sender.clone()),
                || self.conversation_paths(page, sender),
                events,
            )
            .await
    }

    /// Flushes every file the journal's current segment covers and empties the segment; the
    /// store stays usable. Without a journal there is nothing to do.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.conversations.checkpoint().await
    }

    /// A conversation's events, oldest first (empty when there is none yet).
    pub async fn read_conversation(
        &self,
        page: &PageId,
        sender: &SenderId,
    ) -> Result<Vec<Value>, StoreError> {
        let paths = self.conversation_paths(page, sender);
        tokio::task::spawn_blocking(move || conversation::read(&paths)).await?
    }

    /// A conversation's events as its file holds them, byte for byte (for `salesbot migrate`).
    pub async fn conversation_events(
        &self,
        page: &PageId,
        sender: &SenderId,
    ) -> Result<Vec<MessagingEvent>, StoreError> {
        let paths = self.conversation_paths(page, sender);
        tokio::task::spawn_blocking(move || conversation::read_locked(&paths)).await?
    }

    /// Every conversation file's page and customer, sorted (names that are not ids skipped).
    pub fn list_conversations(&self) -> Result<Vec<(PageId, SenderId)>, StoreError> {
        self.customers_named(|page| self.conversations_dir(page), ".json")
    }

    /// Each page's customers that have a file `<sender_id><suffix>` in the folder `dir` gives
    /// for the page, sorted; names that are not ids are skipped.
    pub(super) fn customers_named(
        &self,
        dir: impl Fn(&PageId) -> PathBuf,
        suffix: &str,
    ) -> Result<Vec<(PageId, SenderId)>, StoreError> {
        let mut found = Vec::new();
        for page in self.list_pages()? {
            let dir = dir(&page);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let name = entry.map_err(StoreError::io("list", &dir))?.file_name();
                let customer = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(suffix))
                    .and_then(|n| SenderId::parse(n).ok());
                if let Some(customer) = customer {
                    found.push((page.clone(), customer));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Every page folder under `facebook/`, sorted.
    pub fn list_pages(&self) -> Result<Vec<PageId>, StoreError> {
        let mut pages: Vec<PageId> = match std::fs::read_dir(self.root.as_path()) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| PageId::parse(e.file_name().to_str()?).ok())
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(StoreError::io("list", self.root.as_path())(err)),
        };
        pages.sort();
        Ok(pages)
    }

    /// Replaces the page's metadata file with the non-sensitive fields of `page_fields`.
    pub async fn write_metadata(
        &self,
        page: &PageId,
        page_fields: &Value,
    ) -> Result<(), StoreError> {
        let path = self.metadata_path(page);
        let document = metadata::document(page_fields);
        tokio::task::spawn_blocking(move || metadata::write(&path, &document)).await?
    }

    /// `DATA_DIR/facebook/<page_id>/page_metadata.json`.
    pub fn metadata_path(&self, page: &PageId) -> PathBuf {
        self.page_dir(page).join("page_metadata.json")
    }

    /// `DATA_DIR/facebook/<page_id>/conversations/<sender_id>.json`.
    pub fn conversation_path(&self, page: &PageId, sender: &SenderId) -> PathBuf {
        self.conversation_paths(page, sender).file
    }

    /// `DATA_DIR/facebook/<page_id>/attachments/<sender_id>/`.
    pub fn attachments_dir(&self, page: &PageId, sender: &SenderId) -> PathBuf {
        self.page_dir(page)
            .join("attachments")
            .join(sender.as_str())
    }

    pub(super) fn page_dir(&self, page: &PageId) -> PathBuf {
        self.root.join(page.as_str())
    }

    pub(super) fn conversations_dir(&self, page: &PageId) -> PathBuf {
        self.page_dir(page).join("conversations")
    }

    pub(super) fn conversation_paths(&self, page: &PageId, sender: &SenderId) -> ConversationPaths {
        let dir = self.conversations_dir(page);
        let lock_dir = dir.join(".salesbot");
        ConversationPaths {
            file: dir.join(format!("{sender}.json")),
            lock: lock_dir.join(format!("{sender}.lock")),
            erased: lock_dir.join(format!("{sender}.erased")),
            lock_dir,
            flush_failures: Arc::clone(&self.flush_failures),
        }
    }
}

#[cfg(test)]
mod erasure_tests;
#[cfg(test)]
mod journal_tests;

#[cfg(test)]
mod contract_tests {
    use super::FileStore;
    use crate::store::conversations::contract;

    #[tokio::test]
    async fn the_files_deduplicate_and_order() {
        let dir = tempfile::tempdir().unwrap();
        contract::deduplicates_and_orders(&FileStore::new(dir.path())).await;
    }

    #[tokio::test]
    async fn the_files_erase_one_customer() {
        let dir = tempfile::tempdir().unwrap();
        contract::erases_one_customer(&FileStore::new(dir.path())).await;
    }
}
