//! The files the bot reads, under `DATA_DIR/facebook/`:
//!
//! ```text
//! facebook/<page_id>/page_metadata.json             {"data": [ {page fields, never a token} ]}
//! facebook/<page_id>/conversations/<sender_id>.json [ webhook-shaped events, oldest first ]
//! facebook/<page_id>/conversations/.salesbot/       lock files (and copies of damaged files)
//! ```
//!
//! Paths are only ever built from [`PageId`] and [`SenderId`], which cannot leave their folder.
//! A reader that wants a guaranteed-complete view of a conversation takes a shared `flock` on
//! its lock file, as [`FileStore::read_conversation`] does.

mod atomic;
mod conversation;
mod group_sync;
mod metadata;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::domain::{PageId, SenderId};
use crate::store::StoreError;
use conversation::{ConversationPaths, Conversations};

pub use metadata::PAGE_FIELDS;

#[derive(Debug, Clone)]
pub struct FileStore {
    root: Arc<PathBuf>,
    conversations: Arc<Conversations>,
}

impl FileStore {
    /// Files go under `data_dir/facebook/`.
    pub fn new(data_dir: &Path) -> FileStore {
        let root = data_dir.join("facebook");
        FileStore {
            conversations: Arc::new(Conversations::new()),
            root: Arc::new(root),
        }
    }

    /// Merges events into a customer's conversation: new ones (by `message.mid`, or the whole
    /// event when it has none) are stored in chronological order, known ones are skipped.
    /// Returns how many were new; when it returns, they are on disk.
    pub async fn add_to_conversation(
        &self,
        page: &PageId,
        sender: &SenderId,
        events: Vec<Value>,
    ) -> Result<usize, StoreError> {
        let paths = self.conversation_paths(page, sender);
        self.conversations
            .add((page.clone(), sender.clone()), paths, events)
            .await
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

    fn page_dir(&self, page: &PageId) -> PathBuf {
        self.root.join(page.as_str())
    }

    fn conversation_paths(&self, page: &PageId, sender: &SenderId) -> ConversationPaths {
        let dir = self.page_dir(page).join("conversations");
        let lock_dir = dir.join(".salesbot");
        ConversationPaths {
            file: dir.join(format!("{sender}.json")),
            lock: lock_dir.join(format!("{sender}.lock")),
            lock_dir,
        }
    }
}
