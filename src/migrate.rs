//! `salesbot migrate --to postgres|files`: moving an install between the embedded backend
//! (SQLite + the `facebook/` files) and the scale-out one (PostgreSQL + `STORAGE_URL`), both
//! named by the same configuration, so a running user moves without losing history.
//!
//! Copied: every token row (still sealed: both sides use `TOKEN_ENCRYPTION_KEY`), each page's
//! poll checkpoint and re-authorisation mark, every conversation's events (each line's bytes,
//! in the file's order) and each page's metadata. Not copied: browser sessions and spent
//! OAuth states (they last minutes; a merchant mid-login starts again). Every step is
//! idempotent: a second run, or one after an interruption, adds nothing twice.
//!
//! Run it with every `salesbot serve` stopped: moving to PostgreSQL takes the data folder's
//! journal (refused while a server holds it) and replays whatever a crash left in it first.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::domain::{PageId, SenderId};
use crate::store::cipher::Cipher;
use crate::store::conversations::{Conversations, PageMetadata};
use crate::store::local::SqlitePollState;
use crate::store::objects::ObjectTree;
use crate::store::poll_state::PollState;
use crate::store::postgres::{PgConversations, PgDatabase, PgPollState, PgTokens, Publisher};
use crate::store::{FileStore, StoreError, TokenStore};

/// Which way the data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// From `TOKEN_DB_PATH` and `DATA_DIR` into `DATABASE_URL` and `STORAGE_URL`.
    Postgres,
    /// From `DATABASE_URL` (and `STORAGE_URL`'s metadata) into `TOKEN_DB_PATH` and `DATA_DIR`.
    Files,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("DATABASE_URL is not set: it names the PostgreSQL side of the move")]
    NoDatabase,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub token_rows: usize,
    pub poll_records: usize,
    pub conversations: usize,
    /// Events new to the target (0 on a second run).
    pub new_events: usize,
    pub metadata: usize,
    /// Customers erased on request, whose marks travel too (see `salesbot erase`).
    pub erasures: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} token rows, {} poll records, {} conversations ({} events new to the target), {} page metadata documents, {} erasure marks; sessions are not moved (merchants log in again)",
            self.token_rows,
            self.poll_records,
            self.conversations,
            self.new_events,
            self.metadata,
            self.erasures
        )
    }
}

/// The PostgreSQL side, as both directions need it.
struct Scaled {
    tokens: TokenStore,
    poll: PgPollState,
    conversations: PgConversations,
    objects: ObjectTree,
    db: PgDatabase,
}

pub async fn run(config: &Config, direction: Direction) -> Result<Report, MigrateError> {
    let storage = &config.storage;
    let database = storage.database.as_ref().ok_or(MigrateError::NoDatabase)?;
    let cipher = Cipher::new(&storage.encryption_key);
    let db = PgDatabase::connect(&database.target, database.pool_size).await?;
    let scaled = Scaled {
        tokens: TokenStore::new(Arc::new(PgTokens::new(db.clone())), cipher.clone()),
        poll: PgPollState::new(db.clone()),
        conversations: PgConversations::new(db.clone()),
        objects: ObjectTree::open(&database.objects, &database.s3)?,
        db,
    };
    let local_tokens = TokenStore::open_sqlite(&storage.token_db_path, cipher)?;
    let local_poll = SqlitePollState::open(&storage.token_db_path)?;
    // Owning the journal: no server is running, and a crash's records are replayed first.
    let data_dir = storage.data_dir.clone();
    let files = tokio::task::spawn_blocking(move || FileStore::with_journal(&data_dir))
        .await
        .map_err(StoreError::from)??;
    let report = match direction {
        Direction::Postgres => to_postgres(&local_tokens, &local_poll, &files, &scaled).await,
        Direction::Files => to_files(&scaled, &local_tokens, &local_poll, &files).await,
    };
    // Into the files, so nothing is left for a journal replay (and none is needed to read).
    files.checkpoint().await?;
    report
}

async fn to_postgres(
    tokens: &TokenStore,
    poll: &SqlitePollState,
    files: &FileStore,
    scaled: &Scaled,
) -> Result<Report, MigrateError> {
    let mut report = Report {
        token_rows: tokens.copy_rows_to(&scaled.tokens).await?,
        ..Report::default()
    };
    for record in poll.all().await? {
        scaled.poll.restore(&record).await?;
        report.poll_records += 1;
    }
    for (page, customer, at) in files.erasures()? {
        scaled
            .conversations
            .record_erasure(&page, &customer, at)
            .await?;
        report.erasures += 1;
    }
    for (page, customer) in files.list_conversations()? {
        let events = files.conversation_events(&page, &customer).await?;
        report.new_events += scaled.conversations.add(&page, &customer, events).await?;
        report.conversations += 1;
    }
    for page in files.list_pages()? {
        if let Ok(bytes) = std::fs::read(files.metadata_path(&page)) {
            scaled
                .objects
                .put(&ObjectTree::metadata_key(&page), bytes)
                .await?;
            report.metadata += 1;
        }
    }
    // Every conversation's object now, not one interval at a time.
    let publisher = Publisher::new(scaled.db.clone(), scaled.objects.clone(), Duration::ZERO);
    publisher.publish_all().await?;
    Ok(report)
}

async fn to_files(
    scaled: &Scaled,
    tokens: &TokenStore,
    poll: &SqlitePollState,
    files: &FileStore,
) -> Result<Report, MigrateError> {
    let mut report = Report {
        token_rows: scaled.tokens.copy_rows_to(tokens).await?,
        ..Report::default()
    };
    for record in scaled.poll.all().await? {
        poll.restore(&record).await?;
        report.poll_records += 1;
    }
    for (page, customer, at) in scaled.conversations.erasures().await? {
        let (Ok(page), Ok(customer)) = (PageId::parse(&page), SenderId::parse(&customer)) else {
            continue;
        };
        files.record_erasure(&page, &customer, at).await?;
        report.erasures += 1;
    }
    let mut pages = Vec::new();
    for (page, customer) in scaled.conversations.list().await? {
        // Ids were checked when they were stored; one that is not an id is not a path.
        let (Ok(page), Ok(customer)) = (PageId::parse(&page), SenderId::parse(&customer)) else {
            tracing::warn!(page = %page, customer = %customer, "a conversation with ids that are not file names skipped");
            continue;
        };
        let events = scaled
            .conversations
            .events(page.as_str(), customer.as_str())
            .await?;
        report.new_events += files.add(&page, &customer, events).await?;
        report.conversations += 1;
        if !pages.contains(&page) {
            pages.push(page);
        }
    }
    for page in connected_pages(&scaled.tokens)
        .await?
        .into_iter()
        .chain(pages)
    {
        let Some(bytes) = scaled.objects.get(&ObjectTree::metadata_key(&page)).await? else {
            continue;
        };
        let entry = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|document| document.pointer("/data/0").cloned());
        if let Some(fields) = entry {
            PageMetadata::write(files, &page, &fields).await?;
            report.metadata += 1;
        }
    }
    Ok(report)
}

async fn connected_pages(tokens: &TokenStore) -> Result<Vec<PageId>, StoreError> {
    let keys = tokens.keys_of_kind(crate::store::TokenKind::Token).await?;
    Ok(keys.iter().filter_map(|k| k.page_of_token()).collect())
}
