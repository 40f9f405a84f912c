//! A stand-in for Meta (Graph API, OAuth dialog) and Shopify on 127.0.0.1, recording every
//! request so tests can assert what salesbot sent, and where.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone)]
pub struct FakePage {
    pub id: String,
    pub name: String,
    pub token: String,
}

/// What the stand-in answers; tests change it before driving the flow.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub shopify_expires_in: Option<i64>,
    pub graphql_429s: u32,
    pub refresh_fails: bool,
    pub pages: Vec<FakePage>,
    /// Pages that already have this app subscribed with `name`.
    pub subscribed: HashSet<String>,
    /// How Shopify answers the install's `app/uninstalled` subscription.
    pub uninstall_subscription: Subscribing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribing {
    Created,
    AlreadyTaken,
    Forbidden,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            shopify_expires_in: Some(3600),
            graphql_429s: 0,
            refresh_fails: false,
            pages: vec![
                FakePage {
                    id: "101".into(),
                    name: "Demo Page".into(),
                    token: "EAAPAGE101SECRETTOKEN".into(),
                },
                FakePage {
                    id: "202".into(),
                    name: "Second Page".into(),
                    token: "EAAPAGE202SECRETTOKEN".into(),
                },
            ],
            subscribed: HashSet::from(["202".to_string()]),
            uninstall_subscription: Subscribing::Created,
        }
    }
}

#[derive(Default)]
struct Inner {
    log: Mutex<Vec<Recorded>>,
    scenario: Mutex<Scenario>,
    graphql_calls: Mutex<u32>,
    refreshes: Mutex<u32>,
}

