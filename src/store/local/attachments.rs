//! The attachment queue in `tokens.db`, table `attachments`, beside the poll's memory.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::sqlite::Db;
use crate::domain::{PageId, SenderId};
use crate::store::attachments::{AttachmentQueue, Owed};
use crate::store::{StoreError, unix_now};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS attachments (
    page_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    mid TEXT NOT NULL,
    n INTEGER NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'owed',
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Owed: when to try next. Done or given up: when that happened.
    due_at INTEGER NOT NULL DEFAULT 0,
    file TEXT,
    error TEXT,
    PRIMARY KEY (page_id, customer_id, mid, n)
);
CREATE INDEX IF NOT EXISTS attachments_due ON attachments (due_at) WHERE state = 'owed';";

#[derive(Debug, Clone)]
pub struct SqliteAttachments {
    db: Db,
}

impl SqliteAttachments {
    pub fn open(path: &Path) -> Result<SqliteAttachments, StoreError> {
        Ok(SqliteAttachments {
            db: Db::open(path, SCHEMA)?,
        })
    }

    async fn set(
        &self,
        owed: &Owed,
        sql: &'static str,
        a: i64,
        b: String,
    ) -> Result<usize, StoreError> {
        let key = (
            owed.page.to_string(),
            owed.customer.to_string(),
            owed.mid.clone(),
            owed.n,
        );
        self.db
            .call(move |conn| Ok(conn.execute(sql, params![key.0, key.1, key.2, key.3, a, b])?))
            .await
    }
}

#[async_trait::async_trait]
impl AttachmentQueue for SqliteAttachments {
    async fn enqueue(&self, owed: Vec<Owed>) -> Result<(), StoreError> {
        if owed.is_empty() {
            return Ok(());
        }
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO attachments (page_id, customer_id, mid, n, url)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?;
                    for o in &owed {
                        insert.execute(params![
                            o.page.as_str(),
                            o.customer.as_str(),
                            o.mid,
                            o.n,
                            o.url
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<Owed>, StoreError> {
        self.db
            .call(move |conn| {
                let mut select = conn.prepare_cached(
                    "SELECT page_id, customer_id, mid, n, url, attempts FROM attachments
                     WHERE state = 'owed' AND due_at <= ?1 ORDER BY due_at, rowid LIMIT ?2",
                )?;
                let rows = select.query_map(params![now, limit as i64], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, u32>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, u32>(5)?,
                    ))
                })?;
                let mut owed = Vec::new();
                for row in rows {
                    let (page, customer, mid, n, url, attempts) = row?;
                    // Written from parsed ids: anything else was put there by hand; skipped.
                    if let (Ok(page), Ok(customer)) =
                        (PageId::parse(&page), SenderId::parse(&customer))
                    {
                        owed.push(Owed {
                            page,
                            customer,
                            mid,
                            n,
                            url,
                            attempts,
                        });
                    }
                }
                Ok(owed)
            })
            .await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.db
            .call(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT MIN(due_at) FROM attachments WHERE state = 'owed'",
                        [],
                        |row| row.get::<_, Option<i64>>(0),
                    )
                    .optional()?
                    .flatten())
            })
            .await
    }

    async fn done(&self, owed: &Owed, file: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE attachments SET state = 'done', due_at = ?5, file = ?6,
            error = NULL WHERE page_id = ?1 AND customer_id = ?2 AND mid = ?3 AND n = ?4";
        Ok(self.set(owed, SQL, unix_now(), file.to_string()).await? > 0)
    }

    async fn retry(&self, owed: &Owed, at: i64, error: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE attachments SET attempts = attempts + 1, due_at = ?5, error = ?6
            WHERE page_id = ?1 AND customer_id = ?2 AND mid = ?3 AND n = ?4";
        self.set(owed, SQL, at, error.to_string()).await.map(drop)
    }

    async fn give_up(&self, owed: &Owed, error: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE attachments
            SET state = 'given_up', attempts = attempts + 1, due_at = ?5, error = ?6
            WHERE page_id = ?1 AND customer_id = ?2 AND mid = ?3 AND n = ?4";
        self.set(owed, SQL, unix_now(), error.to_string())
            .await
            .map(drop)
    }

    async fn pending_by_page(&self) -> Result<Vec<(String, usize)>, StoreError> {
        self.db
            .call(|conn| {
                let mut select = conn.prepare(
                    "SELECT page_id, COUNT(*) FROM attachments WHERE state = 'owed'
                     GROUP BY page_id ORDER BY page_id",
                )?;
                let rows = select
                    .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as usize)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn forget_page(&self, page: &PageId) -> Result<(), StoreError> {
        let page = page.to_string();
        self.db
            .call(move |conn| {
                conn.execute("DELETE FROM attachments WHERE page_id = ?1", [page])?;
                Ok(())
            })
            .await
    }

    async fn forget_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError> {
        let (page, customer) = (page.to_string(), customer.to_string());
        self.db
            .call(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM attachments WHERE page_id = ?1 AND customer_id = ?2",
                    [page, customer],
                )?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::attachments::contract;

    #[tokio::test]
    async fn the_queue_keeps_each_download_once_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteAttachments::open(&dir.path().join("tokens.db")).unwrap();
        contract::owed_once_retried_and_finished(&queue).await;
        // Reopened (a restart): what is owed is still owed.
        let reopened = SqliteAttachments::open(&dir.path().join("tokens.db")).unwrap();
        assert_eq!(reopened.pending().await.unwrap(), 1);
    }
}
