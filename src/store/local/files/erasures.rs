//! The erasure marks of the files (`conversations/.salesbot/<sender_id>.erased`), listed and
//! written for `salesbot migrate`, which carries them between backends with the conversations.

use super::FileStore;
use super::atomic::{ensure_dir, write_atomic};
use super::conversation::erased_at;
use crate::domain::{PageId, SenderId};
use crate::store::StoreError;

/// One customer erased, and when (Unix milliseconds).
pub type Erasure = (PageId, SenderId, i64);

impl FileStore {
    /// Every erasure mark, sorted.
    pub fn erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        let marked = self.customers_named(
            |page| self.conversations_dir(page).join(".salesbot"),
            ".erased",
        )?;
        let mut found = Vec::new();
        for (page, customer) in marked {
            if let Some(at) = erased_at(&self.conversation_paths(&page, &customer))? {
                found.push((page, customer, at));
            }
        }
        Ok(found)
    }

    /// Marks a customer erased at `at_ms`, unless a later erasure is marked already.
    pub async fn record_erasure(
        &self,
        page: &PageId,
        customer: &SenderId,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let paths = self.conversation_paths(page, customer);
        tokio::task::spawn_blocking(move || {
            if erased_at(&paths)?.is_some_and(|known| known >= at_ms) {
                return Ok(());
            }
            ensure_dir(&paths.lock_dir)?;
            write_atomic(&paths.erased, at_ms.to_string().as_bytes())
        })
        .await?
    }
}
