//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`; `warn` for the demo).
//!
//! Lines below WARN (the access log, mostly) are written in batches, at most
//! [`batched::HOLD`] late; WARN and ERROR lines at once. [`flush`] before the process ends;
//! a crash (SIGKILL) may lose the last [`batched::HOLD`] of INFO lines, never a warning.

mod batched;
pub mod metrics;

use std::io::{self, IsTerminal};
use std::sync::{LazyLock, Once};

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use batched::Batched;

static STDERR: LazyLock<Batched<io::Stderr>> = LazyLock::new(|| Batched::new(io::stderr()));

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset. Safe to
/// call more than once: later calls are no-ops.
pub fn init(default_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(quiet_dependencies(&spec)).ok())
        .unwrap_or_else(|| EnvFilter::new(quiet_dependencies(default_filter)));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchedStderr)
        // Colour codes only help a person at a terminal; in a journal or a file they are noise.
        .with_ansi(io::stderr().is_terminal())
        .try_init();
    if installed.is_ok() {
        start_flushing();
    }
}

/// `spec` with dependencies that narrate their own workings at INFO held to warnings, unless
/// `spec` names them: tokio-cron-scheduler says "Uninited" and "Job creator created" at every
/// start, which an operator cannot act on.
fn quiet_dependencies(spec: &str) -> String {
    const CHATTY: [&str; 1] = ["tokio_cron_scheduler"];
    let mut quiet = spec.to_string();
    for target in CHATTY.iter().filter(|t| !spec.contains(*t)) {
        quiet.push_str(&format!(",{target}=warn"));
    }
    quiet
}

/// Writes the log lines still waiting: call before the process ends.
pub fn flush() {
    let _ = STDERR.flush();
}

/// A timer for the lines no later line writes out, and a panic hook that writes the waiting
/// lines before the panic's message, so that they stay in order.
fn start_flushing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(batched::HOLD);
                    let _ = STDERR.flush_due();
                }
            });
        if let Err(err) = spawned {
            // Lines still go out with later ones and at exit; only an idle stretch delays them.
            tracing::warn!(error = %err, "no log-flush thread");
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = STDERR.try_flush();
            previous(info);
        }));
    });
}

/// The fmt layer's writer: one per line, told whether the line must go out at once.
struct BatchedStderr;

struct Line {
    urgent: bool,
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        STDERR.line(buf, self.urgent)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `outer: cause: root cause`: an error and every cause, for logs and for messages that must
/// say why.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::quiet_dependencies;

    #[test]
    fn chatty_dependencies_are_held_to_warnings_unless_named() {
        assert_eq!(quiet_dependencies("info"), "info,tokio_cron_scheduler=warn");
        assert_eq!(
            quiet_dependencies("info,tokio_cron_scheduler=debug"),
            "info,tokio_cron_scheduler=debug"
        );
    }
}
