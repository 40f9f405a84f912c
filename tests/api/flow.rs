//! The browser's part of the OAuth flows, step by step, for tests to drive and tamper with.

use reqwest::Response;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use salesbot::shopify::signature;
use salesbot::store::unix_now;
use secrecy::SecretString;
use serde_json::Value;
use url::Url;

use crate::helpers::TestApp;

/// The value of cookie `name` set by `response`, with its attributes.
pub fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// Just `value` of `name=value; ...`.
pub fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_string()
}

/// A cookie value as the server reads it (the cookie crate percent-encodes what it sets).
pub fn decoded(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned()
}

pub fn location(response: &Response) -> Url {
    Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap()
}

pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub struct Started {
    pub state: String,
    pub state_cookie: String,
    pub redirect: Url,
}

/// A login's answer: a 307 to the provider, with the state also set in cookie `cookie`.
async fn started(response: Response, cookie: &str) -> Started {
    assert_eq!(response.status(), 307, "{:?}", response.text().await);
    let redirect = location(&response);
    let cookie = set_cookie(&response, cookie).expect("state cookie");
    Started {
        state: query_param(&redirect, "state").unwrap(),
        state_cookie: cookie_value(&cookie),
        redirect,
    }
}

pub async fn shopify_login(app: &TestApp, shop_name: &str) -> Started {
    let response = app
        .client
        .get(app.url(&format!("/shopify/{shop_name}/login")))
        .send()
        .await
        .unwrap();
    started(response, "shopify_oauth_state").await
}

/// The query Shopify would send back: `params` plus a fresh timestamp, signed with the app secret.
pub fn signed_shopify_query(params: &[(&str, &str)]) -> String {
    let ts = unix_now().to_string();
    signed_shopify_query_at(params, &ts)
}

pub fn signed_shopify_query_at(params: &[(&str, &str)], timestamp: &str) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("timestamp".into(), timestamp.into()));
    let hmac = signature::sign(&pairs, &SecretString::from("test-shopify-secret"));
    pairs.push(("hmac".into(), hmac));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A GET to the app carrying `cookies`, as the browser would send them.
pub async fn get_with_cookies(app: &TestApp, path: &str, cookies: &[(&str, &str)]) -> Response {
    let mut request = app.client.get(app.url(path));
    if !cookies.is_empty() {
        let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        request = request.header(COOKIE, header.join("; "));
    }
    request.send().await.unwrap()
}

pub async fn shopify_callback(app: &TestApp, query: &str, cookies: &[(&str, &str)]) -> Response {
    get_with_cookies(app, &format!("/shopify/callback?{query}"), cookies).await
}

pub struct Connected {
    pub user: String,
    pub session: String,
    pub body: Value,
}

/// Login, consent and callback for `shop`, with Shopify's `code`.
pub async fn connect_shop(app: &TestApp, shop: &str, code: &str) -> Connected {
    let started = shopify_login(app, shop).await;
    let host = format!("{shop}.myshopify.com");
    let query = signed_shopify_query(&[("code", code), ("shop", &host), ("state", &started.state)]);
    let response = shopify_callback(
        app,
        &query,
        &[("shopify_oauth_state", &started.state_cookie)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let session = cookie_value(&set_cookie(&response, "session_id").expect("session cookie"));
    let body: Value = response.json().await.unwrap();
    Connected {
        user: body["user_uuid"].as_str().unwrap().to_string(),
        session,
        body,
    }
}

pub async fn facebook_login(app: &TestApp, session: Option<&str>) -> Response {
    let cookies: Vec<(&str, &str)> = session.map(|s| ("session_id", s)).into_iter().collect();
    get_with_cookies(app, "/facebook/login", &cookies).await
}

/// Facebook login with a session; the dialog URL and the state cookie.
pub async fn facebook_start(app: &TestApp, session: &str) -> Started {
    let response = facebook_login(app, Some(session)).await;
    started(response, "facebook_oauth_state").await
}

pub async fn facebook_callback(app: &TestApp, query: &str, cookies: &[(&str, &str)]) -> Response {
    get_with_cookies(app, &format!("/facebook/callback?{query}"), cookies).await
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The Facebook step for the merchant of `session`, Meta answering `code`: the callback's answer.
pub async fn connect_pages(app: &TestApp, session: &str, code: &str) -> Response {
    let s = facebook_start(app, session).await;
    facebook_callback(
        app,
        &form(&[("code", code), ("state", &s.state)]),
        &[
            ("facebook_oauth_state", &s.state_cookie),
            ("session_id", session),
        ],
    )
    .await
}
