//! What `GET /metrics` shows: counters and histograms in Prometheus' text format.
//!
//! One registry per application, not a process-wide one: tests run many apps in one process
//! and each must count exactly its own. The label values are fixed sets, resolved once here, so
//! counting on the webhook's path is an atomic add (no map lookup, no allocation).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

type Labels = [(&'static str, &'static str); 1];

/// How a webhook request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// 200: every event durable (or a repeat).
    Stored,
    /// 401: the signature did not match.
    BadSignature,
    /// 400 or 413: not a payload we take.
    Rejected,
    /// 503: storage out of reach; Meta delivers again.
    Unavailable,
    /// 500.
    Error,
}

impl WebhookOutcome {
    const ALL: [WebhookOutcome; 5] = [
        WebhookOutcome::Stored,
        WebhookOutcome::BadSignature,
        WebhookOutcome::Rejected,
        WebhookOutcome::Unavailable,
        WebhookOutcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Stored => "stored",
            WebhookOutcome::BadSignature => "bad_signature",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::Unavailable => "unavailable",
            WebhookOutcome::Error => "error",
        }
    }

    /// From the status the request was answered with.
    pub fn of_status(status: u16) -> WebhookOutcome {
        match status {
            200..=299 => WebhookOutcome::Stored,
            401 | 403 => WebhookOutcome::BadSignature,
            400..=499 => WebhookOutcome::Rejected,
            503 => WebhookOutcome::Unavailable,
            _ => WebhookOutcome::Error,
        }
    }
}

/// Where stored events came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Poll,
}

/// How one page's poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollResult {
    Ok,
    NeedsReauth,
    Failed,
}

/// How one Graph API call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphOutcome {
    Ok,
    /// Meta's rate limiting (HTTP 429 or one of its throttling codes).
    Throttled,
    /// Any other error answer.
    Error,
    /// No answer: connection refused, timeout.
    Unreachable,
}

/// How one attachment download ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentResult {
    Stored,
    /// Failed for now; tried again later.
    Retried,
    /// Failed for good (refused host, too large, out of retries).
    GivenUp,
}

#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    webhook: [Counter; 5],
    webhook_duration: Histogram,
    stored: [Counter; 2],
    duplicate: Counter,
    flush_duration: Histogram,
    poll_pages: [Counter; 3],
    graph: [Counter; 4],
    attachments: [Counter; 3],
    needing_reauth: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("salesbot");
        let webhook = labelled(
            &mut registry,
            "webhook_requests",
            "Webhook POSTs answered, by outcome",
            "outcome",
            WebhookOutcome::ALL.map(WebhookOutcome::label),
        );
        let stored = labelled(
            &mut registry,
            "events_stored",
            "Messenger events stored for the first time, by where they came from",
            "source",
            ["webhook", "poll"],
        );
        let poll_pages = labelled(
            &mut registry,
            "poll_pages",
            "Pages polled, by result",
            "result",
            ["ok", "needs_reauth", "failed"],
        );
        let graph = labelled(
            &mut registry,
            "graph_requests",
            "Graph API calls, by outcome",
            "outcome",
            ["ok", "throttled", "error", "unreachable"],
        );
        let attachments = labelled(
            &mut registry,
            "attachments",
            "Attachment downloads, by result",
            "result",
            ["stored", "retried", "given_up"],
        );
        let duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Messenger events received again and skipped (a redelivery, or polled after the webhook)",
            duplicate.clone(),
        );
        // 100 µs to ~3.3 s.
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let webhook_duration = latency();
        registry.register_with_unit(
            "webhook_duration",
            "Time to answer a webhook POST, storage included",
            Unit::Seconds,
            webhook_duration.clone(),
        );
        let flush_duration = latency();
        registry.register_with_unit(
            "flush_duration",
            "Time to make a round of writes durable (a journal fsync, or a PostgreSQL commit)",
            Unit::Seconds,
            flush_duration.clone(),
        );
        let needing_reauth = Gauge::default();
        registry.register(
            "pages_needing_reauth",
            "Connected pages whose token Meta refused: the merchant must log in again",
            needing_reauth.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            webhook,
            webhook_duration,
            stored,
            duplicate,
            flush_duration,
            poll_pages,
            graph,
            attachments,
            needing_reauth,
        }))
    }

    pub fn webhook(&self, outcome: WebhookOutcome, took: Duration) {
        // `ALL` lists the outcomes in declaration order, as the counters were made.
        self.0.webhook[outcome as usize].inc();
        self.0.webhook_duration.observe(took.as_secs_f64());
    }

    /// `offered` events went into a store, `new` of them were not there yet.
    pub fn events(&self, source: Source, offered: usize, new: usize) {
        let index = match source {
            Source::Webhook => 0,
            Source::Poll => 1,
        };
        self.0.stored[index].inc_by(new as u64);
        self.0.duplicate.inc_by(offered.saturating_sub(new) as u64);
    }

    pub fn flush(&self, took: Duration) {
        self.0.flush_duration.observe(took.as_secs_f64());
    }

    pub fn poll_page(&self, result: PollResult) {
        self.0.poll_pages[result as usize].inc();
    }

    pub fn graph(&self, outcome: GraphOutcome) {
        self.0.graph[outcome as usize].inc();
    }

    pub fn attachment(&self, result: AttachmentResult) {
        self.0.attachments[result as usize].inc();
    }

    /// The text exposition, with the gauges read at scrape time.
    pub fn render(&self, needing_reauth: usize) -> String {
        self.0.needing_reauth.set(needing_reauth as i64);
        let mut text = String::new();
        encode(&mut text, &self.0.registry).expect("writing to a String cannot fail");
        text
    }
}

/// A counter family with one label, each of whose `values` is resolved once.
fn labelled<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create(&[(label, value)]).clone())
}

/// The content type of [`Metrics::render`] (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn every_count_is_exact_and_named_as_documented() {
        let metrics = Metrics::new();
        metrics.webhook(WebhookOutcome::Stored, Duration::from_millis(2));
        metrics.webhook(WebhookOutcome::of_status(401), Duration::from_millis(1));
        metrics.events(Source::Webhook, 5, 3);
        metrics.events(Source::Poll, 7, 7);
        metrics.poll_page(PollResult::NeedsReauth);
        metrics.graph(GraphOutcome::Throttled);
        metrics.attachment(AttachmentResult::GivenUp);
        metrics.flush(Duration::from_millis(3));
        let text = metrics.render(2);
        for (series, expected) in [
            (r#"salesbot_webhook_requests_total{outcome="stored"}"#, 1.0),
            (
                r#"salesbot_webhook_requests_total{outcome="bad_signature"}"#,
                1.0,
            ),
            (
                r#"salesbot_webhook_requests_total{outcome="unavailable"}"#,
                0.0,
            ),
            (r#"salesbot_events_stored_total{source="webhook"}"#, 3.0),
            (r#"salesbot_events_stored_total{source="poll"}"#, 7.0),
            ("salesbot_events_duplicate_total", 2.0),
            (r#"salesbot_poll_pages_total{result="needs_reauth"}"#, 1.0),
            (r#"salesbot_poll_pages_total{result="ok"}"#, 0.0),
            (r#"salesbot_graph_requests_total{outcome="throttled"}"#, 1.0),
            (r#"salesbot_attachments_total{result="given_up"}"#, 1.0),
            ("salesbot_webhook_duration_seconds_count", 2.0),
            ("salesbot_flush_duration_seconds_count", 1.0),
            ("salesbot_pages_needing_reauth", 2.0),
        ] {
            assert_eq!(value(&text, series), expected, "{series}");
        }
    }
}
