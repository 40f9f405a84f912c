//! Turning raw environment strings into a [`Config`], collecting every problem on the way.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use secrecy::{SecretBox, SecretString};
use url::Url;

use super::{
    AttachmentConfig, Config, FacebookConfig, PollConfig, PollSchedule, REQUIRED, ShopifyConfig,
    StorageConfig,
};

/// One thing wrong with the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing(&'static str),
    Invalid { name: &'static str, reason: String },
}

/// Everything wrong with the environment, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<&str> = self
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::Missing(name) => Some(*name),
                Problem::Invalid { .. } => None,
            })
            .collect();
        write!(f, "configuration is not usable")?;
        if !missing.is_empty() {
            write!(
                f,
                "\n  missing required environment variables: {}",
                missing.join(", ")
            )?;
        }
        for problem in &self.problems {
            if let Problem::Invalid { name, reason } = problem {
                write!(f, "\n  {name}: {reason}")?;
            }
        }
        write!(
            f,
            "\n  (see .env.example for every variable and its meaning)"
        )
    }
}

impl std::error::Error for ConfigError {}

/// The shortest `STATE_TOKEN_SECRET` accepted: as long as the key it signs with.
pub const MIN_STATE_SECRET_BYTES: usize = 32;

pub(super) struct Reader<F> {
    lookup: F,
    problems: Vec<Problem>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn new(lookup: F) -> Self {
        Reader {
            lookup,
            problems: Vec::new(),
        }
    }

    pub(super) fn read(mut self) -> Result<Config, ConfigError> {
        let mut required = REQUIRED.map(|name| self.required(name));
        let mut take = |i: usize| std::mem::take(&mut required[i]);
        let app_id = self.app_id(take(0));
        let app_secret = SecretString::from(take(1));
        let fb_redirect = self.url("FACEBOOK_REDIRECT_URI", &take(2));
        let webhook = self.url("FACEBOOK_WEBHOOK_ADDRESS", &take(3));
        let verify_token = SecretString::from(take(4));
        let api_key = take(5);
        let api_secret = SecretString::from(take(6));
        let shop_redirect = self.url("SHOPIFY_REDIRECT_URI", &take(7));
        let state_secret = self.state_secret(take(8));

        let host = self.optional("HOST", "0.0.0.0");
        let host = self.host(&host);
        let port = self.parsed("PORT", "5000", |v| {
            v.parse::<u16>()
                .map_err(|_| "must be a port number from 0 to 65535".to_string())
        });
        let graph_url = self.optional("FACEBOOK_GRAPH_URL", "https://graph.facebook.com");
        let graph_url = self.url("FACEBOOK_GRAPH_URL", &graph_url);
        let dialog_url = self.optional("FACEBOOK_DIALOG_URL", "https://www.facebook.com");
        let dialog_url = self.url("FACEBOOK_DIALOG_URL", &dialog_url);
        let shop_url = self.optional("SHOPIFY_SHOP_URL", "https://{shop}");
        let shop_url = self.parsed("SHOPIFY_SHOP_URL", &shop_url, shop_url_template);
        let schedule = self.parsed("POLL_CRON", "0 0 0 * * *", poll_schedule);
        let concurrency = self.parsed("POLL_CONCURRENCY", "4", |v| match v.parse::<usize>() {
            Ok(n @ 1..=256) => Ok(n),
            _ => Err("must be a whole number from 1 to 256".to_string()),
        });
        let self_test = self.parsed("OAUTH_SELF_TEST", "true", boolean);
        let admin_token = self.admin_token();
        let attachments = self.attachments();
        let key = self.encryption_key(&state_secret);
        let previous_keys = self.previous_keys();
        let data_dir = PathBuf::from(self.optional("DATA_DIR", "."));
        let database = self.database(&data_dir);

        let storage = StorageConfig {
            token_db_path: PathBuf::from(self.optional("TOKEN_DB_PATH", "./data/tokens.db")),
            session_db_path: PathBuf::from(self.optional("SESSION_DB_PATH", "./data/sessions.db")),
            data_dir,
            encryption_key_derived: matches!(key, Some((_, true))),
            previous_keys: previous_keys.unwrap_or_default(),
            encryption_key: match key {
                Some((key, _)) => key,
                None => SecretBox::new(Box::new([0; 32])),
            },
            database,
        };
        let graph_version = self.optional("FACEBOOK_GRAPH_VERSION", "v25.0");
        let api_version = self.optional("SHOPIFY_API_VERSION", "2026-10");

        if !self.problems.is_empty() {
            return Err(ConfigError {
                problems: self.problems,
            });
        }
        // Every `Option` below is `Some`: each `None` pushed a problem, and there are none.
        Ok(Config {
            listen: SocketAddr::new(host.unwrap(), port.unwrap()),
            facebook: FacebookConfig {
                app_id,
                app_secret,
                redirect_uri: fb_redirect.unwrap(),
                webhook_address: webhook.unwrap(),
                verify_token,
                graph_url: graph_url.unwrap(),
                dialog_url: dialog_url.unwrap(),
                graph_version,
            },
            shopify: ShopifyConfig {
                api_key,
                api_secret,
                redirect_uri: shop_redirect.unwrap(),
                shop_url_template: shop_url.unwrap(),
                api_version,
            },
            state_token_secret: state_secret,
            storage,
            poll: PollConfig {
                schedule: schedule.unwrap(),
                concurrency: concurrency.unwrap(),
            },
            oauth_self_test: self_test.unwrap(),
            admin_token: admin_token.unwrap(),
            attachments: attachments.unwrap(),
        })
    }

