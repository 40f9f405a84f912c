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

    /// One customer's conversation deleted (an erasure request); how many events it held.
    /// When is remembered (see [`Conversations::erased_at`]), even if nothing was stored.
    async fn erase_customer(&self, page: &PageId, customer: &SenderId)
    -> Result<usize, StoreError>;

    /// When the customer's conversation was erased (Unix milliseconds): what Meta still
    /// serves from before then is not stored again by the poll, nor by a journal's replay.
    async fn erased_at(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<Option<i64>, StoreError>;
}

/// Keeps the events that came after an erasure at `at_ms` (Unix milliseconds); one without a
/// time cannot show it did, and goes too.
pub fn after_erasure(events: &mut Vec<MessagingEvent>, at_ms: i64) {
    events.retain(|event| event.timestamp().is_some_and(|ts| ts > at_ms));
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
    /// One customer's attachments (and, in an object store, conversation object) deleted
    /// from the tree the bot reads; how many attachment files there were.
    async fn erase_customer(&self, page: &PageId, customer: &SenderId)
    -> Result<usize, StoreError>;
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

    /// One customer erased: their events gone, the other's kept, the time remembered, and
    /// what they write afterwards stored again.
    pub(crate) async fn erases_one_customer(store: &dyn Conversations) {
        let page = PageId::parse("101").unwrap();
        let (erased, kept) = (
            SenderId::parse("7001").unwrap(),
            SenderId::parse("7002").unwrap(),
        );
        for delivery in sequence() {
            store.add(&page, &erased, delivery).await.unwrap();
        }
        let other = vec![event("7002", Some("o1"), Some(1_000))];
        store.add(&page, &kept, other).await.unwrap();
        let before = crate::store::unix_now_ms();
        assert_eq!(store.erase_customer(&page, &erased).await.unwrap(), 6);
        assert!(store.read(&page, &erased).await.unwrap().is_empty());
        assert_eq!(mids(&store.read(&page, &kept).await.unwrap()), ["o1"]);
        let at = store.erased_at(&page, &erased).await.unwrap().unwrap();
        assert!(at >= before && at <= crate::store::unix_now_ms(), "{at}");
        assert_eq!(store.erased_at(&page, &kept).await.unwrap(), None);
        assert_eq!(store.counts(&page).await.unwrap().conversations, 1);

        // Written afterwards: kept (the store itself does not filter; the poll does).
        let later = vec![event("7001", Some("m9"), Some(at + 1))];
        assert_eq!(store.add(&page, &erased, later).await.unwrap(), 1);
        assert_eq!(mids(&store.read(&page, &erased).await.unwrap()), ["m9"]);
        // Erasing again, and a customer never seen: harmless, and remembered.
        assert_eq!(store.erase_customer(&page, &erased).await.unwrap(), 1);
        let stranger = SenderId::parse("7999").unwrap();
        assert_eq!(store.erase_customer(&page, &stranger).await.unwrap(), 0);
        assert!(store.erased_at(&page, &stranger).await.unwrap().is_some());
    }

    #[test]
    fn only_what_came_after_an_erasure_passes() {
        let mut events = vec![
            event("7001", Some("old"), Some(1_000)),
            event("7001", Some("at"), Some(2_000)),
            event("7001", Some("new"), Some(2_001)),
            event("7001", Some("untimed"), None),
        ];
        after_erasure(&mut events, 2_000);
        let kept: Vec<Value> = events.iter().map(MessagingEvent::to_value).collect();
        assert_eq!(mids(&kept), ["new"]);
    }
}
