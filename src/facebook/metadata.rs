//! Refreshing a page's metadata file from `/{page_id}` with the page's own token (SPEC 8.4).
//! Used by the webhook (`changes` events), the poll and the OAuth self-test.

use secrecy::SecretString;

use super::graph::{GraphClient, GraphError};
use crate::domain::PageId;
use crate::store::{MetadataStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("reading page metadata failed: {0}")]
    Graph(#[from] GraphError),
    #[error("writing page metadata failed: {0}")]
    Store(#[from] StoreError),
}

pub async fn refresh(
    graph: &GraphClient,
    metadata: &MetadataStore,
    page: &PageId,
    token: &SecretString,
) -> Result<(), MetadataError> {
    let fields = graph.page_metadata(page, token).await?;
    metadata.write(page, &fields).await?;
    Ok(())
}
