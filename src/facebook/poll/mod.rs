//! The poll: every connected page's metadata and complete conversation history, catching what
//! the webhook missed. [`Poller::poll_once`] is the whole job; the schedule and `salesbot poll`
//! only call it.
//!
//! - `page`: one page (metadata, subscription, conversations paged to the end).
//! - `caller`: pacing, retries and usage-based slow-down of one page's Graph calls.
//! - `convert`: a Graph message in the webhook's shape.

mod caller;
pub mod convert;
mod page;

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::attachments::Downloader;
use crate::config::PollConfig;
use crate::domain::PageId;
use crate::facebook::graph::GraphClient;
use crate::store::PollStateStore;
use crate::store::{ConversationStore, MetadataStore, StoreError, TokenKind, TokenStore, unix_now};
use crate::telemetry::metrics::{Metrics, PollResult};
pub use page::{CONVERSATION_FIELDS, PageReport};

/// How hard the poll may press on Meta.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Pages polled at once.
    pub concurrency: usize,
    /// Least time between two calls for one page: 500 ms keeps within 2 calls/s.
    pub min_call_interval: Duration,
    /// Tries of one call before its page fails.
    pub max_attempts: u32,
    /// First pause after a transient error; doubled each time.
    pub retry_base: Duration,
    /// Longest single pause.
    pub retry_cap: Duration,
}

impl PollSettings {
    pub fn from_config(config: &PollConfig) -> PollSettings {
        PollSettings {
            concurrency: config.concurrency,
            min_call_interval: Duration::from_millis(500),
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
        }
    }
}

/// How one page's poll ended.
#[derive(Debug)]
pub struct PageOutcome {
    pub page: PageId,
    pub result: Result<PageReport, PageFailure>,
}

#[derive(Debug, Clone)]
pub struct PageFailure {
    pub reason: String,
    /// Meta refused the page token (code 190): the merchant must connect the page again.
    pub needs_reauth: bool,
}

#[derive(Debug)]
pub struct PollOutcome {
    pub pages: Vec<PageOutcome>,
    pub duration: Duration,
}

impl PollOutcome {
    pub fn failed(&self) -> usize {
        self.pages.iter().filter(|p| p.result.is_err()).count()
    }

    fn total(&self, field: impl Fn(&PageReport) -> usize) -> usize {
        self.pages
            .iter()
            .filter_map(|p| p.result.as_ref().ok())
            .map(field)
            .sum()
    }

    /// The one line that ends every run.
    pub fn summary(&self) -> String {
        format!(
            "poll finished: pages ok {}, failed {}; conversations {}, new messages {}, Graph calls {}; {:.1} s",
            self.pages.len() - self.failed(),
            self.failed(),
            self.total(|r| r.conversations),
            self.total(|r| r.new_messages),
            self.total(|r| r.graph_calls),
            self.duration.as_secs_f64()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("a poll is already running; this one is skipped")]
    AlreadyRunning,
    #[error("another replica took this scheduled run")]
    TakenElsewhere,
    #[error("cannot list the connected pages: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct Poller {
    graph: GraphClient,
    conversations: ConversationStore,
    metadata: MetadataStore,
    tokens: TokenStore,
    state: PollStateStore,
    settings: Arc<PollSettings>,
    running: Arc<Mutex<()>>,
    metrics: Metrics,
    attachments: Option<Downloader>,
}

impl Poller {
    pub fn new(
        graph: GraphClient,
        conversations: ConversationStore,
        metadata: MetadataStore,
        tokens: TokenStore,
        state: PollStateStore,
        settings: PollSettings,
    ) -> Poller {
        Poller {
            graph,
            conversations,
            metadata,
            tokens,
            state,
            settings: Arc::new(settings),
            running: Arc::default(),
            metrics: Metrics::default(),
            attachments: None,
        }
    }

    /// Owes the attachments of the events it stores to `attachments`.
    pub fn with_attachments(mut self, attachments: Option<Downloader>) -> Poller {
        self.attachments = attachments;
        self
    }

    /// Counts pages polled and events stored into `metrics`.
    pub fn observed(mut self, metrics: &Metrics) -> Poller {
        self.metrics = metrics.clone();
        self
    }

    pub fn with_settings(mut self, settings: PollSettings) -> Poller {
        self.settings = Arc::new(settings);
        self
    }

    pub fn state(&self) -> &PollStateStore {
        &self.state
    }

