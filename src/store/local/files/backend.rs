//! [`FileStore`] as the embedded backend of the store traits: conversations, page metadata,
//! attachment files, and the counts the status view shows.

use serde_json::Value;

use super::atomic::parent;
use super::{FileStore, MessagingEvent, atomic};
use crate::domain::{PageId, SenderId};
use crate::store::conversations::{Conversations, PageCounts, PageMetadata};
use crate::store::{StoreError, unix_now_ms};

#[async_trait::async_trait]
impl Conversations for FileStore {
    async fn add(
        &self,
        page: &PageId,
        customer: &SenderId,
        events: Vec<MessagingEvent>,
    ) -> Result<usize, StoreError> {
        self.add_to_conversation(page, customer, events).await
    }

    async fn read(&self, page: &PageId, customer: &SenderId) -> Result<Vec<Value>, StoreError> {
        self.read_conversation(page, customer).await
    }

    async fn checkpoint(&self) -> Result<(), StoreError> {
        FileStore::checkpoint(self).await
    }

    async fn erase_page(&self, page: &PageId) -> Result<usize, StoreError> {
        // What the journal holds of the page goes into its files first: a replay after a
        // crash must not bring the deleted conversations back.
        FileStore::checkpoint(self).await?;
        let counted = self.counts(page).await?.conversations;
        remove_dir(self.conversations_dir(page)).await?;
        Ok(counted)
    }

    async fn erase_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError> {
        let paths = self.conversation_paths(page, customer);
        let key = (page.clone(), customer.clone());
        self.conversations.erase(key, paths, unix_now_ms()).await
    }

    async fn erased_at(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<Option<i64>, StoreError> {
        let paths = self.conversation_paths(page, customer);
        tokio::task::spawn_blocking(move || super::conversation::erased_at(&paths)).await?
    }

    async fn counts(&self, page: &PageId) -> Result<PageCounts, StoreError> {
        let dir = self.conversations_dir(page);
        tokio::task::spawn_blocking(move || {
            let mut counts = PageCounts::default();
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(counts),
                Err(err) => return Err(StoreError::io("list", &dir)(err)),
            };
            for entry in entries {
                let path = entry.map_err(StoreError::io("list", &dir))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
                counts.conversations += 1;
                // One event per line, each an object.
                counts.messages += bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| l.first() == Some(&b'{'))
                    .count();
            }
            Ok(counts)
        })
        .await?
    }
}

#[async_trait::async_trait]
impl PageMetadata for FileStore {
    async fn write(&self, page: &PageId, page_fields: &Value) -> Result<(), StoreError> {
        self.write_metadata(page, page_fields).await
    }

    async fn erase_page(&self, page: &PageId) -> Result<(), StoreError> {
        remove_dir(self.page_dir(page)).await
    }

    async fn erase_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError> {
        let dir = self.attachments_dir(page, customer);
        tokio::task::spawn_blocking(move || {
            let files = match std::fs::read_dir(&dir) {
                Ok(entries) => entries.filter_map(Result::ok).count(),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(err) => return Err(StoreError::io("list", &dir)(err)),
            };
            remove_tree(&dir)?;
            Ok(files)
        })
        .await?
    }

    async fn read(&self, page: &PageId) -> Result<Option<Value>, StoreError> {
        let path = self.metadata_path(page);
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::io("read", &path)(err)),
        })
        .await?
    }
}

#[async_trait::async_trait]
impl crate::store::attachments::AttachmentFiles for FileStore {
    /// Written whole and flushed before the download counts as done.
    async fn put(
        &self,
        page: &PageId,
        customer: &SenderId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let dir = self.attachments_dir(page, customer);
        let path = dir.join(name);
        tokio::task::spawn_blocking(move || {
            atomic::ensure_dir(&dir)?;
            atomic::write_atomic(&path, &bytes)
        })
        .await?
    }

    async fn delete(
        &self,
        page: &PageId,
        customer: &SenderId,
        name: &str,
    ) -> Result<(), StoreError> {
        let dir = self.attachments_dir(page, customer);
        let path = dir.join(name);
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io("remove", &path)(err)),
            }
            // The folders the put made again, if nothing else is in them.
            let _ = std::fs::remove_dir(&dir).and_then(|()| std::fs::remove_dir(parent(&dir)));
            Ok(())
        })
        .await?
    }
}

/// Removes `dir` and everything below it; a folder that is not there is fine.
async fn remove_dir(dir: std::path::PathBuf) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(move || remove_tree(&dir)).await?
}

fn remove_tree(dir: &std::path::Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::io("remove", dir)(err)),
    }
}
