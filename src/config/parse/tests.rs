use std::collections::HashMap;

use secrecy::ExposeSecret;

use crate::config::{Config, PollSchedule, Problem, REQUIRED};

fn complete() -> HashMap<&'static str, String> {
    let mut env: HashMap<&'static str, String> = REQUIRED
        .iter()
        .map(|name| (*name, format!("value-of-{name}")))
        .collect();
    env.insert("FACEBOOK_APP_ID", "123456789012345".into());
    env.insert(
        "STATE_TOKEN_SECRET",
        "value-of-STATE_TOKEN_SECRET, 32 bytes or more".into(),
    );
    env.insert(
        "FACEBOOK_REDIRECT_URI",
        "http://localhost:5000/facebook/callback".into(),
    );
    env.insert(
        "FACEBOOK_WEBHOOK_ADDRESS",
        "http://localhost:5000/facebook/webhook".into(),
    );
    env.insert(
        "SHOPIFY_REDIRECT_URI",
        "http://localhost:5000/shopify/callback".into(),
    );
    env
}

fn load(env: &HashMap<&'static str, String>) -> Result<Config, crate::config::ConfigError> {
    Config::from_lookup(|name| env.get(name).cloned())
}

#[test]
fn a_complete_environment_gets_the_documented_defaults() {
    let config = load(&complete()).expect("complete environment");
    assert_eq!(config.listen.to_string(), "0.0.0.0:5000");
    assert_eq!(
        config.storage.token_db_path.to_str(),
        Some("./data/tokens.db")
    );
    assert_eq!(
        config.storage.session_db_path.to_str(),
        Some("./data/sessions.db")
    );
    assert_eq!(config.storage.data_dir.to_str(), Some("."));
    assert_eq!(
        config.poll.schedule,
        PollSchedule::Cron("0 0 0 * * *".into())
    );
    assert_eq!(config.poll.concurrency, 4);
    assert!(config.oauth_self_test);
    assert_eq!(
        config.facebook.graph_url.as_str(),
        "https://graph.facebook.com/"
    );
    assert_eq!(
        config.facebook.dialog_url.as_str(),
        "https://www.facebook.com/"
    );
    assert_eq!(config.facebook.graph_version, "v25.0");
    assert_eq!(config.shopify.shop_url_template, "https://{shop}");
    assert_eq!(config.shopify.api_version, "2026-10");
    assert!(config.storage.encryption_key_derived);
}

#[test]
fn every_missing_variable_is_named_in_one_error() {
    let err = load(&HashMap::new()).unwrap_err();
    let text = err.to_string();
    for name in REQUIRED {
        assert!(text.contains(name), "{name} missing from: {text}");
        assert!(err.problems.contains(&Problem::Missing(name)));
    }
    assert_eq!(err.problems.len(), REQUIRED.len(), "{err:?}");
}

#[test]
fn blank_values_count_as_missing() {
    let mut env = complete();
    env.insert("SHOPIFY_API_SECRET", "   ".into());
    let err = load(&env).unwrap_err();
    assert_eq!(err.problems, vec![Problem::Missing("SHOPIFY_API_SECRET")]);
}

