//! `sessions.db`: browser sessions and spent OAuth states.
//!
//! A session id is 32 random bytes (URL-safe base64) handed to the browser; only its SHA-256
//! is stored, so a copy of the database cannot be replayed as cookies. The merchant UUID it
//! points at is sealed like a token. Sessions live 3600 s and are purged lazily.
//!
//! Spent states: the digest of every OAuth `state` already used, kept until it would have
//! expired anyway, so a state works once (SPEC 8.9) even across restarts and processes.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{OptionalExtension, params};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::cipher::Cipher;
use super::sqlite::Db;
use super::{StoreError, unix_now};

/// How long a browser session lasts, server-side and in the cookie's `Max-Age`.
pub const SESSION_TTL_SECS: i64 = 3600;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    uuid TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_created_at ON sessions (created_at);
CREATE TABLE IF NOT EXISTS spent_states (
    digest TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_states_expires_at ON spent_states (expires_at);
";

/// The cookie value of a session. Secret: it is the browser's credential.
#[derive(Debug)]
pub struct SessionId(SecretString);

impl SessionId {
    fn generate() -> SessionId {
        let bytes: [u8; 32] = rand::random();
        SessionId(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The value to put in the `session_id` cookie.
    pub fn expose_cookie_value(&self) -> &str {
        self.0.expose_secret()
    }
}

#[derive(Debug, Clone)]
pub struct SessionStore {
    db: Db,
    cipher: Cipher,
}

impl SessionStore {
    pub fn open(path: &Path, cipher: Cipher) -> Result<SessionStore, StoreError> {
        Ok(SessionStore {
            db: Db::open(path, SCHEMA)?,
            cipher,
        })
    }

    /// Starts a session for `user`, purging expired ones on the way.
    pub async fn create(&self, user: Uuid) -> Result<SessionId, StoreError> {
        self.create_at(user, unix_now()).await
    }

    pub async fn create_at(&self, user: Uuid, now: i64) -> Result<SessionId, StoreError> {
        let id = SessionId::generate();
        let hash = hash(id.expose_cookie_value());
        let sealed = self
            .cipher
            .seal(aad(&hash).as_bytes(), user.to_string().as_bytes());
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "DELETE FROM sessions WHERE created_at <= ?1",
                    [now - SESSION_TTL_SECS],
                )?;
                tx.execute(
                    "INSERT INTO sessions (id_hash, uuid, created_at) VALUES (?1, ?2, ?3)",
                    params![hash, sealed, now],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        Ok(id)
    }

    /// The merchant a cookie value belongs to; `None` when unknown or expired.
    pub async fn resolve(&self, cookie_value: &str) -> Result<Option<Uuid>, StoreError> {
        self.resolve_at(cookie_value, unix_now()).await
    }

    pub async fn resolve_at(
        &self,
        cookie_value: &str,
        now: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        let hash = hash(cookie_value);
        let key = hash.clone();
        let row: Option<String> = self
            .db
            .call(move |conn| {
                let row: Option<(String, i64)> = conn
                    .query_row(
                        "SELECT uuid, created_at FROM sessions WHERE id_hash = ?1",
                        [&key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match row {
                    Some((_, created)) if created + SESSION_TTL_SECS <= now => {
                        conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [&key])?;
                        Ok(None)
                    }
                    other => Ok(other.map(|(sealed, _)| sealed)),
                }
            })
            .await?;
        let Some(sealed) = row else { return Ok(None) };
        let undecryptable = || StoreError::Undecryptable {
            key: format!("session {}", &hash[..12]),
        };
        let plain = self
            .cipher
            .open(aad(&hash).as_bytes(), &sealed)
            .map_err(|_| undecryptable())?;
        let text = std::str::from_utf8(&plain).map_err(|_| undecryptable())?;
        Uuid::parse_str(text).map(Some).map_err(|_| undecryptable())
    }

    /// Ends a session; true when it existed.
    pub async fn end(&self, cookie_value: &str) -> Result<bool, StoreError> {
        let hash = hash(cookie_value);
        self.db
            .call(move |conn| {
                Ok(conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [hash])? > 0)
            })
            .await
    }

    /// Removes every session older than the TTL; returns how many.
    pub async fn purge_expired_at(&self, now: i64) -> Result<usize, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM sessions WHERE created_at <= ?1",
                    [now - SESSION_TTL_SECS],
                )?)
            })
            .await
    }

    /// Records `state` as used. True the first time, false for a replay. `expires_at` is when
    /// the state stops verifying anyway; the record is dropped after that.
    pub async fn spend_state(&self, state: &str, expires_at: i64) -> Result<bool, StoreError> {
        self.spend_state_at(state, expires_at, unix_now()).await
    }

    pub async fn spend_state_at(
        &self,
        state: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let digest = hash(state);
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM spent_states WHERE expires_at < ?1", [now])?;
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO spent_states (digest, expires_at) VALUES (?1, ?2)",
                    params![digest, expires_at],
                )?;
                tx.commit()?;
                Ok(inserted == 1)
            })
            .await
    }

    /// True when the database answers; for `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn aad(hash: &str) -> String {
    format!("session:{hash}")
}

#[cfg(test)]
mod tests;
