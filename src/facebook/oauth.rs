//! `GET /facebook/login` and `GET /facebook/callback`: connecting the merchant's Facebook Pages.
//!
//! Needs the `session_id` cookie from the Shopify flow: the state carries the merchant's UUID,
//! is bound to this browser by a cookie and works once. The user token is exchanged for a
//! long-lived one and stored per merchant (SPEC 8.3); each page's token is stored, its webhook
//! subscription checked, and its metadata written without any token (SPEC 8.2).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde_json::json;
use uuid::Uuid;

use super::graph::{GraphError, PageAccount};
use super::self_test;
use super::subscription;
use crate::domain::PageId;
use crate::http::html::{self, escape};
use crate::http::{ApiError, cookies, state_check};
use crate::state::AppState;
use crate::store::unix_now;
use crate::store::{TokenKey, TokenKind};

/// What the app asks the merchant for.
pub const SCOPES: &str = "pages_messaging,pages_show_list,pages_manage_metadata";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/facebook/login", get(login))
        .route("/facebook/callback", get(callback))
}

#[tracing::instrument(skip_all)]
async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let config = &app.config.facebook;
    // A malformed FACEBOOK_APP_ID stops the start (config), so the id is digits here.
    let id = &config.app_id;
    let Some(session) = jar.get(cookies::SESSION).map(|c| c.value().to_string()) else {
        return Ok(shopify_first(&app, &headers, "Missing session_id cookie"));
    };
    let Some(user) = app.sessions.resolve(&session).await? else {
        return Ok(shopify_first(&app, &headers, "Invalid or expired session"));
    };

    let state = app.states.sign(Some(&user));
    let mut url = config
        .dialog_url
        .join(&format!("{}/dialog/oauth", config.graph_version))
        .map_err(|e| ApiError::Internal(format!("cannot build the dialog URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("client_id", id)
        .append_pair("redirect_uri", config.redirect_uri.as_str())
        .append_pair("scope", SCOPES)
        .append_pair("response_type", "code")
        .append_pair("state", &state);
    let jar = jar.add(cookies::state(
        cookies::FACEBOOK_STATE,
        &state,
        app.cookies_secure(),
    ));
    Ok((jar, Redirect::temporary(url.as_str())).into_response())
}

/// The answer to `/facebook/login` without a live session: pages belong to a merchant, whom
/// the Shopify step identifies, so that step comes first. A browser gets a page with a form
/// that starts it; an API client the `{"detail"}` 400, which says the same.
fn shopify_first(app: &AppState, headers: &HeaderMap, why: &str) -> Response {
    let login = "/shopify/{shop_name}/login";
    if !html::wants_html(headers) {
        return ApiError::BadRequest(format!(
            "{why}: connect your Shopify store first ({login}), then open /facebook/login in the same browser"
        ))
        .into_response();
    }
    let form = html::beside(&app.config.shopify.redirect_uri, "login");
    let body = format!(
        "<p>Your Facebook Pages are connected to your Shopify store, so the store comes first \
         (this browser has no live salesbot session: never connected, or over an hour ago).</p>\n\
         <form method=\"get\" action=\"{}\"><label>Your store: \
         <input name=\"shop\" placeholder=\"your-store\" required>.myshopify.com</label> \
         <button id=\"connect-shopify\" type=\"submit\">Connect your Shopify store</button></form>\n\
         <p>The same as opening <code>{}</code>. When it is done, the page it ends on links back \
         here.</p>",
        escape(&form),
        escape(login)
    );
    html::page(
        StatusCode::BAD_REQUEST,
        "Connect your Shopify store first",
        &body,
    )
}

#[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
async fn callback(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    jar: CookieJar,
) -> Result<impl IntoResponse, ApiError> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let code =
        param("code").ok_or_else(|| ApiError::BadRequest("Missing code parameter".into()))?;
    let state =
        param("state").ok_or_else(|| ApiError::BadRequest("Missing state parameter".into()))?;
    let verified = state_check::accept(
        (&app.states, &app.sessions),
        state,
        &jar,
        cookies::FACEBOOK_STATE,
    )
    .await?;
    let user = verified
        .user
        .ok_or_else(|| ApiError::BadRequest("Invalid UUID in state token".into()))?;
    tracing::Span::current().record("user", tracing::field::display(user));

    // As the original: the browser session ends here, whatever happens next.
    if let Some(session) = jar.get(cookies::SESSION) {
        app.sessions.end(session.value()).await?;
    }
    let jar = jar
        .remove(cookies::removal(cookies::FACEBOOK_STATE))
        .remove(cookies::removal(cookies::SESSION));

    let upstream = |step: &'static str| {
        move |e: GraphError| ApiError::BadGateway(format!("Facebook {step} failed: {e}"))
    };
    let short = app
        .graph
        .exchange_code(code)
        .await
        .map_err(upstream("code exchange"))?;
    let long = app
        .graph
        .long_lived_user_token(&short)
        .await
        .map_err(upstream("long-lived token exchange"))?;
    app.tokens
        .store(
            &TokenKey::facebook_user_token(&user),
            &long,
            TokenKind::Token,
        )
        .await?;
    let (pages, cursors) = app
        .graph
        .accounts(&long)
        .await
        .map_err(upstream("page list (/me/accounts)"))?;

    let mut webhook_test = Vec::new();
    let mut polling_test = Vec::new();
    let mut shown = Vec::new();
    for page in &pages {
        let Ok(page_id) = PageId::parse(&page.id) else {
            tracing::warn!(page = ?page.id, "Graph returned a page id that cannot be stored; skipped");
            continue;
        };
        connect_page(&app, &user, &page_id, page).await?;
        shown.push(page.public_view());
        if app.config.oauth_self_test {
            webhook_test.extend(self_test::webhooks(&app, &page_id).await);
            polling_test.extend(self_test::polls(&app, &page_id, &page.access_token).await);
        }
    }
    tracing::info!(user = %user, pages = shown.len(), "Facebook pages connected");
    let mut paging = serde_json::Map::new();
    if let Some(cursors) = cursors {
        // Cursors only: Graph's `next`/`previous` links carry the user's token.
        paging.insert("cursors".into(), cursors);
    }
    Ok((
        jar,
        Json(json!({
            "user_uuid": user,
            "pages": { "data": shown, "paging": paging },
            "webhook_test": webhook_test,
            "polling_test": polling_test,
        })),
    ))
}

/// Stores the page's token and owner, makes sure its webhooks are subscribed, writes its
/// metadata file.
async fn connect_page(
    app: &AppState,
    user: &Uuid,
    page_id: &PageId,
    page: &PageAccount,
) -> Result<(), ApiError> {
    app.pages.connect(page_id, &page.access_token, user).await?;
    let poll_state = app.poller.state();
    poll_state.record_connected(page_id, unix_now()).await?;
    subscription::ensure(&app.graph, page_id, &page.access_token)
        .await
        .map_err(|e| {
            ApiError::BadGateway(format!(
                "Facebook webhook subscription for page {page_id} failed: {e}"
            ))
        })?;
    poll_state
        .record_subscription(page_id, true, unix_now())
        .await?;
    app.metadata.write(page_id, &page.public_view()).await?;
    Ok(())
}
