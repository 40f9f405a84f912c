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

/// What every backend must do (run on SQLite in `store::local`, on PostgreSQL in
/// `store::postgres`).
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    pub(crate) async fn checkpoints_and_reauth_marks(state: &PollStateStore) {
        let page = |id: &str| PageId::parse(id).unwrap();
        assert_eq!(state.last_success(&page("1")).await.unwrap(), None);
        state.record_success(&page("1"), 1_000).await.unwrap();
        state.record_success(&page("1"), 2_000).await.unwrap();
        assert_eq!(state.last_success(&page("1")).await.unwrap(), Some(2_000));

        state
            .mark_needs_reauth(&page("2"), "token revoked (190)")
            .await
            .unwrap();
        state
            .mark_needs_reauth(&page("1"), "role lost (492)")
            .await
            .unwrap();
        assert_eq!(
            state.needing_reauth().await.unwrap(),
            [
                ("1".to_string(), "role lost (492)".to_string()),
                ("2".to_string(), "token revoked (190)".to_string())
            ]
        );
        // The mark keeps the checkpoint; a later success clears the mark.
        assert_eq!(state.last_success(&page("1")).await.unwrap(), Some(2_000));
        assert_eq!(state.last_success(&page("2")).await.unwrap(), None);
        state.record_success(&page("1"), 3_000).await.unwrap();
        assert_eq!(state.needing_reauth().await.unwrap().len(), 1);
    }
}
