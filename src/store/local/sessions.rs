//! `sessions.db`: sessions and spent OAuth states in SQLite.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::sqlite::Db;
use crate::store::StoreError;
use crate::store::sessions::SessionRows;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    uuid TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_created_at ON sessions (created_at);
CREATE TABLE IF NOT EXISTS spent_states (
    digest TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_states_expires_at ON spent_states (expires_at);
";

#[derive(Debug, Clone)]
pub struct SqliteSessions {
    db: Db,
}

impl SqliteSessions {
    pub fn open(path: &Path) -> Result<SqliteSessions, StoreError> {
        Ok(SqliteSessions {
            db: Db::open(path, SCHEMA)?,
        })
    }
}

#[async_trait::async_trait]
impl SessionRows for SqliteSessions {
    async fn insert(
        &self,
        id_hash: String,
        sealed_uuid: String,
        created_at: i64,
        stale: i64,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM sessions WHERE created_at <= ?1", [stale])?;
                tx.execute(
                    "INSERT INTO sessions (id_hash, uuid, created_at) VALUES (?1, ?2, ?3)",
                    params![id_hash, sealed_uuid, created_at],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn live(&self, id_hash: String, stale: i64) -> Result<Option<String>, StoreError> {
        self.db
            .call(move |conn| {
                let row: Option<(String, i64)> = conn
                    .query_row(
                        "SELECT uuid, created_at FROM sessions WHERE id_hash = ?1",
                        [&id_hash],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match row {
                    Some((_, created)) if created <= stale => {
                        conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [&id_hash])?;
                        Ok(None)
                    }
                    other => Ok(other.map(|(sealed, _)| sealed)),
                }
            })
            .await
    }

    async fn delete(&self, id_hash: String) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])? > 0)
            })
            .await
    }

    async fn purge(&self, stale: i64) -> Result<usize, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn.execute("DELETE FROM sessions WHERE created_at <= ?1", [stale])?)
            })
            .await
    }

    async fn spend(&self, digest: String, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM spent_states WHERE expires_at < ?1", [now])?;
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO spent_states (digest, expires_at) VALUES (?1, ?2)",
                    params![digest, expires_at],
                )?;
                tx.commit()?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }
}
