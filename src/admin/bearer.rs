//! Who may read the operator's routes: `Authorization: Bearer <ADMIN_TOKEN>`, or, for a
//! browser (which cannot send that header from an address bar), the cookie that
//! `POST /status/login` sets once the token was typed into its form. The cookie holds an HMAC
//! of the token, never the token. Both compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::http::ApiError;
use crate::state::AppState;

/// The browser's admin cookie.
pub const COOKIE_NAME: &str = "salesbot_admin";

/// Proof that the request carried the admin token.
pub struct Admin;

/// The cookie's value for `token`: whoever holds it knows the token, and it changes with it.
pub fn cookie_value(token: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.expose_secret().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"salesbot admin browser session v1");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `offered` is the token itself.
pub fn is_token(token: &SecretString, offered: &str) -> bool {
    bool::from(offered.as_bytes().ct_eq(token.expose_secret().as_bytes()))
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Admin, ApiError> {
        let Some(token) = &app.config.admin_token else {
            return Err(ApiError::NotFound);
        };
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if bearer.is_some_and(|offered| is_token(token, offered)) {
            return Ok(Admin);
        }
        let expected = cookie_value(token);
        let cookie_ok = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
            .any(|value| bool::from(value.as_bytes().ct_eq(expected.as_bytes())));
        match cookie_ok {
            true => Ok(Admin),
            false => Err(ApiError::Unauthorized(
                "Send Authorization: Bearer <ADMIN_TOKEN>".into(),
            )),
        }
    }
}
