//! Everything salesbot keeps on disk, behind types that hide tables and paths from callers.
//!
//! - [`cipher`]: where a token is encrypted (ChaCha20-Poly1305, row key as associated data).
//! - [`tokens`]: `tokens.db`, the encrypted key/value store of tokens and UUIDs.
//! - [`sessions`]: `sessions.db`, browser sessions (hashed ids) and spent OAuth states.
//! - [`poll_state`]: per-page poll checkpoints and re-authorisation marks (in `tokens.db`).
//! - [`files`]: `DATA_DIR/facebook/<page_id>/...`, the JSON the bot reads.

pub mod cipher;
mod error;
pub mod files;
pub mod poll_state;
pub mod sessions;
mod sqlite;
pub mod tokens;

pub use error::StoreError;
pub use files::{FileStore, MessagingEvent};
pub use sessions::SessionStore;
pub use tokens::{TokenKey, TokenKind, TokenStore};

/// Seconds since the Unix epoch; the stores' only notion of "now", passed in so tests can move it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
