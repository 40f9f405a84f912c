//! The schema, as numbered migrations applied in order at start.
//!
//! `salesbot_schema` holds the version reached. Replicas starting together take an advisory
//! lock, so one migrates and the others find it done. A database at a version this build
//! does not know (a newer salesbot migrated it) is refused: running on it could corrupt data.

use super::PgDatabase;
use crate::store::StoreError;

/// Each entry brings the schema from its index to index + 1.
const MIGRATIONS: &[&str] = &[
    // 1: tokens (sealed values), sessions, spent OAuth states, the poll's memory: the
    // SQLite tables of the embedded backend, with BIGINT Unix seconds.
    "CREATE TABLE tokens (
         key TEXT PRIMARY KEY,
         value TEXT NOT NULL,
         type TEXT NOT NULL
     );
     CREATE INDEX tokens_type ON tokens (type, key);
     CREATE TABLE sessions (
         id_hash TEXT PRIMARY KEY,
         uuid TEXT NOT NULL,
         created_at BIGINT NOT NULL
     );
     CREATE INDEX sessions_created_at ON sessions (created_at);
     CREATE TABLE spent_states (
         digest TEXT PRIMARY KEY,
         expires_at BIGINT NOT NULL
     );
     CREATE INDEX spent_states_expires_at ON spent_states (expires_at);
     CREATE TABLE poll_pages (
         page_id TEXT PRIMARY KEY,
         last_success BIGINT,
         reauth_reason TEXT
     );",
    // 2: scheduled poll runs taken, so replicas sharing a schedule poll once per run.
    "CREATE TABLE poll_runs (slot BIGINT PRIMARY KEY);",
    // 3: every stored Messenger event. `version` counts the writes to a conversation,
    // `published` the last one its object shows; a lease keeps two replicas from publishing
    // the same conversation at once (an older render could land last).
    "CREATE TABLE conversations (
         id BIGSERIAL PRIMARY KEY,
         page_id TEXT NOT NULL,
         customer_id TEXT NOT NULL,
         version BIGINT NOT NULL DEFAULT 1,
         published BIGINT NOT NULL DEFAULT 0,
         changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
         published_at TIMESTAMPTZ,
         lease_until TIMESTAMPTZ,
         UNIQUE (page_id, customer_id)
     );
     CREATE INDEX conversations_due ON conversations (changed_at) WHERE version > published;
     CREATE TABLE events (
         conversation BIGINT NOT NULL REFERENCES conversations (id),
         key BYTEA NOT NULL,
         ts BIGINT,
         seq BIGSERIAL NOT NULL,
         line TEXT NOT NULL,
         PRIMARY KEY (conversation, key)
     );
     CREATE INDEX events_in_order ON events (conversation, seq);",
    // 4: whose lease it is, so a replica renews only its own leases and can tell when one
    // was taken over (the lease is short now and renewed while the publish runs).
    "ALTER TABLE conversations ADD COLUMN lease_owner TEXT;",
    // 5: what the status view shows of a page: when it was connected, and its webhook
    // subscription as last seen.
    "ALTER TABLE poll_pages ADD COLUMN IF NOT EXISTS connected_at BIGINT,
         ADD COLUMN IF NOT EXISTS subscribed BOOLEAN,
         ADD COLUMN IF NOT EXISTS subscription_seen_at BIGINT;",
    // 6: attachment downloads owed, shared by the replicas (each claims what it fetches by
    // moving `due_at` past the time a download may take).
    "CREATE TABLE IF NOT EXISTS attachments (
         page_id TEXT NOT NULL,
         customer_id TEXT NOT NULL,
         mid TEXT NOT NULL,
         n INTEGER NOT NULL,
         url TEXT NOT NULL,
         state TEXT NOT NULL DEFAULT 'owed',
         attempts INTEGER NOT NULL DEFAULT 0,
         due_at BIGINT NOT NULL DEFAULT 0,
         file TEXT,
         error TEXT,
         PRIMARY KEY (page_id, customer_id, mid, n)
     );
     CREATE INDEX IF NOT EXISTS attachments_due ON attachments (due_at) WHERE state = 'owed';",
    // 7: when a customer's conversation was erased on request (Unix milliseconds): what Meta
    // still serves from before then is not stored again.
    "CREATE TABLE IF NOT EXISTS erasures (
         page_id TEXT NOT NULL,
         customer_id TEXT NOT NULL,
         erased_at BIGINT NOT NULL,
         PRIMARY KEY (page_id, customer_id)
     );",
];

/// The version this build brings a database to.
pub const LATEST_VERSION: i32 = MIGRATIONS.len() as i32;

/// Any fixed number: the advisory lock replicas take while one of them migrates.
const MIGRATION_LOCK: i64 = 0x5a1e_5b07_0001;

pub(super) async fn apply(db: &PgDatabase) -> Result<(), StoreError> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS salesbot_schema (version INTEGER NOT NULL)")
        .await?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM salesbot_schema", &[])
        .await?
        .map(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > LATEST_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: LATEST_VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(migration).await?;
        tracing::info!(version = index + 1, "database schema migrated");
    }
    tx.execute("DELETE FROM salesbot_schema", &[]).await?;
    tx.execute(
        "INSERT INTO salesbot_schema (version) VALUES ($1)",
        &[&LATEST_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
