//! Choosing the backend, once, at start-up: the embedded SQLite files by default, PostgreSQL
//! when `DATABASE_URL` is set. Nothing above this module knows which it got.

use std::sync::Arc;

use super::cipher::Cipher;
use super::local::SqlitePollState;
use super::postgres::{PgDatabase, PgPollState, PgSessions, PgTokens};
use super::{
    ConversationStore, FileStore, MetadataStore, PollStateStore, SessionStore, StoreError,
    TokenStore,
};
use crate::config::StorageConfig;

/// The stores of one backend.
#[derive(Debug, Clone)]
pub struct Stores {
    pub tokens: TokenStore,
    pub sessions: SessionStore,
    pub poll_state: PollStateStore,
    pub conversations: ConversationStore,
    pub metadata: MetadataStore,
}

/// Which process is opening the stores: the conversation files are written through a
/// journal that only the server (one per `DATA_DIR`) owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    /// `salesbot poll` and other processes beside the server: every write flushes itself.
    Beside,
}

/// Opens the configured backend (connecting and migrating PostgreSQL when it is that one;
/// replaying the journal of the server's files when it left one).
pub async fn open(storage: &StorageConfig, role: Role) -> Result<Stores, StoreError> {
    let cipher = Cipher::new(&storage.encryption_key);
    let files = match role {
        Role::Beside => FileStore::new(&storage.data_dir),
        Role::Server => {
            let data_dir = storage.data_dir.clone();
            tokio::task::spawn_blocking(move || FileStore::with_journal(&data_dir)).await??
        }
    };
    let files = Arc::new(files);
    let Some(database) = &storage.database else {
        return Ok(Stores {
            tokens: TokenStore::open_sqlite(&storage.token_db_path, cipher.clone())?,
            sessions: SessionStore::open_sqlite(&storage.session_db_path, cipher)?,
            poll_state: Arc::new(SqlitePollState::open(&storage.token_db_path)?),
            conversations: files.clone(),
            metadata: files,
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
        conversations: files.clone(),
        metadata: files,
    })
}
