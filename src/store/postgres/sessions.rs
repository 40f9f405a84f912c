//! Sessions and spent OAuth states in PostgreSQL, so any replica takes any OAuth step.

use super::PgDatabase;
use crate::store::StoreError;
use crate::store::sessions::SessionRows;

#[derive(Debug, Clone)]
pub struct PgSessions {
    db: PgDatabase,
}

impl PgSessions {
    pub fn new(db: PgDatabase) -> PgSessions {
        PgSessions { db }
    }
}

#[async_trait::async_trait]
impl SessionRows for PgSessions {
    async fn insert(
        &self,
        id_hash: String,
        sealed_uuid: String,
        created_at: i64,
        stale: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM sessions WHERE created_at <= $1", &[&stale])
            .await?;
        tx.execute(
            "INSERT INTO sessions (id_hash, uuid, created_at) VALUES ($1, $2, $3)",
            &[&id_hash, &sealed_uuid, &created_at],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn live(&self, id_hash: String, stale: i64) -> Result<Option<String>, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT uuid, created_at FROM sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await?;
        match row.map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1))) {
            Some((_, created)) if created <= stale => {
                client
                    .execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
                    .await?;
                Ok(None)
            }
            other => Ok(other.map(|(sealed, _)| sealed)),
        }
    }

    async fn delete(&self, id_hash: String) -> Result<bool, StoreError> {
        let deleted = self
            .db
            .client()
            .await?
            .execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
            .await?;
        Ok(deleted > 0)
    }

    async fn purge(&self, stale: i64) -> Result<usize, StoreError> {
        let deleted = self
            .db
            .client()
            .await?
            .execute("DELETE FROM sessions WHERE created_at <= $1", &[&stale])
            .await?;
        Ok(deleted as usize)
    }

    async fn spend(&self, digest: String, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM spent_states WHERE expires_at < $1", &[&now])
            .await?;
        // The primary key decides between two replicas spending the same state at once.
        let inserted = tx
            .execute(
                "INSERT INTO spent_states (digest, expires_at) VALUES ($1, $2)
                 ON CONFLICT (digest) DO NOTHING",
                &[&digest, &expires_at],
            )
            .await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }
}
