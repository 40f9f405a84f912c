//! What the poll remembers per page, whichever backend holds it (plain values: nothing here is
//! secret): when its last successful poll started (the checkpoint that makes later polls
//! incremental) and, when Meta refused its token, why it needs re-authorisation.

use std::sync::Arc;

use super::StoreError;
use crate::domain::PageId;

/// The poll's memory, shared by every process (and replica) that polls.
pub type PollStateStore = Arc<dyn PollState>;

#[async_trait::async_trait]
pub trait PollState: Send + Sync + std::fmt::Debug {
    /// Unix seconds at which the last successful poll of `page` started.
    async fn last_success(&self, page: &PageId) -> Result<Option<i64>, StoreError>;
    /// A successful poll that started at `started_at`; clears any re-authorisation mark.
    async fn record_success(&self, page: &PageId, started_at: i64) -> Result<(), StoreError>;
    async fn mark_needs_reauth(&self, page: &PageId, reason: &str) -> Result<(), StoreError>;
    /// Pages waiting for their merchant to connect them again, with the reason, by page id.
    async fn needing_reauth(&self) -> Result<Vec<(String, String)>, StoreError>;
}
