//! The original's self-tests, run inside `/facebook/callback` when `OAUTH_SELF_TEST` is on:
//! a signed metadata webhook and a signed message webhook posted to `FACEBOOK_WEBHOOK_ADDRESS`,
//! then a metadata poll and a conversation poll of the page. Each reports
//! `{"status":"success"}` or `{"status":"error","message"}`; none fails the callback.
//!
//! The message comes from the reserved sender [`SELF_TEST_SENDER`]: the webhook checks it like
//! any event (signature, payload, page) but stores nothing, so no made-up customer lands in the
//! tree the bot reads (the original left a `test_user_id.json` with "Test message" there).

use secrecy::SecretString;
use serde_json::{Value, json};

use super::metadata;
use super::webhook::{SELF_TEST_SENDER, signature};
use crate::domain::PageId;
use crate::outbound;
use crate::state::AppState;

fn result(page: &PageId, kind: &str, outcome: Result<(), String>) -> Value {
    let result = match outcome {
        Ok(()) => json!({"status": "success"}),
        Err(message) => json!({"status": "error", "message": message}),
    };
    json!({"page_id": page.as_str(), "type": kind, "result": result})
}

/// The two signed webhook posts.
pub async fn webhooks(app: &AppState, page: &PageId) -> Vec<Value> {
    let metadata = json!({
        "object": "page",
        "entry": [{"id": page.as_str(), "changes": [{"field": "name", "value": "Test Page"}]}]
    });
    let message = json!({
        "object": "page",
        "entry": [{"id": page.as_str(), "messaging": [{
            "sender": {"id": SELF_TEST_SENDER},
            "recipient": {"id": page.as_str()},
            "timestamp": 1697051234567_i64,
            "message": {"mid": "test_mid", "text": "Test message"}
        }]}]
    });
    vec![
        result(page, "metadata", post_webhook(app, &metadata).await),
        result(page, "messages", post_webhook(app, &message).await),
    ]
}

/// The metadata poll and the conversation poll of one page.
pub async fn polls(app: &AppState, page: &PageId, token: &SecretString) -> Vec<Value> {
    let metadata = metadata::refresh(&app.graph, &app.metadata, page, token);
    vec![
        result(page, "metadata", metadata.await.map_err(|e| e.to_string())),
        result(
            page,
            "conversations",
            app.poller
                .poll_page(page, token)
                .await
                .result
                .map(|_| ())
                .map_err(|f| f.reason),
        ),
    ]
}

async fn post_webhook(app: &AppState, payload: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(payload).expect("a Value serialises");
    let mut request = app
        .http
        .post(app.config.facebook.webhook_address.clone())
        .header("content-type", "application/json");
    for (name, value) in signature::sign(&body, &app.config.facebook.app_secret) {
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(outbound::describe)?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "webhook answered HTTP {}: {}",
            status.as_u16(),
            text.chars().take(200).collect::<String>()
        ))
    }
}
