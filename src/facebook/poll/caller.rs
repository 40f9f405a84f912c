//! One page's calls to the Graph API during a poll: paced (the Conversations API allows 2 calls
//! per second per page), retried with exponential backoff and jitter when the failure is
//! transient, and slowed down when Meta's usage headers say a limit is near.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::PollSettings;
use crate::facebook::graph::{GraphClient, GraphError, Usage};

pub struct PageCaller<'a> {
    graph: &'a GraphClient,
    settings: &'a PollSettings,
    next_call: Instant,
    /// Added to the pacing interval while Meta reports high usage.
    slowdown: Duration,
    pub calls: usize,
}

impl<'a> PageCaller<'a> {
    pub fn new(graph: &'a GraphClient, settings: &'a PollSettings) -> Self {
        PageCaller {
            graph,
            settings,
            next_call: Instant::now(),
            slowdown: Duration::ZERO,
            calls: 0,
        }
    }

    pub async fn get(&mut self, url: Url, query: &[(&str, &str)]) -> Result<Value, GraphError> {
        self.call(false, url, query).await
    }

    /// A POST, paced and retried like a GET: only for calls that are safe to repeat (a
    /// subscription asked for twice is one subscription).
    pub async fn post(&mut self, url: Url, query: &[(&str, &str)]) -> Result<Value, GraphError> {
        self.call(true, url, query).await
    }

    async fn call(
        &mut self,
        post: bool,
        url: Url,
        query: &[(&str, &str)],
    ) -> Result<Value, GraphError> {
        let mut attempt = 1;
        loop {
            tokio::time::sleep_until(self.next_call).await;
            self.next_call = Instant::now() + self.settings.min_call_interval + self.slowdown;
            self.calls += 1;
            let answer = match post {
                true => {
                    self.graph
                        .post_with_usage::<Value>(url.clone(), query)
                        .await
                }
                false => self.graph.get_with_usage::<Value>(url.clone(), query).await,
            };
            match answer {
                Ok((value, usage)) => {
                    self.observe(usage);
                    return Ok(value);
                }
                Err(err) if err.is_transient() && attempt < self.settings.max_attempts => {
                    let pause = self.backoff(attempt);
                    tracing::debug!(error = %err, attempt, pause_ms = pause.as_millis() as u64, "transient Graph error; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `base × 2^(attempt-1)`, plus up to half again at random so pages do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .settings
            .retry_base
            .saturating_mul(2u32.saturating_pow(attempt - 1));
        let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
        (base + jitter).min(self.settings.retry_cap)
    }

    fn observe(&mut self, usage: Usage) {
        if usage.regain_access_minutes > 0.0 {
            let wait = Duration::from_secs_f64(usage.regain_access_minutes * 60.0)
                .min(self.settings.retry_cap);
            tracing::warn!(
                minutes = usage.regain_access_minutes,
                "Meta throttled this app; pausing the page"
            );
            self.next_call = Instant::now() + wait;
        }
        self.slowdown = if usage.highest_percent >= 90.0 {
            self.settings.min_call_interval * 4
        } else if usage.highest_percent >= 75.0 {
            self.settings.min_call_interval
        } else {
            Duration::ZERO
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FacebookConfig;

    fn graph() -> GraphClient {
        let config = FacebookConfig {
            app_id: "1".into(),
            app_secret: "s".into(),
            redirect_uri: Url::parse("http://127.0.0.1/cb").unwrap(),
            webhook_address: Url::parse("http://127.0.0.1/wh").unwrap(),
            verify_token: "v".into(),
            graph_url: Url::parse("http://127.0.0.1:9").unwrap(),
            dialog_url: Url::parse("http://127.0.0.1:9").unwrap(),
            graph_version: "v25.0".into(),
        };
        GraphClient::new(reqwest::Client::new(), &config)
    }

    fn settings() -> PollSettings {
        PollSettings {
            concurrency: 1,
            min_call_interval: Duration::from_millis(500),
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
        }
    }

    #[test]
    fn usage_near_the_limit_slows_the_page_and_throttling_pauses_it() {
        let (graph, settings) = (graph(), settings());
        let mut caller = PageCaller::new(&graph, &settings);
        caller.observe(Usage {
            highest_percent: 50.0,
            regain_access_minutes: 0.0,
        });
        assert_eq!(caller.slowdown, Duration::ZERO);
        caller.observe(Usage {
            highest_percent: 80.0,
            regain_access_minutes: 0.0,
        });
        assert_eq!(caller.slowdown, Duration::from_millis(500));
        caller.observe(Usage {
            highest_percent: 95.0,
            regain_access_minutes: 0.0,
        });
        assert_eq!(caller.slowdown, Duration::from_secs(2));
        let before = Instant::now();
        caller.observe(Usage {
            highest_percent: 100.0,
            regain_access_minutes: 5.0,
        });
        // Five minutes asked, capped at the longest single pause.
        assert!(caller.next_call >= before + Duration::from_secs(59));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let (graph, settings) = (graph(), settings());
        let caller = PageCaller::new(&graph, &settings);
        for attempt in 1..=4 {
            let base = Duration::from_secs(1 << (attempt - 1));
            let pause = caller.backoff(attempt);
            assert!(
                pause >= base && pause <= base.mul_f64(1.5),
                "attempt {attempt}: {pause:?}"
            );
        }
        assert_eq!(caller.backoff(30), Duration::from_secs(60));
    }
}
