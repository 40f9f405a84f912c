//! `salesbot erase`: one customer's conversation, attachments and downloads removed beside a
//! running store, and kept out of later polls while Meta still serves their history.

use std::path::Path;
use std::time::Duration;

use salesbot::config::Config;
use salesbot::domain::{PageId, SenderId};
use salesbot::sandbox::world::{Message, Page};
use salesbot::sandbox::{Sandbox, World};
use salesbot::store::unix_now;

use crate::helpers::test_env;
use crate::poll::{connect, fast, file};

const T0: i64 = 1_750_000_000;

fn attachments(data: &Path, customer: &str) -> usize {
    std::fs::read_dir(data.join(format!("facebook/101/attachments/{customer}")))
        .map_or(0, |entries| entries.count())
}

#[tokio::test]
async fn an_erased_customer_is_gone_everywhere_and_the_poll_does_not_bring_them_back() {
    let page = Page::new("101", "Demo Page", "EAAPAGE101")
        .with_conversation("5000", 12, T0)
        .with_conversation("5001", 12, T0);
    let world = World {
        pages: vec![page],
        ..World::default()
    };
    let sandbox = Sandbox::start(world, Duration::ZERO).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sandbox.url();
    let env = test_env(
        dir.path(),
        &[("FACEBOOK_GRAPH_URL", &url), ("ATTACHMENT_HOSTS", &url)],
    );
    let config = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    connect(&state, "101", "EAAPAGE101").await;
    let poller = state.poller.clone().with_settings(fast());
    assert_eq!(poller.poll_once().await.unwrap().failed(), 0);
    let downloader = state.attachments.as_ref().unwrap();
    while downloader.pending().await.unwrap() > 0 {
        downloader.pass().await.unwrap();
    }
    // Each history has a photo and a sticker, kept.
    assert_eq!(
        (
            attachments(dir.path(), "5000"),
            attachments(dir.path(), "5001")
        ),
        (2, 2)
    );

    let erase = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_salesbot"))
            .arg("erase")
            .args(args)
            .env_clear()
            .envs(&env)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let refused = erase(&["--page", "../101", "--customer", "5000"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        dir.path()
            .join("facebook/101/conversations/5000.json")
            .exists()
    );

    let erased = erase(&["--page", "101", "--customer", "5000"]);
    let said = String::from_utf8_lossy(&erased.stdout);
    assert_eq!(
        erased.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&erased.stderr)
    );
    assert!(
        said.contains(
            "erased customer 5000 of page 101: 12 events, 2 attachment files, 2 download entries"
        ),
        "{said}"
    );
    assert!(
        !dir.path()
            .join("facebook/101/conversations/5000.json")
            .exists()
    );
    assert!(!dir.path().join("facebook/101/attachments/5000").exists());
    assert_eq!(
        file(dir.path(), "101", "5001").len(),
        12,
        "another customer untouched"
    );
    assert_eq!(attachments(dir.path(), "5001"), 2);

    // The customer writes again; Meta serves the new message with the erased history. Only
    // the new one is stored, and no download of the old photos is owed again.
    let now = unix_now();
    sandbox.world().pages[0].conversations[0]
        .messages
        .push(Message {
            id: "m_after_erasure".into(),
            from: "5000".into(),
            to: "101".into(),
            created: now + 60,
            text: Some("me again".into()),
            image_url: None,
            sticker: None,
        });
    assert_eq!(poller.poll_once().await.unwrap().failed(), 0);
    let stored = file(dir.path(), "101", "5000");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["message"]["mid"], "m_after_erasure");
    assert_eq!(downloader.pending().await.unwrap(), 0);
    let at = state
        .conversations
        .erased_at(
            &PageId::parse("101").unwrap(),
            &SenderId::parse("5000").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(at / 1000 <= now + 1);

    // Nothing of them: said so, and harmless.
    let again = erase(&["--page", "101", "--customer", "5999"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing was stored of customer 5999"));
}
