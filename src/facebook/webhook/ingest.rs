//! Where a webhook event is turned into a file line: each `messaging` event of a payload is
//! assigned to the conversation it belongs to, and `changes` mark pages whose metadata is due.
//!
//! The customer is the sender, except for the page's own replies (echoes), which belong to the
//! recipient's history, as the poll stores them. Entries of unknown pages and events with ids
//! that cannot be file names are logged and skipped; the rest of the batch still counts.

use serde_json::Value;

use crate::domain::{PageId, SenderId};
use crate::facebook::pages::PageDirectory;
use crate::store::StoreError;

/// One conversation's share of a payload.
pub struct ConversationEvents {
    pub page: PageId,
    pub customer: SenderId,
    pub events: Vec<Value>,
}

#[derive(Default)]
pub struct Batch {
    pub conversations: Vec<ConversationEvents>,
    pub changed_pages: Vec<PageId>,
}

/// Takes the payload apart: its events move into the batch rather than being copied.
pub async fn sort(mut payload: Value, pages: &PageDirectory) -> Result<Batch, StoreError> {
    let mut batch = Batch::default();
    let entries = match payload.get_mut("entry").map(Value::take) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    for mut entry in entries {
        let raw = id_text(entry.get("id"));
        let Ok(page) = PageId::parse(&raw) else {
            tracing::warn!(page = ?raw, "webhook entry with an invalid page id skipped");
            continue;
        };
        if !pages.is_connected(&page).await? {
            tracing::warn!(page = %page, "webhook entry for a page that is not connected skipped");
            continue;
        }
        let events = match entry.get_mut("messaging").map(Value::take) {
            Some(Value::Array(events)) => events,
            _ => Vec::new(),
        };
        for event in events {
            match customer_of(&page, &event) {
                Some(customer) => add(&mut batch.conversations, &page, customer, event),
                None => {
                    tracing::warn!(page = %page, "messaging event without a usable sender/recipient id skipped")
                }
            }
        }
        let has_changes = entry
            .get("changes")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if has_changes && !batch.changed_pages.contains(&page) {
            batch.changed_pages.push(page);
        }
    }
    Ok(batch)
}

fn add(
    conversations: &mut Vec<ConversationEvents>,
    page: &PageId,
    customer: SenderId,
    event: Value,
) {
    match conversations
        .iter_mut()
        .find(|c| &c.page == page && c.customer == customer)
    {
        Some(existing) => existing.events.push(event),
        None => conversations.push(ConversationEvents {
            page: page.clone(),
            customer,
            events: vec![event],
        }),
    }
}

fn customer_of(page: &PageId, event: &Value) -> Option<SenderId> {
    let sender = id_text(event.pointer("/sender/id"));
    let customer = if sender == page.as_str() {
        id_text(event.pointer("/recipient/id"))
    } else {
        sender
    };
    SenderId::parse(&customer).ok()
}

/// Meta sends ids as strings; tolerate numbers too.
fn id_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}
