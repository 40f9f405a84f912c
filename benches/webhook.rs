//! Webhook throughput and latency, and the cost of an append as a conversation grows.
//!
//! `cargo bench --bench webhook` (env `BENCH_SECONDS`, default 10, per run). Starts the release
//! `salesbot serve` and, for the ceiling of this machine, a server whose handler only answers
//! 200; drives both from this process over loopback with keep-alive connections, every request
//! a distinct, signed message; then checks that every acknowledged message is on disk.
//!
//! For a closer look: `BENCH_TRACE=/tmp/t` writes `/tmp/t-<server>-<connections>.csv`, one
//! `sent_at_us,latency_us` line per request (when in the run the slow ones were);
//! `BENCH_SERVER_BIN=path` runs another build of `salesbot` (an A/B in one session).
//! `BENCH_CLIENT=wrk` drives both servers with `wrk` instead of the built-in client.
//! `BENCH_CUSTOMERS=n` (default 1,000) spreads the messages over n customers, round-robin;
//! with `BENCH_HOT=h` as well, four messages in five go to the first h of them and one in five
//! to the rest: more conversations than the server's cache keeps, a few of them busy.
//!
//! Then the same 64-connection load against the PostgreSQL backend (`webhook/postgres.rs`),
//! when PostgreSQL is installed (`apt-get install postgresql`), with its publish lag;
//! `BENCH_ONLY=postgres` runs that part alone, `BENCH_ONLY=files` the rest without it (an A/B
//! of the embedded backend, pair after pair).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use salesbot::config::Config;
use salesbot::domain::{PageId, SenderId};
use salesbot::facebook::webhook::signature;
use salesbot::store::FileStore;
use secrecy::SecretString;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod common;
#[path = "webhook/postgres.rs"]
mod postgres;
#[path = "webhook/wrk.rs"]
mod wrk;

const SECRET: &str = "bench-app-secret";
/// Who the messages are from: `BENCH_CUSTOMERS` customers, `BENCH_HOT` of them busy.
struct Customers {
    count: usize,
    hot: usize,
}

fn customers() -> &'static Customers {
    static CUSTOMERS: std::sync::OnceLock<Customers> = std::sync::OnceLock::new();
    CUSTOMERS.get_or_init(|| {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        let count = var("BENCH_CUSTOMERS").unwrap_or(1000).max(1);
        let hot = var("BENCH_HOT").unwrap_or(0).min(count - 1);
        Customers { count, hot }
    })
}

impl Customers {
    /// The customer of the `n`th message.
    fn of(&self, n: usize) -> usize {
        match self.hot {
            0 => n % self.count,
            hot if n % 5 != 4 => (n / 5 * 4 + n % 5) % hot,
            hot => hot + (n / 5) % (self.count - hot),
        }
    }
}

fn main() {
    if let Some(port) = std::env::args().skip_while(|a| a != "--ceiling").nth(1) {
        return ceiling(port.parse().unwrap());
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to enumerate
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(seconds)));
}

async fn run(duration: Duration) {
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "postgres") {
        return postgres::run(duration, &mut 0).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = environment(dir.path());
    connect_page(&env).await;

    println!(
        "# webhook load: {} s per run, {} customers ({} busy), one page",
        duration.as_secs(),
        customers().count,
        customers().hot
    );
    println!(
        "| server | connections | requests/s | p50 ms | p99 ms | max ms | errors | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut acknowledged = 0;
    let mut unanswered = 0;
    let mut next_mid = 0;
    for connections in [16, 64] {
        let mut ceiling = ServerProcess::ceiling();
        let c = load(
            "ceiling",
            ceiling.addr,
            connections,
            duration,
            &mut next_mid,
        )
        .await;
        print_row("answer-200 ceiling", connections, &c, ceiling.rss_mb());
        ceiling.stop();

        let mut server = ServerProcess::salesbot(&env, dir.path());
        let cpu_before = server.cpu_seconds();
        let s = load(
            "salesbot",
            server.addr,
            connections,
            duration,
            &mut next_mid,
        )
        .await;
        print_row("salesbot (fsync)", connections, &s, server.rss_mb());
        println!(
            "|  | ratio salesbot/ceiling | {:.2} | | | | | |",
            s.rps() / c.rps()
        );
        println!(
            "|  | server CPU per request (µs) | {:.0} | | | | | |",
            (server.cpu_seconds() - cpu_before) * 1e6 / s.ok as f64
        );
        acknowledged += s.ok;
        unanswered += s.unanswered;
        if connections == 64 {
            restart_after_crash(&env, dir.path(), server);
        } else {
            server.stop();
        }
    }
    let stored = count_stored(dir.path());
    // Requests still in flight when a run stopped may be stored without being acknowledged.
    let expected = acknowledged..=acknowledged + unanswered;
    println!(
        "\nacknowledged {acknowledged}, stored {stored} ({})",
        if expected.contains(&stored) {
            "none lost"
        } else {
            "MISMATCH"
        }
    );
    assert!(
        expected.contains(&stored),
        "every acknowledged message must be on disk: {stored} stored, {expected:?} expected"
    );

    append_costs().await;
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "files") {
        return;
    }
    postgres::run(duration, &mut next_mid).await;
}

