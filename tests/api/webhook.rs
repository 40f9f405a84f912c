//! `GET/POST /facebook/webhook`: verification, every rejection, batches, concurrency, refreshes.

use std::path::Path;
use std::sync::Arc;

use salesbot::facebook::webhook::signature;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_with_stand_in};

async fn connect(app: &TestApp, page: &str, token: &str) {
    crate::poll::connect(&app.state, page, token).await;
}

pub async fn post(app: &TestApp, body: &[u8], signed: bool) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/facebook/webhook"))
        .header("content-type", "application/json");
    if signed {
        for (name, value) in signature::sign(body, &SecretString::from("test-facebook-app-secret"))
        {
            request = request.header(name, value);
        }
    }
    request.body(body.to_vec()).send().await.unwrap()
}

fn message(sender: &str, recipient: &str, mid: &str, ts: i64) -> Value {
    json!({"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": ts, "message": {"mid": mid, "text": format!("hello {mid}")}})
}

fn payload(entries: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "page", "entry": entries})).unwrap()
}

fn conversation(dir: &Path, page: &str, sender: &str) -> Vec<Value> {
    let path = dir.join(format!("facebook/{page}/conversations/{sender}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn nothing_written(dir: &Path) {
    assert!(
        !dir.join("facebook").exists(),
        "something was written under DATA_DIR/facebook"
    );
}

async fn detail(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    response.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn verification_answers_the_raw_challenge_as_plain_text() {
    let app = spawn_app().await;
    let get = |query: &str| {
        app.client
            .get(app.url(&format!("/facebook/webhook?{query}")))
            .send()
    };
    let ok = get("hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=1158201444")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "hub.challenge=1",
        "",
    ] {
        assert_eq!(
            detail(get(query).await.unwrap(), 403).await,
            "Verification failed",
            "{query}"
        );
    }
}

#[tokio::test]
async fn every_rejection_is_clear_and_writes_nothing() {
    let app = spawn_app().await;
    connect(&app, "101", "EAAPAGE").await;
    let body = payload(vec![
        json!({"id": "101", "messaging": [message("2001", "101", "m1", 1)]}),
    ]);

    assert_eq!(
        detail(post(&app, &body, false).await, 401).await,
        "Invalid HMAC signature"
    );
    let forged = app
        .client
        .post(app.url("/facebook/webhook"))
        .header("X-Hub-Signature-256", format!("sha256={}", "ab".repeat(32)))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(detail(forged, 401).await, "Invalid HMAC signature");
    // Signed, then changed in transit.
    let mut request = app.client.post(app.url("/facebook/webhook"));
    for (name, value) in signature::sign(&body, &SecretString::from("test-facebook-app-secret")) {
        request = request.header(name, value);
    }
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("hello", "HELLO");
    assert_eq!(
        detail(request.body(tampered).send().await.unwrap(), 401).await,
        "Invalid HMAC signature"
    );

    let huge = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(
        detail(post(&app, &huge, true).await, 413).await,
        "Request body too large"
    );
    assert_eq!(
        detail(post(&app, b"{not json", true).await, 400).await,
        "Invalid JSON body"
    );
    let user = serde_json::to_vec(&json!({"object": "user", "entry": [{"id": "101", "messaging": [message("2001", "101", "m1", 1)]}]})).unwrap();
    assert_eq!(
        detail(post(&app, &user, true).await, 400).await,
        "Invalid webhook object"
    );
    for not_an_object in [&b"[\"page\"]"[..], b"\"page\""] {
        assert_eq!(
            detail(post(&app, not_an_object, true).await, 400).await,
            "Invalid webhook object"
        );
    }
    nothing_written(app.dir.path());
}

#[tokio::test]
async fn events_are_stored_as_the_bytes_sent_and_odd_shapes_read_as_json_reads_them() {
    let app = spawn_app().await;
    connect(&app, "101", "EAAPAGE101").await;
    let sent = r#"{"timestamp":2,"sender":{"id":"2001"},"recipient":{"id":"101"},"message":{"text":"caf\u00e9 \ud83d\ude00","mid":"m.1"}}"#;
    let pretty = "{\n  \"sender\": {\"id\": \"2001\"},\n  \"timestamp\": 3,\n  \"message\": {\"mid\": \"m.2\"}\n}";
    // The last of a repeated member counts, as in any JSON reader; ids may come as numbers;
    // members of the wrong type read as absent.
    let body = format!(
        r#"{{"object":"user","entry":[{{"id":101,"messaging":[{sent}, {pretty},
            {{"sender":"2001","timestamp":4}}, {{"sender":{{"id":["2001"]}},"timestamp":5}}, 7]}},
            {{"id":"101","messaging":{{"not":"a list"}}}}, "not an entry"],"object":"page"}}"#
    );
    assert_eq!(post(&app, body.as_bytes(), true).await.status(), 200);

    let path = app.dir.path().join("facebook/101/conversations/2001.json");
    let file = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(lines.len(), 4, "one event per line:\n{file}");
    assert_eq!(lines[1], format!("{sent},"), "the bytes Meta sent");
    assert_eq!(
        serde_json::from_str::<Value>(lines[2]).unwrap(),
        serde_json::from_str::<Value>(pretty).unwrap(),
        "a pretty event made compact"
    );
    assert_eq!(
        conversation(app.dir.path(), "101", "2001")[0]["message"]["text"],
        "café 😀"
    );

    // The same event with its members in another order is the same message.
    let again = json!({"entry": [{"id": "101", "messaging": [serde_json::from_str::<Value>(sent).unwrap()]}], "object": "page"});
    let again = serde_json::to_vec(&again).unwrap();
    assert_eq!(post(&app, &again, true).await.status(), 200);
    assert_eq!(conversation(app.dir.path(), "101", "2001").len(), 2);
}

