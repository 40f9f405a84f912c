//! `GET /` (the original's greeting) and `GET /healthz` (for a load balancer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::http::error_chain as chain;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
}

async fn root() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "message": "Use /facebook/login or /shopify/{shop_name}/login"
    }))
}

/// 200 when both databases answer, 503 otherwise (so a balancer routes around this instance).
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (tokens, sessions) = tokio::join!(state.tokens.ping(), state.sessions.ping());
    match tokens.and(sessions) {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(err) => {
            tracing::error!(error = %chain(&err), "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "detail": "storage is not available"})),
            )
        }
    }
}
