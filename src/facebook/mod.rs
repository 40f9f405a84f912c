//! Facebook: the merchant's Pages, Meta's Graph API and (later) its webhooks and the poll.
//!
//! - [`oauth`]: `GET /facebook/login` and `GET /facebook/callback`.
//! - [`graph`]: the Graph API client and its parsed errors.
//! - [`webhook`]: Meta's webhook: verification, signature, events into conversation files.
//! - [`pages`]: which pages are connected, and their tokens.
//! - [`metadata`]: a page's metadata file, refreshed from Graph.
//! - `self_test`: the original's checks run at the end of the OAuth flow.

pub mod graph;
pub mod metadata;
pub mod oauth;
pub mod pages;
pub mod poll;
mod self_test;
pub mod subscription;
pub mod webhook;
