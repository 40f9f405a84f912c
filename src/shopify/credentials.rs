//! A shop's stored Shopify credentials, and a valid access token on demand.
//!
//! The access token, refresh token and expiry are sealed together in the one row
//! `SHOPIFY_ACCESS_TOKEN_{shop_key}`, so replacing the pair is a single atomic write. Whoever
//! needs a token asks [`ShopifyTokens::access_token`], which refreshes it first when it expires
//! within five minutes.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use std::sync::Arc;

use super::ShopDomain;
use super::admin::{Grant, ShopifyClient, ShopifyError};
use crate::store::{StoreError, TokenKey, TokenKind, TokenStore, unix_now};

/// Refresh this long before Shopify's expiry, so a token never dies mid-request.
const REFRESH_MARGIN_SECS: i64 = 300;
/// The daily sweep ([`ShopifyTokens::refresh_expiring`]) renews a pair whose access token
/// expires before the next sweep, or whose refresh token (about 90 days) expires within a
/// week: a shop unused for months still works.
const SWEEP_ACCESS_MARGIN_SECS: i64 = 25 * 3600;
const SWEEP_REFRESH_MARGIN_SECS: i64 = 7 * 86_400;

/// What the status view shows of a shop: no token, only dates (Unix seconds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShopStatus {
    pub shop: String,
    pub connected_at: Option<i64>,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token_expires_at: Option<i64>,
    /// Why the merchant must connect the shop again, if they must.
    pub needs_reauth: Option<String>,
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub shops: usize,
    pub refreshed: usize,
    /// Each shop whose refresh failed, with why; the merchant must connect it again.
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no Shopify token is stored for {0}; connect the shop again")]
    NotConnected(String),
    #[error(
        "the Shopify token of {shop} expired and could not be refreshed ({source}); connect the shop again"
    )]
    RefreshFailed {
        shop: String,
        #[source]
        source: ShopifyError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sealed form. Never serialised anywhere but into the token store.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    /// Unix seconds; `None` for a non-expiring token.
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    refresh_token_expires_at: Option<i64>,
    #[serde(default)]
    scope: String,
    /// When the merchant connected the shop (Unix seconds); kept across refreshes.
    #[serde(default)]
    connected_at: Option<i64>,
}

impl Stored {
    fn from_grant(grant: &Grant, now: i64) -> Stored {
        Stored {
            access_token: grant.access_token.expose_secret().to_string(),
            refresh_token: grant
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
            expires_at: grant.expires_in.map(|s| now + s),
            refresh_token_expires_at: grant.refresh_token_expires_in.map(|s| now + s),
            scope: grant.scope.clone(),
            connected_at: Some(now),
        }
    }

    fn seal_form(&self) -> SecretString {
        SecretString::from(serde_json::to_string(self).expect("plain strings serialise"))
    }

