//! `POST /shopify/webhooks`: what Shopify tells a public app about a shop's departure.
//!
//! Every delivery is signed: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw body
//! under the app secret, checked in constant time before anything is read; 401 otherwise, and
//! nothing done. A redelivery (the same `X-Shopify-Webhook-Id`) is answered 200 and done once.
//!
//! - `app/uninstalled`: the shop's token is deleted at once, and the page tokens of its merchant
//!   (so their polls and webhooks stop); the merchant's UUID stays, for a re-install.
//! - `customers/data_request`, `customers/redact`: logged and answered 200: we hold no Shopify
//!   customer data (Messenger customers are Meta's ids, not Shopify's).
//! - `shop/redact` (48 hours after an uninstall): everything of the shop and of the pages its
//!   merchant connected deleted: tokens, UUIDs, metadata, conversations, attachments (files and
//!   queue), poll checkpoints.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use secrecy::{ExposeSecret, SecretString};

use super::ShopDomain;
use crate::domain::PageId;
use crate::http::ApiError;
use crate::state::AppState;
use crate::store::{TokenKey, TokenKind, unix_now};

/// Shopify's payloads are small.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a delivery's id is remembered: Shopify retries for up to 48 hours.
const REMEMBERED_SECS: i64 = 3 * 86_400;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/shopify/webhooks",
        post(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// Whether `header` is the base64 HMAC-SHA256 of `body` under `secret`.
pub fn is_signed(header: Option<&str>, body: &[u8], secret: &SecretString) -> bool {
    let Some(given) = header.and_then(|h| STANDARD.decode(h.trim()).ok()) else {
        return false;
    };
    let mut mac = super::signature::keyed(secret);
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

async fn receive(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !is_signed(
        header("x-shopify-hmac-sha256"),
        &body,
        &app.config.shopify.api_secret,
    ) {
        return Err(ApiError::Unauthorized("Invalid HMAC signature".into()));
    }
    let topic = header("x-shopify-topic").unwrap_or_default().to_string();
    let shop = header("x-shopify-shop-domain")
        .and_then(|domain| ShopDomain::parse(domain).ok())
        .ok_or_else(|| ApiError::BadRequest("Missing or invalid X-Shopify-Shop-Domain".into()))?;
    if let Some(id) = header("x-shopify-webhook-id") {
        let first = app
            .sessions
            .spend_state(
                &format!("shopify-webhook:{id}"),
                unix_now() + REMEMBERED_SECS,
            )
            .await?;
        if !first {
            tracing::info!(shop = %shop, topic = %topic, "Shopify webhook delivered again; already done");
            return Ok(StatusCode::OK);
        }
    }
    match topic.as_str() {
        "app/uninstalled" => uninstalled(&app, &shop).await?,
        "shop/redact" => redacted(&app, &shop).await?,
        "customers/data_request" | "customers/redact" => {
            tracing::info!(shop = %shop, topic = %topic, "compliance webhook: no Shopify customer data is held");
        }
        other => {
            tracing::warn!(shop = %shop, topic = %other, "Shopify webhook of a topic not subscribed to; ignored")
        }
    }
    Ok(StatusCode::OK)
}

/// The shop's merchant and the pages that merchant connected (their owner rows name it).
async fn merchant_and_pages(
    app: &AppState,
    shop: &ShopDomain,
) -> Result<Option<(String, Vec<PageId>)>, ApiError> {
    let Some(merchant) = app.tokens.get(&TokenKey::shop_uuid(&shop.key())).await? else {
        return Ok(None);
    };
    let merchant = merchant.expose_secret().to_string();
    let mut pages = Vec::new();
    for (owner_key, owner) in app.tokens.all_of_kind(TokenKind::Uuid).await? {
        if let Some(page) = owner_key.page_of_uuid()
            && owner.expose_secret() == merchant
        {
            pages.push(page);
        }
    }
    Ok(Some((merchant, pages)))
}

/// The shop's token, and the page tokens of its merchant, deleted; the UUIDs kept.
async fn uninstalled(app: &AppState, shop: &ShopDomain) -> Result<(), ApiError> {
    let deleted = app
        .tokens
        .delete(&TokenKey::shopify_token(&shop.key()))
        .await?;
    let pages = merchant_and_pages(app, shop)
        .await?
        .map(|(_, pages)| pages)
        .unwrap_or_default();
    for page in &pages {
        app.pages.disconnect(page).await?;
    }
    tracing::info!(shop = %shop, token_deleted = deleted, pages_disconnected = pages.len(), "app uninstalled: tokens deleted, merchant UUID kept");
    Ok(())
}

/// Everything stored for the shop and its merchant's pages, deleted.
async fn redacted(app: &AppState, shop: &ShopDomain) -> Result<(), ApiError> {
    let key = shop.key();
    let (merchant, pages) = merchant_and_pages(app, shop).await?.unwrap_or_default();
    let mut conversations = 0;
    for page in &pages {
        conversations += crate::erasure::page(app, page).await?;
    }
    if let Ok(user) = uuid::Uuid::parse_str(&merchant) {
        app.tokens
            .delete(&TokenKey::facebook_user_token(&user))
            .await?;
    }
    app.tokens.delete(&TokenKey::shopify_token(&key)).await?;
    app.tokens.delete(&TokenKey::shop_uuid(&key)).await?;
    tracing::info!(shop = %shop, pages = pages.len(), conversations, "shop redacted: every token, file and record of the shop and its pages deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, KeyInit};
    use sha2::Sha256;

    use super::*;

    #[test]
    fn only_the_app_secrets_signature_of_these_bytes_passes() {
        let secret = SecretString::from("app-secret");
        let body = br#"{"shop_domain":"demo-store.myshopify.com"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-secret").unwrap();
        mac.update(body);
        let good = STANDARD.encode(mac.finalize().into_bytes());
        assert!(is_signed(Some(&good), body, &secret));
        assert!(!is_signed(Some(&good), b"{}", &secret), "another body");
        assert!(!is_signed(Some(&good), body, &SecretString::from("other")));
        for bad in [None, Some(""), Some("not base64!"), Some(&good[..10])] {
            assert!(!is_signed(bad, body, &secret), "{bad:?}");
        }
    }
}
