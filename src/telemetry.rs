//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`; `warn` for the demo).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset. Safe to
/// call more than once: later calls are no-ops.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in a journal or a file they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
