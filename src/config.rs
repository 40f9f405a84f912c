//! Every setting of salesbot, read once at start-up from the environment (after `.env`).
//!
//! All problems are collected and reported together, so an operator fixes a deployment in one
//! round instead of one variable per restart. Secrets are held as `SecretString`/`SecretBox`,
//! whose `Debug` prints `[REDACTED]`, so no log line or panic message can carry them.

pub mod attachments;
pub mod env_file;
mod parse;

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{SecretBox, SecretString};
use url::Url;

pub use crate::store::objects::{S3Settings, StorageUrl};
pub use crate::store::postgres::DatabaseTarget;
pub use attachments::{AllowedHost, AttachmentConfig};
pub use parse::{ConfigError, Problem};

/// The names of the variables without which salesbot cannot start (the original's list).
pub const REQUIRED: [&str; 9] = [
    "FACEBOOK_APP_ID",
    "FACEBOOK_APP_SECRET",
    "FACEBOOK_REDIRECT_URI",
    "FACEBOOK_WEBHOOK_ADDRESS",
    "FACEBOOK_VERIFY_TOKEN",
    "SHOPIFY_API_KEY",
    "SHOPIFY_API_SECRET",
    "SHOPIFY_REDIRECT_URI",
    "STATE_TOKEN_SECRET",
];

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub facebook: FacebookConfig,
    pub shopify: ShopifyConfig,
    pub state_token_secret: SecretString,
    pub storage: StorageConfig,
    pub poll: PollConfig,
    /// Run the original's webhook/polling self-tests inside `/facebook/callback`.
    pub oauth_self_test: bool,
    /// Downloading attachments before Meta's URLs expire.
    pub attachments: AttachmentConfig,
    /// `ADMIN_TOKEN`: the bearer token of `/metrics` and `/status`; unset, they answer 404.
    pub admin_token: Option<SecretString>,
}

#[derive(Debug)]
pub struct FacebookConfig {
    pub app_id: String,
    pub app_secret: SecretString,
    pub redirect_uri: Url,
    pub webhook_address: Url,
    pub verify_token: SecretString,
    /// Base of the Graph API; `/{graph_version}/...` is appended.
    pub graph_url: Url,
    /// Base of the OAuth dialog the browser is sent to.
    pub dialog_url: Url,
    pub graph_version: String,
}

#[derive(Debug)]
pub struct ShopifyConfig {
    pub api_key: String,
    pub api_secret: SecretString,
    pub redirect_uri: Url,
    /// Base URL of a shop with a `{shop}` placeholder, e.g. `https://{shop}`.
    pub shop_url_template: String,
    pub api_version: String,
}

#[derive(Debug)]
pub struct StorageConfig {
    pub token_db_path: PathBuf,
    pub session_db_path: PathBuf,
    /// Root under which `facebook/<page_id>/...` is written.
    pub data_dir: PathBuf,
    /// The 32-byte key that seals tokens and session UUIDs.
    pub encryption_key: SecretBox<[u8; 32]>,
    /// True when the key was derived from `STATE_TOKEN_SECRET` rather than configured.
    pub encryption_key_derived: bool,
    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`: keys that still open rows sealed before a rotation
    /// (`salesbot rekey` re-seals them under the current key).
    pub previous_keys: Vec<SecretBox<[u8; 32]>>,
    /// `DATABASE_URL`: tokens, sessions and the poll's memory in PostgreSQL instead of the
    /// SQLite files above (which are then not used).
    pub database: Option<DatabaseConfig>,
}

#[derive(Debug)]
pub struct DatabaseConfig {
    /// The parsed `postgres://` URL (its password never prints) and its TLS settings.
    pub target: DatabaseTarget,
    /// Connections at most, per process (`DATABASE_POOL_SIZE`).
    pub pool_size: usize,
    /// Where the tree the bot reads is published (`STORAGE_URL`; default `file://DATA_DIR`).
    pub objects: StorageUrl,
    /// For an `s3://` `STORAGE_URL`: the standard `AWS_*` settings.
    pub s3: S3Settings,
    /// A changing conversation's object is rewritten at most this often
    /// (`STORAGE_PUBLISH_INTERVAL`, seconds).
    pub publish_interval: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollSchedule {
    Off,
    /// A seconds-first cron expression, evaluated in UTC.
    Cron(String),
}

#[derive(Debug)]
pub struct PollConfig {
    pub schedule: PollSchedule,
    pub concurrency: usize,
}

impl Config {
    /// Reads the process environment. Call [`env_file::load`] first to honour `.env`.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests and the demo can configure without touching
    /// the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        parse::Reader::new(lookup).read()
    }
}
