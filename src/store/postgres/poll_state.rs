//! The poll's memory in PostgreSQL, table `poll_pages`, shared by every replica.

use super::PgDatabase;
use crate::domain::PageId;
use crate::store::StoreError;
use crate::store::poll_state::{CLAIMS_KEPT_SECS, PollRecord, PollState, RunGuard};

/// Any fixed number: the session-level advisory lock a running poll holds.
const POLL_LOCK: i64 = 0x5a1e_5b07_0002;

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

    async fn record_connected(&self, page: &PageId, at: i64) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO poll_pages (page_id, connected_at) VALUES ($1, $2)
                 ON CONFLICT (page_id) DO UPDATE
                 SET connected_at = excluded.connected_at, reauth_reason = NULL",
                &[&page.as_str(), &at],
            )
            .await?;
        Ok(())
    }

    async fn record_subscription(
        &self,
        page: &PageId,
        subscribed: bool,
        at: i64,
    ) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO poll_pages (page_id, subscribed, subscription_seen_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (page_id) DO UPDATE SET subscribed = excluded.subscribed,
                 subscription_seen_at = excluded.subscription_seen_at",
                &[&page.as_str(), &subscribed, &at],
            )
            .await?;
        Ok(())
    }

    async fn forget(&self, page: &PageId) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "DELETE FROM poll_pages WHERE page_id = $1",
                &[&page.as_str()],
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

    async fn claim_run(&self, slot: i64) -> Result<bool, StoreError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM poll_runs WHERE slot < $1",
            &[&(slot - CLAIMS_KEPT_SECS)],
        )
        .await?;
        // The primary key decides between replicas whose schedules fire together.
        let claimed = tx
            .execute(
                "INSERT INTO poll_runs (slot) VALUES ($1) ON CONFLICT (slot) DO NOTHING",
                &[&slot],
            )
            .await?;
        tx.commit().await?;
        Ok(claimed == 1)
    }

    async fn all(&self) -> Result<Vec<PollRecord>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT page_id, last_success, reauth_reason, connected_at, subscribed,
                 subscription_seen_at FROM poll_pages ORDER BY page_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| PollRecord {
                page: row.get(0),
                last_success: row.get(1),
                reauth_reason: row.get(2),
                connected_at: row.get(3),
                subscribed: row.get(4),
                subscription_seen_at: row.get(5),
            })
            .collect())
    }

    async fn restore(&self, record: &PollRecord) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO poll_pages (page_id, last_success, reauth_reason, connected_at,
                 subscribed, subscription_seen_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (page_id) DO UPDATE SET last_success = excluded.last_success,
                 reauth_reason = excluded.reauth_reason, connected_at = excluded.connected_at,
                 subscribed = excluded.subscribed,
                 subscription_seen_at = excluded.subscription_seen_at",
                &[
                    &record.page,
                    &record.last_success,
                    &record.reauth_reason,
                    &record.connected_at,
                    &record.subscribed,
                    &record.subscription_seen_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn exclusive(&self) -> Result<Option<RunGuard>, StoreError> {
        let client = self.db.client().await?;
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&POLL_LOCK])
            .await?
            .get(0);
        Ok(taken.then(|| RunGuard::new(LockHolder(Some(client)))))
    }
}

/// The connection holding the poll's advisory lock. It never goes back to the pool: dropping
/// it closes the connection, which releases the lock however the run ended (a pooled
/// connection would keep the lock for whoever borrowed it next).
struct LockHolder(Option<deadpool_postgres::Client>);

impl Drop for LockHolder {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
