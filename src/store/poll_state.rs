//! What the poll remembers per page, whichever backend holds it (plain values: nothing here is
//! secret): when its last successful poll started (the checkpoint that makes later polls
//! incremental) and, when Meta refused its token, why it needs re-authorisation. And what
//! keeps polls apart: one at a time across processes and replicas, and each scheduled run
//! taken by one of the replicas whose schedules fire for it.

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
    /// The page was connected (again) at `at`: any re-authorisation mark is cleared.
    async fn record_connected(&self, page: &PageId, at: i64) -> Result<(), StoreError>;
    /// The webhook subscription as seen at `at` (after any restoring).
    async fn record_subscription(
        &self,
        page: &PageId,
        subscribed: bool,
        at: i64,
    ) -> Result<(), StoreError>;
    /// Everything remembered of `page` deleted.
    async fn forget(&self, page: &PageId) -> Result<(), StoreError>;
    /// Pages waiting for their merchant to connect them again, with the reason, by page id.
    async fn needing_reauth(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Takes the scheduled run at `slot` (its cron time, Unix seconds): true for exactly one
    /// of the processes that ask, so that replicas sharing a schedule poll once per run. A
    /// replica that dies mid-run leaves the next run to whoever takes it.
    async fn claim_run(&self, slot: i64) -> Result<bool, StoreError>;
    /// Keeps every other poll (another process, another replica) from starting while the
    /// guard lives; `None` when one is running now.
    async fn exclusive(&self) -> Result<Option<RunGuard>, StoreError>;
    /// Every page's record, by page id (for `salesbot migrate`).
    async fn all(&self) -> Result<Vec<PollRecord>, StoreError>;
    /// Puts a record back as it was (for `salesbot migrate`).
    async fn restore(&self, record: &PollRecord) -> Result<(), StoreError>;
}

/// What the poll remembers of one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRecord {
    pub page: String,
    pub last_success: Option<i64>,
    pub reauth_reason: Option<String>,
    /// When the page was last connected through OAuth (Unix seconds).
    pub connected_at: Option<i64>,
    /// The webhook subscription as last seen (by OAuth or a poll), and when.
    pub subscribed: Option<bool>,
    pub subscription_seen_at: Option<i64>,
}

/// Held for a whole poll run; dropping it lets the next one start.
pub struct RunGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl RunGuard {
    pub fn new(holder: impl Send + Sync + 'static) -> RunGuard {
        RunGuard(Box::new(holder))
    }
}

/// How long claimed runs are remembered (a claim only matters at its own run).
pub const CLAIMS_KEPT_SECS: i64 = 7 * 24 * 3600;

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

        // Connecting again clears the mark too; the subscription as last seen is kept.
        state.record_connected(&page("2"), 4_000).await.unwrap();
        state
            .record_subscription(&page("2"), false, 4_100)
            .await
            .unwrap();
        state
            .record_subscription(&page("2"), true, 4_200)
            .await
            .unwrap();
        assert!(state.needing_reauth().await.unwrap().is_empty());
        let record = state.all().await.unwrap().pop().unwrap();
        assert_eq!(
            (
                record.page.as_str(),
                record.connected_at,
                record.subscribed,
                record.subscription_seen_at
            ),
            ("2", Some(4_000), Some(true), Some(4_200))
        );
        state.restore(&record).await.unwrap();
        assert_eq!(state.all().await.unwrap().pop().unwrap(), record);
    }

    /// `other` is the same backend seen from another process or replica.
    pub(crate) async fn runs_are_claimed_once_and_polls_kept_apart(
        state: &PollStateStore,
        other: &PollStateStore,
    ) {
        let slot = 1_800_000_000;
        assert!(state.claim_run(slot).await.unwrap());
        assert!(!other.claim_run(slot).await.unwrap());
        assert!(!state.claim_run(slot).await.unwrap());
        assert!(other.claim_run(slot + 86_400).await.unwrap());

        let held = state.exclusive().await.unwrap().expect("nobody polls");
        assert!(other.exclusive().await.unwrap().is_none());
        assert!(state.exclusive().await.unwrap().is_none());
        drop(held);
        // Released as the holder goes (PostgreSQL notices its connection close a moment later).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while other.exclusive().await.unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "free once the first run ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
