//! The same load from `wrk` (`apt-get install wrk`), the issue's suggested load generator:
//! a C program that needs a fraction of the built-in client's CPU, which on a 2-core machine
//! is CPU the server gets. Each wrk thread reads its share of the pre-signed requests from a
//! file (written to `/dev/shm`, so writing them does not queue behind the server's fsyncs)
//! and sends them in order, one per call.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::Outcome;

const THREADS: usize = 2;

/// Thread `id`'s requests, as `<8-digit length><request>` one after another.
const SCRIPT: &str = r#"
local next_id = 0
local threads = {}
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  local f = assert(io.open(args[1] .. "." .. id, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  while pos <= #data do
    local len = tonumber(data:sub(pos, pos + 7))
    reqs[#reqs + 1] = data:sub(pos + 8, pos + 7 + len)
    pos = pos + 8 + len
  end
  n = 0
  wrapped = 0
end
function request()
  n = n + 1
  if n > #reqs then
    n = 1
    wrapped = wrapped + 1
  end
  return reqs[n]
end
function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format("wrk-result %d %d %d %d %d %d %d %d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, wraps))
end
"#;

/// Whether `wrk` can be run here.
pub fn available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Runs wrk with `connections` connections for `duration`, sending `requests` in order;
/// starting over when they run out only if `repeats_ok` (the ceiling stores nothing).
pub fn load(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    requests: &[Vec<u8>],
    repeats_ok: bool,
) -> Outcome {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let script = dir.path().join("webhook.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let prefix = dir.path().join("requests");
    let mut shares = vec![Vec::new(); THREADS];
    for (i, request) in requests.iter().enumerate() {
        let share = &mut shares[i % THREADS];
        share.extend_from_slice(format!("{:08}", request.len()).as_bytes());
        share.extend_from_slice(request);
    }
    for (id, share) in shares.iter().enumerate() {
        std::fs::write(format!("{}.{id}", prefix.display()), share).unwrap();
    }
    let output = Command::new("wrk")
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .args(["--timeout", "5s", "-s"])
        .arg(&script)
        .arg(format!("http://{addr}/facebook/webhook"))
        .arg("--")
        .arg(&prefix)
        .output()
        .expect("wrk runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrk-result "))
        .unwrap_or_else(|| {
            panic!(
                "no result from wrk: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let f: Vec<u64> = result
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let [
        requests_done,
        status_errors,
        socket_errors,
        duration_us,
        p50,
        p99,
        max,
        wraps,
    ] = f[..]
    else {
        panic!("unexpected wrk result: {result}");
    };
    assert!(
        repeats_ok || wraps == 0,
        "wrk ran out of distinct requests: raise the estimate"
    );
    Outcome {
        ok: (requests_done - status_errors) as usize,
        errors: (status_errors + socket_errors) as usize,
        elapsed: Duration::from_micros(duration_us),
        p50_ms: p50 as f64 / 1000.0,
        p99_ms: p99 as f64 / 1000.0,
        max_ms: max as f64 / 1000.0,
        // wrk stops with a request in flight on each connection, which the server may store.
        unanswered: connections,
    }
}
