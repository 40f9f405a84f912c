//! `tokens.db`: the token rows in SQLite, table `tokens(key, value, type)` as the original's.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::sqlite::Db;
use crate::store::StoreError;
use crate::store::tokens::{TokenKind, TokenRows};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    type TEXT NOT NULL
);";

#[derive(Debug, Clone)]
pub struct SqliteTokens {
    db: Db,
}

impl SqliteTokens {
    pub fn open(path: &Path) -> Result<SqliteTokens, StoreError> {
        Ok(SqliteTokens {
            db: Db::open(path, SCHEMA)?,
        })
    }
}

#[async_trait::async_trait]
impl TokenRows for SqliteTokens {
    async fn upsert(&self, key: String, sealed: String, kind: TokenKind) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO tokens (key, value, type) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, type = excluded.type",
                    params![key, sealed, kind.as_str()],
                )?;
                Ok(())
            })
            .await
    }

    async fn sealed(&self, key: String) -> Result<Option<String>, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row("SELECT value FROM tokens WHERE key = ?1", [key], |row| {
                        row.get(0)
                    })
                    .optional()?)
            })
            .await
    }

    async fn delete(&self, key: String) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| Ok(conn.execute("DELETE FROM tokens WHERE key = ?1", [key])? > 0))
            .await
    }

    async fn all_of_kind(&self, kind: TokenKind) -> Result<Vec<(String, String)>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare("SELECT key, value FROM tokens WHERE type = ?1 ORDER BY key")?;
                let rows = stmt
                    .query_map([kind.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
    }

    async fn keys_of_kind(&self, kind: TokenKind) -> Result<Vec<String>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare("SELECT key FROM tokens WHERE type = ?1 ORDER BY key")?;
                let keys = stmt
                    .query_map([kind.as_str()], |row| row.get::<_, String>(0))?
                    .collect::<Result<_, _>>()?;
                Ok(keys)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }
}
