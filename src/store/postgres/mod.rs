//! The scale-out backend: PostgreSQL, shared by every replica (`DATABASE_URL`).
//!
//! A bounded pool of connections; the schema is migrated at start ([`migrations`]). A
//! database that cannot be reached surfaces as [`StoreError::Unavailable`], which the HTTP
//! layer answers with 503 (Meta redelivers), never as a crash.

mod attachments;
mod conversations;
mod migrations;
mod poll_state;
mod publisher;
mod sessions;
mod target;
mod tokens;

#[cfg(test)]
mod tests;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;

pub use attachments::PgAttachments;
pub use conversations::PgConversations;
pub use migrations::LATEST_VERSION;
pub use poll_state::PgPollState;
pub use publisher::Publisher;
pub use sessions::PgSessions;
pub use target::DatabaseTarget;
pub use tokens::PgTokens;

/// How long a request waits for a connection (pool exhausted, or the database starting)
/// before it is answered as unavailable.
const WAIT: Duration = Duration::from_secs(5);

/// A pool of connections to one database, its schema up to date.
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the pool's shape is shown.
        f.debug_struct("PgDatabase")
            .field("max_size", &self.pool.status().max_size)
            .finish()
    }
}

impl PgDatabase {
    /// Connects (at most `max_size` connections at once) and brings the schema up to date;
    /// a schema newer than this build is refused.
    pub async fn connect(
        target: &DatabaseTarget,
        max_size: usize,
    ) -> Result<PgDatabase, StoreError> {
        let settings = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let config = target.config.clone();
        let manager = match target.client_config().map_err(StoreError::DatabaseTls)? {
            Some(tls) => Manager::from_config(config, MakeRustlsConnect::new(tls), settings),
            None => Manager::from_config(config, NoTls, settings),
        };
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let db = PgDatabase { pool };
        migrations::apply(&db).await?;
        Ok(db)
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(StoreError::from)
    }

    /// True when the database answers; for `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}
