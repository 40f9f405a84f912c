//! `GET /shopify/{shop_name}/login` and `GET /shopify/callback`: connecting a Shopify store.
//! `GET /shopify/login?shop=<name>` is the same login, for the form a browser is shown when it
//! asks for `/facebook/login` before connecting a store.
//!
//! The callback checks, in this order and before any outbound request: the required
//! parameters, Shopify's `hmac` and `timestamp`, the shop host, then the state (signature,
//! age, this browser's state cookie, first use). Only then is the code exchanged — so the
//! client secret only ever goes to `<name>.myshopify.com` (SPEC 8.1).

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use super::ShopDomain;
use super::signature;
use crate::http::html::{self, escape};
use crate::http::{ApiError, cookies, state_check};
use crate::state::AppState;
use crate::store::{TokenKey, TokenKind, unix_now};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/shopify/{shop_name}/login", get(login))
        .route("/shopify/login", get(login_by_query))
        .route("/shopify/callback", get(callback))
}

#[tracing::instrument(skip_all, fields(shop = %shop_name))]
async fn login(
    State(app): State<AppState>,
    Path(shop_name): Path<String>,
    jar: CookieJar,
) -> Result<impl IntoResponse, ApiError> {
    start(&app, &shop_name, jar)
}

#[derive(serde::Deserialize)]
struct ShopQuery {
    shop: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn login_by_query(
    State(app): State<AppState>,
    Query(query): Query<ShopQuery>,
    jar: CookieJar,
) -> Result<impl IntoResponse, ApiError> {
    let shop_name = query.shop.unwrap_or_default();
    if shop_name.trim().is_empty() {
        return Err(ApiError::BadRequest("Missing shop parameter".into()));
    }
    start(&app, shop_name.trim(), jar)
}

/// The install redirect, with the state in a cookie of this browser.
fn start(
    app: &AppState,
    shop_name: &str,
    jar: CookieJar,
) -> Result<(CookieJar, Redirect), ApiError> {
    let shop = ShopDomain::parse(shop_name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let state = app.states.sign(None);
    let url = app.shopify.authorize_url(&shop, &state);
    let jar = jar.add(cookies::state(
        cookies::SHOPIFY_STATE,
        &state,
        app.cookies_secure(),
    ));
    Ok((jar, Redirect::temporary(url.as_str())))
}

#[tracing::instrument(skip_all, fields(shop = tracing::field::Empty))]
async fn callback(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing: Vec<&str> = ["code", "shop", "state"]
        .into_iter()
        .filter(|n| param(n).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Missing required parameter(s): {}",
            missing.join(", ")
        )));
    }
    let (code, shop, state) = (
        param("code").unwrap_or_default(),
        param("shop").unwrap_or_default(),
        param("state").unwrap_or_default(),
    );

    signature::verify(&params, &app.config.shopify.api_secret, unix_now())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let shop = ShopDomain::parse(shop).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state_check::accept(
        (&app.states, &app.sessions),
        state,
        &jar,
        cookies::SHOPIFY_STATE,
    )
    .await?;
    tracing::Span::current().record("shop", shop.as_str());

    let grant = app
        .shopify
        .exchange_code(&shop, code)
        .await
        .map_err(|e| ApiError::BadGateway(format!("Shopify token exchange failed: {e}")))?;
    app.shopify_tokens.save(&shop, &grant).await?;
    let user = user_uuid(&app, &shop).await?;
    let session = app.sessions.create(user).await?;
    let jar = jar
        .remove(cookies::removal(cookies::SHOPIFY_STATE))
        .add(cookies::session(
            session.expose_cookie_value(),
            app.cookies_secure(),
        ));
    tracing::info!(shop = %shop, user = %user, "Shopify store connected");

    // The store is connected and the session set even if the shop data cannot be read now, or
    // the subscription cannot be made: the merchant can still go on to connect Facebook.
    let (data, ()) = tokio::join!(
        app.shopify.shop_data(&shop, &grant.access_token),
        subscribe_uninstalled(&app, &shop, &grant.access_token),
    );
    if html::wants_html(&headers) {
        let trouble = data.as_ref().err().map(ToString::to_string);
        return Ok((jar, connected_page(&app, &shop, data.ok(), trouble)).into_response());
    }
    match data {
        Ok(data) => Ok((
            jar,
            Json(json!({
                "user_uuid": user,
                "token_data": { "scope": grant.scope },
                "shopify_data": data,
            })),
        )
            .into_response()),
        Err(e) => Ok((
            jar,
            ApiError::BadGateway(format!("Shopify shop data request failed: {e}")),
        )
            .into_response()),
    }
}

/// Registers `app/uninstalled` at our `/shopify/webhooks` (beside the callback). A failure is
/// logged, not fatal: the subscription can also be declared in the app's configuration.
async fn subscribe_uninstalled(app: &AppState, shop: &ShopDomain, token: &SecretString) {
    let uri = html::beside(&app.config.shopify.redirect_uri, "webhooks");
    match app.shopify.subscribe_uninstalled(shop, token, &uri).await {
        Ok(outcome) => tracing::debug!(shop = %shop, ?outcome, "app/uninstalled subscribed"),
        Err(e) => tracing::warn!(
            shop = %shop,
            error = %e,
            "could not subscribe app/uninstalled; declare it in the Partner dashboard (README)"
        ),
    }
}

/// What a browser sees once the store is connected: the next step, as a link.
fn connected_page(
    app: &AppState,
    shop: &ShopDomain,
    data: Option<Value>,
    trouble: Option<String>,
) -> Response {
    let name = data
        .as_ref()
        .and_then(|d| d["data"]["shop"]["name"].as_str())
        .map(|n| format!(" ({})", escape(n)))
        .unwrap_or_default();
    let mut body = format!(
        "<p>Your store <strong>{}</strong>{name} is connected to salesbot. Its access token \
         is stored encrypted and is never shown.</p>",
        escape(shop.as_str())
    );
    if let Some(trouble) = trouble {
        body.push_str(&format!(
            "<p>Its data could not be read just now ({}); the connection stands.</p>",
            escape(&trouble)
        ));
    }
    let next = html::beside(&app.config.facebook.redirect_uri, "login");
    body.push_str(&format!(
        "<p>Next, in this same browser and within the hour:</p>\n\
         <p><a class=\"next\" id=\"next\" href=\"{}\">Connect your Facebook Pages</a></p>",
        escape(&next)
    ));
    html::page(StatusCode::OK, "Shopify store connected", &body)
}

/// The merchant UUID of a shop: kept across re-installs (SPEC 8.10), created for a new shop.
async fn user_uuid(app: &AppState, shop: &ShopDomain) -> Result<Uuid, ApiError> {
    let key = TokenKey::shop_uuid(&shop.key());
    if let Some(existing) = app.tokens.get(&key).await? {
        use secrecy::ExposeSecret;
        if let Ok(uuid) = Uuid::parse_str(existing.expose_secret()) {
            return Ok(uuid);
        }
        tracing::warn!(shop = %shop, "stored merchant UUID is not a UUID; issuing a new one");
    }
    let uuid = Uuid::new_v4();
    app.tokens
        .store(&key, &SecretString::from(uuid.to_string()), TokenKind::Uuid)
        .await?;
    Ok(uuid)
}
