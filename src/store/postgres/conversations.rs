//! Every stored Messenger event, in PostgreSQL: one row per event, keyed per conversation by
//! the same 16-byte key the files deduplicate with (its `mid`, or the whole event). A delivery
//! is one statement, so one commit: acknowledged once it returns, a no-op when redelivered to
//! any replica. The objects the bot reads are published from here (`publisher`).

use serde_json::Value;

use super::PgDatabase;
use crate::domain::{PageId, SenderId};
use crate::store::conversations::{Conversations, PageCounts};
use crate::store::{MessagingEvent, StoreError, unix_now_ms};
use crate::telemetry::metrics::Metrics;

/// Adds a delivery's events and counts the new ones, in one statement: the conversation's row
/// is created or its version bumped (the publisher's cue), then each event inserted unless its
/// key is there already. Arrival order is kept in `seq` for events of equal time.
const ADD: &str = "
WITH conversation AS (
    INSERT INTO conversations (page_id, customer_id) VALUES ($1, $2)
    ON CONFLICT (page_id, customer_id)
    DO UPDATE SET version = conversations.version + 1, changed_at = now()
    RETURNING id
)
INSERT INTO events (conversation, key, ts, line)
SELECT conversation.id, event.key, event.ts, event.line
FROM conversation,
     unnest($3::bytea[], $4::int8[], $5::text[]) WITH ORDINALITY AS event (key, ts, line, n)
ORDER BY event.n
ON CONFLICT (conversation, key) DO NOTHING";

#[derive(Debug, Clone)]
pub struct PgConversations {
    db: PgDatabase,
    /// Where each delivery's commit time is counted (`salesbot_flush_duration_seconds`).
    metrics: Option<Metrics>,
}

impl PgConversations {
    pub fn new(db: PgDatabase) -> PgConversations {
        PgConversations { db, metrics: None }
    }

    pub fn observed(mut self, metrics: &Metrics) -> PgConversations {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Every conversation's page and customer, sorted.
    pub async fn list(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT page_id, customer_id FROM conversations ORDER BY page_id, customer_id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Every customer erased, and when (Unix milliseconds), sorted.
    pub async fn erasures(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT page_id, customer_id, erased_at FROM erasures
                 ORDER BY page_id, customer_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }

    /// Marks a customer erased at `at_ms`, unless a later erasure is marked already.
    pub async fn record_erasure(
        &self,
        page: &PageId,
        customer: &SenderId,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "INSERT INTO erasures (page_id, customer_id, erased_at) VALUES ($1, $2, $3)
                 ON CONFLICT (page_id, customer_id)
                 DO UPDATE SET erased_at = GREATEST(erasures.erased_at, EXCLUDED.erased_at)",
                &[&page.as_str(), &customer.as_str(), &at_ms],
            )
            .await?;
        Ok(())
    }

    /// A conversation's events in arrival order, as the files would hold them before sorting.
    pub(crate) async fn events(
        &self,
        page: &str,
        customer: &str,
    ) -> Result<Vec<MessagingEvent>, StoreError> {
        let rows = self
            .db
            .client()
            .await?
            .query(
                "SELECT e.line FROM events e JOIN conversations c ON c.id = e.conversation
                 WHERE c.page_id = $1 AND c.customer_id = $2 ORDER BY e.seq",
                &[&page, &customer],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| MessagingEvent::from_json(row.get::<_, &str>(0).as_bytes()))
            .collect())
    }
}

#[async_trait::async_trait]
impl Conversations for PgConversations {
    async fn add(
        &self,
        page: &PageId,
        customer: &SenderId,
        events: Vec<MessagingEvent>,
    ) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let key_bytes: Vec<[u8; 16]> = events.iter().map(MessagingEvent::key_bytes).collect();
        let keys: Vec<&[u8]> = key_bytes.iter().map(|k| &k[..]).collect();
        let times: Vec<Option<i64>> = events.iter().map(MessagingEvent::timestamp).collect();
        let lines: Vec<&str> = events
            .iter()
            .map(|e| std::str::from_utf8(e.line()).expect("an event's line is UTF-8"))
            .collect();
        let client = self.db.client().await?;
        // Prepared once per connection: parsing and planning it for every delivery cost
        // PostgreSQL more than the insert itself.
        let add = client.prepare_cached(ADD).await?;
        let started = std::time::Instant::now();
        let inserted = client
            .execute(
                &add,
                &[&page.as_str(), &customer.as_str(), &keys, &times, &lines],
            )
            .await?;
        if let Some(metrics) = &self.metrics {
            metrics.flush(started.elapsed());
        }
        Ok(inserted as usize)
    }

    async fn read(&self, page: &PageId, customer: &SenderId) -> Result<Vec<Value>, StoreError> {
        let events = self.events(page.as_str(), customer.as_str()).await?;
        let document = crate::store::local::files::render_document(events);
        Ok(serde_json::from_slice(&document).expect("a rendered conversation is JSON"))
    }

    /// Every acknowledged event is committed already; the objects catch up by themselves.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn erase_page(&self, page: &PageId) -> Result<usize, StoreError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM events WHERE conversation IN
             (SELECT id FROM conversations WHERE page_id = $1)",
            &[&page.as_str()],
        )
        .await?;
        tx.execute("DELETE FROM erasures WHERE page_id = $1", &[&page.as_str()])
            .await?;
        let erased = tx
            .execute(
                "DELETE FROM conversations WHERE page_id = $1",
                &[&page.as_str()],
            )
            .await?;
        tx.commit().await?;
        Ok(erased as usize)
    }

    async fn erase_customer(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<usize, StoreError> {
        let ids: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&page.as_str(), &customer.as_str()];
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO erasures (page_id, customer_id, erased_at) VALUES ($1, $2, $3)
             ON CONFLICT (page_id, customer_id) DO UPDATE SET erased_at = EXCLUDED.erased_at",
            &[&page.as_str(), &customer.as_str(), &unix_now_ms()],
        )
        .await?;
        let events = tx
            .execute(
                "DELETE FROM events WHERE conversation IN
                 (SELECT id FROM conversations WHERE page_id = $1 AND customer_id = $2)",
                &ids,
            )
            .await?;
        tx.execute(
            "DELETE FROM conversations WHERE page_id = $1 AND customer_id = $2",
            &ids,
        )
        .await?;
        tx.commit().await?;
        Ok(events as usize)
    }

    async fn erased_at(
        &self,
        page: &PageId,
        customer: &SenderId,
    ) -> Result<Option<i64>, StoreError> {
        let row = self
            .db
            .client()
            .await?
            .query_opt(
                "SELECT erased_at FROM erasures WHERE page_id = $1 AND customer_id = $2",
                &[&page.as_str(), &customer.as_str()],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn counts(&self, page: &PageId) -> Result<PageCounts, StoreError> {
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT count(DISTINCT c.id), count(e.conversation) FROM conversations c
                 LEFT JOIN events e ON e.conversation = c.id WHERE c.page_id = $1",
                &[&page.as_str()],
            )
            .await?;
        Ok(PageCounts {
            conversations: row.get::<_, i64>(0) as usize,
            messages: row.get::<_, i64>(1) as usize,
        })
    }
}