#[derive(Clone)]
pub struct StandIn {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl StandIn {
    pub async fn start() -> StandIn {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler_inner = Arc::clone(&inner);
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let inner = Arc::clone(&handler_inner);
                async move { answer(&inner, addr, method, uri, headers, body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, change: impl FnOnce(&mut Scenario)) {
        change(&mut self.inner.scenario.lock().unwrap());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path_suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .collect()
    }

    /// The Admin GraphQL requests, apart from the install's webhook subscription.
    pub fn shop_queries(&self) -> Vec<Recorded> {
        self.requests_to("/graphql.json")
            .into_iter()
            .filter(|r| !is_subscription(r))
            .collect()
    }

    /// The install's `webhookSubscriptionCreate` requests.
    pub fn webhook_subscriptions(&self) -> Vec<Recorded> {
        self.requests_to("/graphql.json")
            .into_iter()
            .filter(is_subscription)
            .collect()
    }

    /// Every token exchange (Shopify or Facebook) the stand-in has seen.
    pub fn token_exchanges(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/oauth/access_token"))
            .collect()
    }

    /// Every secret-looking value this stand-in has handed out, to search for leaks.
    pub fn issued_secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .inner
            .scenario
            .lock()
            .unwrap()
            .pages
            .iter()
            .map(|p| p.token.clone())
            .collect();
        for r in self.token_exchanges() {
            if let Some(code) = r.param("code") {
                secrets.push(short_token(code));
                secrets.push(long_token(&short_token(code)));
            }
            if let Some(code) = r.json()["code"].as_str() {
                secrets.push(shopify_token(code));
                secrets.push(shopify_refresh(code));
            }
        }
        for n in 1..=*self.inner.refreshes.lock().unwrap() {
            secrets.push(format!("shpat_refreshed_{n}_SECRET"));
        }
        secrets
    }
}

fn is_subscription(r: &Recorded) -> bool {
    r.body.contains("webhookSubscriptionCreate")
}

pub fn short_token(code: &str) -> String {
    format!("EAASHORT{code}SECRET")
}
pub fn long_token(short: &str) -> String {
    format!("EAALONG{short}")
}
pub fn shopify_token(code: &str) -> String {
    format!("shpat_{code}_SECRET")
}
pub fn shopify_refresh(code: &str) -> String {
    format!("shprt_{code}_SECRET")
}

fn answer(
    inner: &Inner,
    addr: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    inner.log.lock().unwrap().push(recorded.clone());
    let scenario = inner.scenario.lock().unwrap().clone();
    let path = recorded.path.as_str();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    let graph_error = |status: StatusCode, code: i64, message: &str| {
        (status, axum::Json(json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "StandInTrace"}}))).into_response()
    };

    match (method.as_str(), segments.as_slice()) {
        // Shopify: /shops/{shop}/admin/...
        ("POST", ["shops", _shop, "admin", "oauth", "access_token"]) => {
            let body = recorded.json();
            if body["grant_type"] == "refresh_token" {
                if scenario.refresh_fails {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": "invalid_grant"})),
                    )
                        .into_response();
                }
                let mut n = inner.refreshes.lock().unwrap();
                *n += 1;
                return ok(json!({
                    "access_token": format!("shpat_refreshed_{n}_SECRET"),
                    "scope": "read_products",
                    "expires_in": 3600,
                    "refresh_token": format!("shprt_refreshed_{n}_SECRET"),
                    "refresh_token_expires_in": 7_776_000,
                }));
            }
            let code = body["code"].as_str().unwrap_or_default().to_string();
            let mut grant = json!({"access_token": shopify_token(&code), "scope": "read_products,read_inventory"});
            if let Some(expires) = scenario.shopify_expires_in {
                grant["expires_in"] = json!(expires);
                grant["refresh_token"] = json!(shopify_refresh(&code));
                grant["refresh_token_expires_in"] = json!(7_776_000);
            }
            ok(grant)
        }
        ("POST", ["shops", _shop, "admin", "api", _version, "graphql.json"])
            if is_subscription(&recorded) =>
        {
            match scenario.uninstall_subscription {
                Subscribing::Created => ok(json!({"data": {"webhookSubscriptionCreate": {
                    "webhookSubscription": {"id": "gid://shopify/WebhookSubscription/1"},
                    "userErrors": []}}})),
                Subscribing::AlreadyTaken => ok(json!({"data": {"webhookSubscriptionCreate": {
                    "webhookSubscription": null,
                    "userErrors": [{"field": ["webhookSubscription", "callbackUrl"],
                        "message": "Address for this topic has already been taken"}]}}})),
                Subscribing::Forbidden => (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({"errors": "[API] This action requires merchant approval"})),
                )
                    .into_response(),
            }
        }
        ("POST", ["shops", _shop, "admin", "api", _version, "graphql.json"]) => {
            let mut calls = inner.graphql_calls.lock().unwrap();
            *calls += 1;
            if *calls <= scenario.graphql_429s {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "0")],
                    "Throttled",
                )
                    .into_response();
            }
            ok(
                json!({"data": {"shop": {"name": "Demo Store", "email": "owner@example.com"}, "products": {"edges": []}}}),
            )
        }
        // Graph: /v25.0/...
        ("GET", [_v, "oauth", "access_token"]) => {
            if recorded.param("grant_type") == Some("fb_exchange_token") {
                let short = recorded.param("fb_exchange_token").unwrap_or_default();
                return ok(
                    json!({"access_token": long_token(short), "token_type": "bearer", "expires_in": 5_183_944}),
                );
            }
            match recorded.param("code") {
                Some(code) if !code.trim().is_empty() => ok(
                    json!({"access_token": short_token(code), "token_type": "bearer", "expires_in": 5400}),
                ),
                _ => graph_error(StatusCode::BAD_REQUEST, 100, "Missing code"),
            }
        }
        ("GET", [v, "me", "accounts"]) => {
            let after: usize = recorded
                .param("after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let token = recorded
                .param("access_token")
                .unwrap_or_default()
                .to_string();
            let data: Vec<Value> = scenario.pages.iter().skip(after).take(1).map(|p| json!({
                "id": p.id, "name": p.name, "category": "Shopping & retail", "access_token": p.token,
                "tasks": ["ADVERTISE", "MESSAGING"],
            })).collect();
            let mut paging = json!({"cursors": {"before": format!("c{after}"), "after": format!("c{}", after + 1)}});
            if after + 1 < scenario.pages.len() {
                paging["next"] = json!(format!(
                    "http://{addr}/{v}/me/accounts?access_token={token}&after={}",
                    after + 1
                ));
            }
            ok(json!({"data": data, "paging": paging}))
        }
        ("GET", [_v, page, "subscribed_apps"]) => {
            if scenario.subscribed.contains(*page) {
                ok(
                    json!({"data": [{"id": "1", "name": "salesbot", "subscribed_fields": ["name", "category", "messages"]}]}),
                )
            } else {
                ok(json!({"data": []}))
            }
        }
        ("POST", [_v, page, "subscribed_apps"]) => {
            inner
                .scenario
                .lock()
                .unwrap()
                .subscribed
                .insert(page.to_string());
            ok(json!({"success": true}))
        }
        ("GET", [_v, _page, "conversations"]) => ok(json!({"data": []})),
        ("GET", [_v, page]) => match scenario.pages.iter().find(|p| p.id == *page) {
            Some(p) if recorded.param("access_token") == Some(p.token.as_str()) => ok(json!({
                "id": p.id, "name": p.name, "category": "Shopping & retail", "fan_count": 42,
                "link": format!("https://www.facebook.com/{}", p.id),
            })),
            _ => graph_error(StatusCode::BAD_REQUEST, 190, "Invalid OAuth access token."),
        },
        ("POST", ["webhook"]) => ok(json!({"status": "success"})),
        _ => (StatusCode::NOT_FOUND, "stand-in: no such endpoint").into_response(),
    }
}
