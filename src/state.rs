//! The state every handler shares: the stores, the provider clients and the workers, behind one
//! reference count.

use std::sync::Arc;

use crate::attachments::Downloader;
use crate::config::Config;
use crate::facebook::graph::GraphClient;
use crate::facebook::pages::PageDirectory;
use crate::facebook::poll::Poller;
use crate::facebook::webhook::MetadataRefresher;
use crate::oauth_state::StateSigner;
use crate::shopify::admin::ShopifyClient;
use crate::shopify::credentials::ShopifyTokens;
use crate::store::{ConversationStore, MetadataStore, SessionStore, TokenStore};
use crate::telemetry::metrics::Metrics;

/// What every handler may use: one shared [`Services`]. axum clones the state for every
/// request, so it is a single reference count (cloning a dozen shared fields from both cores
/// cost about a tenth of the webhook's CPU; BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The stores, clients and workers the handlers share.
#[derive(Debug)]
pub struct Services {
    pub config: Arc<Config>,
    pub tokens: TokenStore,
    pub sessions: SessionStore,
    pub conversations: ConversationStore,
    pub metadata: MetadataStore,
    /// With PostgreSQL: publishes conversations to the objects the bot reads (run by the app).
    pub publisher: Option<crate::store::postgres::Publisher>,
    pub states: StateSigner,
    /// The one client for every outbound call (see `outbound`).
    pub http: reqwest::Client,
    pub graph: GraphClient,
    pub shopify: ShopifyClient,
    pub shopify_tokens: ShopifyTokens,
    pub pages: PageDirectory,
    pub refresher: MetadataRefresher,
    pub poller: Poller,
    /// Downloads the attachments of stored events (`ATTACHMENTS`, the embedded backend).
    pub attachments: Option<Downloader>,
    /// The downloads' queue, also with `ATTACHMENTS=off`: an erasure reaches rows left from
    /// before it was turned off.
    pub attachment_queue: crate::store::attachments::AttachmentQueueStore,
    /// What `GET /metrics` shows; this application's alone.
    pub metrics: Metrics,
    /// Work that outlives a request (metadata refreshes); awaited at shutdown.
    pub background: tokio_util::task::TaskTracker,
}

impl Services {
    /// Cookies carry `Secure` when the app is reached over https (its redirect URIs say so).
    pub fn cookies_secure(&self) -> bool {
        self.config.shopify.redirect_uri.scheme() == "https"
            || self.config.facebook.redirect_uri.scheme() == "https"
    }
}
