//! The poll's memory in PostgreSQL, table `poll_pages`, shared by every replica.

use super::PgDatabase;
use crate::domain::PageId;
use crate::store::StoreError;
use crate::store::poll_state::PollState;

#[derive(Debug, Clone)]
pub struct PgPollState {
    db: PgDatabase,
}

impl PgPollState {
    pub fn new(db: PgDatabase) -> PgPollState {
        PgPollState { db }
    }
}

#[async_trait::async_trait]
impl PollState for PgPollState {
    async fn last_success(&self, page: &PageId) -> Result<Option<i64>, StoreError> {
        let row = self
            .db
            .client()
            .await?
            .query_opt(
                "SELECT last_success FROM poll_pages WHERE page_id = $1",
                &[&page.as_str()],
            )
            .await?;
        Ok(row.and_then(|row| row.get(0)))
    }

    async fn record_success(&self, page: &PageId, started_at: i64) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO poll_pages (page_id, last_success, reauth_reason) VALUES ($1, $2, NULL)
                 ON CONFLICT (page_id) DO UPDATE
                 SET last_success = excluded.last_success, reauth_reason = NULL",
                &[&page.as_str(), &started_at],
            )
            .await?;
        Ok(())
    }

    async fn mark_needs_reauth(&self, page: &PageId, reason: &str) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO poll_pages (page_id, reauth_reason) VALUES ($1, $2)
                 ON CONFLICT (page_id) DO UPDATE SET reauth_reason = excluded.reauth_reason",
                &[&page.as_str(), &reason],
            )
            .await?;
        Ok(())
    }

    async fn needing_reauth(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT page_id, reauth_reason FROM poll_pages
                 WHERE reauth_reason IS NOT NULL ORDER BY page_id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }
}
