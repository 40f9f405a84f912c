//! What the operator reads: `GET /metrics` (Prometheus) and `GET /status`, behind
//! `ADMIN_TOKEN`. Without the setting both answer 404, as if they did not exist.

mod bearer;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::http::ApiError;
use crate::state::AppState;
use crate::telemetry::metrics;
use bearer::Admin;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// The counters, and the gauges read from the stores now.
async fn metrics(_: Admin, State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let needing_reauth = app.poller.state().needing_reauth().await?.len();
    let text = app.metrics.render(needing_reauth);
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}
