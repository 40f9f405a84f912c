//! The encrypted key/value store of access tokens and user UUIDs, whichever backend holds it.
//!
//! Rows are `(key, value, type)` as in the original's table; `value` is sealed here, by
//! [`Cipher`] with the row key as associated data, so a backend ([`TokenRows`]) only ever sees
//! sealed text. Callers name rows through [`TokenKey`], never by hand.

use std::path::Path;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::StoreError;
use super::cipher::Cipher;
use crate::domain::PageId;

/// The `type` column: what kind of secret a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Token,
    Uuid,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Token => "token",
            TokenKind::Uuid => "uuid",
        }
    }
}

/// The name of a row. Constructors build the original's key names from validated parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey(pub(super) String);

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
    /// The page whose owner this row names, for a `PAGE_UUID_{page_id}` row.
    pub fn page_of_uuid(&self) -> Option<PageId> {
        PageId::parse(self.0.strip_prefix("PAGE_UUID_")?).ok()
    }

    pub fn page_of_token(&self) -> Option<PageId> {
        self.0
            .strip_prefix(Self::PAGE_TOKEN_PREFIX)
            .and_then(|id| PageId::parse(id).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where sealed rows live: `tokens.db` ([`super::local`]) or PostgreSQL. Values arrive sealed.
#[async_trait::async_trait]
pub trait TokenRows: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces row `key`.
    async fn upsert(&self, key: String, sealed: String, kind: TokenKind) -> Result<(), StoreError>;
    async fn sealed(&self, key: String) -> Result<Option<String>, StoreError>;
    /// True when the row existed.
    async fn delete(&self, key: String) -> Result<bool, StoreError>;
    /// `(key, sealed value)` of every row of `kind`, ordered by key.
    async fn all_of_kind(&self, kind: TokenKind) -> Result<Vec<(String, String)>, StoreError>;
    /// The keys of every row of `kind`, ordered.
    async fn keys_of_kind(&self, kind: TokenKind) -> Result<Vec<String>, StoreError>;
    /// True when the backend answers; for `/healthz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What `salesbot rekey` did.
#[derive(Debug, Default)]
pub struct RekeyReport {
    pub resealed: usize,
    /// Rows no configured key opens, by name.
    pub unopened: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TokenStore {
    rows: Arc<dyn TokenRows>,
    cipher: Cipher,
}

impl TokenStore {
    pub fn new(rows: Arc<dyn TokenRows>, cipher: Cipher) -> TokenStore {
        TokenStore { rows, cipher }
    }

    /// The embedded backend: `tokens.db` at `path`.
    pub fn open_sqlite(path: &Path, cipher: Cipher) -> Result<TokenStore, StoreError> {
        Ok(TokenStore::new(
            Arc::new(super::local::SqliteTokens::open(path)?),
            cipher,
        ))
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
        self.rows.upsert(key.0.clone(), sealed, kind).await
    }

    /// The value of row `key`, or `None` when there is no such row.
    pub async fn get(&self, key: &TokenKey) -> Result<Option<SecretString>, StoreError> {
        let sealed = self.rows.sealed(key.0.clone()).await?;
        sealed
            .map(|sealed| self.unseal(&key.0, &sealed))
            .transpose()
    }

    /// Removes row `key`; true when it existed.
    pub async fn delete(&self, key: &TokenKey) -> Result<bool, StoreError> {
        self.rows.delete(key.0.clone()).await
    }

    /// Every row of `kind`, ordered by key.
    pub async fn all_of_kind(
        &self,
        kind: TokenKind,
    ) -> Result<Vec<(TokenKey, SecretString)>, StoreError> {
        let rows = self.rows.all_of_kind(kind).await?;
        rows.into_iter()
            .map(|(key, sealed)| Ok((TokenKey(key.clone()), self.unseal(&key, &sealed)?)))
            .collect()
    }

    /// The names of every row of `kind`, ordered, without opening any value.
    pub async fn keys_of_kind(&self, kind: TokenKind) -> Result<Vec<TokenKey>, StoreError> {
        let keys = self.rows.keys_of_kind(kind).await?;
        Ok(keys.into_iter().map(TokenKey).collect())
    }

    /// True when the backend answers; for `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.rows.ping().await
    }

    /// Copies every row, still sealed, into `target` (the same key must open them there: the
    /// row's name is its associated data, and it does not change). How many rows.
    pub async fn copy_rows_to(&self, target: &TokenStore) -> Result<usize, StoreError> {
        let rows = self.sealed_rows().await?;
        for (kind, key, sealed) in &rows {
            target
                .rows
                .upsert(key.clone(), sealed.clone(), *kind)
                .await?;
        }
        Ok(rows.len())
    }

    /// Every row, still sealed, with its kind.
    async fn sealed_rows(&self) -> Result<Vec<(TokenKind, String, String)>, StoreError> {
        let mut rows = Vec::new();
        for kind in [TokenKind::Token, TokenKind::Uuid] {
            for (key, sealed) in self.rows.all_of_kind(kind).await? {
                rows.push((kind, key, sealed));
            }
        }
        Ok(rows)
    }

    /// Opens every row (under the current key or a previous one): the first that does not
    /// open is the error, naming it. At start, so a wrong key stops the start instead of
    /// failing requests one by one.
    pub async fn check_keys(&self) -> Result<usize, StoreError> {
        let rows = self.sealed_rows().await?;
        for (_, key, sealed) in &rows {
            self.unseal(key, sealed)?;
        }
        Ok(rows.len())
    }

    /// Re-seals every row under the current key (`salesbot rekey`). A row no key opens is
    /// left as it is and named in the report, never skipped silently.
    pub async fn rekey(&self) -> Result<RekeyReport, StoreError> {
        let mut report = RekeyReport::default();
        for (kind, key, sealed) in self.sealed_rows().await? {
            match self.cipher.open(key.as_bytes(), &sealed) {
                Ok(plain) => {
                    let resealed = self.cipher.seal(key.as_bytes(), &plain);
                    self.rows.upsert(key, resealed, kind).await?;
                    report.resealed += 1;
                }
                Err(_) => report.unopened.push(key),
            }
        }
        Ok(report)
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
pub(crate) mod tests;
