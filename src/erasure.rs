//! Erasing what we keep of a customer (`salesbot erase`, on request) or of a page (Shopify's
//! `shop/redact`), wherever it is: the conversation, the attachments' files and their download
//! queue, in either backend.

use crate::domain::{PageId, SenderId};
use crate::state::AppState;
use crate::store::{StoreError, TokenKey};

/// What erasing one customer removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub events: usize,
    pub attachment_files: usize,
    /// Download entries (owed, done or given up).
    pub downloads: usize,
}

/// Erases one customer of a page. The time is remembered, so that the poll does not store
/// again what Meta still serves from before it; what the customer writes afterwards is kept.
pub async fn customer(
    app: &AppState,
    page: &PageId,
    customer: &SenderId,
) -> Result<Erased, StoreError> {
    // The queue first: no download of this customer starts once the files are gone.
    let downloads = app.attachment_queue.forget_customer(page, customer).await?;
    let events = app.conversations.erase_customer(page, customer).await?;
    let attachment_files = app.metadata.erase_customer(page, customer).await?;
    tracing::info!(page = %page, customer = %customer, events, attachment_files, downloads, "customer erased");
    Ok(Erased {
        events,
        attachment_files,
        downloads,
    })
}

/// Erases everything of a page: its connection (stopped first, so nothing new arrives while it
/// is emptied), downloads, conversations, tree, poll memory and owner; how many conversations
/// it had.
pub async fn page(app: &AppState, page: &PageId) -> Result<usize, StoreError> {
    app.pages.disconnect(page).await?;
    app.attachment_queue.forget_page(page).await?;
    let conversations = app.conversations.erase_page(page).await?;
    app.metadata.erase_page(page).await?;
    app.poller.state().forget(page).await?;
    app.tokens.delete(&TokenKey::page_uuid(page)).await?;
    Ok(conversations)
}