/// Kills the server as a crash would, right after the load, and times the next start: it
/// replays what the journal holds before it listens again. The check of every acknowledged
/// message against the files comes after, so it covers the replay too.
fn restart_after_crash(env: &HashMap<String, String>, dir: &Path, mut server: ServerProcess) {
    server.kill();
    let segments = files_ending(&dir.join(".salesbot/journal"), "log").len();
    let started = Instant::now();
    let mut restarted = ServerProcess::salesbot(env, dir);
    let took = started.elapsed();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let records = log
        .lines()
        .find(|l| l.contains("replayed the journal"))
        .and_then(|l| l.split("records=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("0")
        .to_string();
    println!(
        "\nrestart after SIGKILL at the end of the 64-connection run: listening again after \
         {:.2} s, having replayed {records} journal records from {segments} segment files",
        took.as_secs_f64()
    );
    restarted.stop();
}

struct Outcome {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Requests sent but never answered (at most one a connection when the run stopped).
    unanswered: usize,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn print_row(name: &str, connections: usize, o: &Outcome, rss: f64) {
    println!(
        "| {name} | {connections} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {rss:.1} |",
        o.rps(),
        o.p50_ms,
        o.p99_ms,
        o.max_ms,
        o.errors
    );
}

/// `connections` keep-alive connections, each sending one request at a time until `duration`.
async fn load(
    label: &str,
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    next_mid: &mut usize,
) -> Outcome {
    // Requests are built and signed before the clock starts, so the client measures the server.
    // Distinct messages for 20,000 a second (salesbot answers ~9,000-15,000 here); the
    // ceiling, far faster, may run through its share (wrk repeats them).
    let estimate = match label {
        "ceiling" => (connections * 20_000).min(400_000),
        _ => 20_000 * duration.as_secs().max(1) as usize,
    };
    let requests: Vec<Vec<u8>> = (0..estimate)
        .map(|i| request(addr, *next_mid + i))
        .collect();
    *next_mid += estimate;
    if std::env::var("BENCH_CLIENT").is_ok_and(|c| c == "wrk") {
        assert!(
            wrk::available(),
            "BENCH_CLIENT=wrk: install wrk (apt-get install wrk)"
        );
        let repeats_ok = label == "ceiling";
        return tokio::task::block_in_place(|| {
            wrk::load(addr, connections, duration, &requests, repeats_ok)
        });
    }
    // Dealt round-robin, as Meta delivers: a customer's messages arrive roughly in time order.
    // (Contiguous chunks per connection would send each customer's messages far out of order,
    // forcing the rewrite path on nearly every request: a different benchmark.)
    let mut chunks: Vec<Vec<Vec<u8>>> = vec![Vec::new(); connections];
    for (i, request) in requests.into_iter().enumerate() {
        chunks[i % connections].push(request);
    }

    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| tokio::spawn(connection(addr, chunk, start, deadline)))
        .collect();
    let (mut ok, mut errors, mut all) = (0, 0, Vec::new());
    let mut trace = String::new();
    for task in tasks {
        let (done, failed, mut latencies, sent_at) = task.await.unwrap();
        for (sent, latency) in sent_at.iter().zip(&latencies) {
            trace.push_str(&format!("{sent},{latency}\n"));
        }
        ok += done;
        errors += failed;
        all.append(&mut latencies);
    }
    let elapsed = start.elapsed();
    if let Some(prefix) = std::env::var_os("BENCH_TRACE") {
        let path = format!("{}-{label}-{connections}.csv", prefix.to_string_lossy());
        std::fs::write(path, trace).unwrap();
    }
    all.sort_unstable();
    Outcome {
        ok,
        errors,
        elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: percentile(&all, 1.0),
        unanswered: 0,
    }
}

async fn connection(
    addr: SocketAddr,
    requests: Vec<Vec<u8>>,
    start: Instant,
    deadline: Instant,
) -> (usize, usize, Vec<u64>, Vec<u64>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let (mut ok, mut errors, mut latencies) = (0, 0, Vec::new());
    let mut line = String::new();
    let trace = std::env::var_os("BENCH_TRACE").is_some();
    let mut sent_at = Vec::new();
    for request in requests {
        if Instant::now() >= deadline {
            break;
        }
        let sent = Instant::now();
        write.write_all(&request).await.unwrap();
        line.clear();
        read.read_line(&mut line).await.unwrap();
        let status_ok = line.starts_with("HTTP/1.1 200");
        let mut length = 0usize;
        loop {
            line.clear();
            read.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await.unwrap();
        latencies.push(sent.elapsed().as_micros() as u64);
        if trace {
            sent_at.push((sent - start).as_micros() as u64);
        }
        if status_ok { ok += 1 } else { errors += 1 }
    }
    (ok, errors, latencies, sent_at)
}

fn request(addr: SocketAddr, n: usize) -> Vec<u8> {
    let customer = 10_000 + customers().of(n);
    let body = serde_json::to_vec(&json!({"object": "page", "entry": [{"id": "101", "time": 1, "messaging": [{
        "sender": {"id": customer.to_string()}, "recipient": {"id": "101"}, "timestamp": 1_700_000_000_000_u64 + n as u64,
        "message": {"mid": format!("m_bench_{n:09}"), "text": "Do you have this in blue, size M?"}
    }]}]}))
    .unwrap();
    let mut out = format!(
        "POST /facebook/webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signature::sign(&body, &SecretString::from(SECRET)) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

fn environment(dir: &Path) -> HashMap<String, String> {
    common::environment(
        dir,
        &[
            ("FACEBOOK_APP_SECRET", SECRET.into()),
            // The server's default: one access-log line per request.
            (
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
        ],
    )
}

async fn connect_page(env: &HashMap<String, String>) {
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    let page = PageId::parse("101").unwrap();
    let owner = uuid::Uuid::new_v4();
    state
        .pages
        .connect(&page, &SecretString::from("EAAB"), &owner)
        .await
        .unwrap();
}

fn count_stored(dir: &Path) -> usize {
    files_ending(&dir.join("facebook/101/conversations"), "json")
        .iter()
        .map(|path| {
            serde_json::from_slice::<Vec<serde_json::Value>>(&std::fs::read(path).unwrap())
                .unwrap()
                .len()
        })
        .sum()
}

/// The files in `folder` named `*.{extension}`; none when the folder is missing.
fn files_ending(folder: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|path| path.extension().is_some_and(|x| x == extension))
                .collect()
        })
        .unwrap_or_default()
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn salesbot(env: &HashMap<String, String>, dir: &Path) -> ServerProcess {
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let bin = std::env::var("BENCH_SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_salesbot").to_string());
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .envs(env)
            .env("PORT", port.to_string())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        ServerProcess::ready(child, port)
    }

    fn ceiling() -> ServerProcess {
        let port = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--ceiling", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        ServerProcess::ready(child, port)
    }

    fn ready(child: Child, port: u16) -> ServerProcess {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // A start after a crash first replays the journal: give it two minutes.
        for _ in 0..4800 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return ServerProcess { child, addr };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server on {addr} did not start");
    }

    /// CPU time (user + system) the server has used so far, in seconds: divided by the
    /// requests it answered, a cost per request that the machine's noise barely moves.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: f64 = after
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum();
        ticks / 100.0 // USER_HZ is 100 on Linux
    }

    /// Peak resident memory of the server so far.
    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// As a crash would: no shutdown, no final checkpoint.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ceiling: same runtime and framework, a handler that only answers 200.
fn ceiling(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/facebook/webhook",
            axum::routing::post(|_body: axum::body::Bytes| async {
                axum::Json(json!({"status": "success"}))
            }),
        );
        // The same socket settings as salesbot's (`app.rs`).
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap()
            .tap_io(|tcp| tcp.set_nodelay(true).unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

/// Median cost of one webhook-path append when the conversation already holds 10, 1,000 and
/// 5,000 messages (each sample appends one message with fsync, as the webhook does). The three
/// conversations take turns, so a slow moment of the device weighs on all three alike.
async fn append_costs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let page = PageId::parse("101").unwrap();
    let sizes = [10, 1_000, 5_000];
    let senders = sizes.map(|size| SenderId::parse(&format!("{}", 2000 + size)).unwrap());
    let event = |sender: &SenderId, n: usize| {
        json!({"sender": {"id": sender.as_str()}, "recipient": {"id": "101"}, "timestamp": n as u64,
        "message": {"mid": format!("m{n:07}"), "text": "Do you have this in blue, size M?"}})
    };
    let mut filled = sizes;
    for (sender, &size) in senders.iter().zip(&sizes) {
        let batch: Vec<_> = (0..size).map(|n| event(sender, n)).collect();
        store
            .add_to_conversation(&page, sender, batch)
            .await
            .unwrap();
    }
    let samples = 300;
    let mut times = [const { Vec::new() }; 3];
    for round in 0..samples {
        for turn in 0..3 {
            let which = (round + turn) % 3;
            let message = event(&senders[which], filled[which]);
            let start = Instant::now();
            store
                .add_to_conversation(&page, &senders[which], vec![message])
                .await
                .unwrap();
            times[which].push(start.elapsed().as_secs_f64() * 1000.0);
            filled[which] += 1;
        }
    }
    println!("\n| messages already in the file | median append (ms) | p90 (ms) |");
    println!("|---|---|---|");
    let mut medians = Vec::new();
    for (size, times) in sizes.iter().zip(&mut times) {
        times.sort_by(f64::total_cmp);
        let median = times[samples / 2];
        println!("| {size} | {median:.3} | {:.3} |", times[samples * 9 / 10]);
        medians.push(median);
    }
    println!(
        "\nappend at 5,000 / append at 10 = {:.2}",
        medians[2] / medians[0]
    );
    std::io::stdout().flush().unwrap();
}
