//! salesbot: the data backend of a GPT sales bot on Facebook Messenger.
//!
//! # Layout
//!
//! - [`config`]: every setting, read once from the environment; secrets never print.
//! - [`cli`]: the `serve` / `poll` / `demo` subcommands.
//! - [`demo`]: `salesbot demo`, the whole story against the sandbox.
//! - [`app`]: builds the server (state, routes, edge) and runs it until shutdown.
//! - [`state`]: what every handler shares (stores, provider clients, workers).
//! - [`http`]: the HTTP edge (request id, timeout, access log), the error type that becomes
//!   `{"detail": ...}`, cookies, plain HTML pages; it knows no feature module.
//! - [`health`]: `GET /` and `GET /healthz`.
//! - [`admin`]: `GET /metrics` and `GET /status` for the operator, behind `ADMIN_TOKEN`.
//! - [`domain`]: outside input parsed into types (`PageId`, `SenderId`) that cannot hold a path.
//! - [`migrate`]: `salesbot migrate`, between SQLite + files and PostgreSQL + objects.
//! - [`oauth_state`]: signed, expiring OAuth `state` tokens (the original's format).
//! - [`shopify`]: the Shopify OAuth flow, Admin API client and stored credentials.
//! - [`facebook`]: the Facebook OAuth flow and the Graph API client.
//! - [`outbound`]: the one HTTP client for calls to Meta and Shopify.
//! - [`store`]: everything on disk: the encrypted token store, sessions, used OAuth states,
//!   and the JSON files under `DATA_DIR/facebook/` that the bot reads.
//! - [`engines`]: a throwaway PostgreSQL server for tests and benchmarks.
//! - [`sandbox`]: a stand-in for Meta and Shopify on 127.0.0.1 (demo, tests, benchmarks).
//! - [`scheduler`]: the nightly poll on `POLL_CRON`.
//! - [`telemetry`]: logging to stderr, filtered by `RUST_LOG`, and the metrics' counters.
//! - [`allocator`]: the C allocator's settings, so that memory freed is used again.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod attachments;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engines;
pub mod erasure;
pub mod facebook;
pub mod health;
pub mod http;
pub mod legacy;
pub mod migrate;
pub mod oauth_state;
pub mod outbound;
pub mod sandbox;
pub mod scheduler;
pub mod shopify;
pub mod state;
pub mod store;
pub mod telemetry;
