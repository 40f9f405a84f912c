//! The sandbox's Shopify: the install consent page, the redirect back (signed like Shopify's),
//! the token endpoint (expiring offline tokens and refresh) and the Admin GraphQL endpoint (the
//! shop-data query and the install's webhook subscription).

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::shopify::signature;

pub(super) struct Credentials {
    pub api_key: String,
    pub api_secret: SecretString,
}

/// `/shops/{shop}/admin/...`
pub(super) fn answer(
    credentials: &Credentials,
    method: &str,
    shop: &str,
    rest: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Response {
    let param = |name: &str| super::query_param(query, name).to_string();
    match (method, rest) {
        ("GET", ["oauth", "authorize"]) => consent(shop, &param("client_id"), &param("redirect_uri"), &param("state"), &param("scope")),
        ("GET", ["oauth", "approve"]) => approve(credentials, shop, &param("redirect_uri"), &param("state")),
        ("POST", ["oauth", "access_token"]) => token(credentials, shop, body),
        ("POST", ["api", _version, "graphql.json"]) if is_subscription(body) => Json(json!({"data": {
            "webhookSubscriptionCreate": {"webhookSubscription": {"id": "gid://shopify/WebhookSubscription/1"}, "userErrors": []}
        }}))
        .into_response(),
        ("POST", ["api", _version, "graphql.json"]) => Json(json!({"data": {
            "shop": {"name": "Demo Store", "email": "owner@demo-store.example", "primaryDomain": {"url": format!("https://{shop}")}, "currencyCode": "EUR"},
            "products": {"edges": [
                {"node": {"id": "gid://shopify/Product/1", "title": "Linen shirt", "handle": "linen-shirt", "status": "ACTIVE",
                    "variants": {"edges": [{"node": {"id": "gid://shopify/ProductVariant/11", "title": "Blue / M", "price": "49.00", "inventoryQuantity": 7}}]}}},
                {"node": {"id": "gid://shopify/Product/2", "title": "Canvas tote", "handle": "canvas-tote", "status": "ACTIVE",
                    "variants": {"edges": [{"node": {"id": "gid://shopify/ProductVariant/21", "title": "Natural", "price": "19.00", "inventoryQuantity": 31}}]}}}
            ]},
            "codeDiscountNodes": {"edges": []},
            "collections": {"edges": [{"node": {"id": "gid://shopify/Collection/1", "title": "Summer", "handle": "summer"}}]}
        }}))
        .into_response(),
        _ => (StatusCode::NOT_FOUND, "sandbox shopify: no such endpoint").into_response(),
    }
}

/// The install's `app/uninstalled` subscription, rather than the shop-data query.
fn is_subscription(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"webhookSubscriptionCreate").is_some()
}

fn consent(shop: &str, client_id: &str, redirect_uri: &str, state: &str, scope: &str) -> Response {
    let approve = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state)
        .finish();
    Html(super::consent_page(
        &format!("Install app on {}", shop.trim_end_matches(".myshopify.com")),
        &format!("salesbot asks for: {}", escape(&scope.replace(',', ", "))),
        &format!("/shops/{shop}/admin/oauth/approve?{approve}"),
        "Install app",
    ))
    .into_response()
}

/// Sends the browser back to the app as Shopify does: code, shop, state, timestamp, hmac.
fn approve(credentials: &Credentials, shop: &str, redirect_uri: &str, state: &str) -> Response {
    let mut params: Vec<(String, String)> = vec![
        (
            "code".into(),
            format!("sandbox-code-{}", crate::store::unix_now()),
        ),
        ("host".into(), "c2FuZGJveA".into()),
        ("shop".into(), shop.to_string()),
        ("state".into(), state.to_string()),
        ("timestamp".into(), crate::store::unix_now().to_string()),
    ];
    let hmac = signature::sign(&params, &credentials.api_secret);
    params.push(("hmac".into(), hmac));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    (
        StatusCode::FOUND,
        [(LOCATION, format!("{redirect_uri}?{query}"))],
    )
        .into_response()
}

fn token(credentials: &Credentials, shop: &str, body: &[u8]) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let secret_ok = body["client_secret"].as_str()
        == Some(secrecy::ExposeSecret::expose_secret(
            &credentials.api_secret,
        ));
    if body["client_id"].as_str() != Some(credentials.api_key.as_str()) || !secret_ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = crate::store::unix_now();
    Json(json!({
        "access_token": format!("shpat_sandbox_{shop}_{n}"),
        "scope": "read_product_listings,read_inventory,read_discounts,read_locations,read_products",
        "expires_in": 3600,
        "refresh_token": format!("shprt_sandbox_{shop}_{n}"),
        "refresh_token_expires_in": 7_776_000,
    }))
    .into_response()
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
