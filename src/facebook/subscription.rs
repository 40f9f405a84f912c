//! Keeping a page subscribed to this app's webhooks. Meta drops a subscription after about an
//! hour of failed deliveries, so the OAuth callback and every poll check it.

use secrecy::SecretString;
use serde_json::Value;

use super::graph::{GraphClient, GraphError, SUBSCRIBED_FIELDS};
use crate::domain::PageId;

/// Subscribes the page unless an app already is with the `name` field (the original's test).
/// True when a subscription had to be (re)created.
pub async fn ensure(
    graph: &GraphClient,
    page: &PageId,
    token: &SecretString,
) -> Result<bool, GraphError> {
    if is_subscribed(&graph.subscribed_apps(page, token).await?) {
        return Ok(false);
    }
    graph.subscribe(page, token).await?;
    tracing::info!(page = %page, fields = SUBSCRIBED_FIELDS, "webhooks subscribed");
    Ok(true)
}

/// True when one of `subscribed_apps`' entries carries the `name` field (the original's test).
pub fn is_subscribed(apps: &[Value]) -> bool {
    apps.iter().any(|app| {
        app.get("subscribed_fields")
            .and_then(Value::as_array)
            .is_some_and(|fields| fields.iter().any(|f| f == "name"))
    })
}
