//! The original's shops, pages and sessions joining our stores. What this install holds
//! already (connected here since, or imported before) is kept as it is.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::ImportError;
use super::report::Report;
use super::stores::{LegacyPage, LegacySession, LegacyShop};
use crate::shopify::admin::Grant;
use crate::state::AppState;
use crate::store::sessions::SESSION_TTL_SECS;
use crate::store::{TokenKey, TokenKind, unix_now};

/// The original's merchant UUIDs that this install knows by another (it gave the shop a UUID
/// of its own before the import); any other UUID is the same here.
pub type Merchants = HashMap<Uuid, Uuid>;

pub async fn shops(
    app: &AppState,
    shops: &[LegacyShop],
    dry_run: bool,
    report: &mut Report,
) -> Result<Merchants, ImportError> {
    let mut merchants = Merchants::new();
    for legacy in shops {
        let uuid_key = TokenKey::shop_uuid(&legacy.shop.key());
        let ours = app
            .tokens
            .get(&uuid_key)
            .await?
            .and_then(|v| Uuid::parse_str(v.expose_secret()).ok());
        let merchant = match (ours, legacy.merchant) {
            (Some(ours), Some(theirs)) => {
                merchants.insert(theirs, ours);
                ours
            }
            (Some(ours), None) => ours,
            (None, theirs) => {
                let merchant = theirs.unwrap_or_else(Uuid::new_v4);
                if !dry_run {
                    let value = SecretString::from(merchant.to_string());
                    app.tokens.store(&uuid_key, &value, TokenKind::Uuid).await?;
                }
                merchant
            }
        };
        let Some(token) = &legacy.token else { continue };
        if app
            .tokens
            .get(&TokenKey::shopify_token(&legacy.shop.key()))
            .await?
            .is_some()
        {
            report.shops_already_here += 1;
            continue;
        }
        if !dry_run {
            // The original asked for non-expiring offline tokens: no expiry, nothing to
            // refresh. Shopify ends them for public apps on 2027-01-01; the merchant then
            // connects the store again, which gives an expiring pair.
            let grant = Grant {
                access_token: token.clone(),
                scope: String::new(),
                expires_in: None,
                refresh_token: None,
                refresh_token_expires_in: None,
            };
            app.shopify_tokens.save(&legacy.shop, &grant).await?;
        }
        tracing::info!(shop = %legacy.shop, merchant = %merchant, dry_run, "shop imported");
        report.shops_imported += 1;
    }
    Ok(merchants)
}

pub async fn pages(
    app: &AppState,
    pages: &[LegacyPage],
    merchants: &Merchants,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), ImportError> {
    for legacy in pages {
        let page = &legacy.page;
        let Some(token) = &legacy.token else { continue };
        if app.pages.token(page).await?.is_some() {
            report.pages_already_here += 1;
            continue;
        }
        let Some(owner) = legacy.owner.map(|o| *merchants.get(&o).unwrap_or(&o)) else {
            report.pages_without_owner.push(page.to_string());
            continue;
        };
        // Whether Meta still takes the token: a refused one is imported all the same, marked,
        // so the status view and the poll say the merchant must connect the page again.
        let refused = match app.graph.page_metadata(page, token).await {
            Ok(_) => None,
            Err(err) if err.is_token_error() => {
                Some(format!("Meta refused the original's token: {err}"))
            }
            Err(err) => {
                tracing::warn!(page = %page, error = %err, "cannot check the original's page token");
                report.unchecked.push(page.to_string());
                None
            }
        };
        if !dry_run {
            app.pages.connect(page, token, &owner).await?;
            let poll_state = app.poller.state();
            poll_state.record_connected(page, unix_now()).await?;
            if let Some(reason) = &refused {
                poll_state.mark_needs_reauth(page, reason).await?;
            }
        }
        if refused.is_some() {
            report.needs_reauth.push(page.to_string());
        }
        tracing::info!(page = %page, owner = %owner, dry_run, "page imported");
        report.pages_imported += 1;
    }
    Ok(())
}

pub async fn sessions(
    app: &AppState,
    sessions: &[LegacySession],
    merchants: &Merchants,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), ImportError> {
    let fresh_after = unix_now() - SESSION_TTL_SECS;
    for legacy in sessions {
        if legacy.created_at <= fresh_after {
            report.sessions_expired += 1;
            continue;
        }
        let cookie = legacy.cookie_value.expose_secret();
        if app.sessions.resolve(cookie).await?.is_some() {
            continue;
        }
        let merchant = *merchants.get(&legacy.merchant).unwrap_or(&legacy.merchant);
        if !dry_run {
            app.sessions
                .adopt(cookie, merchant, legacy.created_at)
                .await?;
        }
        report.sessions_adopted += 1;
    }
    Ok(())
}
