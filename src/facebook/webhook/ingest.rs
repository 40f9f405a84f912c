//! Where a webhook event is turned into a file line: each `messaging` event of a payload is
//! assigned to the conversation it belongs to, and `changes` mark pages whose metadata is due.
//!
//! The customer is the sender, except for the page's own replies (echoes), which belong to the
//! recipient's history, as the poll stores them. Entries of unknown pages and events with ids
//! that cannot be file names are logged and skipped; the rest of the batch still counts.
//!
//! Events of [`SELF_TEST_SENDER`] are the OAuth self-test's (`facebook::self_test`): counted,
//! never stored, so the bot never meets a customer who does not exist.

use serde_json::value::RawValue;

use super::raw_json::{elements, is_json, members, text};
use crate::domain::{PageId, SenderId};
use crate::facebook::pages::PageDirectory;
use crate::store::{MessagingEvent, StoreError};

/// The sender of the self-test's message (the original's id). Meta's ids are numbers, so no
/// real customer has it.
pub const SELF_TEST_SENDER: &str = "test_user_id";

/// One conversation's share of a payload.
pub struct ConversationEvents {
    pub page: PageId,
    pub customer: SenderId,
    pub events: Vec<MessagingEvent>,
}

#[derive(Default)]
pub struct Batch {
    pub conversations: Vec<ConversationEvents>,
    pub changed_pages: Vec<PageId>,
    /// Self-test events for connected pages: checked like any other, not stored.
    pub self_tests: usize,
}

/// Why a body is not a webhook payload.
#[derive(Debug, PartialEq)]
pub enum NotAPayload {
    NotJson,
    NotAPageObject,
}

/// The entries of a payload whose `object` is `page`, still raw.
pub fn entries(body: &[u8]) -> Result<Vec<&RawValue>, NotAPayload> {
    let json = std::str::from_utf8(body).map_err(|_| NotAPayload::NotJson)?;
    let Some([object, entry]) = members(json, ["object", "entry"]) else {
        return Err(match is_json(json) {
            true => NotAPayload::NotAPageObject,
            false => NotAPayload::NotJson,
        });
    };
    if text(object).as_deref() != Some("page") {
        return Err(NotAPayload::NotAPageObject);
    }
    Ok(elements(entry))
}

/// Sorts the events of `entries` into their conversations; each is kept as the bytes sent.
pub async fn sort(entries: Vec<&RawValue>, pages: &PageDirectory) -> Result<Batch, StoreError> {
    let mut batch = Batch::default();
    for entry in entries {
        let [id, messaging, changes] =
            members(entry.get(), ["id", "messaging", "changes"]).unwrap_or_default();
        let raw = id_text(id);
        let Ok(page) = PageId::parse(&raw) else {
            tracing::warn!(page = ?raw, "webhook entry with an invalid page id skipped");
            continue;
        };
        if !pages.is_connected(&page).await? {
            tracing::warn!(page = %page, "webhook entry for a page that is not connected skipped");
            continue;
        }
        for event in elements(messaging) {
            let stored = MessagingEvent::from_json(event.get().as_bytes());
            match stored.zip(customer_of(&page, event)) {
                Some((_, customer)) if customer.as_str() == SELF_TEST_SENDER => {
                    batch.self_tests += 1;
                }
                Some((stored, customer)) => add(&mut batch.conversations, &page, customer, stored),
                None => {
                    tracing::warn!(page = %page, "messaging event without a usable sender/recipient id skipped")
                }
            }
        }
        if !elements(changes).is_empty() && !batch.changed_pages.contains(&page) {
            batch.changed_pages.push(page);
        }
    }
    Ok(batch)
}

fn add(
    conversations: &mut Vec<ConversationEvents>,
    page: &PageId,
    customer: SenderId,
    event: MessagingEvent,
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

fn customer_of(page: &PageId, event: &RawValue) -> Option<SenderId> {
    let [sender, recipient] = members(event.get(), ["sender", "recipient"])?;
    let id_of = |party: Option<&RawValue>| {
        let [id] = party.and_then(|party| members(party.get(), ["id"]))?;
        Some(id_text(id))
    };
    let sender = id_of(sender).unwrap_or_default();
    let customer = if sender == page.as_str() {
        id_of(recipient).unwrap_or_default()
    } else {
        sender
    };
    SenderId::parse(&customer).ok()
}

/// Meta sends ids as strings; tolerate numbers too.
fn id_text(json: Option<&RawValue>) -> String {
    if let Some(text) = text(json) {
        return text.into_owned();
    }
    json.and_then(|json| serde_json::from_str::<serde_json::Number>(json.get()).ok())
        .map(|number| number.to_string())
        .unwrap_or_default()
}
