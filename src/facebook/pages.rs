//! Which pages are connected, and their tokens.
//!
//! A page is connected when both its token and its owner's UUID are stored. The answer is
//! cached once positive (pages are connected through this server, which tells the cache), so a
//! busy webhook does not read SQLite for every entry.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use secrecy::SecretString;

use crate::domain::PageId;
use uuid::Uuid;

use crate::store::{StoreError, TokenKey, TokenKind, TokenStore};

#[derive(Debug, Clone)]
pub struct PageDirectory {
    tokens: TokenStore,
    connected: Arc<RwLock<HashSet<PageId>>>,
}

impl PageDirectory {
    pub fn new(tokens: TokenStore) -> PageDirectory {
        PageDirectory {
            tokens,
            connected: Arc::default(),
        }
    }

    pub async fn is_connected(&self, page: &PageId) -> Result<bool, StoreError> {
        if self
            .connected
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(page)
        {
            return Ok(true);
        }
        let connected = self
            .tokens
            .get(&TokenKey::page_token(page))
            .await?
            .is_some()
            && self.tokens.get(&TokenKey::page_uuid(page)).await?.is_some();
        if connected {
            self.remember(page);
        }
        Ok(connected)
    }

    /// Stores the page's token and its owner: from now on the page is connected.
    pub async fn connect(
        &self,
        page: &PageId,
        token: &SecretString,
        owner: &Uuid,
    ) -> Result<(), StoreError> {
        self.tokens
            .store(&TokenKey::page_token(page), token, TokenKind::Token)
            .await?;
        self.tokens
            .store(
                &TokenKey::page_uuid(page),
                &SecretString::from(owner.to_string()),
                TokenKind::Uuid,
            )
            .await?;
        self.remember(page);
        Ok(())
    }

    fn remember(&self, page: &PageId) {
        self.connected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(page.clone());
    }

    pub async fn token(&self, page: &PageId) -> Result<Option<SecretString>, StoreError> {
        self.tokens.get(&TokenKey::page_token(page)).await
    }
}
