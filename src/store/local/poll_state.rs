//! The poll's memory in `tokens.db`, table `poll_pages`, beside the tokens.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::sqlite::Db;
use crate::domain::PageId;
use crate::store::StoreError;
use crate::store::poll_state::{CLAIMS_KEPT_SECS, PollRecord, PollState, RunGuard};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS poll_pages (
    page_id TEXT PRIMARY KEY,
    last_success INTEGER,
    reauth_reason TEXT,
    connected_at INTEGER,
    subscribed INTEGER,
    subscription_seen_at INTEGER
);
CREATE TABLE IF NOT EXISTS poll_runs (
    slot INTEGER PRIMARY KEY
);";

#[derive(Debug, Clone)]
pub struct SqlitePollState {
    db: Db,
    /// `tokens.poll.lock` beside `tokens.db`: a `salesbot poll` beside the server waits its turn.
    lock_path: PathBuf,
}

impl SqlitePollState {
    pub fn open(path: &Path) -> Result<SqlitePollState, StoreError> {
        let db = Db::open(path, SCHEMA)?;
        // Columns a tokens.db made before the status view lacks.
        db.ensure_columns(
            "poll_pages",
            &[
                ("connected_at", "INTEGER"),
                ("subscribed", "INTEGER"),
                ("subscription_seen_at", "INTEGER"),
            ],
        )?;
        Ok(SqlitePollState {
            db,
            lock_path: path.with_extension("poll.lock"),
        })
    }
}

#[async_trait::async_trait]
impl PollState for SqlitePollState {
    async fn last_success(&self, page: &PageId) -> Result<Option<i64>, StoreError> {
        let page = page.to_string();
        self.db
            .call(move |conn| {
                let value: Option<Option<i64>> = conn
                    .query_row(
                        "SELECT last_success FROM poll_pages WHERE page_id = ?1",
                        [page],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(value.flatten())
            })
            .await
    }

    async fn record_success(&self, page: &PageId, started_at: i64) -> Result<(), StoreError> {
        let page = page.to_string();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO poll_pages (page_id, last_success, reauth_reason) VALUES (?1, ?2, NULL)
                     ON CONFLICT(page_id) DO UPDATE SET last_success = excluded.last_success, reauth_reason = NULL",
                    params![page, started_at],
                )?;
                Ok(())
            })
            .await
    }

    async fn mark_needs_reauth(&self, page: &PageId, reason: &str) -> Result<(), StoreError> {
        let (page, reason) = (page.to_string(), reason.to_string());
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO poll_pages (page_id, reauth_reason) VALUES (?1, ?2)
                     ON CONFLICT(page_id) DO UPDATE SET reauth_reason = excluded.reauth_reason",
                    params![page, reason],
                )?;
                Ok(())
            })
            .await
    }

    async fn record_connected(&self, page: &PageId, at: i64) -> Result<(), StoreError> {
        let page = page.to_string();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO poll_pages (page_id, connected_at) VALUES (?1, ?2)
                     ON CONFLICT(page_id) DO UPDATE
                     SET connected_at = excluded.connected_at, reauth_reason = NULL",
                    params![page, at],
                )?;
                Ok(())
            })
            .await
    }

    async fn record_subscription(
        &self,
        page: &PageId,
        subscribed: bool,
        at: i64,
    ) -> Result<(), StoreError> {
        let page = page.to_string();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO poll_pages (page_id, subscribed, subscription_seen_at)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT(page_id) DO UPDATE SET subscribed = excluded.subscribed,
                     subscription_seen_at = excluded.subscription_seen_at",
                    params![page, subscribed, at],
                )?;
                Ok(())
            })
            .await
    }

    async fn forget(&self, page: &PageId) -> Result<(), StoreError> {
        let page = page.to_string();
        self.db
            .call(move |conn| {
                conn.execute("DELETE FROM poll_pages WHERE page_id = ?1", [page])?;
                Ok(())
            })
            .await
    }

    async fn needing_reauth(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT page_id, reauth_reason FROM poll_pages WHERE reauth_reason IS NOT NULL ORDER BY page_id",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn claim_run(&self, slot: i64) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "DELETE FROM poll_runs WHERE slot < ?1",
                    [slot - CLAIMS_KEPT_SECS],
                )?;
                let claimed =
                    tx.execute("INSERT OR IGNORE INTO poll_runs (slot) VALUES (?1)", [slot])?;
                tx.commit()?;
                Ok(claimed == 1)
            })
            .await
    }

    async fn all(&self) -> Result<Vec<PollRecord>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT page_id, last_success, reauth_reason, connected_at, subscribed,
                     subscription_seen_at FROM poll_pages ORDER BY page_id",
                )?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok(PollRecord {
                            page: r.get(0)?,
                            last_success: r.get(1)?,
                            reauth_reason: r.get(2)?,
                            connected_at: r.get(3)?,
                            subscribed: r.get(4)?,
                            subscription_seen_at: r.get(5)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn restore(&self, record: &PollRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO poll_pages (page_id, last_success, reauth_reason, connected_at,
                     subscribed, subscription_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(page_id) DO UPDATE SET last_success = excluded.last_success,
                     reauth_reason = excluded.reauth_reason, connected_at = excluded.connected_at,
                     subscribed = excluded.subscribed,
                     subscription_seen_at = excluded.subscription_seen_at",
                    params![
                        record.page,
                        record.last_success,
                        record.reauth_reason,
                        record.connected_at,
                        record.subscribed,
                        record.subscription_seen_at
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn exclusive(&self) -> Result<Option<RunGuard>, StoreError> {
        let io = StoreError::io("lock", &self.lock_path);
        if let Some(dir) = self
            .lock_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(StoreError::io("create folder", dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(StoreError::io("open", &self.lock_path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RunGuard::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(io(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::SqlitePollState;
    use crate::store::poll_state::contract;

    #[tokio::test]
    async fn checkpoints_and_reauth_marks() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqlitePollState::open(&dir.path().join("tokens.db")).unwrap();
        contract::checkpoints_and_reauth_marks(&(Arc::new(state) as _)).await;
    }

    #[tokio::test]
    async fn runs_are_claimed_once_and_polls_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Arc::new(SqlitePollState::open(&dir.path().join("tokens.db")).unwrap()) as _;
        contract::runs_are_claimed_once_and_polls_kept_apart(&open(), &open()).await;
    }
}
