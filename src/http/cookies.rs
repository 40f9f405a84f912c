//! The cookies of the OAuth flows: all HttpOnly and SameSite=Lax (sent on the top-level
//! redirect back from Shopify or Meta, not on cross-site subrequests), `Secure` when the app is
//! reached over https.

use axum_extra::extract::cookie::{Cookie, SameSite};
use cookie::time::Duration;

use crate::oauth_state::STATE_MAX_AGE_SECS;
use crate::store::sessions::SESSION_TTL_SECS;

pub const SESSION: &str = "session_id";
pub const SHOPIFY_STATE: &str = "shopify_oauth_state";
pub const FACEBOOK_STATE: &str = "facebook_oauth_state";

fn build(name: &'static str, value: String, max_age: i64, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(Duration::seconds(max_age))
        .build()
}

/// The merchant's browser session, for as long as the server keeps it.
pub fn session(value: &str, secure: bool) -> Cookie<'static> {
    build(SESSION, value.to_string(), SESSION_TTL_SECS, secure)
}

/// The copy of an OAuth state that binds it to this browser, for as long as the state lives.
pub fn state(name: &'static str, value: &str, secure: bool) -> Cookie<'static> {
    build(name, value.to_string(), STATE_MAX_AGE_SECS, secure)
}

/// What clears cookie `name` (same path as when it was set).
pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path("/").build()
}
