//! The embedded backend, the default: SQLite files for tokens, sessions and the poll's memory,
//! and the conversation files the bot reads behind their journal ([`files`]). One machine; a
//! `salesbot poll` process may run beside the server.

mod attachments;
pub mod files;
mod poll_state;
mod sessions;
pub(crate) mod sqlite;
mod tokens;

pub use attachments::SqliteAttachments;
pub use poll_state::SqlitePollState;
pub use sessions::SqliteSessions;
pub use tokens::SqliteTokens;
