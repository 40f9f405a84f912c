//! What the operator reads: `GET /metrics` (Prometheus) and `GET /status` (JSON, or a plain
//! HTML page for a browser), behind `ADMIN_TOKEN`. Without the setting they answer 404, as if
//! they did not exist.

mod bearer;
pub mod status;

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use axum_extra::extract::cookie::{Cookie, SameSite};

use crate::http::ApiError;
use crate::http::html::{escape, page, wants_html};
use crate::state::AppState;
use crate::telemetry::metrics;
use bearer::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/status/login", post(login))
}

/// The counters, and the gauges read from the stores now.
async fn metrics(_: Admin, State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let needing_reauth = app.poller.state().needing_reauth().await?.len();
    let text = app.metrics.render(needing_reauth);
    Ok(([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}

async fn status(
    admin: Result<Admin, ApiError>,
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let html = wants_html(&headers);
    match admin {
        Ok(Admin) => {}
        // A browser without the cookie is asked for the token.
        Err(ApiError::Unauthorized(_)) if html => {
            return Ok(login_page(StatusCode::UNAUTHORIZED, ""));
        }
        Err(err) => return Err(err),
    }
    let report = status::gather(&app).await?;
    if !html {
        return Ok(Json(report).into_response());
    }
    let attachments = report
        .attachments_pending
        .map_or_else(|| "off".to_string(), |n| n.to_string());
    let body = format!(
        "<p>Generated {}. Next poll: {}. Attachments pending: {}.</p>\
         <h2>Shops</h2>{}<h2>Pages</h2>{}",
        escape(&status::when(Some(report.generated_at))),
        escape(&status::when(report.next_poll)),
        escape(&attachments),
        status::html_table(status::SHOP_HEADERS, &status::shop_rows(&report)),
        status::html_table(status::PAGE_HEADERS, &status::page_rows(&report)),
    );
    Ok(page(StatusCode::OK, "Status", &body))
}

fn login_page(code: StatusCode, note: &str) -> Response {
    let body = format!(
        "{note}<form method=\"post\" action=\"/status/login\">\
         <label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
         <button type=\"submit\">Show the status</button></form>"
    );
    page(code, "Status: sign in", &body)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// The token typed into the form: a cookie that proves it (see `bearer`), then the status.
async fn login(State(app): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &app.config.admin_token else {
        return ApiError::NotFound.into_response();
    };
    if !bearer::is_token(token, &form.token) {
        tracing::warn!("status sign-in with a wrong admin token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            "<p><strong>That is not the admin token.</strong></p>",
        );
    }
    let cookie = Cookie::build((bearer::COOKIE_NAME, bearer::cookie_value(token)))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.cookies_secure())
        .build();
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/status".to_string()),
            (SET_COOKIE, cookie.to_string()),
        ],
    )
        .into_response()
}
