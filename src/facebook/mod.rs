//! Facebook: the merchant's Pages, Meta's Graph API and (later) its webhooks and the poll.
//!
//! - [`oauth`]: `GET /facebook/login` and `GET /facebook/callback`.
//! - [`graph`]: the Graph API client and its parsed errors.
//! - [`self_test`]: the original's checks run at the end of the OAuth flow.

pub mod graph;
pub mod oauth;
mod self_test;
