//! Browser sessions and spent OAuth states, whichever backend holds them.
//!
//! A session id is 32 random bytes (URL-safe base64) handed to the browser; only its SHA-256
//! is stored, so a copy of the database cannot be replayed as cookies. The merchant UUID it
//! points at is sealed like a token. Sessions live 3600 s and are purged lazily. Hashing and
//! sealing happen here; a backend ([`SessionRows`]) sees only digests and sealed text.
//!
//! Spent states: the digest of every OAuth `state` already used, kept until it would have
//! expired anyway, so a state works once (SPEC 8.9) even across restarts, processes and
//! replicas.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::cipher::Cipher;
use super::{StoreError, unix_now};

/// How long a browser session lasts, server-side and in the cookie's `Max-Age`.
pub const SESSION_TTL_SECS: i64 = 3600;

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

/// Where sessions and spent states live: `sessions.db` ([`super::local`]) or PostgreSQL.
#[async_trait::async_trait]
pub trait SessionRows: Send + Sync + std::fmt::Debug {
    /// Adds a session, in the same transaction dropping those created at or before `stale`.
    async fn insert(
        &self,
        id_hash: String,
        sealed_uuid: String,
        created_at: i64,
        stale: i64,
    ) -> Result<(), StoreError>;
    /// The sealed UUID of a session created after `stale`; an older one is deleted.
    async fn live(&self, id_hash: String, stale: i64) -> Result<Option<String>, StoreError>;
    /// True when the session existed.
    async fn delete(&self, id_hash: String) -> Result<bool, StoreError>;
    /// Drops every session created at or before `stale`; how many.
    async fn purge(&self, stale: i64) -> Result<usize, StoreError>;
    /// Records a spent state (dropping records that expired before `now`): true the first
    /// time, false for a replay, atomically across every process sharing the backend.
    async fn spend(&self, digest: String, expires_at: i64, now: i64) -> Result<bool, StoreError>;
    /// True when the backend answers; for `/healthz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[derive(Debug, Clone)]
pub struct SessionStore {
    rows: Arc<dyn SessionRows>,
    cipher: Cipher,
}

impl SessionStore {
    pub fn new(rows: Arc<dyn SessionRows>, cipher: Cipher) -> SessionStore {
        SessionStore { rows, cipher }
    }

    /// The embedded backend: `sessions.db` at `path`.
    pub fn open_sqlite(path: &Path, cipher: Cipher) -> Result<SessionStore, StoreError> {
        Ok(SessionStore::new(
            Arc::new(super::local::SqliteSessions::open(path)?),
            cipher,
        ))
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
        self.rows
            .insert(hash, sealed, now, now - SESSION_TTL_SECS)
            .await?;
        Ok(id)
    }

    /// Takes over a session another system issued (the original, moving in): `cookie_value`
    /// resolves to `user` until an hour after `created_at`, as if made here then.
    pub async fn adopt(
        &self,
        cookie_value: &str,
        user: Uuid,
        created_at: i64,
    ) -> Result<(), StoreError> {
        let hash = hash(cookie_value);
        let sealed = self
            .cipher
            .seal(aad(&hash).as_bytes(), user.to_string().as_bytes());
        self.rows
            .insert(hash, sealed, created_at, unix_now() - SESSION_TTL_SECS)
            .await
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
        let Some(sealed) = self.rows.live(hash.clone(), now - SESSION_TTL_SECS).await? else {
            return Ok(None);
        };
        // Sealed under a key that is gone (rotated away), or damaged: the merchant simply logs
        // in again, as after an expiry; it is not a failure of the request.
        let opened = self
            .cipher
            .open(aad(&hash).as_bytes(), &sealed)
            .ok()
            .and_then(|plain| Uuid::parse_str(std::str::from_utf8(&plain).ok()?).ok());
        if opened.is_none() {
            tracing::warn!(
                session = &hash[..12],
                "a browser session that no configured key opens is treated as ended"
            );
        }
        Ok(opened)
    }

    /// Ends a session; true when it existed.
    pub async fn end(&self, cookie_value: &str) -> Result<bool, StoreError> {
        self.rows.delete(hash(cookie_value)).await
    }

    /// Removes every session older than the TTL; returns how many.
    pub async fn purge_expired_at(&self, now: i64) -> Result<usize, StoreError> {
        self.rows.purge(now - SESSION_TTL_SECS).await
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
        self.rows.spend(hash(state), expires_at, now).await
    }

    /// True when the backend answers; for `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.rows.ping().await
    }
}

fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn aad(hash: &str) -> String {
    format!("session:{hash}")
}

#[cfg(test)]
pub(crate) mod tests;