    fn parse(value: &SecretString) -> Stored {
        serde_json::from_str(value.expose_secret()).unwrap_or_else(|_| Stored {
            // A bare token, as the original stored it: treat it as non-expiring.
            access_token: value.expose_secret().to_string(),
            refresh_token: None,
            expires_at: None,
            refresh_token_expires_at: None,
            scope: String::new(),
            connected_at: None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ShopifyTokens {
    tokens: TokenStore,
    client: ShopifyClient,
    // One refresh at a time: two concurrent refreshes would race to replace the same pair.
    refreshing: Arc<Mutex<()>>,
}

impl ShopifyTokens {
    pub fn new(tokens: TokenStore, client: ShopifyClient) -> ShopifyTokens {
        ShopifyTokens {
            tokens,
            client,
            refreshing: Arc::default(),
        }
    }

    /// Stores what the code exchange returned, replacing any earlier pair in one write.
    pub async fn save(&self, shop: &ShopDomain, grant: &Grant) -> Result<(), StoreError> {
        let stored = Stored::from_grant(grant, unix_now());
        self.tokens
            .store(
                &TokenKey::shopify_token(&shop.key()),
                &stored.seal_form(),
                TokenKind::Token,
            )
            .await
    }

    /// A usable access token for `shop`, refreshed first if it is about to expire.
    pub async fn access_token(&self, shop: &ShopDomain) -> Result<SecretString, CredentialError> {
        self.access_token_at(shop, unix_now()).await
    }

    pub async fn access_token_at(
        &self,
        shop: &ShopDomain,
        now: i64,
    ) -> Result<SecretString, CredentialError> {
        let stored = self.load(shop).await?;
        if !needs_refresh(&stored, now) {
            return Ok(SecretString::from(stored.access_token));
        }
        let guard = Arc::clone(&self.refreshing).lock_owned().await;
        // Another task may have refreshed while this one waited.
        let stored = self.load(shop).await?;
        if !needs_refresh(&stored, now) {
            return Ok(SecretString::from(stored.access_token));
        }
        // Its own task: Shopify rotates the pair, so a refresh abandoned half-way (a client
        // hanging up, the request timeout) would leave us holding a spent refresh token.
        let (this, shop) = (self.clone(), shop.clone());
        tokio::spawn(async move {
            let _guard = guard;
            this.renew(&shop, stored, now).await
        })
        .await
        .map_err(|e| CredentialError::Store(StoreError::Background(e)))?
    }

    /// Every shop whose access token expires before the next daily sweep, or whose refresh
    /// token within a week, is refreshed now.
    pub async fn refresh_expiring(&self, now: i64) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        for shop in self.connected().await? {
            report.shops += 1;
            let _guard = self.refreshing.lock().await;
            let stored = match self.load(&shop).await {
                Ok(stored) => stored,
                Err(CredentialError::Store(err)) => return Err(err),
                Err(_) => continue, // disconnected meanwhile
            };
            let due = stored.refresh_token.is_some()
                && (stored
                    .expires_at
                    .is_some_and(|at| at - SWEEP_ACCESS_MARGIN_SECS <= now)
                    || stored
                        .refresh_token_expires_at
                        .is_some_and(|at| at - SWEEP_REFRESH_MARGIN_SECS <= now));
            if !due {
                continue;
            }
            match self.renew(&shop, stored, now).await {
                Ok(_) => report.refreshed += 1,
                Err(CredentialError::Store(err)) => return Err(err),
                Err(err) => report.failed.push((shop.to_string(), err.to_string())),
            }
        }
        Ok(report)
    }

    /// Every connected shop, by domain.
    pub async fn shops(&self, now: i64) -> Result<Vec<ShopStatus>, StoreError> {
        let mut shops = Vec::new();
        for shop in self.connected().await? {
            let stored = match self.load(&shop).await {
                Ok(stored) => stored,
                Err(CredentialError::Store(err)) => return Err(err),
                Err(_) => continue,
            };
            let expired = |at: Option<i64>| at.is_some_and(|at| at <= now);
            let needs_reauth = match (&stored.refresh_token, stored.expires_at) {
                (_, None) => None,
                (None, at) if expired(at) => {
                    Some("the access token expired and there is no refresh token".into())
                }
                (Some(_), _) if expired(stored.refresh_token_expires_at) => {
                    Some("the refresh token expired".into())
                }
                _ => None,
            };
            shops.push(ShopStatus {
                shop: shop.to_string(),
                connected_at: stored.connected_at,
                access_token_expires_at: stored.expires_at,
                refresh_token_expires_at: stored.refresh_token_expires_at,
                needs_reauth,
            });
        }
        shops.sort_by(|a, b| a.shop.cmp(&b.shop));
        Ok(shops)
    }

    async fn connected(&self) -> Result<Vec<ShopDomain>, StoreError> {
        let prefix = TokenKey::shopify_token("");
        Ok(self
            .tokens
            .keys_of_kind(TokenKind::Token)
            .await?
            .iter()
            .filter_map(|key| {
                key.as_str()
                    .strip_prefix(prefix.as_str())
                    .and_then(ShopDomain::from_key)
            })
            .collect())
    }

    /// Exchanges the stored refresh token for a new pair and stores it. The caller holds
    /// `refreshing`.
    async fn renew(
        &self,
        shop: &ShopDomain,
        stored: Stored,
        now: i64,
    ) -> Result<SecretString, CredentialError> {
        let refresh_token = stored
            .refresh_token
            .clone()
            .map(SecretString::from)
            .ok_or_else(|| CredentialError::RefreshFailed {
                shop: shop.to_string(),
                source: ShopifyError::Decode(
                    "the stored token expired and has no refresh token".into(),
                ),
            })?;
        let grant = self
            .client
            .refresh(shop, &refresh_token)
            .await
            .map_err(|source| {
                tracing::error!(shop = %shop, error = %source, "Shopify token refresh failed");
                CredentialError::RefreshFailed {
                    shop: shop.to_string(),
                    source,
                }
            })?;
        let mut renewed = Stored::from_grant(&grant, now);
        renewed.connected_at = stored.connected_at;
        if renewed.refresh_token.is_none() {
            renewed.refresh_token = stored.refresh_token;
            renewed.refresh_token_expires_at = stored.refresh_token_expires_at;
        }
        self.tokens
            .store(
                &TokenKey::shopify_token(&shop.key()),
                &renewed.seal_form(),
                TokenKind::Token,
            )
            .await?;
        tracing::info!(shop = %shop, "Shopify token refreshed");
        Ok(grant.access_token)
    }

    async fn load(&self, shop: &ShopDomain) -> Result<Stored, CredentialError> {
        let value = self
            .tokens
            .get(&TokenKey::shopify_token(&shop.key()))
            .await?
            .ok_or_else(|| CredentialError::NotConnected(shop.to_string()))?;
        Ok(Stored::parse(&value))
    }
}

fn needs_refresh(stored: &Stored, now: i64) -> bool {
    stored
        .expires_at
        .is_some_and(|at| at - REFRESH_MARGIN_SECS <= now)
}
