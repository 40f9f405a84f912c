//! Shopify: the merchant's store, connected first (it creates the merchant's UUID and session).
//!
//! - [`oauth`]: `GET /shopify/{shop_name}/login` and `GET /shopify/callback`.
//! - [`admin`]: the Admin API client (token exchange and refresh, GraphQL).
//! - [`credentials`]: the stored token pair, refreshed before it expires.
//! - [`signature`]: the `hmac` on Shopify's redirect.
//! - [`ShopDomain`]: the only kind of value a Shopify URL is built from.

pub mod admin;
pub mod credentials;
pub mod keep_fresh;
pub mod oauth;
mod shop_domain;
pub mod signature;
pub mod webhooks;

pub use shop_domain::{InvalidShop, ShopDomain};
