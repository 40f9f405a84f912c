//! The poll against the sandbox's Graph API: completeness, faults, checkpoints, schedule.

use std::collections::HashSet;
use std::time::Duration;

use salesbot::config::Config;
use salesbot::domain::{PageId, SenderId};
use salesbot::facebook::poll::{PollSettings, Poller};
use salesbot::sandbox::world::{Fault, Page};
use salesbot::sandbox::{Sandbox, World};
use salesbot::state::AppState;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::test_env;

const T0: i64 = 1_750_000_000;

struct Setup {
    state: AppState,
    poller: Poller,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
}

pub fn fast() -> PollSettings {
    PollSettings {
        concurrency: 4,
        min_call_interval: Duration::ZERO,
        max_attempts: 4,
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(50),
    }
}

async fn setup(world: World) -> Setup {
    let sandbox = Sandbox::start(world, Duration::ZERO).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sandbox.url();
    let env = test_env(dir.path(), &[("FACEBOOK_GRAPH_URL", &url)]);
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    let pages: Vec<(String, String)> = sandbox
        .world()
        .pages
        .iter()
        .map(|p| (p.id.clone(), p.token.clone()))
        .collect();
    for (id, token) in pages {
        connect(&state, &id, &token).await;
    }
    let poller = state.poller.clone().with_settings(fast());
    Setup {
        state,
        poller,
        sandbox,
        dir,
    }
}

pub async fn connect(state: &AppState, page: &str, token: &str) {
    let page = PageId::parse(page).unwrap();
    state
        .pages
        .connect(&page, &SecretString::from(token), &uuid::Uuid::new_v4())
        .await
        .unwrap();
}

pub fn file(dir: &std::path::Path, page: &str, customer: &str) -> Vec<Value> {
    let bytes =
        std::fs::read(dir.join(format!("facebook/{page}/conversations/{customer}.json"))).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn mids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["message"]["mid"].as_str().unwrap().to_string())
        .collect()
}

fn big_page() -> Page {
    let mut page = Page::new("101", "Demo Page", "EAAPAGE101");
    for c in 0..7 {
        page = page.with_conversation(&format!("{}", 5000 + c), 12, T0 + 10_000 * c as i64);
    }
    page
}

#[tokio::test]
async fn every_message_of_every_conversation_is_stored_once_in_order() {
    let world = World {
        pages: vec![big_page()],
        conversations_per_page: 3,
        messages_per_page: 5,
        ..World::default()
    };
    let s = setup(world).await;
    let outcome = s.poller.poll_once().await.unwrap();
    assert_eq!(outcome.failed(), 0, "{outcome:?}");
    let report = outcome.pages[0].result.as_ref().unwrap();
    assert_eq!(report.conversations, 7);
    assert_eq!(report.new_messages, 84);

    let world = s.sandbox.world().clone();
    for conversation in &world.pages[0].conversations {
        let stored = file(s.dir.path(), "101", &conversation.customer);
        let expected: Vec<String> = conversation.messages.iter().map(|m| m.id.clone()).collect();
        assert_eq!(
            mids(&stored),
            expected,
            "all 12, oldest first, no duplicates"
        );
        let ts: Vec<i64> = stored
            .iter()
            .map(|e| e["timestamp"].as_i64().unwrap())
            .collect();
        assert_eq!(ts[0], conversation.messages[0].created * 1000);
        // The page's own replies are there, sender = page, recipient = customer.
        assert_eq!(stored[1]["sender"]["id"], "101");
        assert_eq!(stored[1]["recipient"]["id"], conversation.customer.as_str());
        // A photo (message 4) and a sticker (message 6) have no text and are kept.
        assert!(stored[4]["message"].get("text").is_none());
        assert_eq!(stored[4]["message"]["attachments"][0]["type"], "image");
        assert!(stored[6]["message"].get("text").is_none());
        assert!(
            stored[6]["message"]["sticker"]
                .as_str()
                .unwrap()
                .contains("sticker")
        );
        assert_eq!(
            stored[0]["message"]["text"],
            format!("message 0 of {}", conversation.customer)
        );
    }
    let meta: Value = serde_json::from_slice(
        &std::fs::read(s.dir.path().join("facebook/101/page_metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["data"][0]["name"], "Demo Page");
    assert!(!meta.to_string().contains("EAAPAGE"));
}

#[tokio::test]
async fn the_twenty_readable_messages_are_kept_when_older_ones_are_deleted() {
    let page = Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 30, T0);
    let s = setup(World {
        pages: vec![page],
        messages_per_page: 7,
        ..World::default()
    })
    .await;
    let outcome = s.poller.poll_once().await.unwrap();
    assert_eq!(
        outcome.failed(),
        0,
        "deleted messages do not fail the page: {outcome:?}"
    );
    let stored = file(s.dir.path(), "101", "5000");
    assert_eq!(stored.len(), 20);
    assert_eq!(mids(&stored).last().unwrap(), "m_101_5000_0029");
    assert_eq!(mids(&stored)[0], "m_101_5000_0010");
}

#[tokio::test]
async fn one_revoked_page_fails_alone_and_transient_errors_are_retried() {
    let mut revoked = Page::new("101", "Revoked", "EAAREVOKED").with_conversation("5000", 3, T0);
    revoked.revoked = true;
    let mut throttled =
        Page::new("202", "Throttled", "EAATHROTTLED").with_conversation("5001", 3, T0);
    throttled
        .faults
        .extend([Fault::Throttled, Fault::Throttled]);
    let mut flaky = Page::new("303", "Flaky", "EAAFLAKY").with_conversation("5002", 3, T0);
    flaky.faults.push_back(Fault::ServerError);
    let s = setup(World {
        pages: vec![revoked, throttled, flaky],
        ..World::default()
    })
    .await;

    let outcome = s.poller.poll_once().await.unwrap();
    assert_eq!(outcome.failed(), 1, "{outcome:?}");
    let by_page = |id: &str| {
        outcome
            .pages
            .iter()
            .find(|p| p.page.as_str() == id)
            .unwrap()
    };
    let failure = by_page("101").result.as_ref().unwrap_err();
    assert!(failure.needs_reauth);
    assert!(failure.reason.contains("190/492"), "{}", failure.reason);
    assert_eq!(by_page("202").result.as_ref().unwrap().new_messages, 3);
    assert_eq!(by_page("303").result.as_ref().unwrap().new_messages, 3);
    let marked = s.poller.state().needing_reauth().await.unwrap();
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].0, "101");
    assert!(
        outcome.summary().contains("pages ok 2, failed 1"),
        "{}",
        outcome.summary()
    );
}

