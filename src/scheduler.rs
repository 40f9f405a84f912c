//! The poll's schedule: `POLL_CRON` (seconds first, UTC) through tokio-cron-scheduler, which
//! really awaits the async job (the original handed an `async def` to a thread pool and never
//! awaited it, so its nightly poll never ran). Overlap is prevented by `Poller::poll_once`.

use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use crate::config::PollSchedule;
use crate::facebook::poll::Poller;

#[derive(Debug, thiserror::Error)]
#[error("cannot start the poll schedule: {0}")]
pub struct ScheduleError(#[from] JobSchedulerError);

/// A running schedule; [`Schedule::stop`] ends it.
pub struct Schedule {
    scheduler: JobScheduler,
}

/// Starts the schedule, or returns `None` when `POLL_CRON=off`.
pub async fn start(
    poller: Poller,
    schedule: &PollSchedule,
) -> Result<Option<Schedule>, ScheduleError> {
    let PollSchedule::Cron(expression) = schedule else {
        tracing::info!("poll schedule is off (POLL_CRON=off)");
        return Ok(None);
    };
    let scheduler = JobScheduler::new().await?;
    let job = Job::new_async(expression.as_str(), move |_id, _scheduler| {
        let poller = poller.clone();
        Box::pin(async move {
            // Errors are logged inside; an overlapping start is skipped there with a log line.
            let _ = poller.poll_once().await;
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    tracing::info!(cron = %expression, "poll scheduled (UTC)");
    Ok(Some(Schedule { scheduler }))
}

impl Schedule {
    pub async fn stop(mut self) {
        if let Err(err) = self.scheduler.shutdown().await {
            tracing::warn!(error = %err, "poll schedule did not stop cleanly");
        }
    }
}
