//! The same webhook load against the PostgreSQL backend, in the same run as the files: a
//! throwaway server with PostgreSQL's defaults (every commit flushed), the bot's tree published
//! to a bucket of moto's S3 server when it is installed (`pip install 'moto[server]'`), else to
//! a local folder (`STORAGE_URL=file://`), interval 2 s. Reports throughput and latency at
//! 64 connections, the server's and PostgreSQL's CPU per request, that every acknowledged
//! message is committed, and the publish lag: acknowledged → visible in the tree, p50/p99.

use std::time::{Duration, Instant};

use salesbot::config::{S3Settings, StorageUrl};
use salesbot::engines::postgres::{Durability, Postgres};
use salesbot::engines::s3::S3Server;
use salesbot::store::objects::ObjectTree;

use super::{Outcome, ServerProcess, connect_page, environment, load, print_row, request};

pub async fn run(duration: Duration, next_mid: &mut usize) {
    if Postgres::binaries().is_none() {
        println!("\npostgres: skipped (apt-get install postgresql)");
        return;
    }
    let database = Postgres::start(Durability::Full).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(dir.path());
    env.insert("DATABASE_URL".into(), database.url("postgres"));
    env.insert("STORAGE_PUBLISH_INTERVAL".into(), "2".into());
    let bucket = S3Server::start().await.ok();
    let (url, settings) = match &bucket {
        Some(s3) => {
            s3.create_bucket("bench").await.unwrap();
            for (name, value) in [
                ("AWS_ENDPOINT_URL", s3.endpoint()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID", "bench".into()),
                ("AWS_SECRET_ACCESS_KEY", "bench".into()),
                ("AWS_ALLOW_HTTP", "true".into()),
            ] {
                env.insert(name.into(), value);
            }
            let settings = S3Settings {
                endpoint: Some(s3.endpoint()),
                region: Some("us-east-1".into()),
                access_key_id: Some("bench".into()),
                secret_access_key: Some("bench".into()),
                allow_http: true,
            };
            ("s3://bench/tree".to_string(), settings)
        }
        None => (
            format!("file://{}", dir.path().join("objects").display()),
            S3Settings::default(),
        ),
    };
    env.insert("STORAGE_URL".into(), url.clone());
    let tree = ObjectTree::open(&StorageUrl::parse(&url).unwrap(), &settings).unwrap();
    connect_page(&env).await;

    println!(
        "\n# the PostgreSQL backend, same load (PostgreSQL {}, objects in {})",
        version(),
        match bucket {
            Some(_) => "a bucket of moto's S3 server",
            None => "a folder: pip install 'moto[server]' for a bucket",
        }
    );
    println!(
        "| server | connections | requests/s | p50 ms | p99 ms | max ms | errors | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut server = ServerProcess::salesbot(&env, dir.path());
    let (cpu, pg_cpu) = (server.cpu_seconds(), postgres_cpu_seconds());
    let outcome: Outcome = load("postgres", server.addr, 64, duration, next_mid).await;
    print_row("salesbot (postgres)", 64, &outcome, server.rss_mb());
    println!(
        "|  | server CPU per request (µs) | {:.0} | | | | | |",
        (server.cpu_seconds() - cpu) * 1e6 / outcome.ok as f64
    );
    println!(
        "|  | PostgreSQL CPU per request (µs) | {:.0} | | | | | |",
        (postgres_cpu_seconds() - pg_cpu) * 1e6 / outcome.ok as f64
    );

    let lags = publish_lags(&server, &tree, next_mid).await;
    println!(
        "\npublish lag (acknowledged → visible in the objects, {} single messages, interval 2 s): p50 {:.0} ms, p99 {:.0} ms",
        lags.len(),
        super::percentile(&lags, 0.50),
        super::percentile(&lags, 0.99)
    );
    server.stop();

    let committed = count_committed(&database).await;
    let expected = outcome.ok + lags.len()..=outcome.ok + lags.len() + outcome.unanswered;
    println!(
        "acknowledged {}, committed {committed} ({})",
        outcome.ok + lags.len(),
        if expected.contains(&committed) {
            "none lost"
        } else {
            "MISMATCH"
        }
    );
    assert!(
        expected.contains(&committed),
        "every acknowledged message must be committed"
    );
}

/// One message at a time to a fresh customer; how long after its 200 its object shows it.
async fn publish_lags(server: &ServerProcess, tree: &ObjectTree, next_mid: &mut usize) -> Vec<u64> {
    let mut lags = Vec::new();
    for _ in 0..30 {
        let n = *next_mid;
        *next_mid += 1;
        let mid = format!("m_bench_{n:09}");
        let customer = 10_000 + super::customers().of(n);
        let now = Instant::now();
        let (ok, ..) = super::connection(
            server.addr,
            vec![request(server.addr, n)],
            now,
            now + Duration::from_secs(10),
        )
        .await;
        assert_eq!(ok, 1, "the probe message was acknowledged");
        let key = ObjectTree::conversation_key("101", &customer.to_string());
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(30);
        loop {
            let object = tree.get(&key).await.unwrap_or_default().unwrap_or_default();
            if object.windows(mid.len()).any(|w| w == mid.as_bytes()) {
                lags.push(sent.elapsed().as_micros() as u64);
                break;
            }
            assert!(Instant::now() < deadline, "{mid} never published");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    lags.sort_unstable();
    lags
}

async fn count_committed(database: &Postgres) -> usize {
    let (client, connection) =
        tokio_postgres::connect(&database.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap();
    row.get::<_, i64>(0) as usize
}

/// CPU time of every PostgreSQL process on this machine (the benchmark's is the only one).
fn postgres_cpu_seconds() -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !name.ends_with("(postgres") {
            continue;
        }
        let ticks: f64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<f64>().ok())
            .sum();
        total += ticks / 100.0;
    }
    total
}

fn version() -> String {
    Postgres::binaries()
        .and_then(|bin| bin.parent()?.file_name()?.to_str().map(str::to_string))
        .unwrap_or_default()
}