#[tokio::test]
async fn a_second_poll_of_an_unchanged_world_duplicates_nothing_and_pages_less() {
    let world = World {
        pages: vec![big_page()],
        conversations_per_page: 2,
        messages_per_page: 5,
        ..World::default()
    };
    let s = setup(world).await;
    s.poller.poll_once().await.unwrap();
    let list_calls = |s: &Setup| {
        s.sandbox
            .calls()
            .iter()
            .filter(|c| c.path.ends_with("/conversations"))
            .count()
    };
    let first = list_calls(&s);
    assert_eq!(first, 4, "7 conversations, 2 per page");

    let second = s.poller.poll_once().await.unwrap();
    assert_eq!(second.pages[0].result.as_ref().unwrap().new_messages, 0);
    assert_eq!(list_calls(&s) - first, 1, "stops at the checkpoint");
    assert_eq!(file(s.dir.path(), "101", "5000").len(), 12);

    // A conversation that changes after the checkpoint is picked up by the next poll.
    let now = salesbot::store::unix_now();
    {
        let mut world = s.sandbox.world();
        let conversation = world.pages[0]
            .conversations
            .iter_mut()
            .find(|c| c.customer == "5003")
            .unwrap();
        let mut message = conversation.messages[0].clone();
        message.id = "m_new".into();
        message.created = now + 5;
        conversation.messages.push(message);
    }
    let third = s.poller.poll_once().await.unwrap();
    assert_eq!(third.pages[0].result.as_ref().unwrap().new_messages, 1);
    assert_eq!(
        mids(&file(s.dir.path(), "101", "5003")).last().unwrap(),
        "m_new"
    );
}

#[tokio::test]
async fn a_message_stored_by_the_webhook_is_not_duplicated_by_the_poll() {
    let page = Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 4, T0);
    let s = setup(World {
        pages: vec![page],
        ..World::default()
    })
    .await;
    let m = s.sandbox.world().pages[0].conversations[0].messages[2].clone();
    let webhook_event = json!({"sender": {"id": m.from}, "recipient": {"id": m.to}, "timestamp": m.created * 1000,
        "message": {"mid": m.id, "text": m.text}});
    let (page, customer) = (
        PageId::parse("101").unwrap(),
        SenderId::parse("5000").unwrap(),
    );
    s.state
        .conversations
        .add(&page, &customer, vec![(&webhook_event).into()])
        .await
        .unwrap();

    let outcome = s.poller.poll_once().await.unwrap();
    assert_eq!(outcome.pages[0].result.as_ref().unwrap().new_messages, 3);
    let stored = mids(&file(s.dir.path(), "101", "5000"));
    assert_eq!(stored.len(), 4);
    assert_eq!(stored.iter().collect::<HashSet<_>>().len(), 4);
}

#[tokio::test]
async fn restoring_a_subscription_is_retried_through_throttling_and_errors() {
    let mut page = Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 2, T0);
    page.subscribed = false;
    // The metadata and subscription reads pass; the POST meets a 500, then a throttle.
    page.faults.extend([
        Fault::Pass,
        Fault::Pass,
        Fault::ServerError,
        Fault::Throttled,
    ]);
    let s = setup(World {
        pages: vec![page],
        ..World::default()
    })
    .await;
    let outcome = s.poller.poll_once().await.unwrap();
    let report = outcome.pages[0].result.as_ref().expect("the page polled");
    assert!(report.resubscribed);
    assert!(s.sandbox.world().pages[0].subscribed);
    let posts = s
        .sandbox
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/101/subscribed_apps"))
        .count();
    assert_eq!(posts, 3, "two failures retried, then subscribed");
    assert_eq!(
        report.graph_calls,
        s.sandbox.calls().len(),
        "every call paced and counted"
    );
}

