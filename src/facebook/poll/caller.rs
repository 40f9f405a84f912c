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
        let mut attempt = 1;
        loop {
            tokio::time::sleep_until(self.next_call).await;
            self.next_call = Instant::now() + self.settings.min_call_interval + self.slowdown;
            self.calls += 1;
            match self.graph.get_with_usage::<Value>(url.clone(), query).await {
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