#[test]
fn invalid_values_are_named_together_with_missing_ones() {
    let mut env = complete();
    env.remove("FACEBOOK_VERIFY_TOKEN");
    env.insert("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=".into()); // 5 bytes
    env.insert("POLL_CRON", "0 0 * * *".into()); // five fields: no seconds
    env.insert("FACEBOOK_GRAPH_URL", "not a url".into());
    env.insert("PORT", "70000".into());
    env.insert("POLL_CONCURRENCY", "0".into());
    env.insert("OAUTH_SELF_TEST", "maybe".into());
    env.insert("SHOPIFY_SHOP_URL", "https://shops.example".into());
    env.insert("FACEBOOK_APP_ID", "my-app".into());
    env.insert("STATE_TOKEN_SECRET", "short".into());
    let err = load(&env).unwrap_err();
    let text = err.to_string();
    for name in [
        "FACEBOOK_VERIFY_TOKEN",
        "TOKEN_ENCRYPTION_KEY",
        "POLL_CRON",
        "FACEBOOK_GRAPH_URL",
        "PORT",
        "POLL_CONCURRENCY",
        "OAUTH_SELF_TEST",
        "SHOPIFY_SHOP_URL",
        "FACEBOOK_APP_ID",
        "STATE_TOKEN_SECRET",
    ] {
        assert!(text.contains(name), "{name} not named in: {text}");
    }
    assert_eq!(err.problems.len(), 10, "{text}");
    assert!(!text.contains("short"), "a secret is never echoed: {text}");
}

#[test]
fn a_configured_key_is_used_and_never_echoed() {
    let mut env = complete();
    let key = [7u8; 32];
    env.insert("TOKEN_ENCRYPTION_KEY", base64_of(&key));
    let config = load(&env).unwrap();
    assert_eq!(config.storage.encryption_key.expose_secret(), &key);
    assert!(!config.storage.encryption_key_derived);

    let secret_looking = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"; // 26 bytes, wrong length
    env.insert("TOKEN_ENCRYPTION_KEY", secret_looking.into());
    let err = load(&env).unwrap_err();
    assert!(!err.to_string().contains(secret_looking));
}

