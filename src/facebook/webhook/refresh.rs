//! Metadata refreshes requested by `changes` events, run after the webhook has answered.
//!
//! Requests for one page are coalesced: the first schedules a refresh a moment later, those
//! that arrive before it starts ride along, and those that arrive while it runs cause exactly
//! one more. A burst of renames costs one Graph call, not one per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::domain::PageId;
use crate::facebook::graph::GraphClient;
use crate::facebook::metadata;
use crate::facebook::pages::PageDirectory;
use crate::store::MetadataStore;

/// How long a refresh waits for more `changes` of the same page to arrive.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Scheduled,
    Running { again: bool },
}

#[derive(Debug, Clone)]
pub struct MetadataRefresher {
    pending: Arc<Mutex<HashMap<PageId, Pending>>>,
    graph: GraphClient,
    metadata: MetadataStore,
    pages: PageDirectory,
    tasks: TaskTracker,
}

impl MetadataRefresher {
    pub fn new(
        graph: GraphClient,
        metadata: MetadataStore,
        pages: PageDirectory,
        tasks: TaskTracker,
    ) -> Self {
        MetadataRefresher {
            pending: Arc::default(),
            graph,
            metadata,
            pages,
            tasks,
        }
    }

    pub fn request(&self, page: PageId) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(&page) {
            Some(Pending::Scheduled) => {}
            Some(Pending::Running { again }) => *again = true,
            None => {
                pending.insert(page.clone(), Pending::Scheduled);
                let this = self.clone();
                self.tasks.spawn(async move { this.run(page).await });
            }
        }
    }

    async fn run(self, page: PageId) {
        loop {
            tokio::time::sleep(SETTLE).await;
            self.set(&page, Some(Pending::Running { again: false }));
            self.refresh_once(&page).await;
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.get(&page) == Some(&Pending::Running { again: true }) {
                pending.insert(page.clone(), Pending::Scheduled);
            } else {
                pending.remove(&page);
                return;
            }
        }
    }

    async fn refresh_once(&self, page: &PageId) {
        let token = match self.pages.token(page).await {
            Ok(Some(token)) => token,
            Ok(None) => {
                return tracing::warn!(page = %page, "metadata refresh skipped: page no longer connected");
            }
            Err(err) => {
                return tracing::error!(page = %page, error = %err, "metadata refresh: token store failed");
            }
        };
        match metadata::refresh(&self.graph, &self.metadata, page, &token).await {
            Ok(()) => tracing::info!(page = %page, "page metadata refreshed"),
            Err(err) => tracing::warn!(page = %page, error = %err, "page metadata refresh failed"),
        }
    }

    fn set(&self, page: &PageId, state: Option<Pending>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match state {
            Some(state) => pending.insert(page.clone(), state),
            None => pending.remove(page),
        };
    }
}
