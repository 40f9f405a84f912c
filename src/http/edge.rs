//! What every request passes through, in one service around the whole router: a request id
//! (kept from the caller or made here, echoed in the answer), secret headers marked as such, a
//! timeout, and one access-log line.
//!
//! Why one hand-written service instead of tower-http's layers and `middleware::from_fn`: the
//! six layers, applied by `Router::layer` to every route, cost about a third of the webhook's
//! CPU (each request cloned and boxed the layered route twice, boxed `Next` and its future,
//! and polled through six futures; BENCHMARKS.md, fifth session of 2026-11-27). Around the router,
//! this is one clone of an `Arc` and one boxed future per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_service::Service;
use tracing::Instrument;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Well above anything a route should take; Meta itself gives up on a webhook after 5 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers whose values are secrets: marked sensitive, so no `Debug` of a request shows them.
const SECRET_REQUEST_HEADERS: [HeaderName; 4] = [
    AUTHORIZATION,
    COOKIE,
    HeaderName::from_static("x-hub-signature"),
    HeaderName::from_static("x-hub-signature-256"),
];

/// The router (or any service) with the edge around it.
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
}

impl<S> Edge<S> {
    pub fn new(inner: S) -> Edge<S> {
        Edge { inner }
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        mark_sensitive(request.headers_mut(), &SECRET_REQUEST_HEADERS);
        let id = request_id(request.headers_mut());
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        // What a handler logs carries the request's id through a span at DEBUG: a span per
        // request at INFO cost ~3% of the webhook's CPU, so it is built only when debugging.
        let span = tracing::debug_span!("request", request_id = %text(&id));
        // The service polled ready is the one that must be called; a fresh clone stays here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let answer = inner.call(request).instrument(span);
        Box::pin(async move {
            let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
            };
            mark_sensitive(response.headers_mut(), &[SET_COOKIE]);
            if !response.headers().contains_key(REQUEST_ID) {
                response.headers_mut().insert(REQUEST_ID, id.clone());
            }
            log(&method, uri.path(), response.status(), started, &id);
            Ok(response)
        })
    }
}

/// One line per request once it is answered (`salesbot::access`, INFO; ERROR for a 5xx), with
/// the path only: query strings carry OAuth codes and states, which must not reach the logs.
fn log(
    method: &axum::http::Method,
    path: &str,
    status: StatusCode,
    started: Instant,
    id: &HeaderValue,
) {
    let latency = started.elapsed();
    let (code, id) = (status.as_u16(), text(id));
    if status.is_server_error() {
        tracing::error!(target: "salesbot::access", %method, path = %path, status = code, ?latency, request_id = %id, "request");
    } else {
        tracing::info!(target: "salesbot::access", %method, path = %path, status = code, ?latency, request_id = %id, "request");
    }
}

fn text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

fn mark_sensitive(headers: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        if let axum::http::header::Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// The caller's `x-request-id` if it sent one, else a new one, set on the request so that
/// handlers see it too.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(REQUEST_ID) {
        return id.clone();
    }
    let id = random_id();
    headers.insert(REQUEST_ID, id.clone());
    id
}

/// A random (v4) UUID from the thread's generator: `uuid`'s own v4 asks the kernel for each
/// one, a system call per request.
fn random_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| random_id().to_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(id, &parsed.hyphenated().to_string());
        }
    }

    #[test]
    fn a_callers_request_id_is_kept_and_a_missing_one_is_made() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("req-7"));
        assert_eq!(request_id(&mut headers), "req-7");
        let mut headers = HeaderMap::new();
        let made = request_id(&mut headers);
        assert_eq!(headers.get(REQUEST_ID), Some(&made));
    }

    #[test]
    fn secret_headers_are_marked_sensitive_and_others_are_not() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("session=abc"));
        headers.insert("x-hub-signature-256", HeaderValue::from_static("sha256=00"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        mark_sensitive(&mut headers, &SECRET_REQUEST_HEADERS);
        assert!(headers[COOKIE].is_sensitive());
        assert!(headers["x-hub-signature-256"].is_sensitive());
        assert!(!headers["accept"].is_sensitive());
        assert_eq!(format!("{:?}", headers[COOKIE]), "Sensitive");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_outlives_the_timeout_is_answered_408_with_its_id() {
        let slow = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
                "too late"
            }),
        );
        let request = Request::builder()
            .uri("/")
            .header(REQUEST_ID, "req-9")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = Edge::new(slow).call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()[REQUEST_ID], "req-9");
    }
}