    /// Polls every connected page, `concurrency` at a time. One failing page never stops the
    /// others. Refuses to start while another poll runs (here or in another process).
    pub async fn poll_once(&self) -> Result<PollOutcome, PollError> {
        let Ok(_running) = self.running.try_lock() else {
            tracing::info!("poll skipped: the previous one is still running");
            return Err(PollError::AlreadyRunning);
        };
        // Held for the run: a `salesbot poll` beside the server, or another replica, waits.
        let Some(_exclusive) = self.state.exclusive().await? else {
            tracing::info!("poll skipped: another process is polling");
            return Err(PollError::AlreadyRunning);
        };
        let start = Instant::now();
        let pages = self.connected_pages().await?;
        tracing::info!(pages = pages.len(), "poll started");
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks = JoinSet::new();
        for page in pages {
            let (this, permits) = (self.clone(), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                this.poll_stored_page(page).await
            });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                Err(err) => tracing::error!(error = %err, "a page poll stopped unexpectedly"),
            }
        }
        outcomes.sort_by(|a, b| a.page.cmp(&b.page));
        let outcome = PollOutcome {
            pages: outcomes,
            duration: start.elapsed(),
        };
        tracing::info!("{}", outcome.summary());
        Ok(outcome)
    }

    /// The scheduled run at `slot` (its cron time, Unix seconds), unless another replica
    /// whose schedule fired for the same run took it.
    pub async fn poll_scheduled(&self, slot: i64) -> Result<PollOutcome, PollError> {
        if !self.state.claim_run(slot).await? {
            tracing::info!(slot, "scheduled poll taken by another replica");
            return Err(PollError::TakenElsewhere);
        }
        self.poll_once().await
    }

    /// Polls one page with the given token (the OAuth self-test's conversation poll).
    pub async fn poll_page(&self, page: &PageId, token: &SecretString) -> PageOutcome {
        self.counted(self.poll_page_uncounted(page, token).await)
    }

    fn counted(&self, outcome: PageOutcome) -> PageOutcome {
        self.metrics.poll_page(match &outcome.result {
            Ok(_) => PollResult::Ok,
            Err(failure) if failure.needs_reauth => PollResult::NeedsReauth,
            Err(_) => PollResult::Failed,
        });
        outcome
    }

    async fn poll_page_uncounted(&self, page: &PageId, token: &SecretString) -> PageOutcome {
        let started = unix_now();
        let since_ms = match self.state.last_success(page).await {
            Ok(since) => since.map(|s| s * 1000),
            Err(err) => {
                return failure(
                    page,
                    format!("cannot read the poll checkpoint: {err}"),
                    false,
                );
            }
        };
        let mut report = PageReport::default();
        let poll = page::PagePoll {
            graph: &self.graph,
            conversations: &self.conversations,
            metadata: &self.metadata,
            settings: &self.settings,
            metrics: &self.metrics,
            attachments: self.attachments.as_ref(),
            page,
            token,
            since_ms,
        };
        match poll.run(&mut report).await {
            Ok(()) => {
                if let Err(err) = self.state.record_success(page, started).await {
                    tracing::warn!(page = %page, error = %err, "cannot record the poll checkpoint");
                }
                // A poll that succeeded found the subscription there, or restored it.
                if let Err(err) = self.state.record_subscription(page, true, unix_now()).await {
                    tracing::warn!(page = %page, error = %err, "cannot record the webhook subscription");
                }
                tracing::info!(page = %page, conversations = report.conversations, new_messages = report.new_messages, calls = report.graph_calls, "page polled");
                PageOutcome {
                    page: page.clone(),
                    result: Ok(report),
                }
            }
            Err(page::PageError::Graph(err)) if err.is_token_error() => {
                let reason = format!("Meta refused the page token; reconnect the page ({err})");
                if let Err(store) = self.state.mark_needs_reauth(page, &reason).await {
                    tracing::error!(page = %page, error = %store, "cannot record the re-authorisation mark");
                }
                tracing::error!(page = %page, reason = %reason, "page needs re-authorisation");
                failure(page, reason, true)
            }
            Err(err) => {
                tracing::warn!(page = %page, error = %err, "page poll failed");
                failure(page, err.to_string(), false)
            }
        }
    }

    async fn poll_stored_page(&self, page: PageId) -> PageOutcome {
        let outcome = match self
            .tokens
            .get(&crate::store::TokenKey::page_token(&page))
            .await
        {
            Ok(Some(token)) => self.poll_page_uncounted(&page, &token).await,
            Ok(None) => failure(
                &page,
                "the page token disappeared during the poll".into(),
                false,
            ),
            Err(err) => failure(&page, err.to_string(), false),
        };
        self.counted(outcome)
    }

    async fn connected_pages(&self) -> Result<Vec<PageId>, StoreError> {
        let keys = self.tokens.keys_of_kind(TokenKind::Token).await?;
        Ok(keys.iter().filter_map(|k| k.page_of_token()).collect())
    }
}

fn failure(page: &PageId, reason: String, needs_reauth: bool) -> PageOutcome {
    PageOutcome {
        page: page.clone(),
        result: Err(PageFailure {
            reason,
            needs_reauth,
        }),
    }
}
