//! The settings of where things are kept and how tokens are sealed: `TOKEN_ENCRYPTION_KEY`
//! (or the key derived from `STATE_TOKEN_SECRET`), `TOKEN_ENCRYPTION_KEY_PREVIOUS`, and
//! `DATABASE_URL` with the PostgreSQL backend's companions.

use std::sync::Once;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use super::{Reader, boolean};
use crate::config::{DatabaseConfig, DatabaseTarget, S3Settings, StorageUrl};

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// `TOKEN_ENCRYPTION_KEY_PREVIOUS`: keys that still open rows sealed before a rotation.
    pub(super) fn previous_keys(&mut self) -> Option<Vec<SecretBox<[u8; 32]>>> {
        let Some(list) = self.raw("TOKEN_ENCRYPTION_KEY_PREVIOUS") else {
            return Some(Vec::new());
        };
        let mut keys = Vec::new();
        for (n, encoded) in list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            match key_bytes(encoded) {
                Some(key) => keys.push(SecretBox::new(Box::new(key))),
                None => {
                    return self.invalid(
                        "TOKEN_ENCRYPTION_KEY_PREVIOUS",
                        format!(
                            "entry {} is not 32 bytes encoded as base64 (a comma-separated list of keys)",
                            n + 1
                        ),
                    );
                }
            }
        }
        Some(keys)
    }

    /// `TOKEN_ENCRYPTION_KEY` when set, else a key derived from `STATE_TOKEN_SECRET`.
    pub(super) fn encryption_key(
        &mut self,
        state_secret: &SecretString,
    ) -> Option<(SecretBox<[u8; 32]>, bool)> {
        if let Some(encoded) = self.raw("TOKEN_ENCRYPTION_KEY") {
            // The value itself is never echoed: it is the key.
            return match key_bytes(&encoded) {
                Some(key) => Some((SecretBox::new(Box::new(key)), false)),
                None => self.invalid(
                    "TOKEN_ENCRYPTION_KEY",
                    "must be 32 bytes encoded as base64 (e.g. `openssl rand -base64 32`)".into(),
                ),
            };
        }
        let secret = state_secret.expose_secret();
        if secret.is_empty() {
            return None; // STATE_TOKEN_SECRET is reported as missing
        }
        Some((SecretBox::new(Box::new(derive_key(secret))), true))
    }

    /// `DATABASE_URL` (unset: the embedded SQLite backend) and `DATABASE_POOL_SIZE`.
    pub(super) fn database(&mut self, data_dir: &std::path::Path) -> Option<DatabaseConfig> {
        let pool_size = self.parsed("DATABASE_POOL_SIZE", "16", |v| match v.parse::<usize>() {
            Ok(n @ 1..=1000) => Ok(n),
            _ => Err("must be a whole number from 1 to 1000".to_string()),
        });
        let default_objects = format!("file://{}", data_dir.display());
        let objects = self.parsed("STORAGE_URL", &default_objects, StorageUrl::parse);
        let interval = self.parsed("STORAGE_PUBLISH_INTERVAL", "2", |v| {
            match v.parse::<f64>() {
                Ok(s) if (0.0..=3600.0).contains(&s) => Ok(std::time::Duration::from_secs_f64(s)),
                _ => Err("must be a number of seconds from 0 to 3600".to_string()),
            }
        });
        let allow_http = self.parsed("AWS_ALLOW_HTTP", "false", boolean);
        let Some(url) = self.raw("DATABASE_URL") else {
            if self.raw("STORAGE_URL").is_some() {
                return self.invalid(
                    "STORAGE_URL",
                    "needs DATABASE_URL: the embedded backend writes its files under DATA_DIR"
                        .into(),
                );
            }
            return None;
        };
        // The URL may carry a password: the reason never repeats it.
        let target = match DatabaseTarget::parse(&url) {
            Ok(target) => target,
            Err(reason) => return self.invalid("DATABASE_URL", reason),
        };
        Some(DatabaseConfig {
            target,
            pool_size: pool_size?,
            objects: objects?,
            publish_interval: interval?,
            s3: S3Settings {
                endpoint: self.raw("AWS_ENDPOINT_URL"),
                region: self.raw("AWS_REGION"),
                access_key_id: self.raw("AWS_ACCESS_KEY_ID"),
                secret_access_key: self.raw("AWS_SECRET_ACCESS_KEY").map(SecretString::from),
                allow_http: allow_http?,
            },
        })
    }
}

/// 32 bytes from standard or URL-safe base64.
fn key_bytes(encoded: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| URL_SAFE.decode(encoded))
        .ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// HKDF-SHA256 of the state secret. Changing `STATE_TOKEN_SECRET` therefore makes every stored
/// token unreadable, which is why the operator is told to set `TOKEN_ENCRYPTION_KEY`.
fn derive_key(state_secret: &str) -> [u8; 32] {
    static WARN: Once = Once::new();
    WARN.call_once(|| {
        tracing::warn!(
            "TOKEN_ENCRYPTION_KEY is not set: deriving the token key from STATE_TOKEN_SECRET; \
             set TOKEN_ENCRYPTION_KEY (openssl rand -base64 32) so the two secrets can change apart"
        );
    });
    let hkdf = Hkdf::<Sha256>::new(Some(b"salesbot/token-key/v1"), state_secret.as_bytes());
    let mut key = [0u8; 32];
    hkdf.expand(b"tokens.db and sessions.db sealing key", &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}
