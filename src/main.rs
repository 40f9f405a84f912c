//! The `salesbot` binary: parse the command line, start logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use salesbot::cli::Cli;

fn main() -> ExitCode {
    salesbot::allocator::limit_arenas();
    let cli = Cli::parse();
    // A missing `.env` is normal in production; the process environment is enough.
    // Loaded before logging starts so that `RUST_LOG` may live in `.env` too.
    let env_file = salesbot::config::env_file::load();
    salesbot::telemetry::init(cli.default_log_filter());
    // Blocking work (file rewrites, SQLite, the journal's flush) is short; tokio's default of
    // up to 512 blocking threads only bought malloc arenas and context switches under load
    // (BENCHMARKS.md: 16 gave lower CPU per request and peak RSS).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        // Under load a worker looks for newly readable connections every 31 tasks instead of
        // tokio's 61: requests waiting in the socket join the queue sooner. p99 at 64
        // connections 11% lower in five A/B pairs (8 was worse; BENCHMARKS.md).
        .event_interval(31)
        .build()
        .expect("the async runtime starts");
    let code = runtime.block_on(salesbot::cli::run(cli, env_file));
    drop(runtime);
    salesbot::telemetry::flush();
    code
}
