//! The Shopify Admin client: OAuth code exchange and refresh, the shop-data GraphQL query and
//! the `app/uninstalled` subscription made at install.
//!
//! Every URL is built from a [`ShopDomain`] and the `SHOPIFY_SHOP_URL` template, never from
//! raw input.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::ShopDomain;
use crate::config::ShopifyConfig;
use crate::outbound;

/// The scopes the app asks a merchant for.
pub const SCOPES: &str =
    "read_product_listings,read_inventory,read_discounts,read_locations,read_products";

/// The original's query: the shop, 50 products with variants and inventory, 10 discount codes,
/// 10 collections.
pub const SHOP_DATA_QUERY: &str = r#"{
  shop { name email primaryDomain { url } currencyCode }
  products(first: 50) {
    edges { node {
      id title description handle productType vendor tags status
      variants(first: 10) { edges { node { id title price sku inventoryQuantity } } }
    } }
  }
  codeDiscountNodes(first: 10) {
    edges { node { id codeDiscount {
      ... on DiscountCodeBasic { title codes(first: 1) { edges { node { code } } } startsAt endsAt status }
    } } }
  }
  collections(first: 10) { edges { node { id title handle description } } }
}"#;

const GRAPHQL_TRIES: u32 = 3;

/// Subscribes the shop's `app/uninstalled` to our webhook (`uri`, the 2025-10 unified field).
const SUBSCRIBE_UNINSTALLED: &str = "mutation($uri: String!) { \
  webhookSubscriptionCreate(topic: APP_UNINSTALLED, \
    webhookSubscription: { uri: $uri, format: JSON }) { \
    webhookSubscription { id } userErrors { field message } } }";

#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    #[error("Shopify answered {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("cannot reach Shopify: {0}")]
    Transport(String),
    #[error("unexpected answer from Shopify: {0}")]
    Decode(String),
    #[error("Shopify refused: {0}")]
    Refused(String),
}

/// What the install's subscription request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    Created,
    /// The shop already sends this topic to that address (a re-install before Shopify dropped
    /// the old subscription, or one declared in the app's configuration).
    AlreadyThere,
}

/// What the token endpoint returns. Expiring offline tokens carry `expires_in` and a
/// `refresh_token`.
#[derive(Debug, Deserialize)]
pub struct Grant {
    pub access_token: SecretString,
    #[serde(default)]
    pub scope: String,
    pub expires_in: Option<i64>,
    pub refresh_token: Option<SecretString>,
    pub refresh_token_expires_in: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ShopifyClient {
    http: reqwest::Client,
    api_key: String,
    api_secret: SecretString,
    redirect_uri: Url,
    shop_url_template: String,
    api_version: String,
}

impl ShopifyClient {
    pub fn new(http: reqwest::Client, config: &ShopifyConfig) -> ShopifyClient {
        ShopifyClient {
            http,
            api_key: config.api_key.clone(),
            api_secret: config.api_secret.clone(),
            redirect_uri: config.redirect_uri.clone(),
            shop_url_template: config.shop_url_template.clone(),
            api_version: config.api_version.clone(),
        }
    }

    /// Where the merchant's browser goes to approve the app.
    pub fn authorize_url(&self, shop: &ShopDomain, state: &str) -> Url {
        let mut url = self.url(shop, "/admin/oauth/authorize");
        url.query_pairs_mut()
            .append_pair("client_id", &self.api_key)
            .append_pair("scope", SCOPES)
            .append_pair("redirect_uri", self.redirect_uri.as_str())
            .append_pair("state", state);
        url
    }

    /// Exchanges the callback's `code` for an expiring offline token.
    pub async fn exchange_code(
        &self,
        shop: &ShopDomain,
        code: &str,
    ) -> Result<Grant, ShopifyError> {
        self.token_request(
            shop,
            json!({
                "client_id": self.api_key,
                "client_secret": self.api_secret.expose_secret(),
                "code": code,
                "expiring": 1,
            }),
        )
        .await
    }

