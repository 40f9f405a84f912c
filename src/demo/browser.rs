//! Just enough of a browser for the demo's story: follows redirects one by one, keeps the
//! cookies the app sets, and clicks the consent pages' one button.

use std::collections::BTreeMap;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

pub struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the page at {0} has no approve button")]
    NoButton(String),
    #[error("too many redirects from {0}")]
    Loop(String),
}

impl Browser {
    pub fn new() -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain client builds");
        Browser {
            http,
            cookies: BTreeMap::new(),
        }
    }

    /// Opens `url`, follows redirects, and returns the final page's body and URL.
    pub async fn open(&mut self, url: &str) -> Result<(String, String), BrowserError> {
        let mut url = url.to_string();
        for _ in 0..10 {
            let mut request = self.http.get(&url);
            if !self.cookies.is_empty() {
                let header: Vec<String> = self
                    .cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                request = request.header(COOKIE, header.join("; "));
            }
            let response = request.send().await.map_err(|e| BrowserError::Request {
                url: url.clone(),
                reason: crate::outbound::describe(e),
            })?;
            self.remember(&response);
            let status = response.status();
            if status.is_redirection() {
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                url = reqwest::Url::parse(&url)
                    .and_then(|base| base.join(next))
                    .map(String::from)
                    .unwrap_or_default();
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(BrowserError::Status {
                    url,
                    status: status.as_u16(),
                    body,
                });
            }
            return Ok((body, url));
        }
        Err(BrowserError::Loop(url))
    }

    /// Clicks the consent page's button (`id="approve"`), following where it leads.
    pub async fn approve(&mut self, page: &str, page_url: &str) -> Result<Value, BrowserError> {
        let href = page
            .split("id=\"approve\"")
            .nth(1)
            .and_then(|rest| rest.split("href=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| BrowserError::NoButton(page_url.to_string()))?
            .replace("&amp;", "&");
        let target = reqwest::Url::parse(page_url)
            .and_then(|base| base.join(&href))
            .map_err(|_| BrowserError::NoButton(page_url.to_string()))?;
        let (body, url) = self.open(target.as_str()).await?;
        serde_json::from_str(&body).map_err(|_| BrowserError::Status {
            url,
            status: 200,
            body,
        })
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for header in response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let Some((name, value)) = header
                .split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
            else {
                continue;
            };
            if header.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}
