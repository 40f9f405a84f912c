//! What both benchmarks need: a complete configuration pointing every provider at loopback.

use std::collections::HashMap;
use std::path::Path;

/// A full environment for salesbot with storage under `dir`; `overrides` win.
pub fn environment(dir: &Path, overrides: &[(&str, String)]) -> HashMap<String, String> {
    let d = dir.display();
    let mut env: HashMap<String, String> = [
        ("FACEBOOK_APP_ID", "123456789012345".to_string()),
        ("FACEBOOK_APP_SECRET", "bench-app-secret".into()),
        (
            "FACEBOOK_REDIRECT_URI",
            "http://127.0.0.1/facebook/callback".into(),
        ),
        (
            "FACEBOOK_WEBHOOK_ADDRESS",
            "http://127.0.0.1/facebook/webhook".into(),
        ),
        ("FACEBOOK_VERIFY_TOKEN", "v".into()),
        ("SHOPIFY_API_KEY", "k".into()),
        ("SHOPIFY_API_SECRET", "s".into()),
        (
            "SHOPIFY_REDIRECT_URI",
            "http://127.0.0.1/shopify/callback".into(),
        ),
        (
            "STATE_TOKEN_SECRET",
            "bench-state-secret-of-at-least-32-bytes".into(),
        ),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ),
        ("HOST", "127.0.0.1".into()),
        ("POLL_CRON", "off".into()),
        // Nothing may leave the machine.
        ("FACEBOOK_GRAPH_URL", "http://127.0.0.1:9".into()),
        ("FACEBOOK_DIALOG_URL", "http://127.0.0.1:9".into()),
        ("SHOPIFY_SHOP_URL", "http://127.0.0.1:9/{shop}".into()),
        ("TOKEN_DB_PATH", format!("{d}/tokens.db")),
        ("SESSION_DB_PATH", format!("{d}/sessions.db")),
        ("DATA_DIR", d.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.clone());
    }
    env
}
