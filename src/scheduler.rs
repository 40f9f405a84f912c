//! The poll's schedule: `POLL_CRON` (seconds first, UTC) through tokio-cron-scheduler, which
//! really awaits the async job (the original handed an `async def` to a thread pool and never
//! awaited it, so its nightly poll never ran). Overlap is prevented by `Poller::poll_once`.
//!
//! Each firing names its run by the cron time it fires for (the scheduler ticks every 500 ms,
//! so the moment it fires varies): replicas sharing a database fire for the same run, and the
//! first to claim it polls (`Poller::poll_scheduled`).

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
    let cron = parse(expression)?;
    let job = Job::new_async(expression.as_str(), move |_id, _scheduler| {
        let poller = poller.clone();
        let slot = run_at(&cron, chrono::Utc::now());
        Box::pin(async move {
            // Errors are logged inside; an overlapping start is skipped there with a log line.
            let _ = poller.poll_scheduled(slot).await;
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    tracing::info!(cron = %expression, "poll scheduled (UTC)");
    Ok(Some(Schedule { scheduler }))
}

/// The same parser settings as tokio-cron-scheduler's and the configuration's.
fn parse(expression: &str) -> Result<croner::Cron, ScheduleError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        // The configuration checked it with the same settings: this does not fail.
        .map_err(|_| ScheduleError(JobSchedulerError::ParseSchedule))
}

/// When the poll runs next after `now` (Unix seconds), if it is scheduled.
pub fn next_run(schedule: &PollSchedule, now: i64) -> Option<i64> {
    let PollSchedule::Cron(expression) = schedule else {
        return None;
    };
    let now = chrono::DateTime::from_timestamp(now, 0)?;
    parse(expression)
        .ok()?
        .find_next_occurrence(&now, false)
        .ok()
        .map(|at| at.timestamp())
}

/// The run a firing at `now` is for: the latest cron time at or before it, in Unix seconds.
fn run_at(cron: &croner::Cron, now: chrono::DateTime<chrono::Utc>) -> i64 {
    cron.find_previous_occurrence(&now, true)
        .map(|at| at.timestamp())
        .unwrap_or_else(|_| now.timestamp())
}

impl Schedule {
    pub async fn stop(mut self) {
        if let Err(err) = self.scheduler.shutdown().await {
            tracing::warn!(error = %err, "poll schedule did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn firings_late_by_the_ticks_name_the_same_run() {
        let cron = parse("0 30 2 * * *").unwrap();
        let run = chrono::Utc.with_ymd_and_hms(2026, 12, 3, 2, 30, 0).unwrap();
        for late_ms in [0, 1, 499, 999, 1_700] {
            let fired = run + chrono::Duration::milliseconds(late_ms);
            assert_eq!(run_at(&cron, fired), run.timestamp(), "{late_ms} ms late");
        }
        let next_day = run + chrono::Duration::days(1);
        assert_eq!(run_at(&cron, next_day), next_day.timestamp());
    }

    #[test]
    fn the_next_run_is_the_next_cron_time_and_none_when_off() {
        let schedule = PollSchedule::Cron("0 30 2 * * *".into());
        let run = chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 2, 30, 0)
            .unwrap()
            .timestamp();
        assert_eq!(next_run(&schedule, run - 10), Some(run));
        assert_eq!(next_run(&schedule, run), Some(run + 86_400));
        assert_eq!(next_run(&PollSchedule::Off, run), None);
    }
}
