//! Building the application from a [`Config`] and running it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::serve::ListenerExt;
use axum::{Router, ServiceExt};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::attachments::Downloader;
use crate::attachments::fetch::Fetcher;
use crate::config::Config;
use crate::facebook::graph::GraphClient;
use crate::facebook::pages::PageDirectory;
use crate::facebook::poll::{PollSettings, Poller};
use crate::facebook::webhook::MetadataRefresher;
use crate::http::{self, Edge};
use crate::oauth_state::StateSigner;
use crate::outbound;
use crate::scheduler;
use crate::shopify::admin::ShopifyClient;
use crate::shopify::credentials::ShopifyTokens;
use crate::state::{AppState, Services};
use crate::store::StoreError;
use crate::store::backend::{self, Role, Stores};
use crate::telemetry::metrics::Metrics;

/// How long shutdown waits for background work once requests are done.
const BACKGROUND_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Schedule(#[from] scheduler::ScheduleError),
}

/// Opens the stores named in `config` and builds the state every handler shares. Its files
/// flush themselves, as a process running beside the server must (`salesbot poll`); the
/// server's own state ([`Application::build`]) writes through the journal.
pub async fn build_state(config: Config) -> Result<AppState, StoreError> {
    assemble(config, Role::Beside).await
}

async fn assemble(config: Config, role: Role) -> Result<AppState, StoreError> {
    let metrics = Metrics::new();
    let Stores {
        tokens,
        sessions,
        poll_state,
        conversations,
        metadata,
        attachments,
        publisher,
    } = backend::open(&config.storage, role, &metrics).await?;
    // A key that does not open the stored tokens stops the start here, naming the row.
    tokens.check_keys().await?;
    let (queue, files) = attachments;
    let attachments = config.attachments.enabled.then(|| {
        Downloader::new(
            queue.clone(),
            files,
            Fetcher::new(&config.attachments),
            metrics.clone(),
        )
    });
    let http = outbound::client();
    let shopify = ShopifyClient::new(http.clone(), &config.shopify);
    let graph = GraphClient::new(http.clone(), &config.facebook).observed(&metrics);
    let pages = PageDirectory::new(tokens.clone());
    let background = TaskTracker::new();
    let poller = Poller::new(
        graph.clone(),
        conversations.clone(),
        metadata.clone(),
        tokens.clone(),
        poll_state,
        PollSettings::from_config(&config.poll),
    )
    .observed(&metrics)
    .with_attachments(attachments.clone());
    Ok(AppState::new(Services {
        poller,
        sessions,
        refresher: MetadataRefresher::new(
            graph.clone(),
            metadata.clone(),
            pages.clone(),
            background.clone(),
        ),
        background,
        pages,
        conversations,
        metadata,
        publisher,
        states: StateSigner::new(config.state_token_secret.clone()),
        graph,
        shopify_tokens: ShopifyTokens::new(tokens.clone(), shopify.clone()),
        shopify,
        tokens,
        http,
        metrics,
        attachments,
        attachment_queue: queue,
        config: Arc::new(config),
    }))
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    service: Edge<Router>,
    state: AppState,
}

impl Application {
    /// Binds the listener (`PORT=0` picks a free port; see [`Self::addr`]), then opens storage
    /// (replaying what the journal holds from a previous run). Binding comes first so that a
    /// start that cannot listen leaves nothing behind: no databases, no 96 MiB of journal in a
    /// new `DATA_DIR`. Connections that arrive during a replay wait in the listen queue.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let requested = config.listen;
        let listener = TcpListener::bind(requested)
            .await
            .map_err(|source| StartError::Bind {
                addr: requested,
                source,
            })?;
        let addr = listener.local_addr().map_err(StartError::Serve)?;
        let state = assemble(config, Role::Server).await?;
        Ok(Application {
            listener,
            addr,
            service: routes(state.clone()),
            state,
        })
    }

    /// The address actually listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        tracing::info!("salesbot listening on http://{}", self.addr);
        let schedule =
            scheduler::start(self.state.poller.clone(), &self.state.config.poll.schedule).await?;
        let publishing = tokio_util::sync::CancellationToken::new();
        let publisher = self
            .state
            .publisher
            .clone()
            .map(|publisher| tokio::spawn(publisher.run(publishing.clone())));
        let sweeping = tokio_util::sync::CancellationToken::new();
        let sweeper = tokio::spawn(crate::shopify::keep_fresh::run(
            self.state.shopify_tokens.clone(),
            self.state.poller.state().clone(),
            sweeping.clone(),
        ));
        let downloading = tokio_util::sync::CancellationToken::new();
        let downloader = self
            .state
            .attachments
            .clone()
            .map(|downloader| tokio::spawn(downloader.run(downloading.clone())));
        // Answers go out at once: with Nagle's algorithm on, a small write waits for the ACK
        // of the one before, which a client may delay by up to 40 ms.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY on a connection");
            }
        });
        let served = axum::serve(
            listener,
            ServiceExt::<Request>::into_make_service(self.service),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Serve);
        if let Some(schedule) = schedule {
            schedule.stop().await;
        }
        served?;
        // Requests are done; let work they started (metadata refreshes) finish too.
        let background = &self.state.background;
        background.close();
        if tokio::time::timeout(BACKGROUND_GRACE, background.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = background.len(),
                "background work still running at shutdown; abandoned"
            );
        }
        sweeping.cancel();
        if let Err(err) = sweeper.await {
            tracing::error!(error = %err, "the Shopify token sweep stopped unexpectedly");
        }
        // Downloads in progress are abandoned: they stay owed, for the next start.
        downloading.cancel();
        if let Some(downloader) = downloader
            && let Err(err) = downloader.await
        {
            tracing::error!(error = %err, "the attachment downloader stopped unexpectedly");
        }
        // The objects the bot reads catch up with the last events before the process ends.
        publishing.cancel();
        if let Some(publisher) = publisher
            && let Err(err) = publisher.await
        {
            tracing::error!(error = %err, "the publisher stopped unexpectedly");
        }
        // Everything written is flushed into the files: the next start has nothing to replay.
        if let Err(err) = self.state.conversations.checkpoint().await {
            tracing::error!(error = %err, "cannot flush the journal at shutdown; the next start replays it");
        }
        tracing::info!("salesbot stopped");
        Ok(())
    }
}

/// Every route, behind the edge (request id, timeout, access log). Assembled here, where the
/// application is built, so that `http` (the edge) knows no feature module.
pub fn routes(state: AppState) -> Edge<Router> {
    let routes = Router::new()
        .merge(crate::health::router())
        .merge(crate::shopify::oauth::router())
        .merge(crate::shopify::webhooks::router())
        .merge(crate::facebook::oauth::router())
        .merge(crate::facebook::webhook::router())
        .merge(crate::admin::router());
    Edge::new(routes.fallback(http::not_found).with_state(state))
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
