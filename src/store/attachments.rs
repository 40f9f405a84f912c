//! Attachments owed a download, and where their bytes are kept.
//!
//! The queue is written before the webhook answers, in the same step as the events: a
//! download owed survives a crash or a SIGKILL. An entry is keyed by conversation, message id
//! and position, so a redelivery or a poll of the same message owes nothing new.

use crate::domain::{PageId, SenderId};
use crate::store::StoreError;

/// One attachment to fetch: the `n`th URL of message `mid` (see `attachments::urls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub page: PageId,
    pub customer: SenderId,
    pub mid: String,
    pub n: u32,
    pub url: String,
    /// Failed tries so far.
    pub attempts: u32,
}

#[async_trait::async_trait]
pub trait AttachmentQueue: Send + Sync + std::fmt::Debug {
    /// Adds what is not known yet (known entries, done or not, are left as they are).
    async fn enqueue(&self, owed: Vec<Owed>) -> Result<(), StoreError>;
    /// Up to `limit` entries due at `now` (Unix seconds), oldest first.
    async fn due(&self, now: i64, limit: usize) -> Result<Vec<Owed>, StoreError>;
    /// When the next entry is due, if any is pending.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// Kept as `file`; false when the entry is gone (its customer or page was erased while
    /// the download ran), and the file must go too.
    async fn done(&self, owed: &Owed, file: &str) -> Result<bool, StoreError>;
    /// Tried again at `at`.
    async fn retry(&self, owed: &Owed, at: i64, error: &str) -> Result<(), StoreError>;
    /// Never tried again.
    async fn give_up(&self, owed: &Owed, error: &str) -> Result<(), StoreError>;
    /// Entries still owed, per page id.
    async fn pending_by_page(&self) -> Result<Vec<(String, usize)>, StoreError>;
    /// Entries still owed.
    async fn pending(&self) -> Result<usize, StoreError> {
        Ok(self.pending_by_page().await?.iter().map(|(_, n)| n).sum())
    }
    /// Every entry of `page` deleted, owed or not.
    async fn forget_page(&self, page: &PageId) -> Result<(), StoreError>;
    /// Every entry of one customer deleted, owed or not; how many.
    async fn forget_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError>;
}

/// Where an attachment's bytes go: `facebook/<page_id>/attachments/<sender_id>/<name>`.
#[async_trait::async_trait]
pub trait AttachmentFiles: Send + Sync + std::fmt::Debug {
    async fn put(
        &self,
        page: &PageId,
        customer: &SenderId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError>;
    /// Deletes one attachment file; one that is not there is fine.
    async fn delete(
        &self,
        page: &PageId,
        customer: &SenderId,
        name: &str,
    ) -> Result<(), StoreError>;
}

pub type AttachmentQueueStore = std::sync::Arc<dyn AttachmentQueue>;
pub type AttachmentFileStore = std::sync::Arc<dyn AttachmentFiles>;

#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    pub fn owed(mid: &str, n: u32) -> Owed {
        Owed {
            page: PageId::parse("101").unwrap(),
            customer: SenderId::parse("7001").unwrap(),
            mid: mid.into(),
            n,
            url: format!("https://cdn.fbsbx.com/{mid}/{n}"),
            attempts: 0,
        }
    }

    pub async fn owed_once_retried_and_finished(queue: &dyn AttachmentQueue) {
        queue
            .enqueue(vec![owed("m1", 0), owed("m1", 1), owed("m2", 0)])
            .await
            .unwrap();
        // A redelivery owes nothing new.
        queue.enqueue(vec![owed("m1", 0)]).await.unwrap();
        assert_eq!(queue.pending().await.unwrap(), 3);
        // At most `limit`; a backend shared by replicas claims what it hands out, so the
        // rest comes next (or everything again, with one server).
        let now = crate::store::unix_now();
        let mut due = queue.due(now, 2).await.unwrap();
        assert_eq!(due.len(), 2);
        for more in queue.due(now, 10).await.unwrap() {
            if !due.contains(&more) {
                due.push(more);
            }
        }
        assert_eq!(due.len(), 3);
        queue.done(&due[0], "m1-0.jpg").await.unwrap();
        queue.retry(&due[1], 1_000, "HTTP 500").await.unwrap();
        queue.give_up(&due[2], "HTTP 404").await.unwrap();
        assert_eq!(queue.pending().await.unwrap(), 1);
        assert!(
            queue.due(999, 10).await.unwrap().is_empty(),
            "not due before its time"
        );
        assert_eq!(queue.next_due().await.unwrap(), Some(1_000));
        let again = queue.due(1_000, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        // Done stays done, even when the message comes again.
        queue
            .enqueue(vec![owed("m1", 0), owed("m2", 0)])
            .await
            .unwrap();
        assert_eq!(queue.pending().await.unwrap(), 1);
        assert_eq!(
            queue.pending_by_page().await.unwrap(),
            [("101".to_string(), 1)]
        );
    }
}
