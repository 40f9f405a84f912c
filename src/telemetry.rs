//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`; `warn` for the demo).
//!
//! Lines below WARN (the access log, mostly) are written in batches, at most
//! [`batched::HOLD`] late; WARN and ERROR lines at once. [`flush`] before the process ends;
//! a crash (SIGKILL) may lose the last [`batched::HOLD`] of INFO lines, never a warning.

mod batched;

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
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
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