    fn attachments(&mut self) -> Option<AttachmentConfig> {
        let enabled = self.parsed("ATTACHMENTS", "on", boolean);
        let hosts = self.parsed(
            "ATTACHMENT_HOSTS",
            super::attachments::META_CDN,
            super::attachments::parse_hosts,
        );
        let max_bytes = self.parsed("ATTACHMENT_MAX_BYTES", "26214400", |v| {
            match v.parse::<u64>() {
                Ok(n @ 1..) => Ok(n),
                _ => Err("must be a number of bytes above 0".to_string()),
            }
        });
        Some(AttachmentConfig {
            enabled: enabled?,
            hosts: hosts?,
            max_bytes: max_bytes?,
        })
    }

    /// `ADMIN_TOKEN`: unset turns `/metrics` and `/status` off (404). A short one is refused:
    /// it guards a page listing every shop and page.
    fn admin_token(&mut self) -> Option<Option<SecretString>> {
        let Some(token) = self.raw("ADMIN_TOKEN") else {
            return Some(None);
        };
        if token.len() < 16 {
            return self.invalid(
                "ADMIN_TOKEN",
                "must be at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
            );
        }
        Some(Some(SecretString::from(token)))
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&mut self, name: &'static str) -> String {
        self.raw(name).unwrap_or_else(|| {
            self.problems.push(Problem::Missing(name));
            String::new()
        })
    }

    fn optional(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    fn parsed<T>(
        &mut self,
        name: &'static str,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.optional(name, default);
        parse(&value)
            .map_err(|reason| self.problems.push(Problem::Invalid { name, reason }))
            .ok()
    }

    /// Meta's app ids are numbers (15 to 20 digits): anything else is a value pasted into the
    /// wrong variable, which the OAuth dialog would only reject once a merchant clicks.
    fn app_id(&mut self, value: String) -> String {
        let digits = (15..=20).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
        if !value.is_empty() && !digits {
            self.problems.push(Problem::Invalid {
                name: "FACEBOOK_APP_ID",
                reason: format!(
                    "`{value}` is not an app id: 15 to 20 digits (Meta for Developers > your app > Settings > Basic)"
                ),
            });
        }
        value
    }

    /// The state secret signs OAuth states (HMAC-SHA256) and, without `TOKEN_ENCRYPTION_KEY`,
    /// is where the token key comes from: fewer than 32 bytes is guessable by brute force.
    fn state_secret(&mut self, value: String) -> SecretString {
        if !value.is_empty() && value.len() < MIN_STATE_SECRET_BYTES {
            self.problems.push(Problem::Invalid {
                name: "STATE_TOKEN_SECRET",
                reason: format!(
                    "must be at least {MIN_STATE_SECRET_BYTES} bytes long (it is {}); generate one with `openssl rand -base64 32`",
                    value.len()
                ),
            });
        }
        SecretString::from(value)
    }

    fn url(&mut self, name: &'static str, value: &str) -> Option<Url> {
        if value.is_empty() {
            return None; // already reported as missing
        }
        match Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => self.invalid(name, format!("`{value}` is not an http(s) URL")),
            Err(err) => self.invalid(name, format!("`{value}` is not a URL ({err})")),
        }
    }

    fn host(&mut self, value: &str) -> Option<IpAddr> {
        if value.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        value.parse().ok().or_else(|| {
            self.invalid(
                "HOST",
                format!("`{value}` is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)"),
            )
        })
    }

    fn invalid<T>(&mut self, name: &'static str, reason: String) -> Option<T> {
        self.problems.push(Problem::Invalid { name, reason });
        None
    }
}

fn shop_url_template(value: &str) -> Result<String, String> {
    if !value.contains("{shop}") {
        return Err(format!("`{value}` must contain the placeholder {{shop}}"));
    }
    let example = value.replace("{shop}", "example.myshopify.com");
    match Url::parse(&example) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            Ok(value.trim_end_matches('/').to_string())
        }
        _ => Err(format!(
            "`{value}` is not an http(s) URL once {{shop}} is filled in"
        )),
    }
}

fn poll_schedule(value: &str) -> Result<PollSchedule, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(PollSchedule::Off);
    }
    // The same parser settings as tokio-cron-scheduler, so what passes here also schedules.
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(value)
        .map(|_| PollSchedule::Cron(value.to_string()))
        .map_err(|err| {
            format!("`{value}` is not a seconds-first cron expression like `0 0 0 * * *`, or `off` ({err})")
        })
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{value}` is not true or false")),
    }
}

mod storage;

#[cfg(test)]
mod tests;
