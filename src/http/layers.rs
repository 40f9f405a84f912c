//! The layers every request passes through: request id, access log, timeout, redaction.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use super::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Well above anything a route should take; Meta itself gives up on a webhook after 5 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn apply(router: Router<AppState>) -> Router<AppState> {
    // The last layer added runs first.
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(middleware::from_fn(access_log))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE]))
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            COOKIE,
            HeaderName::from_static("x-hub-signature"),
            HeaderName::from_static("x-hub-signature-256"),
        ]))
}

/// One line per request once it is answered (`salesbot::access`, INFO; ERROR for a 5xx), with
/// the path only: query strings carry OAuth codes and states, which must not reach the logs.
///
/// What a handler logs carries the request's id through a span at DEBUG: at webhook load, a
/// span per request cost ~3% of the server's CPU and tower-http's `TraceLayer` as a whole ~9%
/// (BENCHMARKS.md), so it is built only when debugging.
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let id = request.headers().get(REQUEST_ID).cloned();
    let id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
    let span = tracing::debug_span!("request", request_id = %id);
    let response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    let latency = started.elapsed();
    let path = uri.path();
    if response.status().is_server_error() {
        tracing::error!(target: "salesbot::access", %method, path = %path, status, ?latency, request_id = %id, "request");
    } else {
        tracing::info!(target: "salesbot::access", %method, path = %path, status, ?latency, request_id = %id, "request");
    }
    response
}

/// A random (v4) UUID per request from the thread's generator: `MakeRequestUuid` asks the
/// kernel for each one, a system call per request.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let request = axum::http::Request::new(());
        let mut make = RandomRequestId;
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                let id = make.make_request_id(&request).expect("an id");
                id.header_value().to_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(id, &parsed.hyphenated().to_string());
        }
    }
}
