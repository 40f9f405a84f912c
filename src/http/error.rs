//! The HTTP layer's one error type, answered as `{"detail": ...}` like the original (FastAPI).
//!
//! The client's mistakes are explained to it and not logged as errors; our own failures are
//! logged with their whole cause chain inside the request span, and the client only learns
//! that something went wrong on our side. No variant ever carries a token or a secret.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Not Found")]
    NotFound,
    #[error("Request body too large")]
    PayloadTooLarge,
    /// A provider (Meta, Shopify) failed; the message names the step, never a token.
    #[error("{0}")]
    BadGateway(String),
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            // The database is out of reach: a retry later may succeed (Meta redelivers).
            ApiError::Store(err) if err.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Store(err) if err.is_unavailable() => {
                tracing::error!(error = %chain(&self), "request failed: storage unavailable");
                "Service temporarily unavailable; try again".to_string()
            }
            ApiError::Store(_) | ApiError::Internal(_) => {
                tracing::error!(error = %chain(&self), "request failed");
                "Internal server error".to_string()
            }
            ApiError::BadGateway(_) => {
                tracing::warn!(error = %self, "upstream failed");
                self.to_string()
            }
            _ => {
                tracing::debug!(status = status.as_u16(), detail = %self, "request refused");
                self.to_string()
            }
        };
        (status, Json(json!({ "detail": detail }))).into_response()
    }
}

pub use crate::telemetry::error_chain as chain;

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_a_503_and_a_broken_one_a_500() {
        let down = ApiError::Store(StoreError::Unavailable("connection refused".into()));
        assert_eq!(
            down.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let broken = ApiError::Store(StoreError::Undecryptable { key: "k".into() });
        assert_eq!(
            broken.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
