//! `tokens.db`: the encrypted key/value store of access tokens and user UUIDs.
//!
//! Table `tokens(key, value, type)` as in the original; `value` is sealed by [`Cipher`] with
//! the row key as associated data. Callers name rows through [`TokenKey`], never by hand.

use std::path::Path;

use rusqlite::{OptionalExtension, params};
use secrecy::{ExposeSecret, SecretString};

use super::StoreError;
use super::cipher::Cipher;
use super::sqlite::Db;
use crate::domain::PageId;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    type TEXT NOT NULL
);";

/// The `type` column: what kind of secret a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Token,
    Uuid,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Token => "token",
            TokenKind::Uuid => "uuid",
        }
    }
}

/// The name of a row. Constructors build the original's key names from validated parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey(String);

impl TokenKey {
    /// `FACEBOOK_ACCESS_TOKEN_{page_id}`: a page's access token.
    pub fn page_token(page: &PageId) -> TokenKey {
        TokenKey(format!("{}{page}", Self::PAGE_TOKEN_PREFIX))
    }
    /// `PAGE_UUID_{page_id}`: the merchant a page belongs to.
    pub fn page_uuid(page: &PageId) -> TokenKey {
        TokenKey(format!("PAGE_UUID_{page}"))
    }
    /// `FACEBOOK_USER_ACCESS_TOKEN_{uuid}`: a merchant's long-lived Facebook user token.
    pub fn facebook_user_token(user: &uuid::Uuid) -> TokenKey {
        TokenKey(format!("FACEBOOK_USER_ACCESS_TOKEN_{user}"))
    }
    /// `SHOPIFY_ACCESS_TOKEN_{shop_key}`, `shop_key` being the shop host with `.` → `_`.
    pub fn shopify_token(shop_key: &str) -> TokenKey {
        TokenKey(format!("SHOPIFY_ACCESS_TOKEN_{shop_key}"))
    }
    /// `USER_UUID_{shop_key}`: the merchant UUID of a shop.
    pub fn shop_uuid(shop_key: &str) -> TokenKey {
        TokenKey(format!("USER_UUID_{shop_key}"))
    }

    const PAGE_TOKEN_PREFIX: &'static str = "FACEBOOK_ACCESS_TOKEN_";

    /// The page a `FACEBOOK_ACCESS_TOKEN_{page_id}` row belongs to.
    pub fn page_of_token(&self) -> Option<PageId> {
        self.0
            .strip_prefix(Self::PAGE_TOKEN_PREFIX)
            .and_then(|id| PageId::parse(id).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct TokenStore {
    db: Db,
    cipher: Cipher,
}

impl TokenStore {
    pub fn open(path: &Path, cipher: Cipher) -> Result<TokenStore, StoreError> {
        Ok(TokenStore {
            db: Db::open(path, SCHEMA)?,
            cipher,
        })
    }

    /// Inserts or replaces the row `key`.
    pub async fn store(
        &self,
        key: &TokenKey,
        value: &SecretString,
        kind: TokenKind,
    ) -> Result<(), StoreError> {
        let sealed = self
            .cipher
            .seal(key.0.as_bytes(), value.expose_secret().as_bytes());
        let key = key.0.clone();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO tokens (key, value, type) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value, type = excluded.type",
                    params![key, sealed, kind.as_str()],
                )?;
                Ok(())
            })
            .await
    }

    /// The value of row `key`, or `None` when there is no such row.
    pub async fn get(&self, key: &TokenKey) -> Result<Option<SecretString>, StoreError> {
        let name = key.0.clone();
        let sealed: Option<String> = self
            .db
            .call(move |conn| {
                Ok(conn
                    .query_row("SELECT value FROM tokens WHERE key = ?1", [name], |row| {
                        row.get(0)
                    })
                    .optional()?)
            })
            .await?;
        sealed
            .map(|sealed| self.unseal(&key.0, &sealed))
            .transpose()
    }

    /// Removes row `key`; true when it existed.
    pub async fn delete(&self, key: &TokenKey) -> Result<bool, StoreError> {
        let key = key.0.clone();
        self.db
            .call(move |conn| Ok(conn.execute("DELETE FROM tokens WHERE key = ?1", [key])? > 0))
            .await
    }

    /// Every row of `kind`, ordered by key.
    pub async fn all_of_kind(
        &self,
        kind: TokenKind,
    ) -> Result<Vec<(TokenKey, SecretString)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare("SELECT key, value FROM tokens WHERE type = ?1 ORDER BY key")?;
                let rows = stmt
                    .query_map([kind.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(key, sealed)| Ok((TokenKey(key.clone()), self.unseal(&key, &sealed)?)))
            .collect()
    }

    /// The names of every row of `kind`, ordered, without opening any value.
    pub async fn keys_of_kind(&self, kind: TokenKind) -> Result<Vec<TokenKey>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt =
                    conn.prepare("SELECT key FROM tokens WHERE type = ?1 ORDER BY key")?;
                let keys = stmt
                    .query_map([kind.as_str()], |row| row.get::<_, String>(0))?
                    .map(|key| key.map(TokenKey))
                    .collect::<Result<_, _>>()?;
                Ok(keys)
            })
            .await
    }

    /// True when the database answers; for `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    fn unseal(&self, key: &str, sealed: &str) -> Result<SecretString, StoreError> {
        let undecryptable = || StoreError::Undecryptable {
            key: key.to_string(),
        };
        let bytes = self
            .cipher
            .open(key.as_bytes(), sealed)
            .map_err(|_| undecryptable())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| undecryptable())?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests;
