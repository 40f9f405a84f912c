//! The nightly poll at scale against the sandbox: 100 pages × 10 conversations × 30 messages,
//! 50 ms of latency per Graph request, `POLL_CONCURRENCY=16`; then an incremental poll after
//! 1% of the conversations changed.
//!
//! `cargo bench --bench poll`. Reports wall time, Graph requests, messages stored versus
//! messages Meta serves (the 20 most recent per conversation), and the wall time as a ratio to
//! the least the 2-calls-per-second-per-page limit allows.

use std::time::{Duration, Instant};

use salesbot::config::Config;
use salesbot::domain::PageId;
use salesbot::facebook::poll::{PollOutcome, PollSettings};
use salesbot::sandbox::world::Page;
use salesbot::sandbox::{Sandbox, World};
use salesbot::store::unix_now;
use secrecy::SecretString;

mod common;

const PAGES: usize = 100;
const CONVERSATIONS: usize = 10;
const MESSAGES: usize = 30;
const LATENCY: Duration = Duration::from_millis(50);
const CONCURRENCY: usize = 16;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let start_of_history = unix_now() - 30 * 24 * 3600;
    let pages = (0..PAGES)
        .map(|p| {
            let mut page = Page::new(
                &format!("{}", 100_000 + p),
                &format!("Page {p}"),
                &format!("EAA-bench-{p}"),
            );
            page.subscribed = true;
            for c in 0..CONVERSATIONS {
                page = page.with_conversation(
                    &format!("{}", 900_000 + p * 100 + c),
                    MESSAGES,
                    start_of_history + (c as i64) * 7200,
                );
            }
            page
        })
        .collect();
    let world = World {
        pages,
        ..World::default()
    };
    let served = world.servable_messages();
    let sandbox = Sandbox::start(world, LATENCY).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = sandbox.url();
    let env = common::environment(
        dir.path(),
        &[
            ("FACEBOOK_GRAPH_URL", url),
            ("POLL_CONCURRENCY", CONCURRENCY.to_string()),
        ],
    );
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let settings = PollSettings::from_config(&config.poll);
    let state = salesbot::app::build_state(config).await.unwrap();
    for p in 0..PAGES {
        let page = PageId::parse(&format!("{}", 100_000 + p)).unwrap();
        let token = SecretString::from(format!("EAA-bench-{p}"));
        state
            .pages
            .connect(&page, &token, &uuid::Uuid::nil())
            .await
            .unwrap();
    }

    println!(
        "# poll: {PAGES} pages x {CONVERSATIONS} conversations x {MESSAGES} messages, {} ms per request, concurrency {CONCURRENCY}",
        LATENCY.as_millis()
    );
    println!(
        "| run | wall s | Graph requests | paced requests | new messages | stored / served | least wall s (2/s/page, concurrency {CONCURRENCY}) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let before = sandbox.calls().len();
    let full = timed(&state.poller).await;
    report(
        "full backfill",
        &full,
        &sandbox,
        before,
        served,
        dir.path(),
        &settings,
    );

    // 1% of the conversations get one new message each.
    let now = unix_now();
    {
        let mut world = sandbox.world();
        for p in (0..PAGES).step_by(10) {
            let conversation = &mut world.pages[p].conversations[p % CONVERSATIONS];
            let mut message = conversation.messages[0].clone();
            message.id = format!("{}_new", message.id);
            message.created = now + 1;
            conversation.messages.push(message);
        }
    }
    let served = sandbox.world().servable_messages();
    let before = sandbox.calls().len();
    let incremental = timed(&state.poller).await;
    report(
        "incremental (1% changed)",
        &incremental,
        &sandbox,
        before,
        served,
        dir.path(),
        &settings,
    );
}

async fn timed(poller: &salesbot::facebook::poll::Poller) -> (PollOutcome, Duration) {
    let start = Instant::now();
    let outcome = poller.poll_once().await.unwrap();
    (outcome, start.elapsed())
}

fn report(
    name: &str,
    (outcome, wall): &(PollOutcome, Duration),
    sandbox: &Sandbox,
    before: usize,
    served: usize,
    dir: &std::path::Path,
    settings: &PollSettings,
) {
    assert_eq!(outcome.failed(), 0, "{}", outcome.summary());
    let calls = &sandbox.calls()[before..];
    let paced: Vec<usize> = outcome
        .pages
        .iter()
        .map(|p| p.result.as_ref().unwrap().graph_calls)
        .collect();
    let paced_total: usize = paced.iter().sum();
    // Each page needs (calls - 1) intervals; pages run CONCURRENCY at a time.
    let per_page: Vec<f64> = paced
        .iter()
        .map(|&c| c.saturating_sub(1) as f64 * settings.min_call_interval.as_secs_f64())
        .collect();
    let least = per_page.iter().sum::<f64>() / CONCURRENCY as f64;
    let least = least.max(per_page.iter().cloned().fold(0.0, f64::max));
    let new: usize = outcome
        .pages
        .iter()
        .map(|p| p.result.as_ref().unwrap().new_messages)
        .sum();
    let stored = count_stored(&dir.join("facebook"));
    println!(
        "| {name} | {:.1} | {} | {paced_total} | {new} | {stored} / {served} | {least:.1} | {:.2} |",
        wall.as_secs_f64(),
        calls.len(),
        wall.as_secs_f64() / least
    );
}

fn count_stored(dir: &std::path::Path) -> usize {
    let mut total = 0;
    for page in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let conversations = page.path().join("conversations");
        for file in std::fs::read_dir(conversations)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            if file.path().extension().is_some_and(|e| e == "json") {
                let events: Vec<serde_json::Value> =
                    serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
                total += events.len();
            }
        }
    }
    total
}
