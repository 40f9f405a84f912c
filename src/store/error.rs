//! The storage layer's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// A statement PostgreSQL refused (a constraint, a bad query): a bug or a damaged schema.
    #[error("database error")]
    Postgres(#[source] tokio_postgres::Error),
    /// PostgreSQL cannot be reached now (down, restarting, the pool exhausted, a certificate
    /// refused): worth a retry. Shown with every cause: "error connecting to server" alone
    /// does not tell an operator whether the port, the password or TLS is wrong.
    #[error("the database is unavailable: {}", crate::telemetry::error_chain(.0.as_ref()))]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The TLS settings of `DATABASE_URL` cannot be used (its CA file, the system's CAs).
    #[error("DATABASE_URL: {0}")]
    DatabaseTls(String),
    /// The database was migrated by a newer salesbot; this build must not write to it.
    #[error(
        "the database schema is at version {found}, newer than this build knows ({known}): run the newer salesbot, or restore a backup"
    )]
    SchemaTooNew { found: i32, known: i32 },
    /// Tampered, copied onto another row, or sealed under another key. Names the row, never
    /// the value.
    #[error(
        "the stored value of `{key}` cannot be decrypted (tampered, moved to another row, or sealed with another key)"
    )]
    Undecryptable { key: String },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode JSON for {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A journal segment whose records waited for their checkpoint while a flush of some data
    /// file failed: the checkpoint's own flushes may have succeeded over lost pages.
    #[error(
        "a flush of a data file failed while this journal segment waited for its checkpoint (see {}); it is kept for the next start to replay", log.display()
    )]
    FlushFailedMeanwhile { log: PathBuf },
    /// The journal of a data folder belongs to one server; a second one must not start.
    #[error("{} is in use by another `salesbot serve`: one server per DATA_DIR", path.display())]
    InUse { path: PathBuf },
    #[error("a storage task stopped unexpectedly")]
    Background(#[from] tokio::task::JoinError),
}

impl From<tokio_postgres::Error> for StoreError {
    /// An error PostgreSQL itself answered is the statement's fault; anything else (a closed
    /// connection, a refused connect, a timeout) means the database is not there right now.
    fn from(err: tokio_postgres::Error) -> StoreError {
        match err.as_db_error() {
            Some(_) => StoreError::Postgres(err),
            None => StoreError::Unavailable(Box::new(err)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> StoreError {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => StoreError::Unavailable(Box::new(other)),
        }
    }
}

impl StoreError {
    /// True when trying again later may succeed (the database was out of reach).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}
