//! The demo's story, told step by step in plain words on stdout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::browser::Browser;
use super::{DemoError, app_secret, base};
use crate::sandbox::{Sandbox, deliver_webhook};
use crate::state::AppState;

/// What the story left behind, for a caller (or a test) to check.
#[derive(Debug, Default)]
pub struct Summary {
    pub user_uuid: String,
    pub pages: Vec<String>,
    pub files: Vec<PathBuf>,
    /// Messages the self-test polls of step 2 stored.
    pub fetched_at_connect: usize,
    pub backfilled: usize,
}

fn step<E: std::fmt::Display>(name: &'static str) -> impl Fn(E) -> DemoError {
    move |err| DemoError::Step {
        step: name,
        reason: err.to_string(),
    }
}

pub async fn tell(
    app: &AppState,
    sandbox: &Sandbox,
    addr: SocketAddr,
    data_dir: &Path,
) -> Result<Summary, DemoError> {
    let mut summary = Summary::default();
    let base = base(addr);
    let mut browser = Browser::new();
    println!(
        "salesbot demo: the server runs at {base}, the sandbox (standing in for Meta and Shopify) at {}",
        sandbox.url()
    );
    println!("Everything is written under {}\n", data_dir.display());

    println!("1. The merchant connects the Shopify store \"demo-store\".");
    let (page, url) = browser
        .open(&format!("{base}/shopify/demo-store/login"))
        .await
        .map_err(step("Shopify login"))?;
    println!("   The browser lands on Shopify's install page and clicks \"Install app\".");
    let shop = browser
        .approve(&page, &url)
        .await
        .map_err(step("Shopify callback"))?;
    summary.user_uuid = shop["user_uuid"].as_str().unwrap_or_default().to_string();
    println!(
        "   ✓ Shop connected. Merchant UUID {}; token stored encrypted, never shown.",
        summary.user_uuid
    );
    println!(
        "   ✓ Shop data read: {} with {} products.\n",
        shop["shopify_data"]["data"]["shop"]["name"],
        shop["shopify_data"]["data"]["products"]["edges"]
            .as_array()
            .map_or(0, Vec::len)
    );

    println!("2. In the same browser, the merchant connects their Facebook Pages.");
    let (page, url) = browser
        .open(&format!("{base}/facebook/login"))
        .await
        .map_err(step("Facebook login"))?;
    println!("   The browser lands on Facebook's dialog and clicks \"Continue\".");
    let fb = browser
        .approve(&page, &url)
        .await
        .map_err(step("Facebook callback"))?;
    for p in fb["pages"]["data"].as_array().into_iter().flatten() {
        summary
            .pages
            .push(p["id"].as_str().unwrap_or_default().to_string());
        println!(
            "   ✓ Page \"{}\" ({}) connected to merchant {}",
            p["name"].as_str().unwrap_or("?"),
            p["id"].as_str().unwrap_or("?"),
            fb["user_uuid"].as_str().unwrap_or("?")
        );
    }
    let subscribed = sandbox
        .world()
        .pages
        .iter()
        .filter(|p| p.subscribed)
        .count();
    println!("   ✓ {subscribed} pages subscribed to webhooks (name, category, messages).");
    let checks = |key: &str| {
        fb[key].as_array().map_or((0, 0), |r| {
            (
                r.iter()
                    .filter(|x| x["result"]["status"] == "success")
                    .count(),
                r.len(),
            )
        })
    };
    let (ok_w, all_w) = checks("webhook_test");
    let (ok_p, all_p) = checks("polling_test");
    println!(
        "   ✓ Self-tests: {ok_w}/{all_w} webhook deliveries and {ok_p}/{all_p} polls succeeded."
    );
    let (conversations, events) = history(data_dir);
    summary.fetched_at_connect = events;
    println!(
        "   ✓ The self-test polls already fetched the pages' history: {} in {}.\n",
        plural(events, "message"),
        plural(conversations, "conversation")
    );

    let page_id = summary.pages.first().cloned().ok_or(DemoError::Step {
        step: "Facebook callback",
        reason: "no page connected".into(),
    })?;
    let customer = "7000000000009";
    let http = app.http.clone();
    let webhook = format!("{base}/facebook/webhook");
    let now_ms = crate::store::unix_now() * 1000;

    println!(
        "3. A customer writes to \"Demo Page\" on Messenger with a photo; Meta calls the webhook."
    );
    let mid = format!("m_demo_{now_ms}_1");
    let photo = format!("{}/cdn/linen-shirt-blue.png", sandbox.url());
    let message = json!({"object": "page", "entry": [{"id": page_id, "time": now_ms, "messaging": [{
        "sender": {"id": customer}, "recipient": {"id": page_id}, "timestamp": now_ms,
        "message": {"mid": mid, "text": "Hi! Is the linen shirt available in blue, size M?",
            "attachments": [{"type": "image", "payload": {"url": photo}}]}}]}]});
    deliver(&http, &webhook, &message).await?;
    let file = data_dir.join(format!("facebook/{page_id}/conversations/{customer}.json"));
    println!(
        "   ✓ Stored in {} ({})",
        file.display(),
        plural(count(&file), "event")
    );
    let kept = data_dir.join(format!(
        "facebook/{page_id}/attachments/{customer}/{}",
        crate::attachments::file_name(&mid, 0, Some("image/png"))
    ));
    let mut size = None;
    for _ in 0..100 {
        if let Ok(meta) = std::fs::metadata(&kept) {
            size = Some(meta.len());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let size = size.ok_or(DemoError::Step {
        step: "attachment",
        reason: format!("the photo was not kept in {} within 10 s", kept.display()),
    })?;
    println!(
        "   ✓ Their photo is kept in {} ({size} bytes), before Meta's link expires\n",
        kept.display()
    );

    println!("4. The page answers; Meta sends the reply back as an echo.");
    let echo = json!({"object": "page", "entry": [{"id": page_id, "time": now_ms + 1, "messaging": [{
        "sender": {"id": page_id}, "recipient": {"id": customer}, "timestamp": now_ms + 60_000,
        "message": {"mid": format!("m_demo_{now_ms}_2"), "is_echo": true, "text": "Yes, 7 left in stock!"}}]}]});
    deliver(&http, &webhook, &echo).await?;
    deliver(&http, &webhook, &echo).await?;
    println!(
        "   ✓ Same file, now {}: the reply sits in the customer's history (delivered twice, stored once).\n",
        plural(count(&file), "event")
    );

    println!("5. The merchant renames the page to \"Demo Page – Summer Sale\".");
    if let Some(p) = sandbox.world().pages.iter_mut().find(|p| p.id == page_id) {
        p.name = "Demo Page – Summer Sale".into();
    }
    let change = json!({"object": "page", "entry": [{"id": page_id, "time": now_ms, "changes": [{"field": "name", "value": "Demo Page – Summer Sale"}]}]});
    deliver(&http, &webhook, &change).await?;
    let metadata = data_dir.join(format!("facebook/{page_id}/page_metadata.json"));
    let mut name = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        name = read_json(&metadata)
            .map(|m| {
                m["data"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        if name.contains("Summer") {
            break;
        }
    }
    println!(
        "   ✓ Metadata refreshed after the webhook answered: {} now says \"{name}\".\n",
        metadata.display()
    );

    println!(
        "6. Meanwhile the server was unreachable for a while: customers wrote, and Meta gave up"
    );
    println!("   delivering. Nothing of it reached the webhook.");
    let missed = missed_while_down(sandbox, &page_id);
    println!("   ({} waiting at Meta.)\n", plural(missed, "message"));

    println!("7. The nightly poll runs now and fills in what the webhook never saw since step 2's");
    println!("   self-test poll: it stops paging where that poll left off.");
    let outcome = app.poller.poll_once().await.map_err(step("poll"))?;
    for page in &outcome.pages {
        match &page.result {
            Ok(r) => {
                summary.backfilled += r.new_messages;
                println!(
                    "   ✓ Page {}: {} read, {} added, {}",
                    page.page,
                    plural(r.conversations, "conversation"),
                    plural(r.new_messages, "missed message"),
                    plural(r.graph_calls, "Graph call")
                );
            }
            Err(f) => println!("   ✗ Page {}: {}", page.page, f.reason),
        }
    }
    println!("   {}\n", outcome.summary());

    println!("8. The files the bot reads:");
    summary.files = files(&data_dir.join("facebook"));
    for path in &summary.files {
        let shown = path.strip_prefix(data_dir).unwrap_or(path).display();
        match read_json(path) {
            Some(Value::Array(events)) => {
                println!("   {shown}  ({})", plural(events.len(), "event"))
            }
            Some(_) => println!("   {shown}"),
            None => println!("   {shown}  (unreadable!)"),
        }
    }
    // The photos and stickers in the polled histories are fetched in the background too.
    let pending = match &app.attachments {
        Some(downloader) => downloader.pending().await.unwrap_or(0),
        None => 0,
    };
    println!(
        "   and under facebook/<page>/attachments/: {} kept so far, {} still downloading",
        plural(attachment_files(&data_dir.join("facebook")), "file"),
        pending
    );
    Ok(summary)
}

/// Files under every `attachments/` folder below `dir`.
fn attachment_files(dir: &Path) -> usize {
    let Ok(pages) = std::fs::read_dir(dir) else {
        return 0;
    };
    pages
        .filter_map(Result::ok)
        .filter_map(|page| std::fs::read_dir(page.path().join("attachments")).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|customer| std::fs::read_dir(customer.path()).ok())
        .map(|files| {
            files
                .filter_map(Result::ok)
                .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .sum()
}

async fn deliver(http: &reqwest::Client, url: &str, payload: &Value) -> Result<(), DemoError> {
    match deliver_webhook(http, url, payload, &app_secret()).await {
        Ok(200) => Ok(()),
        Ok(status) => Err(DemoError::Step {
            step: "webhook",
            reason: format!("answered HTTP {status}"),
        }),
        Err(reason) => Err(DemoError::Step {
            step: "webhook",
            reason,
        }),
    }
}

/// `1 event`, `2 events`.
fn plural(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// Conversation files under `data_dir/facebook` and the events they hold.
fn history(data_dir: &Path) -> (usize, usize) {
    files(&data_dir.join("facebook"))
        .iter()
        .filter(|path| path.parent().is_some_and(|p| p.ends_with("conversations")))
        .fold((0, 0), |(files, events), path| {
            (files + 1, events + count(path))
        })
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn count(path: &Path) -> usize {
    read_json(path)
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Every `.json` file below `dir`, sorted; the lock folders are not the bot's business.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir()
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            found.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Adds, at Meta only, a new customer's conversation and replies in an existing one.
fn missed_while_down(sandbox: &Sandbox, page_id: &str) -> usize {
    let now = crate::store::unix_now();
    let mut world = sandbox.world();
    let Some(page) = world.pages.iter_mut().find(|p| p.id == page_id) else {
        return 0;
    };
    let before: usize = page.conversations.iter().map(|c| c.messages.len()).sum();
    let fresh = std::mem::replace(page, crate::sandbox::world::Page::new("", "", ""));
    // Written after the last poll (the self-test's), as anything the poll has not seen must be.
    *page = fresh.with_conversation("7000000000010", 8, now + 1);
    if let Some(conversation) = page.conversations.first_mut() {
        for i in 0..3 {
            let mut message = conversation.messages[0].clone();
            message.id = format!("{}_late_{i}", message.id);
            message.created = now + 1 + i;
            message.text = Some(format!("Following up ({}), did my order ship?", i + 1));
            conversation.messages.push(message);
        }
    }
    page.conversations
        .iter()
        .map(|c| c.messages.len())
        .sum::<usize>()
        - before
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(plural(1, "event"), "1 event");
        assert_eq!(plural(0, "event"), "0 events");
        assert_eq!(plural(2, "missed message"), "2 missed messages");
    }
}
