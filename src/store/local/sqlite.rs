//! One SQLite connection per database file, used from tokio's blocking pool.
//!
//! WAL lets readers proceed beside a writer, and a busy timeout makes a second process (a
//! `salesbot poll` beside the server) wait for the lock instead of failing with "database is
//! locked". Within this process the mutex serialises access, so that error cannot surface here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::StoreError;

#[derive(Clone)]
pub(crate) struct Db {
    // A std mutex, not tokio's: it is only ever taken inside `spawn_blocking`.
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating if needed) the database at `path` and applies `schema`.
    pub(crate) fn open(path: &Path, schema: &str) -> Result<Db, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(StoreError::io("create folder", parent))?;
        }
        let conn = Connection::open(path)?;
        restrict_permissions(path);
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a token or session acknowledged to a browser survives power loss too.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(schema)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Runs `work` on the connection without blocking the async runtime.
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves SQLite consistent (transactions roll
            // back), so a poisoned mutex is safe to keep using.
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut conn)
        })
        .await?
    }
}

impl Db {
    /// Adds the `columns` a table made by an older build lacks (SQLite has no
    /// `ADD COLUMN IF NOT EXISTS`). At start-up, before the database is shared.
    pub(crate) fn ensure_columns(
        &self,
        table: &str,
        columns: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut info = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let present: Vec<String> = info
            .query_map([], |row| row.get::<_, String>(1))?
            .collect::<Result<_, _>>()?;
        drop(info);
        for (name, kind) in columns {
            if !present.iter().any(|p| p == name) {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {kind}"))?;
            }
        }
        Ok(())
    }

    /// True when the database answers; for `/healthz`.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

/// The databases hold sealed secrets: keep them readable by the service's user only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %err, "cannot restrict database permissions");
        }
    }
}
