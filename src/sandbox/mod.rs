//! The sandbox: a stand-in for Meta and Shopify on 127.0.0.1, for `salesbot demo`, tests and
//! benchmarks. Nothing in the production code paths refers to it; salesbot reaches it only
//! through the URL settings (`FACEBOOK_GRAPH_URL`, `FACEBOOK_DIALOG_URL`, `SHOPIFY_SHOP_URL`),
//! exactly as it would reach Meta and Shopify.
//!
//! - [`world`]: the pages, customers and histories it serves, and injectable faults.
//! - `graph`: the Graph API endpoints salesbot calls, with Meta's paging and error shapes, and
//!   the Facebook Login dialog.
//! - `shopify`: the install page, the signed redirect back, tokens and GraphQL.

mod graph;
mod shopify;
pub mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

pub use graph::graph_time;
pub use world::World;

/// One request the sandbox answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub at: Instant,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The app credentials the sandbox expects, as the real consoles would hold them.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub shopify_api_key: String,
    pub shopify_api_secret: String,
}

impl Default for AppCredentials {
    fn default() -> Self {
        AppCredentials {
            shopify_api_key: "demo-shopify-key".into(),
            shopify_api_secret: "demo-shopify-secret".into(),
        }
    }
}

struct State {
    world: Mutex<World>,
    shopify: shopify::Credentials,
    calls: Mutex<Vec<Call>>,
    base: String,
    /// Added before every answer, to model a provider's latency.
    latency: Duration,
}

#[derive(Clone)]
pub struct Sandbox {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Sandbox {
    /// Serves `world` on a free port of 127.0.0.1 until the runtime stops.
    pub async fn start(world: World, latency: Duration) -> std::io::Result<Sandbox> {
        Sandbox::start_with(world, latency, AppCredentials::default()).await
    }

    pub async fn start_with(
        world: World,
        latency: Duration,
        credentials: AppCredentials,
    ) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            world: Mutex::new(world),
            shopify: shopify::Credentials {
                api_key: credentials.shopify_api_key,
                api_secret: credentials.shopify_api_secret.into(),
            },
            calls: Mutex::new(Vec::new()),
            base: format!("http://{addr}"),
            latency,
        });
        let handler_state = Arc::clone(&state);
        let app = Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let state = Arc::clone(&handler_state);
            async move { dispatch(&state, method, uri, body).await }
        });
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "sandbox stopped");
            }
        });
        Ok(Sandbox { addr, state })
    }

    /// `http://127.0.0.1:<port>`: the value for `FACEBOOK_GRAPH_URL` and `FACEBOOK_DIALOG_URL`.
    pub fn url(&self) -> String {
        self.state.base.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The world, to read or change (add messages, revoke a token, inject faults).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.state.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// An 8×8 blue PNG: the photo a demo customer sends.
pub const PHOTO: &[u8] = include_bytes!("photo.png");

async fn dispatch(state: &State, method: Method, uri: Uri, body: Bytes) -> Response {
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    state
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Call {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: query.clone(),
            at: Instant::now(),
        });
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match segments.split_first() {
        Some((&"shops", [shop, "admin", rest @ ..])) => {
            shopify::answer(&state.shopify, method.as_str(), shop, rest, &query, &body)
        }
        // Meta's CDN, where attachment links point: one customer photo.
        Some((&"cdn", [_, ..])) => (
            [(axum::http::header::CONTENT_TYPE, "image/png")],
            PHOTO.to_vec(),
        )
            .into_response(),
        Some((_version, ["dialog", "oauth"])) => graph::dialog(&query),
        Some((_version, ["dialog", "approve"])) => graph::approve(&query),
        Some((version, rest)) if version.starts_with('v') => {
            let request = graph::Request {
                method: method.as_str(),
                segments: rest.to_vec(),
                query: &query,
                base: &format!("{}/{version}", state.base),
            };
            let mut world = state.world.lock().unwrap_or_else(|p| p.into_inner());
            graph::answer(&mut world, &request)
        }
        _ => (StatusCode::NOT_FOUND, "sandbox: no such endpoint").into_response(),
    }
}

/// The first value of query parameter `name`, or "" when absent.
fn query_param<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A small HTML page with one button, standing in for a provider's consent screen.
fn consent_page(title: &str, detail: &str, approve_href: &str, button: &str) -> String {
    let (title, detail, href, button) = (
        shopify::escape(title),
        shopify::escape(detail),
        shopify::escape(approve_href),
        shopify::escape(button),
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:4rem auto}}a.button{{display:inline-block;padding:.6rem 1.2rem;background:#1877f2;color:#fff;border-radius:6px;text-decoration:none}}</style>\
         </head><body><h1>{title}</h1><p>{detail}</p><p>This is salesbot's sandbox, standing in for the real consent page.</p>\
         <p><a id=\"approve\" class=\"button\" href=\"{href}\">{button}</a></p></body></html>"
    )
}

/// Delivers a webhook event as Meta does: JSON body, signed with the app secret.
pub async fn deliver_webhook(
    http: &reqwest::Client,
    url: &str,
    payload: &serde_json::Value,
    app_secret: &secrecy::SecretString,
) -> Result<u16, String> {
    let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let mut request = http.post(url).header("content-type", "application/json");
    for (name, value) in crate::facebook::webhook::signature::sign(&body, app_secret) {
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(crate::outbound::describe)?;
    Ok(response.status().as_u16())
}
