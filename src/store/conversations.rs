//! The customers' conversations and the pages' metadata, whichever backend holds them: the
//! `facebook/` files (with the server's journal) or PostgreSQL with an object store.

use std::sync::Arc;

use serde_json::Value;

use super::{MessagingEvent, StoreError};
use crate::domain::{PageId, SenderId};

/// Where conversations live; shared by the webhook, the poll and the self-test.
pub type ConversationStore = Arc<dyn Conversations>;
/// Where each page's metadata document lives.
pub type MetadataStore = Arc<dyn PageMetadata>;

#[async_trait::async_trait]
pub trait Conversations: Send + Sync + std::fmt::Debug {
    /// Merges events into a customer's conversation: new ones (by `message.mid`, or the whole
    /// event when it has none) are kept in chronological order, known ones are skipped.
    /// Returns how many were new; when it returns, all of them are durable (acknowledgeable).
    async fn add(
        &self,
        page: &PageId,
        customer: &SenderId,
        events: Vec<MessagingEvent>,
    ) -> Result<usize, StoreError>;

    /// A conversation's events, oldest first (empty when there is none yet).
    async fn read(&self, page: &PageId, customer: &SenderId) -> Result<Vec<Value>, StoreError>;

    /// Before a clean stop: whatever is durable only in an intermediate place (the journal)
    /// is put where readers look, so the next start has nothing to replay.
    async fn checkpoint(&self) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
pub trait PageMetadata: Send + Sync + std::fmt::Debug {
    /// Replaces the page's metadata document with the non-sensitive fields of `page_fields`.
    async fn write(&self, page: &PageId, page_fields: &Value) -> Result<(), StoreError>;
}