#[tokio::test]
async fn a_vanished_subscription_is_restored() {
    let mut page = Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 2, T0);
    page.subscribed = false;
    let s = setup(World {
        pages: vec![page],
        ..World::default()
    })
    .await;
    let outcome = s.poller.poll_once().await.unwrap();
    assert!(outcome.pages[0].result.as_ref().unwrap().resubscribed);
    assert!(s.sandbox.world().pages[0].subscribed);
    let again = s.poller.poll_once().await.unwrap();
    assert!(
        !again.pages[0].result.as_ref().unwrap().resubscribed,
        "left alone once present"
    );
    let posts = s
        .sandbox
        .calls()
        .iter()
        .filter(|c| c.method == "POST")
        .count();
    assert_eq!(posts, 1);
    assert_eq!(
        s.sandbox
            .calls()
            .iter()
            .find(|c| c.method == "POST")
            .unwrap()
            .param("subscribed_fields"),
        Some("name,category,messages")
    );
}

#[tokio::test]
async fn calls_for_one_page_stay_within_two_per_second() {
    let page = Page::new("101", "Demo Page", "EAAPAGE101")
        .with_conversation("5000", 3, T0)
        .with_conversation("5001", 3, T0 + 1000)
        .with_conversation("5002", 3, T0 + 2000);
    let mut s = setup(World {
        pages: vec![page],
        conversations_per_page: 1,
        ..World::default()
    })
    .await;
    s.poller = s.poller.clone().with_settings(PollSettings {
        min_call_interval: Duration::from_millis(500),
        ..fast()
    });
    s.poller.poll_once().await.unwrap();
    let paced: Vec<_> = s
        .sandbox
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && !c.path.ends_with("/subscribed_apps"))
        .collect();
    assert!(paced.len() >= 4, "{}", paced.len());
    for pair in paced.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(490),
            "two calls {gap:?} apart: {} then {}",
            pair[0].path,
            pair[1].path
        );
    }
}

#[tokio::test]
async fn two_polls_never_run_at_once() {
    let page = Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 3, T0);
    let s = setup(World {
        pages: vec![page],
        ..World::default()
    })
    .await;
    let slow = s.poller.clone().with_settings(PollSettings {
        min_call_interval: Duration::from_millis(300),
        ..fast()
    });
    let first = tokio::spawn({
        let slow = slow.clone();
        async move { slow.poll_once().await.is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        slow.poll_once().await,
        Err(salesbot::facebook::poll::PollError::AlreadyRunning)
    ));
    // Another process (another Poller on the same files) is kept out too.
    assert!(matches!(
        s.poller.poll_once().await,
        Err(salesbot::facebook::poll::PollError::AlreadyRunning)
    ));
    assert!(first.await.unwrap());
}

#[tokio::test]
async fn the_schedule_really_runs_the_poll() {
    let page = Page::new("101", "Demo Page", "EAAPAGE101").with_conversation("5000", 3, T0);
    let sandbox = Sandbox::start(
        World {
            pages: vec![page],
            ..World::default()
        },
        Duration::ZERO,
    )
    .await
    .unwrap();
    let url = sandbox.url();
    let app = crate::helpers::spawn_app_with(&[
        ("FACEBOOK_GRAPH_URL", &url),
        ("POLL_CRON", "* * * * * *"),
    ])
    .await;
    connect(&app.state, "101", "EAAPAGE101").await;
    let path = app.dir.path().join("facebook/101/conversations/5000.json");
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(path.exists(), "no scheduled poll within 10 s");
    app.stop().await;
}

#[tokio::test]
async fn salesbot_poll_reports_each_page_and_fails_only_for_the_revoked_one() {
    let mut revoked = Page::new("101", "Revoked", "EAAREVOKED").with_conversation("5000", 2, T0);
    revoked.revoked = true;
    let good = Page::new("202", "Good", "EAAGOOD").with_conversation("5001", 2, T0);
    let s = setup(World {
        pages: vec![revoked, good],
        ..World::default()
    })
    .await;
    let url = s.sandbox.url();
    let env = test_env(s.dir.path(), &[("FACEBOOK_GRAPH_URL", &url)]);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_salesbot"))
        .arg("poll")
        .env_clear()
        .envs(env)
        .current_dir(s.dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("page 101: NEEDS RE-AUTHORISATION"),
        "{stdout}"
    );
    assert!(
        stdout.contains("page 202: ok, 1 conversations, 2 new messages"),
        "{stdout}"
    );
    assert!(
        stdout.contains("poll finished: pages ok 1, failed 1"),
        "{stdout}"
    );
    assert!(!stdout.contains("EAAREVOKED") && !stdout.contains("EAAGOOD"));

    s.sandbox.world().pages[0].revoked = false;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_salesbot"))
        .arg("poll")
        .env_clear()
        .envs(test_env(s.dir.path(), &[("FACEBOOK_GRAPH_URL", &url)]))
        .current_dir(s.dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