#[test]
fn the_derived_key_depends_on_the_state_secret() {
    let a = load(&complete()).unwrap();
    let mut env = complete();
    env.insert(
        "STATE_TOKEN_SECRET",
        "another secret of 32 bytes or more".into(),
    );
    let b = load(&env).unwrap();
    assert_ne!(
        a.storage.encryption_key.expose_secret(),
        b.storage.encryption_key.expose_secret()
    );
    let again = load(&complete()).unwrap();
    assert_eq!(
        a.storage.encryption_key.expose_secret(),
        again.storage.encryption_key.expose_secret()
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let mut env = complete();
    env.insert("TOKEN_ENCRYPTION_KEY", base64_of(&[42u8; 32]));
    let config = load(&env).unwrap();
    let debug = format!("{config:?}");
    for name in [
        "FACEBOOK_APP_SECRET",
        "FACEBOOK_VERIFY_TOKEN",
        "SHOPIFY_API_SECRET",
        "STATE_TOKEN_SECRET",
    ] {
        assert!(
            !debug.contains(&format!("value-of-{name}")),
            "{name} leaked: {debug}"
        );
    }
    assert!(!debug.contains("42, 42"), "key bytes leaked: {debug}");
}

#[test]
fn poll_cron_off_disables_the_schedule_and_options_parse() {
    let mut env = complete();
    env.insert("POLL_CRON", "off".into());
    env.insert("HOST", "127.0.0.1".into());
    env.insert("PORT", "0".into());
    env.insert("OAUTH_SELF_TEST", "false".into());
    env.insert(
        "SHOPIFY_SHOP_URL",
        "http://127.0.0.1:8080/shops/{shop}/".into(),
    );
    let config = load(&env).unwrap();
    assert_eq!(config.poll.schedule, PollSchedule::Off);
    assert_eq!(config.listen.to_string(), "127.0.0.1:0");
    assert!(!config.oauth_self_test);
    assert_eq!(
        config.shopify.shop_url_template,
        "http://127.0.0.1:8080/shops/{shop}"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn database_url_is_optional_checked_and_never_echoed() {
    let config = load(&complete()).unwrap();
    assert!(config.storage.database.is_none(), "SQLite by default");

    let mut env = complete();
    env.insert(
        "DATABASE_URL",
        "postgres://salesbot:pa55word@db.internal:5432/salesbot".into(),
    );
    env.insert("DATABASE_POOL_SIZE", "8".into());
    let config = load(&env).unwrap();
    let database = config.storage.database.as_ref().unwrap();
    assert_eq!(database.pool_size, 8);
    let target = format!("{:?}", database.target);
    assert!(target.contains("db.internal"), "{target}");
    assert!(!format!("{config:?}").contains("pa55word"));

    for bad in [
        "mysql://u:pa55word@h/db",
        "postgres://u:pa55word@h:notaport/db",
    ] {
        env.insert("DATABASE_URL", bad.into());
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        assert!(!err.contains("pa55word"), "{err}");
    }
    env.insert("DATABASE_URL", "postgres://localhost/salesbot".into());
    env.insert("DATABASE_POOL_SIZE", "0".into());
    assert!(
        load(&env)
            .unwrap_err()
            .to_string()
            .contains("DATABASE_POOL_SIZE")
    );
}

#[test]
fn storage_url_defaults_to_the_data_dir_and_needs_a_database() {
    use crate::config::StorageUrl;
    let mut env = complete();
    env.insert("DATA_DIR", "/srv/bot".into());
    env.insert("DATABASE_URL", "postgres://localhost/salesbot".into());
    let database = load(&env).unwrap().storage.database.unwrap();
    assert_eq!(database.objects, StorageUrl::File("/srv/bot".into()));
    assert_eq!(database.publish_interval, std::time::Duration::from_secs(2));

    env.insert("STORAGE_URL", "s3://bot-data/shop-1".into());
    env.insert("STORAGE_PUBLISH_INTERVAL", "0.5".into());
    let database = load(&env).unwrap().storage.database.unwrap();
    assert_eq!(
        database.objects,
        StorageUrl::S3 {
            bucket: "bot-data".into(),
            prefix: "shop-1".into()
        }
    );
    assert_eq!(
        database.publish_interval,
        std::time::Duration::from_millis(500)
    );

    env.insert("STORAGE_URL", "ftp://x".into());
    assert!(load(&env).unwrap_err().to_string().contains("STORAGE_URL"));
    env.remove("DATABASE_URL");
    env.insert("STORAGE_URL", "s3://bot-data".into());
    let err = load(&env).unwrap_err().to_string();
    assert!(err.contains("STORAGE_URL: needs DATABASE_URL"), "{err}");
}

#[test]
fn admin_token_is_optional_long_enough_and_never_echoed() {
    assert!(load(&complete()).unwrap().admin_token.is_none());
    let mut env = complete();
    env.insert("ADMIN_TOKEN", "short-secret".into());
    let said = load(&env).unwrap_err().to_string();
    assert!(said.contains("ADMIN_TOKEN: must be at least 16"), "{said}");
    assert!(!said.contains("short-secret"), "{said}");
    env.insert("ADMIN_TOKEN", "a-long-enough-admin-token".into());
    let config = load(&env).unwrap();
    assert_eq!(
        config.admin_token.as_ref().map(|t| t.expose_secret().len()),
        Some(25)
    );
    assert!(!format!("{config:?}").contains("a-long-enough-admin-token"));
}

#[test]
fn previous_keys_are_a_list_of_keys_never_echoed() {
    let mut env = complete();
    env.insert(
        "TOKEN_ENCRYPTION_KEY_PREVIOUS",
        format!("{}, {}", base64_of(&[7u8; 32]), base64_of(&[8u8; 32])),
    );
    assert_eq!(load(&env).unwrap().storage.previous_keys.len(), 2);
    env.insert(
        "TOKEN_ENCRYPTION_KEY_PREVIOUS",
        format!("{},not-a-key-at-all", base64_of(&[7u8; 32])),
    );
    let said = load(&env).unwrap_err().to_string();
    assert!(
        said.contains("TOKEN_ENCRYPTION_KEY_PREVIOUS: entry 2"),
        "{said}"
    );
    assert!(!said.contains("not-a-key-at-all"), "{said}");
}
