//! The Graph API client: OAuth token exchanges, the user's pages, webhook subscriptions and
//! page metadata. One shared `reqwest::Client`; the base URL comes from configuration.
//!
//! Tokens travel as the `access_token` query parameter, as Meta documents; that is why no URL
//! of a Graph request is ever logged or put into an error (see `outbound::describe`).

mod error;
mod usage;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::config::FacebookConfig;
use crate::domain::PageId;
use crate::outbound;
use crate::store::local::files::PAGE_FIELDS;
use crate::telemetry::metrics::{GraphOutcome, Metrics};

pub use error::{ApiFailure, GraphError, GraphErrorBody};
pub use usage::Usage;

/// The fields a page's webhook subscription must carry.
pub const SUBSCRIBED_FIELDS: &str = "name,category,messages";
/// What `/me/accounts` is asked for: the public page fields plus the page token.
fn account_fields() -> String {
    format!("{},access_token", PAGE_FIELDS.join(","))
}

/// One page the user manages, with its page token (which never leaves this process).
#[derive(Debug, Deserialize)]
pub struct PageAccount {
    pub id: String,
    pub access_token: SecretString,
    /// Every other field Graph returned (name, category, ...).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl PageAccount {
    /// The page as shown to the merchant and written to its metadata file: no token.
    pub fn public_view(&self) -> Value {
        let mut fields = self.fields.clone();
        fields.insert("id".into(), Value::String(self.id.clone()));
        Value::Object(fields)
    }
}

#[derive(Debug, Deserialize)]
struct AccountsPage {
    #[serde(default)]
    data: Vec<PageAccount>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    pub next: Option<String>,
    pub cursors: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
}

#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    app_id: String,
    app_secret: SecretString,
    redirect_uri: Url,
    metrics: Metrics,
}

impl GraphClient {
    pub fn new(http: reqwest::Client, config: &FacebookConfig) -> GraphClient {
        let mut root = config.graph_url.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let base = root
            .join(&format!("{}/", config.graph_version))
            .expect("a version string joins onto a base URL");
        GraphClient {
            http,
            base,
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
            redirect_uri: config.redirect_uri.clone(),
            metrics: Metrics::default(),
        }
    }

    /// Counts every call's outcome into `metrics`.
    pub fn observed(mut self, metrics: &Metrics) -> GraphClient {
        self.metrics = metrics.clone();
        self
    }

    /// Exchanges the dialog's `code` for a short-lived user token.
    pub async fn exchange_code(&self, code: &str) -> Result<SecretString, GraphError> {
        let answer: TokenAnswer = self
            .get(
                self.endpoint("oauth/access_token"),
                &[
                    ("client_id", &self.app_id),
                    ("redirect_uri", self.redirect_uri.as_str()),
                    ("client_secret", self.app_secret.expose_secret()),
                    ("code", code),
                ],
            )
            .await?;
        Ok(answer.access_token)
    }

    /// Trades a short-lived user token for a long-lived one (about 60 days).
    /// <https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived>
    pub async fn long_lived_user_token(
        &self,
        short: &SecretString,
    ) -> Result<SecretString, GraphError> {
        let answer: TokenAnswer = self
            .get(
                self.endpoint("oauth/access_token"),
                &[
                    ("grant_type", "fb_exchange_token"),
                    ("client_id", &self.app_id),
                    ("client_secret", self.app_secret.expose_secret()),
                    ("fb_exchange_token", short.expose_secret()),
                ],
            )
            .await?;
        Ok(answer.access_token)
    }

    /// Every page the user manages, following `paging.next`; also the last page's cursors.
    pub async fn accounts(
        &self,
        user_token: &SecretString,
    ) -> Result<(Vec<PageAccount>, Option<Value>), GraphError> {
        let fields = account_fields();
        let mut page: AccountsPage = self
            .get(
                self.endpoint("me/accounts"),
                &[
                    ("fields", &fields),
                    ("access_token", user_token.expose_secret()),
                ],
            )
            .await?;
        let mut pages = std::mem::take(&mut page.data);
        let mut cursors = page.paging.as_mut().and_then(|p| p.cursors.take());
        while let Some(next) = page.paging.and_then(|p| p.next) {
            page = self.get(self.same_origin(&next)?, &[]).await?;
            pages.append(&mut page.data);
            cursors = page
                .paging
                .as_mut()
                .and_then(|p| p.cursors.take())
                .or(cursors);
        }
        Ok((pages, cursors))
    }

