//! The background downloader: owed attachments fetched a few at a time, paced, retried with
//! backoff across restarts (the queue is in the database), given up after a while with a
//! log line and a count.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::fetch::Fetcher;
use super::file_name;
use crate::store::attachments::{AttachmentFileStore, AttachmentQueueStore, Owed};
use crate::store::{StoreError, unix_now};
use crate::telemetry::metrics::{AttachmentResult, Metrics};

/// Downloads at once.
const AT_ONCE: usize = 4;
/// Between two downloads' starts: Meta's CDN is not ours to hammer.
const PACE: Duration = Duration::from_millis(100);
/// Tries before giving up: with [`backoff`], about two hours of them.
const MAX_ATTEMPTS: u32 = 8;
/// How often the queue is looked at when nothing woke the worker (entries put there by a
/// `salesbot poll` beside the server, retries coming due).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Seconds before try `attempts + 1`: 30 s, doubling, at most an hour.
pub fn backoff(attempts: u32) -> i64 {
    (30_i64 << attempts.min(7)).min(3600)
}

#[derive(Debug, Clone)]
pub struct Downloader {
    queue: AttachmentQueueStore,
    files: AttachmentFileStore,
    fetcher: Fetcher,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl Downloader {
    pub fn new(
        queue: AttachmentQueueStore,
        files: AttachmentFileStore,
        fetcher: Fetcher,
        metrics: Metrics,
    ) -> Downloader {
        Downloader {
            queue,
            files,
            fetcher,
            metrics,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Records what `owed` adds to the queue (durably: call it before acknowledging the
    /// events), and wakes the worker.
    pub async fn owe(&self, owed: Vec<Owed>) -> Result<(), StoreError> {
        if owed.is_empty() {
            return Ok(());
        }
        self.queue.enqueue(owed).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Downloads still owed.
    pub async fn pending(&self) -> Result<usize, StoreError> {
        self.queue.pending().await
    }

    /// Downloads still owed, per page id.
    pub async fn pending_by_page(&self) -> Result<Vec<(String, usize)>, StoreError> {
        self.queue.pending_by_page().await
    }

    /// Works the queue until `stop`; a download in progress is finished or abandoned to the
    /// next start (it stays owed).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let worked = tokio::select! {
                () = stop.cancelled() => return,
                worked = self.pass() => worked,
            };
            let wait = match worked {
                Ok(0) => self.until_due().await,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the attachment queue; trying again");
                    IDLE_CHECK
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn until_due(&self) -> Duration {
        match self.queue.next_due().await {
            Ok(Some(at)) => Duration::from_secs((at - unix_now()).clamp(0, 30) as u64)
                .max(Duration::from_millis(200)),
            _ => IDLE_CHECK,
        }
    }

    /// Downloads what is due now; how many were tried.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let due = self.queue.due(unix_now(), 32).await?;
        let permits = Arc::new(Semaphore::new(AT_ONCE));
        let mut downloads = JoinSet::new();
        for owed in &due {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let this = self.clone();
            let owed = owed.clone();
            downloads.spawn(async move {
                let _permit = permit;
                this.download(owed).await
            });
            tokio::time::sleep(PACE).await;
        }
        while let Some(done) = downloads.join_next().await {
            if let Ok(Err(err)) = done {
                tracing::warn!(error = %err, "cannot record an attachment download");
            }
        }
        Ok(due.len())
    }

    async fn download(&self, owed: Owed) -> Result<(), StoreError> {
        let fetched = match self.fetcher.fetch(&owed.url).await {
            Ok(fetched) => fetched,
            Err(err) => return self.failed(&owed, err.permanent, &err.reason).await,
        };
        let name = file_name(&owed.mid, owed.n, fetched.content_type.as_deref());
        if let Err(err) = self
            .files
            .put(&owed.page, &owed.customer, &name, fetched.bytes)
            .await
        {
            return self.failed(&owed, false, &err.to_string()).await;
        }
        if !self.queue.done(&owed, &name).await? {
            // Erased while the download ran (the entry went first, then the files): whatever
            // the erasure found, this file came after it or with it, and goes too.
            self.files.delete(&owed.page, &owed.customer, &name).await?;
            tracing::info!(page = %owed.page, customer = %owed.customer, "attachment of an erased customer dropped");
            return Ok(());
        }
        self.metrics.attachment(AttachmentResult::Stored);
        tracing::debug!(page = %owed.page, customer = %owed.customer, file = %name, "attachment kept");
        Ok(())
    }

    async fn failed(&self, owed: &Owed, permanent: bool, reason: &str) -> Result<(), StoreError> {
        if permanent || owed.attempts + 1 >= MAX_ATTEMPTS {
            tracing::warn!(page = %owed.page, customer = %owed.customer, mid = %owed.mid,
                n = owed.n, attempts = owed.attempts + 1, reason, "attachment given up");
            self.metrics.attachment(AttachmentResult::GivenUp);
            return self.queue.give_up(owed, reason).await;
        }
        let at = unix_now() + backoff(owed.attempts);
        tracing::info!(page = %owed.page, customer = %owed.customer, mid = %owed.mid,
            n = owed.n, reason, retry_in_s = at - unix_now(), "attachment download failed; retrying later");
        self.metrics.attachment(AttachmentResult::Retried);
        self.queue.retry(owed, at, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_30_seconds_up_to_an_hour() {
        let steps: Vec<i64> = (0..MAX_ATTEMPTS).map(backoff).collect();
        assert_eq!(steps, [30, 60, 120, 240, 480, 960, 1920, 3600]);
        assert_eq!(backoff(40), 3600);
    }
}
