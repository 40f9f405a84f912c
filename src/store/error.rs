//! The storage layer's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
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

impl StoreError {
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