    /// The apps subscribed to a page's webhooks, each with its `subscribed_fields`.
    pub async fn subscribed_apps(
        &self,
        page: &PageId,
        token: &SecretString,
    ) -> Result<Vec<Value>, GraphError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            data: Vec<Value>,
        }
        let answer: Answer = self
            .get(
                self.endpoint(&format!("{page}/subscribed_apps")),
                &[("access_token", token.expose_secret())],
            )
            .await?;
        Ok(answer.data)
    }

    /// Subscribes this app to the page's `name`, `category` and `messages` webhooks.
    pub async fn subscribe(&self, page: &PageId, token: &SecretString) -> Result<(), GraphError> {
        let request = self
            .http
            .post(self.endpoint(&format!("{page}/subscribed_apps")))
            .query(&[
                ("subscribed_fields", SUBSCRIBED_FIELDS),
                ("access_token", token.expose_secret()),
            ]);
        self.send::<Value>(request).await?;
        Ok(())
    }

    /// The page's public fields, read with its own page token.
    pub async fn page_metadata(
        &self,
        page: &PageId,
        token: &SecretString,
    ) -> Result<Value, GraphError> {
        self.get(
            self.endpoint(page.as_str()),
            &[
                ("fields", &PAGE_FIELDS.join(",")),
                ("access_token", token.expose_secret()),
            ],
        )
        .await
    }

    /// GET `url` (already carrying its query, e.g. a `paging.next` link) plus `query`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        query: &[(&str, &str)],
    ) -> Result<T, GraphError> {
        self.send(self.http.get(url).query(query))
            .await
            .map(|(value, _)| value)
    }

    /// Like [`Self::get`], also returning how close the app is to Meta's rate limits.
    pub async fn get_with_usage<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        query: &[(&str, &str)],
    ) -> Result<(T, Usage), GraphError> {
        self.send(self.http.get(url).query(query)).await
    }

    /// Sends one call and counts how it ended.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, Usage), GraphError> {
        let result = send(request).await;
        self.metrics.graph(match &result {
            Ok(_) => GraphOutcome::Ok,
            Err(GraphError::Transport(_)) => GraphOutcome::Unreachable,
            Err(err) if err.is_throttling() => GraphOutcome::Throttled,
            Err(_) => GraphOutcome::Error,
        });
        result
    }

    /// POST `url` with `query`, also returning how close the app is to Meta's rate limits.
    pub async fn post_with_usage<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        query: &[(&str, &str)],
    ) -> Result<(T, Usage), GraphError> {
        self.send(self.http.post(url).query(query)).await
    }

    /// `{graph_url}/{version}/{path}`.
    pub fn endpoint(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("Graph paths built from validated ids always join")
    }

    /// A `paging.next` link, accepted only if it points at the configured Graph API.
    pub fn same_origin(&self, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|_| GraphError::ForeignLink)?;
        if url.origin() == self.base.origin() {
            Ok(url)
        } else {
            Err(GraphError::ForeignLink)
        }
    }
}

async fn send<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<(T, Usage), GraphError> {
    let response = request
        .send()
        .await
        .map_err(|e| GraphError::Transport(outbound::describe(e)))?;
    let status = response.status().as_u16();
    let usage = Usage::from_headers(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| GraphError::Transport(outbound::describe(e)))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body)
            .map(|value| (value, usage))
            .map_err(|e| GraphError::Decode {
                status,
                detail: e.to_string(),
            });
    }
    #[derive(Deserialize)]
    struct Envelope {
        error: GraphErrorBody,
    }
    match serde_json::from_slice::<Envelope>(&body) {
        Ok(envelope) => Err(GraphError::Api(ApiFailure {
            status,
            error: envelope.error,
        })),
        Err(_) => Err(GraphError::Decode {
            status,
            detail: String::from_utf8_lossy(&body).chars().take(200).collect(),
        }),
    }
}
