//! Everything salesbot keeps, behind types that hide tables and paths from callers.
//!
//! Each store is a trait with one implementation per backend, chosen once at start-up; what
//! both backends share (sealing, hashing) is done here, above the trait.
//!
//! - [`attachments`]: attachment downloads owed (a queue that survives a crash), and their files.
//! - [`backend`]: which backend, chosen once at start-up from the configuration.
//! - [`cipher`]: where a token is encrypted (ChaCha20-Poly1305, row key as associated data).
//! - [`tokens`]: the encrypted key/value store of tokens and UUIDs.
//! - [`sessions`]: browser sessions (hashed ids) and spent OAuth states.
//! - [`poll_state`]: per-page poll checkpoints and re-authorisation marks.
//! - [`local`]: the embedded backend, the default: `tokens.db` and `sessions.db` (SQLite),
//!   and `DATA_DIR/facebook/<page_id>/...`, the JSON files the bot reads, behind a journal.
//! - [`postgres`]: the scale-out backend, shared by replicas (`DATABASE_URL`).
//! - [`objects`]: the tree the bot reads as objects (`STORAGE_URL`: a folder or a bucket),
//!   published from PostgreSQL.
//! - [`conversations`]: the customers' conversations and the pages' metadata.

pub mod attachments;
pub mod backend;
pub mod cipher;
pub mod conversations;
mod error;
pub mod local;
pub mod objects;
pub mod poll_state;
pub mod postgres;
pub mod sessions;
pub mod tokens;

pub use conversations::{ConversationStore, MetadataStore};
pub use error::StoreError;
pub use local::files::{FileStore, MessagingEvent};
pub use poll_state::PollStateStore;
pub use sessions::SessionStore;
pub use tokens::{TokenKey, TokenKind, TokenStore};

/// Seconds since the Unix epoch; the stores' only notion of "now", passed in so tests can move it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Now in Unix milliseconds, the unit of Meta's event timestamps.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
