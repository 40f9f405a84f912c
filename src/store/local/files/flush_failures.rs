//! The log of failed flushes, `DATA_DIR/.salesbot/flush-failures.log`, shared by every process
//! that writes DATA_DIR's files.
//!
//! Why: a write-back error is reported once. Linux hands it to the first flush that asks, may
//! drop the pages that failed, and a later flush of the same file, from any process, reports
//! nothing and writes nothing ("fsyncgate"). The server's checkpoint flushes a conversation
//! file to retire the journal records that are the only durable copy of its latest events:
//! had `salesbot poll`, or another path of the server, met the error first, that checkpoint
//! would succeed over lost pages, and the records would go. So every failed flush of a data
//! file adds a line here, and a checkpoint whose segment saw this log change keeps the
//! segment for the next start, which replays it and rewrites its files whole.
//!
//! The log is compared by length, not by time: no clock can make a failure look older than
//! the segment it happened under. An operator may read it (one line a failure) or delete it.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Where the log of `data_dir` lives.
pub(crate) fn log_of(data_dir: &Path) -> PathBuf {
    data_dir.join(".salesbot").join("flush-failures.log")
}

/// Adds a line for a failed flush of `flushed`. Not being able to say so is logged as well:
/// the server's checkpoints then cannot know.
pub(crate) fn record(log: &Path, flushed: &Path, err: &(dyn Error + 'static)) {
    let mut line = format!(
        "{} pid {} cannot flush {}: {err}",
        unix_time_now(),
        std::process::id(),
        flushed.display()
    );
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    line.push('\n');
    let appended = log
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?
                .write_all(line.as_bytes())
        });
    if let Err(log_err) = appended {
        tracing::error!(error = %log_err, log = %log.display(), failed = %flushed.display(),
            "cannot record a failed flush; a checkpoint of the server may not learn of it");
    }
}

/// Where the log stands: compared before and after, it tells whether a flush failed between.
pub(crate) fn mark(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |meta| meta.len())
}

/// What the checkpoint of `segment` comes to, given how its own flushes went: their failure
/// is written down (the other segments still waiting must learn of it), and a failure written
/// since the log stood at `since` (or the log deleted meanwhile) fails it too.
pub(crate) fn checkpoint_outcome(
    log: &Path,
    segment: &Path,
    since: u64,
    flushed: Result<(), StoreError>,
) -> Result<(), StoreError> {
    if let Err(err) = &flushed {
        record(log, segment, err);
    }
    flushed?;
    match mark(log) == since {
        true => Ok(()),
        false => Err(StoreError::FlushFailedMeanwhile {
            log: log.to_path_buf(),
        }),
    }
}

/// Seconds since the epoch, for the log's lines (no clock is trusted for anything else).
fn unix_time_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("unix {}.{:03}", now.as_secs(), now.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_moves_the_mark_and_says_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path());
        assert_eq!(mark(&log), 0);
        let eio = || std::io::Error::from_raw_os_error(5);
        record(&log, Path::new("/data/a.json"), &eio());
        let first = mark(&log);
        assert!(first > 0);
        record(&log, Path::new("/data/b.json"), &eio());
        assert!(mark(&log) > first);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.contains("cannot flush /data/b.json: Input/output error (os error 5)"),
            "{text}"
        );
    }
}
