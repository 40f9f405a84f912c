//! Token rows in PostgreSQL: the same `tokens(key, value, type)` as `tokens.db`, sealed alike.

use super::PgDatabase;
use crate::store::StoreError;
use crate::store::tokens::{TokenKind, TokenRows};

#[derive(Debug, Clone)]
pub struct PgTokens {
    db: PgDatabase,
}

impl PgTokens {
    pub fn new(db: PgDatabase) -> PgTokens {
        PgTokens { db }
    }
}

#[async_trait::async_trait]
impl TokenRows for PgTokens {
    async fn upsert(&self, key: String, sealed: String, kind: TokenKind) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO tokens (key, value, type) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, type = excluded.type",
                &[&key, &sealed, &kind.as_str()],
            )
            .await?;
        Ok(())
    }

    async fn sealed(&self, key: String) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .client()
            .await?
            .query_opt("SELECT value FROM tokens WHERE key = $1", &[&key])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn delete(&self, key: String) -> Result<bool, StoreError> {
        let deleted = self
            .db
            .client()
            .await?
            .execute("DELETE FROM tokens WHERE key = $1", &[&key])
            .await?;
        Ok(deleted > 0)
    }

    async fn all_of_kind(&self, kind: TokenKind) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT key, value FROM tokens WHERE type = $1 ORDER BY key",
                &[&kind.as_str()],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    async fn keys_of_kind(&self, kind: TokenKind) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT key FROM tokens WHERE type = $1 ORDER BY key",
                &[&kind.as_str()],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }
}