#[tokio::test]
async fn a_mixed_batch_lands_in_the_right_files() {
    let app = spawn_app().await;
    connect(&app, "101", "EAAPAGE101").await;
    connect(&app, "202", "EAAPAGE202").await;
    let read = json!({"sender": {"id": "2001"}, "recipient": {"id": "101"}, "timestamp": 5, "read": {"watermark": 4}});
    let echo = json!({"sender": {"id": "101"}, "recipient": {"id": "2001"}, "timestamp": 3,
        "message": {"mid": "m-echo", "is_echo": true, "text": "We ship tomorrow"}});
    let body = payload(vec![
        json!({"id": "101", "time": 1, "messaging": [
            message("2001", "101", "m1", 1), echo.clone(), message("2002", "101", "m2", 2),
            read.clone(), read.clone(), message("../x", "101", "m-bad", 9),
        ]}),
        json!({"id": "999", "messaging": [message("3001", "999", "m-unknown", 1)]}),
        json!({"id": "../etc", "messaging": [message("3001", "999", "m-evil", 1)]}),
        json!({"id": "202", "messaging": [message("2001", "202", "m3", 7), message("2001", "202", "m4", 6)]}),
    ]);
    let response = post(&app, &body, true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "success"})
    );

    let dir = app.dir.path();
    let first = conversation(dir, "101", "2001");
    assert_eq!(
        first,
        vec![message("2001", "101", "m1", 1), echo, read],
        "whole events, echo with the customer, read once"
    );
    assert_eq!(conversation(dir, "101", "2002").len(), 1);
    let second = conversation(dir, "202", "2001");
    let mids: Vec<&str> = second
        .iter()
        .map(|e| e["message"]["mid"].as_str().unwrap())
        .collect();
    assert_eq!(
        mids,
        ["m4", "m3"],
        "chronological, whatever the arrival order"
    );
    assert!(!dir.join("facebook/999").exists(), "unknown page skipped");
    let files: Vec<_> = std::fs::read_dir(dir.join("facebook"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");

    // Meta redelivers the whole batch: nothing doubles.
    assert_eq!(post(&app, &body, true).await.status(), 200);
    assert_eq!(conversation(dir, "101", "2001").len(), 3);
    assert_eq!(conversation(dir, "202", "2001").len(), 2);
}

#[tokio::test]
async fn five_hundred_concurrent_deliveries_store_five_hundred_once() {
    let app = Arc::new(spawn_app().await);
    connect(&app, "101", "EAAPAGE101").await;
    let bodies: Vec<Vec<u8>> = (0..500)
        .map(|i| payload(vec![json!({"id": "101", "messaging": [message("2001", "101", &format!("m{i:04}"), 1000 + i)]})]))
        .collect();
    for round in 0..2 {
        let tasks: Vec<_> = bodies
            .iter()
            .cloned()
            .map(|body| {
                let app = Arc::clone(&app);
                tokio::spawn(async move { post(&app, &body, true).await.status() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200, "round {round}");
        }
        let stored = conversation(app.dir.path(), "101", "2001");
        assert_eq!(stored.len(), 500, "round {round}");
        let ts: Vec<i64> = stored
            .iter()
            .map(|e| e["timestamp"].as_i64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
    }
}

#[tokio::test]
async fn a_burst_of_changes_refreshes_metadata_once_after_answering() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    connect(&app, "101", "EAAPAGE101SECRETTOKEN").await;
    let change = payload(vec![
        json!({"id": "101", "time": 1, "changes": [{"field": "name", "value": "Renamed"}]}),
    ]);
    for _ in 0..10 {
        assert_eq!(post(&app, &change, true).await.status(), 200);
    }
    assert!(
        stand_in.requests_to("/v25.0/101").is_empty(),
        "the refresh happens after the answers"
    );
    let path = app.dir.path().join("facebook/101/page_metadata.json");
    for _ in 0..50 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let calls = stand_in.requests_to("/v25.0/101");
    assert_eq!(calls.len(), 1, "one refresh for the burst");
    assert_eq!(
        calls[0].param("access_token"),
        Some("EAAPAGE101SECRETTOKEN")
    );
    let meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(meta["data"][0]["name"], "Demo Page");
    assert!(!meta.to_string().contains("EAAPAGE"));
}
