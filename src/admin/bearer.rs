//! `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::http::ApiError;
use crate::state::AppState;

/// Proof that the request carried the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Admin, ApiError> {
        let Some(token) = &app.config.admin_token else {
            return Err(ApiError::NotFound);
        };
        let offered = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        match bool::from(offered.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            true => Ok(Admin),
            false => Err(ApiError::Unauthorized(
                "Send Authorization: Bearer <ADMIN_TOKEN>".into(),
            )),
        }
    }
}
