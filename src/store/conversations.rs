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

    /// How many conversations and events a page has (for the status view; reads every
    /// conversation of the page with the files).
    async fn counts(&self, page: &PageId) -> Result<PageCounts, StoreError>;

    /// Every conversation of `page` deleted (Shopify's `shop/redact`); how many there were.
    async fn erase_page(&self, page: &PageId) -> Result<usize, StoreError>;
}

/// What a page holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PageCounts {
    pub conversations: usize,
    pub messages: usize,
}

#[async_trait::async_trait]
pub trait PageMetadata: Send + Sync + std::fmt::Debug {
    /// Replaces the page's metadata document with the non-sensitive fields of `page_fields`.
    async fn write(&self, page: &PageId, page_fields: &Value) -> Result<(), StoreError>;
    /// The page's metadata document, if written.
    async fn read(&self, page: &PageId) -> Result<Option<Value>, StoreError>;
    /// Everything of `page` in the tree the bot reads deleted: metadata, conversations,
    /// attachments.
    async fn erase_page(&self, page: &PageId) -> Result<(), StoreError>;
}

/// What every backend must do (run on the files in `store::local::files`, on PostgreSQL in
/// `store::postgres`).
#[cfg(test)]
pub(crate) mod contract {
    use serde_json::json;

    use super::*;

    pub(crate) fn event(customer: &str, mid: Option<&str>, ts: Option<i64>) -> MessagingEvent {
        let mut event = json!({"sender": {"id": customer}, "recipient": {"id": "101"}});
        if let Some(ts) = ts {
            event["timestamp"] = json!(ts);
        }
        match mid {
            Some(mid) => event["message"] = json!({"mid": mid, "text": format!("text of {mid}")}),
            None => event["delivery"] = json!({"watermark": ts.unwrap_or(0)}),
        }
        MessagingEvent::from(event)
    }

    /// Each event's `message.mid`, `-` for one without.
    pub(crate) fn mids(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                e.pointer("/message/mid")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            })
            .collect()
    }

    /// The deliveries `sequence` applies, in order (a customer's conversation, page 101).
    pub(crate) fn sequence() -> Vec<Vec<MessagingEvent>> {
        vec![
            vec![
                event("7001", Some("m2"), Some(2_000)),
                event("7001", Some("m1"), Some(1_000)),
            ],
            // A redelivery, a duplicate inside one delivery, an event without a mid.
            vec![
                event("7001", Some("m1"), Some(1_000)),
                event("7001", Some("m3"), Some(3_000)),
                event("7001", Some("m3"), Some(3_000)),
                event("7001", None, Some(2_500)),
            ],
            // An older message arriving late, the same receipt again, one with no time.
            vec![
                event("7001", Some("m0"), Some(500)),
                event("7001", None, Some(2_500)),
                event("7001", Some("m4"), None),
            ],
        ]
    }

    pub(crate) async fn deduplicates_and_orders(store: &dyn Conversations) {
        let page = PageId::parse("101").unwrap();
        let customer = SenderId::parse("7001").unwrap();
        assert!(store.read(&page, &customer).await.unwrap().is_empty());
        let mut added = Vec::new();
        for delivery in sequence() {
            added.push(store.add(&page, &customer, delivery).await.unwrap());
        }
        assert_eq!(added, [2, 2, 2]);
        let stored = store.read(&page, &customer).await.unwrap();
        // An event without a time keeps its place after the one before it in its delivery.
        assert_eq!(mids(&stored), ["m0", "m4", "m1", "m2", "-", "m3"]);
        let other = SenderId::parse("7002").unwrap();
        assert!(store.read(&page, &other).await.unwrap().is_empty());
        assert_eq!(store.add(&page, &customer, Vec::new()).await.unwrap(), 0);
    }
}