    /// Trades a refresh token for a new access/refresh pair.
    pub async fn refresh(
        &self,
        shop: &ShopDomain,
        refresh_token: &SecretString,
    ) -> Result<Grant, ShopifyError> {
        self.token_request(
            shop,
            json!({
                "client_id": self.api_key,
                "client_secret": self.api_secret.expose_secret(),
                "grant_type": "refresh_token",
                "refresh_token": refresh_token.expose_secret(),
            }),
        )
        .await
    }

    /// Runs the shop-data query.
    pub async fn shop_data(
        &self,
        shop: &ShopDomain,
        token: &SecretString,
    ) -> Result<Value, ShopifyError> {
        self.graphql(shop, token, &json!({ "query": SHOP_DATA_QUERY }))
            .await
    }

    /// Asks the shop to tell `uri` when the app is uninstalled, so its tokens are deleted at
    /// once rather than failing at the next use.
    pub async fn subscribe_uninstalled(
        &self,
        shop: &ShopDomain,
        token: &SecretString,
        uri: &str,
    ) -> Result<Subscription, ShopifyError> {
        let answer = self
            .graphql(
                shop,
                token,
                &json!({ "query": SUBSCRIBE_UNINSTALLED, "variables": { "uri": uri } }),
            )
            .await?;
        if let Some(errors) = answer.get("errors") {
            return Err(ShopifyError::Refused(short(&errors.to_string())));
        }
        let created = &answer["data"]["webhookSubscriptionCreate"];
        let problems: Vec<&str> = created["userErrors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .collect();
        if problems.is_empty() && created["webhookSubscription"]["id"].is_string() {
            return Ok(Subscription::Created);
        }
        // Shopify's words for a topic already sent to this address.
        if problems.iter().any(|m| m.contains("already been taken")) {
            return Ok(Subscription::AlreadyThere);
        }
        if problems.is_empty() {
            return Err(ShopifyError::Decode(short(&answer.to_string())));
        }
        Err(ShopifyError::Refused(short(&problems.join("; "))))
    }

    /// One Admin GraphQL request, retried on 429 (3 tries, backing off).
    async fn graphql(
        &self,
        shop: &ShopDomain,
        token: &SecretString,
        body: &Value,
    ) -> Result<Value, ShopifyError> {
        let url = self.url(
            shop,
            &format!("/admin/api/{}/graphql.json", self.api_version),
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self
                .http
                .post(url.clone())
                .header("X-Shopify-Access-Token", token.expose_secret())
                .json(body)
                .send()
                .await
                .map_err(|e| ShopifyError::Transport(outbound::describe(e)))?;
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                && attempt < GRAPHQL_TRIES
            {
                tokio::time::sleep(backoff(&response, attempt)).await;
                continue;
            }
            return decode(response).await;
        }
    }

    async fn token_request<T: serde::de::DeserializeOwned>(
        &self,
        shop: &ShopDomain,
        body: Value,
    ) -> Result<T, ShopifyError> {
        let response = self
            .http
            .post(self.url(shop, "/admin/oauth/access_token"))
            .json(&body)
            .send()
            .await
            .map_err(|e| ShopifyError::Transport(outbound::describe(e)))?;
        decode(response).await
    }

    fn url(&self, shop: &ShopDomain, path: &str) -> Url {
        let base = self.shop_url_template.replace("{shop}", shop.as_str());
        Url::parse(&format!("{base}{path}"))
            .expect("the template was validated at start-up and a ShopDomain is a plain host")
    }
}

/// `Retry-After` when Shopify sends one (capped), else 0.5 s, 1 s, ...
fn backoff(response: &reqwest::Response, attempt: u32) -> Duration {
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0);
    match retry_after {
        Some(secs) => Duration::from_secs_f64(secs.min(5.0)),
        None => Duration::from_millis(500 * 2u64.pow(attempt - 1)),
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ShopifyError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| ShopifyError::Transport(outbound::describe(e)))?;
    if !status.is_success() {
        // Shopify's error bodies are short and carry no credentials; cap them anyway.
        return Err(ShopifyError::Status {
            status: status.as_u16(),
            detail: short(&String::from_utf8_lossy(&body)),
        });
    }
    serde_json::from_slice(&body).map_err(|e| ShopifyError::Decode(e.to_string()))
}

/// Shopify's words, capped for a log line or an error.
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}
