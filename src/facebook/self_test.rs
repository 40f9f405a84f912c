//! The original's self-tests, run inside `/facebook/callback` when `OAUTH_SELF_TEST` is on:
//! a signed metadata webhook and a signed message webhook posted to `FACEBOOK_WEBHOOK_ADDRESS`,
//! then a metadata poll and a conversation poll of the page. Each reports
//! `{"status":"success"}` or `{"status":"error","message"}`; none fails the callback.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;

use crate::domain::PageId;
use crate::http::AppState;
use crate::outbound;

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
    // The sender id and mid are the original's, so its file is `test_user_id.json`.
    let message = json!({
        "object": "page",
        "entry": [{"id": page.as_str(), "messaging": [{
            "sender": {"id": "test_user_id"},
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
    let metadata = async {
        let fields = app
            .graph
            .page_metadata(page, token)
            .await
            .map_err(|e| e.to_string())?;
        app.files
            .write_metadata(page, &fields)
            .await
            .map_err(|e| e.to_string())
    };
    vec![
        result(page, "metadata", metadata.await),
        result(
            page,
            "conversations",
            Err("conversation polling is not available in this version".to_string()),
        ),
    ]
}

async fn post_webhook(app: &AppState, payload: &Value) -> Result<(), String> {
    let body = serde_json::to_vec(payload).expect("a Value serialises");
    let secret = app.config.facebook.app_secret.expose_secret().as_bytes();
    let mut sha256 = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    sha256.update(&body);
    let mut sha1 = Hmac::<Sha1>::new_from_slice(secret).expect("any key length");
    sha1.update(&body);
    let response = app
        .http
        .post(app.config.facebook.webhook_address.clone())
        .header("content-type", "application/json")
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(sha256.finalize().into_bytes())),
        )
        .header(
            "X-Hub-Signature",
            format!("sha1={}", hex::encode(sha1.finalize().into_bytes())),
        )
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
