//! Publishing conversations from PostgreSQL to the object tree the bot reads.
//!
//! Every replica runs one. A pass leases up to [`BATCH`] conversations changed since their
//! object was last written and not written within the interval (`STORAGE_PUBLISH_INTERVAL`,
//! so a busy conversation's object is rewritten at most that often), renders each from its
//! events exactly as the files would hold them, puts it, and records the version it shows.
//! The lease keeps two replicas off the same conversation (an older render could land last).
//! It is short ([`LEASE`]) and renewed while the pass runs, so a replica that dies mid-publish
//! holds its conversations back by seconds, not minutes; a replica that finds its lease was
//! taken over (it could not renew in time) leaves the conversation due, so whatever render
//! landed last is replaced by a fresh one.

use std::time::Duration;

use super::PgDatabase;
use crate::store::local::files::render_document;
use crate::store::objects::ObjectTree;
use crate::store::{MessagingEvent, StoreError};

/// Conversations leased by one pass.
const BATCH: i64 = 64;
/// How long a lease protects a publish in progress unless renewed (every third of it).
const LEASE: Duration = Duration::from_secs(15);
/// The pause between passes that found nothing to do.
const IDLE: Duration = Duration::from_millis(200);

const LEASE_DUE: &str = "
UPDATE conversations SET lease_until = now() + make_interval(secs => $3), lease_owner = $4
WHERE id IN (
    SELECT id FROM conversations
    WHERE version > published
      AND (lease_until IS NULL OR lease_until < now())
      AND (published_at IS NULL OR published_at <= now() - make_interval(secs => $1))
    ORDER BY changed_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING id, page_id, customer_id, version";

#[derive(Debug, Clone)]
pub struct Publisher {
    db: PgDatabase,
    objects: ObjectTree,
    interval: Duration,
    /// This publisher's name on its leases.
    owner: String,
    lease: Duration,
}

impl Publisher {
    pub fn new(db: PgDatabase, objects: ObjectTree, interval: Duration) -> Publisher {
        Publisher {
            db,
            objects,
            interval,
            owner: uuid::Uuid::new_v4().to_string(),
            lease: LEASE,
        }
    }

    #[cfg(test)]
    pub(super) fn with_lease(mut self, lease: Duration) -> Publisher {
        self.lease = lease;
        self
    }

    /// Publishes until `stop` fires, then makes a last pass that ignores the interval, so a
    /// clean stop leaves every object up to date.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let published = tokio::select! {
                () = stop.cancelled() => break,
                result = self.pass(self.interval) => result,
            };
            match published {
                Ok(0) => {}
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "publishing conversations failed; retrying")
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(IDLE) => {}
            }
        }
        match self.publish_all().await {
            Ok(n) => tracing::debug!(published = n, "published at shutdown"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot publish at shutdown; another replica or the next start will")
            }
        }
    }

    /// Publishes every conversation due now, the interval ignored; how many were published.
    /// For a process that stops next (a clean stop, `salesbot poll`, `salesbot migrate`).
    pub async fn publish_all(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            match self.pass(Duration::ZERO).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// One pass: how many conversations were published.
    pub async fn pass(&self, interval: Duration) -> Result<usize, StoreError> {
        let leased = self.lease_due(interval).await?;
        if leased.is_empty() {
            return Ok(0);
        }
        let work = self.publish_leased(&leased);
        tokio::pin!(work);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + self.lease / 3, self.lease / 3);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = renew.tick() => {
                    if let Err(err) = self.renew().await {
                        tracing::warn!(error = %err, "cannot renew the publishing leases");
                    }
                }
            }
        }
    }

    /// Leases up to [`BATCH`] conversations due (changed, and not published within
    /// `interval`).
    pub(super) async fn lease_due(
        &self,
        interval: Duration,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.db.client().await?;
        let leased = client
            .query(
                LEASE_DUE,
                &[
                    &interval.as_secs_f64(),
                    &BATCH,
                    &self.lease.as_secs_f64(),
                    &self.owner,
                ],
            )
            .await?;
        Ok(leased)
    }

    pub(super) async fn publish_leased(
        &self,
        leased: &[tokio_postgres::Row],
    ) -> Result<usize, StoreError> {
        let mut published = 0;
        for row in leased {
            let (id, page, customer, version): (i64, String, String, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            match self.publish(id, &page, &customer, version).await {
                Ok(()) => published += 1,
                Err(err) => {
                    tracing::warn!(page = %page, customer = %customer, error = %err, "cannot publish a conversation; it stays due");
                    self.db
                        .client()
                        .await?
                        .execute(
                            "UPDATE conversations SET lease_until = NULL
                             WHERE id = $1 AND lease_owner = $2",
                            &[&id, &self.owner],
                        )
                        .await?;
                }
            }
        }
        Ok(published)
    }

    /// Extends the leases this publisher still holds.
    pub(super) async fn renew(&self) -> Result<(), StoreError> {
        self.db
            .client()
            .await?
            .execute(
                "UPDATE conversations SET lease_until = now() + make_interval(secs => $2)
                 WHERE lease_owner = $1 AND lease_until > now()",
                &[&self.owner, &self.lease.as_secs_f64()],
            )
            .await?;
        Ok(())
    }

    async fn still_there(&self, id: i64) -> Result<bool, StoreError> {
        let client = self.db.client().await?;
        let found = client
            .query_opt("SELECT 1 FROM conversations WHERE id = $1", &[&id])
            .await?;
        Ok(found.is_some())
    }

    async fn publish(
        &self,
        id: i64,
        page: &str,
        customer: &str,
        version: i64,
    ) -> Result<(), StoreError> {
        // Read after the lease: the events of `version` at least are committed.
        let client = self.db.client().await?;
        let select = client
            .prepare_cached("SELECT line FROM events WHERE conversation = $1 ORDER BY seq")
            .await?;
        let rows = client.query(&select, &[&id]).await?;
        drop(client);
        let events: Vec<MessagingEvent> = rows
            .iter()
            .filter_map(|row| MessagingEvent::from_json(row.get::<_, &str>(0).as_bytes()))
            .collect();
        self.objects
            .put(
                &ObjectTree::conversation_key(page, customer),
                render_document(events),
            )
            .await?;
        let client = self.db.client().await?;
        let recorded = client
            .execute(
                "UPDATE conversations
                 SET published = GREATEST(published, $2), published_at = now(), lease_until = NULL
                 WHERE id = $1 AND lease_owner = $3",
                &[&id, &version, &self.owner],
            )
            .await?;
        if recorded == 0 && !self.still_there(id).await? {
            // Erased while its render was on the way (`salesbot erase`, `shop/redact`): the
            // erasure deleted the object before or after this put, so delete it again.
            self.objects
                .delete(&ObjectTree::conversation_key(page, customer))
                .await?;
            return Ok(());
        }
        if recorded == 0 {
            // The lease ran out and another replica took the conversation: its render and
            // ours may have landed in either order, so it is left due for a fresh one.
            tracing::warn!(page = %page, customer = %customer, "a publishing lease was taken over; publishing the conversation again");
            client
                .execute(
                    "UPDATE conversations SET published = LEAST(published, $2::BIGINT - 1) WHERE id = $1",
                    &[&id, &version],
                )
                .await?;
        }
        Ok(())
    }
}
