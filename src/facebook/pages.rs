//! Which pages are connected, and their tokens.
//!
//! A page is connected when both its token and its owner's UUID are stored. A positive answer
//! is cached for a minute, so a busy webhook does not read the store for every entry, and a
//! page disconnected elsewhere (another replica, an uninstall) stops being served within it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::domain::PageId;
use uuid::Uuid;

use crate::store::{StoreError, TokenKey, TokenKind, TokenStore};

#[derive(Debug, Clone)]
pub struct PageDirectory {
    tokens: TokenStore,
    connected: Arc<RwLock<HashMap<PageId, Instant>>>,
}

/// How long "connected" is believed without asking the store again.
const REMEMBERED: Duration = Duration::from_secs(60);

impl PageDirectory {
    pub fn new(tokens: TokenStore) -> PageDirectory {
        PageDirectory {
            tokens,
            connected: Arc::default(),
        }
    }

    pub async fn is_connected(&self, page: &PageId) -> Result<bool, StoreError> {
        let known = self
            .connected
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(page)
            .is_some_and(|at| at.elapsed() < REMEMBERED);
        if known {
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

    /// The page's token deleted (its owner kept): no more polls, no more events stored.
    pub async fn disconnect(&self, page: &PageId) -> Result<(), StoreError> {
        self.tokens.delete(&TokenKey::page_token(page)).await?;
        self.connected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(page);
        Ok(())
    }

    fn remember(&self, page: &PageId) {
        self.connected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(page.clone(), Instant::now());
    }

    pub async fn token(&self, page: &PageId) -> Result<Option<SecretString>, StoreError> {
        self.tokens.get(&TokenKey::page_token(page)).await
    }
}
