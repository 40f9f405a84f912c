//! Choosing the backend, once, at start-up: the embedded SQLite files by default, PostgreSQL
//! when `DATABASE_URL` is set. Nothing above this module knows which it got.

use std::sync::Arc;

use super::cipher::Cipher;
use super::local::SqlitePollState;
use super::postgres::{PgDatabase, PgPollState, PgSessions, PgTokens};
use super::{PollStateStore, SessionStore, StoreError, TokenStore};
use crate::config::StorageConfig;

/// The stores of one backend.
#[derive(Debug, Clone)]
pub struct Stores {
    pub tokens: TokenStore,
    pub sessions: SessionStore,
    pub poll_state: PollStateStore,
}

/// Opens the configured backend (connecting and migrating PostgreSQL when it is that one).
pub async fn open(storage: &StorageConfig) -> Result<Stores, StoreError> {
    let cipher = Cipher::new(&storage.encryption_key);
    let Some(database) = &storage.database else {
        return Ok(Stores {
            tokens: TokenStore::open_sqlite(&storage.token_db_path, cipher.clone())?,
            sessions: SessionStore::open_sqlite(&storage.session_db_path, cipher)?,
            poll_state: Arc::new(SqlitePollState::open(&storage.token_db_path)?),
        });
    };
    let db = PgDatabase::connect(&database.url, database.pool_size).await?;
    tracing::info!(
        pool = database.pool_size,
        "tokens, sessions and poll checkpoints in PostgreSQL"
    );
    Ok(Stores {
        tokens: TokenStore::new(Arc::new(PgTokens::new(db.clone())), cipher.clone()),
        sessions: SessionStore::new(Arc::new(PgSessions::new(db.clone())), cipher),
        poll_state: Arc::new(PgPollState::new(db)),
    })
}
