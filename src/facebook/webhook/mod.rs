//! `GET /facebook/webhook` (Meta's verification) and `POST /facebook/webhook` (events).
//!
//! POST: at most 1 MiB; signature checked on the raw bytes before anything is parsed; every
//! messaging event stored whole, deduplicated, in the customer's file; 200 only once all of it
//! is on disk (Meta redelivers anything else, and deduplication absorbs the repeat). Metadata
//! refreshes for `changes` happen after the answer, so Graph latency never delays it.

mod ingest;
mod raw_json;
mod refresh;
pub mod signature;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::task::JoinSet;

use crate::attachments;
use crate::http::ApiError;
use crate::state::AppState;
use crate::store::ConversationStore;
use crate::telemetry::metrics::{Source, WebhookOutcome};

pub use ingest::SELF_TEST_SENDER;
pub use refresh::MetadataRefresher;

/// Meta's payloads are small; this bounds what an unauthenticated caller can make us buffer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/facebook/webhook",
        get(verify)
            .post(receive)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

async fn verify(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let expected = app.config.facebook.verify_token.expose_secret().as_bytes();
    let token_ok = bool::from(param("hub.verify_token").as_bytes().ct_eq(expected));
    if param("hub.mode") == "subscribe" && token_ok {
        tracing::info!("webhook verified by Meta");
        return Ok((
            StatusCode::OK,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            param("hub.challenge").to_string(),
        ));
    }
    Err(ApiError::Forbidden("Verification failed".into()))
}

/// What Meta is answered once a batch is stored (the original's body), made once.
const SUCCESS: &str = r#"{"status":"success"}"#;

/// Answers a delivery and counts how it ended and how long it took.
async fn receive(
    State(app): State<AppState>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let started = std::time::Instant::now();
    let result = handle(&app, request).await;
    let status = match &result {
        Ok(_) => 200,
        Err(err) => err.status().as_u16(),
    };
    app.metrics
        .webhook(WebhookOutcome::of_status(status), started.elapsed());
    result
}

/// The delivery itself: checked, sorted into conversations, stored, its attachments owed.
async fn handle(app: &AppState, request: Request) -> Result<impl IntoResponse + use<>, ApiError> {
    // The headers are taken out rather than extracted, which would copy them all.
    let (mut parts, body) = request.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    let body = Bytes::from_request(Request::from_parts(parts, body), &())
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            _ => ApiError::BadRequest("Cannot read the request body".into()),
        })?;
    if !signature::is_valid(&headers, &body, &app.config.facebook.app_secret) {
        return Err(ApiError::Unauthorized("Invalid HMAC signature".into()));
    }
    let entries = ingest::entries(&body).map_err(|refused| match refused {
        ingest::NotAPayload::NotJson => ApiError::BadRequest("Invalid JSON body".into()),
        ingest::NotAPayload::NotAPageObject => {
            ApiError::BadRequest("Invalid webhook object".into())
        }
    })?;
    let batch = ingest::sort(entries, &app.pages).await?;
    let offered = batch.conversations.iter().map(|c| c.events.len()).sum();
    let owed: Vec<_> = match &app.attachments {
        Some(_) => (batch.conversations.iter())
            .flat_map(|c| attachments::owed_by(&c.page, &c.customer, &c.events))
            .collect(),
        None => Vec::new(),
    };
    let stored = store(&app.conversations, batch.conversations).await?;
    app.metrics.events(Source::Webhook, offered, stored);
    // Owed durably before the answer: a download is never forgotten, even after a SIGKILL.
    if let Some(downloader) = &app.attachments {
        downloader.owe(owed).await?;
    }
    for page in batch.changed_pages {
        app.refresher.request(page);
    }
    tracing::debug!(stored, "webhook batch stored");
    if batch.self_tests > 0 {
        tracing::info!(
            events = batch.self_tests,
            "OAuth self-test message received; not stored"
        );
    }
    Ok(([(CONTENT_TYPE, "application/json")], SUCCESS))
}

/// Writes every conversation of a batch, each in its own task so they proceed together; most
/// deliveries carry one, which is written right here. Returns how many events were new.
async fn store(
    store: &ConversationStore,
    conversations: Vec<ingest::ConversationEvents>,
) -> Result<usize, ApiError> {
    if let [_] = conversations.as_slice() {
        let one = conversations.into_iter().next().expect("one conversation");
        return Ok(store.add(&one.page, &one.customer, one.events).await?);
    }
    let mut writes = JoinSet::new();
    for conversation in conversations {
        let store = store.clone();
        writes.spawn(async move {
            store
                .add(
                    &conversation.page,
                    &conversation.customer,
                    conversation.events,
                )
                .await
        });
    }
    let mut stored = 0;
    while let Some(result) = writes.join_next().await {
        stored += result
            .map_err(|e| ApiError::Internal(format!("a conversation write stopped: {e}")))??;
    }
    Ok(stored)
}
