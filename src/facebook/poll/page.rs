//! Polling one page: metadata, webhook subscription, and every conversation with every message
//! Meta still serves, merged into the conversation files.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::PollSettings;
use super::caller::PageCaller;
use super::convert::{parse_time, to_event};
use crate::attachments::{self, Downloader};
use crate::domain::{PageId, SenderId};
use crate::facebook::graph::{GraphClient, GraphError, SUBSCRIBED_FIELDS};
use crate::facebook::subscription;
use crate::store::local::files::PAGE_FIELDS;
use crate::store::{ConversationStore, MessagingEvent, MetadataStore, StoreError};
use crate::telemetry::metrics::{Metrics, Source};

/// What Graph is asked for per conversation; messages include attachments and stickers.
pub const CONVERSATION_FIELDS: &str =
    "id,updated_time,participants,messages{message,from,to,created_time,id,attachments,sticker}";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageReport {
    pub conversations: usize,
    pub messages_seen: usize,
    pub new_messages: usize,
    pub graph_calls: usize,
    pub resubscribed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct PagePoll<'a> {
    pub graph: &'a GraphClient,
    pub conversations: &'a ConversationStore,
    pub metadata: &'a MetadataStore,
    pub settings: &'a PollSettings,
    pub metrics: &'a Metrics,
    pub attachments: Option<&'a Downloader>,
    pub page: &'a PageId,
    pub token: &'a SecretString,
    /// Unix ms of the last successful poll's start: older conversations are not paged through.
    pub since_ms: Option<i64>,
}

impl PagePoll<'_> {
    pub async fn run(&self, report: &mut PageReport) -> Result<(), PageError> {
        let mut caller = PageCaller::new(self.graph, self.settings);
        let result = self.run_with(&mut caller, report).await;
        report.graph_calls = caller.calls;
        result
    }

    async fn run_with(
        &self,
        caller: &mut PageCaller<'_>,
        report: &mut PageReport,
    ) -> Result<(), PageError> {
        let token = self.token.expose_secret();
        let fields = PAGE_FIELDS.join(",");
        let metadata = caller
            .get(
                self.graph.endpoint(self.page.as_str()),
                &[("fields", &fields), ("access_token", token)],
            )
            .await?;
        self.metadata.write(self.page, &metadata).await?;
        // Read through the pacer (retried like every poll call); Meta drops subscriptions after
        // an hour of failed deliveries.
        let apps_url = self
            .graph
            .endpoint(&format!("{}/subscribed_apps", self.page));
        let apps = caller
            .get(apps_url.clone(), &[("access_token", token)])
            .await?;
        let apps = apps
            .get("data")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !subscription::is_subscribed(apps) {
            let fields = [
                ("subscribed_fields", SUBSCRIBED_FIELDS),
                ("access_token", token),
            ];
            caller.post(apps_url, &fields).await?;
            report.resubscribed = true;
            tracing::warn!(page = %self.page, "webhook subscription was missing; restored");
        }

        let first = self.graph.endpoint(&format!("{}/conversations", self.page));
        let mut listing = caller
            .get(
                first,
                &[("fields", CONVERSATION_FIELDS), ("access_token", token)],
            )
            .await?;
        loop {
            let mut reached_checkpoint = false;
            for conversation in listing
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if self.older_than_checkpoint(conversation.get("updated_time")) {
                    reached_checkpoint = true;
                    break;
                }
                self.conversation(caller, conversation, report).await?;
            }
            let next = listing.pointer("/paging/next").and_then(Value::as_str);
            match next {
                Some(link) if !reached_checkpoint => {
                    listing = caller.get(self.graph.same_origin(link)?, &[]).await?
                }
                _ => return Ok(()),
            }
        }
    }

    async fn conversation(
        &self,
        caller: &mut PageCaller<'_>,
        conversation: &Value,
        report: &mut PageReport,
    ) -> Result<(), PageError> {
        let Some(customer) = self.customer_of(conversation) else {
            tracing::warn!(page = %self.page, "conversation without a usable customer id skipped");
            return Ok(());
        };
        let mut events = Vec::new();
        let mut messages = conversation.get("messages").cloned().unwrap_or(Value::Null);
        loop {
            let mut reached_checkpoint = false;
            for message in messages
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                report.messages_seen += 1;
                reached_checkpoint |= self.older_than_checkpoint(message.get("created_time"));
                match to_event(message) {
                    Ok(event) => events.push(MessagingEvent::from(event)),
                    Err(err) => tracing::warn!(page = %self.page, error = %err, "message skipped"),
                }
            }
            let Some(link) = messages.pointer("/paging/next").and_then(Value::as_str) else {
                break;
            };
            if reached_checkpoint {
                break;
            }
            match caller.get(self.graph.same_origin(link)?, &[]).await {
                Ok(more) => messages = more,
                // Meta serves only the 20 most recent messages of a conversation in detail;
                // older ones answer as deleted. That is the end of what can be read, not a failure.
                Err(err) if is_deleted_message(&err) => break,
                Err(err) => return Err(err.into()),
            }
        }
        report.conversations += 1;
        // A customer erased on request: Meta still serves the history; only what came after
        // the erasure is stored.
        if let Some(at) = self.conversations.erased_at(self.page, &customer).await? {
            crate::store::conversations::after_erasure(&mut events, at);
        }
        let offered = events.len();
        let new = attachments::add_owing(
            self.conversations.as_ref(),
            self.attachments,
            self.page,
            &customer,
            events,
        )
        .await?;
        self.metrics.events(Source::Poll, offered, new);
        report.new_messages += new;
        Ok(())
    }

    fn customer_of(&self, conversation: &Value) -> Option<SenderId> {
        conversation
            .pointer("/participants/data")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(|p| p.get("id").and_then(Value::as_str))
            .find(|id| *id != self.page.as_str())
            .and_then(|id| SenderId::parse(id).ok())
    }

    fn older_than_checkpoint(&self, time: Option<&Value>) -> bool {
        match (
            self.since_ms,
            time.and_then(Value::as_str).and_then(parse_time),
        ) {
            (Some(since), Some(at)) => at < since,
            _ => false,
        }
    }
}

fn is_deleted_message(err: &GraphError) -> bool {
    err.body()
        .is_some_and(|e| e.message.to_ascii_lowercase().contains("has been deleted"))
}
