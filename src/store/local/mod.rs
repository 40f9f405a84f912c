//! The embedded backend, the default: SQLite files for tokens, sessions and the poll's memory
//! (the conversation files and their journal are in [`crate::store::files`]). One machine;
//! a `salesbot poll` process may run beside the server.

mod poll_state;
mod sessions;
pub(crate) mod sqlite;
mod tokens;

pub use poll_state::SqlitePollState;
pub use sessions::SqliteSessions;
pub use tokens::SqliteTokens;
