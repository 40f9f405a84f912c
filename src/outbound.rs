//! The one HTTP client for calls to Meta and Shopify, and the rules every such call follows.

use std::time::Duration;

/// Redirects are not followed: a provider answering with a redirect must not be able to send
/// our client secret or a token to another host. Timeouts keep a slow provider from holding a
/// request (or the poll) forever.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("salesbot/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with these settings always builds")
}

/// Describes a transport failure without its URL, which may carry a token or a secret in its
/// query string.
pub fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "connection failed".to_string()
    } else {
        crate::http::error_chain(&err)
    }
}
