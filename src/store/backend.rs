//! Choosing the backend, once, at start-up: the embedded SQLite files by default, PostgreSQL
//! when `DATABASE_URL` is set. Nothing above this module knows which it got.

use std::sync::Arc;

use super::attachments::{AttachmentFileStore, AttachmentQueueStore};
use super::cipher::Cipher;
use super::local::{SqliteAttachments, SqlitePollState};
use super::objects::ObjectTree;
use super::postgres::{
    PgAttachments, PgConversations, PgDatabase, PgPollState, PgSessions, PgTokens, Publisher,
};
use super::{
    ConversationStore, FileStore, MetadataStore, PollStateStore, SessionStore, StoreError,
    TokenStore,
};
use crate::config::StorageConfig;
use crate::telemetry::metrics::Metrics;

/// The stores of one backend.
#[derive(Debug, Clone)]
pub struct Stores {
    pub tokens: TokenStore,
    pub sessions: SessionStore,
    pub poll_state: PollStateStore,
    pub conversations: ConversationStore,
    pub metadata: MetadataStore,
    /// The attachment queue and where their files go.
    pub attachments: (AttachmentQueueStore, AttachmentFileStore),
    /// With PostgreSQL: what keeps the objects the bot reads up to date (in the background in
    /// the server; drained once by a process beside it, such as `salesbot poll`).
    pub publisher: Option<Publisher>,
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
pub async fn open(
    storage: &StorageConfig,
    role: Role,
    metrics: &Metrics,
) -> Result<Stores, StoreError> {
    let cipher = Cipher::with_previous(&storage.encryption_key, &storage.previous_keys);
    let Some(database) = &storage.database else {
        let files = Arc::new(match role {
            Role::Beside => FileStore::new(&storage.data_dir),
            Role::Server => {
                let data_dir = storage.data_dir.clone();
                tokio::task::spawn_blocking(move || FileStore::with_journal(&data_dir)).await??
            }
        });
        files.observe(metrics);
        let queue = Arc::new(SqliteAttachments::open(&storage.token_db_path)?);
        return Ok(Stores {
            attachments: (queue, files.clone()),
            tokens: TokenStore::open_sqlite(&storage.token_db_path, cipher.clone())?,
            sessions: SessionStore::open_sqlite(&storage.session_db_path, cipher)?,
            poll_state: Arc::new(SqlitePollState::open(&storage.token_db_path)?),
            conversations: files.clone(),
            metadata: files,
            publisher: None,
        });
    };
    let db = PgDatabase::connect(&database.target, database.pool_size).await?;
    let objects = ObjectTree::open(&database.objects, &database.s3)?;
    tracing::info!(
        pool = database.pool_size,
        objects = ?database.objects,
        "every store in PostgreSQL; the bot's tree published to the objects"
    );
    let publisher = Publisher::new(db.clone(), objects.clone(), database.publish_interval);
    Ok(Stores {
        tokens: TokenStore::new(Arc::new(PgTokens::new(db.clone())), cipher.clone()),
        sessions: SessionStore::new(Arc::new(PgSessions::new(db.clone())), cipher),
        poll_state: Arc::new(PgPollState::new(db.clone())),
        conversations: Arc::new(PgConversations::new(db.clone()).observed(metrics)),
        attachments: (
            Arc::new(PgAttachments::new(db.clone())),
            Arc::new(objects.clone()),
        ),
        metadata: Arc::new(objects),
        publisher: Some(publisher),
    })
}
