//! The attachment queue in PostgreSQL, shared by the replicas: each download is claimed by
//! the replica that fetches it (its `due_at` moved past the time a download may take), so no
//! two fetch the same one, and a replica that dies mid-download leaves it to another then.

use super::PgDatabase;
use crate::domain::{PageId, SenderId};
use crate::store::attachments::{AttachmentQueue, Owed};
use crate::store::{StoreError, unix_now};

/// Longer than a download may take (the fetcher's timeout is two minutes).
const CLAIM_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct PgAttachments {
    db: PgDatabase,
}

impl PgAttachments {
    pub fn new(db: PgDatabase) -> PgAttachments {
        PgAttachments { db }
    }

    async fn set(&self, owed: &Owed, sql: &str, at: i64, text: &str) -> Result<u64, StoreError> {
        let changed = self
            .db
            .client()
            .await?
            .execute(
                sql,
                &[
                    &owed.page.as_str(),
                    &owed.customer.as_str(),
                    &owed.mid,
                    &(owed.n as i32),
                    &at,
                    &text,
                ],
            )
            .await?;
        Ok(changed)
    }
}

#[async_trait::async_trait]
impl AttachmentQueue for PgAttachments {
    async fn enqueue(&self, owed: Vec<Owed>) -> Result<(), StoreError> {
        if owed.is_empty() {
            return Ok(());
        }
        let pages: Vec<&str> = owed.iter().map(|o| o.page.as_str()).collect();
        let customers: Vec<&str> = owed.iter().map(|o| o.customer.as_str()).collect();
        let mids: Vec<&str> = owed.iter().map(|o| o.mid.as_str()).collect();
        let ns: Vec<i32> = owed.iter().map(|o| o.n as i32).collect();
        let urls: Vec<&str> = owed.iter().map(|o| o.url.as_str()).collect();
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO attachments (page_id, customer_id, mid, n, url)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
                 ON CONFLICT DO NOTHING",
                &[&pages, &customers, &mids, &ns, &urls],
            )
            .await?;
        Ok(())
    }

    /// Claims what it returns: another replica asking now gets other entries.
    async fn due(&self, now: i64, limit: usize) -> Result<Vec<Owed>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "UPDATE attachments SET due_at = $3
                 WHERE (page_id, customer_id, mid, n) IN (
                     SELECT page_id, customer_id, mid, n FROM attachments
                     WHERE state = 'owed' AND due_at <= $1 ORDER BY due_at LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 RETURNING page_id, customer_id, mid, n, url, attempts",
                &[
                    &now,
                    &(limit as i64),
                    &now.max(unix_now()).saturating_add(CLAIM_SECS),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(Owed {
                    page: PageId::parse(row.get::<_, &str>(0)).ok()?,
                    customer: SenderId::parse(row.get::<_, &str>(1)).ok()?,
                    mid: row.get(2),
                    n: row.get::<_, i32>(3) as u32,
                    url: row.get(4),
                    attempts: row.get::<_, i32>(5) as u32,
                })
            })
            .collect())
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT MIN(due_at) FROM attachments WHERE state = 'owed'",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn done(&self, owed: &Owed, file: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE attachments SET state = 'done', due_at = $5, file = $6,
            error = NULL WHERE page_id = $1 AND customer_id = $2 AND mid = $3 AND n = $4";
        Ok(self.set(owed, SQL, unix_now(), file).await? > 0)
    }

    async fn retry(&self, owed: &Owed, at: i64, error: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE attachments SET attempts = attempts + 1, due_at = $5,
            error = $6 WHERE page_id = $1 AND customer_id = $2 AND mid = $3 AND n = $4";
        self.set(owed, SQL, at, error).await.map(drop)
    }

    async fn give_up(&self, owed: &Owed, error: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE attachments SET state = 'given_up', attempts = attempts + 1,
            due_at = $5, error = $6
            WHERE page_id = $1 AND customer_id = $2 AND mid = $3 AND n = $4";
        self.set(owed, SQL, unix_now(), error).await.map(drop)
    }

    async fn forget_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError> {
        let deleted = self
            .db
            .client()
            .await?
            .execute(
                "DELETE FROM attachments WHERE page_id = $1 AND customer_id = $2",
                &[&page.as_str(), &customer.as_str()],
            )
            .await?;
        Ok(deleted as usize)
    }

    async fn forget_page(&self, page: &PageId) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "DELETE FROM attachments WHERE page_id = $1",
                &[&page.as_str()],
            )
            .await?;
        Ok(())
    }

    async fn pending_by_page(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT page_id, count(*) FROM attachments WHERE state = 'owed'
                 GROUP BY page_id ORDER BY page_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as usize))
            .collect())
    }
}
