//! Attachments kept before Meta's URLs expire: downloaded after the answer, from allowed hosts
//! only, size-capped, and owed durably (a SIGKILL forgets nothing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::admin::{ADMIN_TOKEN, admin_get};
use crate::helpers::{Replica, spawn_app_with};
use crate::webhook::post;

pub const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 a customer's photo of the product they want";

/// A stand-in for Meta's CDN on 127.0.0.1, counting what it is asked for.
#[derive(Clone, Default)]
pub struct Cdn {
    pub asked: Arc<Mutex<Vec<String>>>,
    /// While true, `/photo.jpg` does not answer yet (a slow CDN).
    holding: Arc<AtomicBool>,
}

async fn serve(State(cdn): State<Cdn>, UrlPath(name): UrlPath<String>) -> impl IntoResponse {
    cdn.asked.lock().unwrap().push(name.clone());
    while name == "photo.jpg" && cdn.holding.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match name.as_str() {
        "photo.jpg" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "image/jpeg")],
            PHOTO.to_vec(),
        ),
        "big.mp4" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "video/mp4")],
            vec![0; 5000],
        ),
        "elsewhere" => (
            StatusCode::FOUND,
            [(header::LOCATION, "https://evil.example/photo.jpg")],
            Vec::new(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            Vec::new(),
        ),
    }
}

pub async fn start_cdn(cdn: Cdn) -> String {
    let app = Router::new().route("/{name}", get(serve)).with_state(cdn);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    origin
}

pub fn with_attachments(mid: &str, urls: &[String]) -> Vec<u8> {
    let attachments: Vec<Value> = urls
        .iter()
        .map(|url| json!({"type": "image", "payload": {"url": url}}))
        .collect();
    serde_json::to_vec(
        &json!({"object": "page", "entry": [{"id": "101", "messaging": [{
        "sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 1_800_000_000_000_i64,
        "message": {"mid": mid, "attachments": attachments}}]}]}),
    )
    .unwrap()
}

fn attachments_dir(data: &Path) -> PathBuf {
    data.join("facebook/101/attachments/7001")
}

/// The folder's files once it holds `count` of them (the download is in the background).
async fn kept(data: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut names: Vec<String> = std::fs::read_dir(attachments_dir(data))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        if names.len() >= count {
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} after 20 s, {count} expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn a_customers_photo_is_kept_and_nothing_unsafe_is_fetched() {
    let cdn = Cdn::default();
    let origin = start_cdn(cdn.clone()).await;
    let unlisted = start_cdn(Cdn::default()).await; // loopback, but not in ATTACHMENT_HOSTS
    let app = spawn_app_with(&[
        ("ATTACHMENT_HOSTS", &format!("fbcdn.net,{origin}")),
        ("ATTACHMENT_MAX_BYTES", "1000"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ])
    .await;
    crate::poll::connect(&app.state, "101", "EAAPAGE101").await;
    let urls = [
        format!("{origin}/photo.jpg"),
        format!("{origin}/gone.jpg"),
        format!("{origin}/big.mp4"),
        format!("{origin}/elsewhere"),
        format!("{unlisted}/photo.jpg"),
        "https://evil.example/photo.jpg".to_string(),
        "http://scontent.fbcdn.net/plain-http.jpg".to_string(),
    ];
    let body = with_attachments("m_photo.1", &urls);
    assert_eq!(post(&app, &body, true).await.status(), 200);

    // Kept under the documented name, bytes intact; the conversation file as it was sent.
    assert_eq!(kept(app.dir.path(), 1).await, ["m_photo_1-0.jpg"]);
    let kept_bytes =
        std::fs::read(attachments_dir(app.dir.path()).join("m_photo_1-0.jpg")).unwrap();
    assert_eq!(kept_bytes, PHOTO);
    let conversation = crate::poll::file(app.dir.path(), "101", "7001");
    assert_eq!(conversation.len(), 1);
    assert_eq!(
        conversation[0]["message"]["attachments"][0]["payload"]["url"],
        urls[0]
    );

    // Everything else is given up, once each; the unlisted and unsafe hosts were never asked.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = admin_get(&app, "/metrics", Some(ADMIN_TOKEN))
            .await
            .text()
            .await
            .unwrap();
        if value(&text, r#"salesbot_attachments_total{result="given_up"}"#) >= 6.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(&text, r#"salesbot_attachments_total{result="stored"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"salesbot_attachments_total{result="given_up"}"#),
        6.0
    );
    let mut asked = cdn.asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, ["big.mp4", "elsewhere", "gone.jpg", "photo.jpg"]);
    assert_eq!(
        kept(app.dir.path(), 1).await.len(),
        1,
        "nothing else written"
    );

    // A redelivery owes nothing again.
    assert_eq!(post(&app, &body, true).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cdn.asked.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn attachments_off_fetches_nothing() {
    let cdn = Cdn::default();
    let origin = start_cdn(cdn.clone()).await;
    let app = spawn_app_with(&[("ATTACHMENT_HOSTS", &origin), ("ATTACHMENTS", "off")]).await;
    crate::poll::connect(&app.state, "101", "EAAPAGE101").await;
    let body = with_attachments("m_1", &[format!("{origin}/photo.jpg")]);
    assert_eq!(post(&app, &body, true).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cdn.asked.lock().unwrap().is_empty());
    assert!(!attachments_dir(app.dir.path()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_owed_survives_a_sigkill() {
    let cdn = Cdn::default();
    // A slow CDN: the download is in flight, still owed, when the server is killed.
    cdn.holding.store(true, Ordering::SeqCst);
    let origin = start_cdn(cdn.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> =
        crate::helpers::test_env(dir.path(), &[("ATTACHMENT_HOSTS", &origin)]);
    let config = salesbot::config::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    crate::poll::connect(&state, "101", "EAAPAGE101").await;
    drop(state);

    let mut server = Replica::start(&env, dir.path());
    let client = reqwest::Client::new();
    let body = with_attachments("m_kept", &[format!("{origin}/photo.jpg")]);
    let mut request = client
        .post(format!("http://{}/facebook/webhook", server.addr))
        .header("content-type", "application/json");
    for (name, value) in salesbot::facebook::webhook::signature::sign(
        &body,
        &secrecy::SecretString::from("test-facebook-app-secret"),
    ) {
        request = request.header(name, value);
    }
    assert_eq!(request.body(body).send().await.unwrap().status(), 200);
    // Asked for, not answered yet, and the process is killed outright.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cdn.asked.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(!attachments_dir(dir.path()).exists());

    // The CDN answers now; a new start finds the download still owed and keeps the photo.
    cdn.holding.store(false, Ordering::SeqCst);
    let _server = Replica::start(&env, dir.path());
    assert_eq!(kept(dir.path(), 1).await, ["m_kept-0.jpg"]);
    assert_eq!(
        std::fs::read(attachments_dir(dir.path()).join("m_kept-0.jpg")).unwrap(),
        PHOTO
    );
}

#[tokio::test]
async fn a_download_that_finishes_after_its_customer_was_erased_leaves_no_file() {
    use salesbot::domain::{PageId, SenderId};
    use salesbot::store::attachments::Owed;

    let cdn = Cdn::default();
    let origin = start_cdn(cdn.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = crate::helpers::test_env(dir.path(), &[("ATTACHMENT_HOSTS", &origin)]);
    let config = salesbot::config::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let state = salesbot::app::build_state(config).await.unwrap();
    let downloader = state.attachments.clone().unwrap();
    let page = PageId::parse("101").unwrap();
    let owed = |customer: &str| Owed {
        page: page.clone(),
        customer: SenderId::parse(customer).unwrap(),
        mid: "m.1".into(),
        n: 0,
        url: format!("{origin}/photo.jpg"),
        attempts: 0,
    };
    downloader
        .owe(vec![owed("7001"), owed("7002")])
        .await
        .unwrap();

    // Both downloads are under way (the CDN holds its answer) when 7001 is erased.
    cdn.holding.store(true, Ordering::SeqCst);
    let pass = tokio::spawn({
        let downloader = downloader.clone();
        async move { downloader.pass().await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while cdn.asked.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the downloads did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let erased = salesbot::erasure::customer(&state, &page, &SenderId::parse("7001").unwrap())
        .await
        .unwrap();
    assert_eq!(erased.downloads, 1);
    cdn.holding.store(false, Ordering::SeqCst);
    assert_eq!(pass.await.unwrap().unwrap(), 2);

    assert!(
        !attachments_dir(dir.path()).exists(),
        "the erased customer's photo, fetched after the erasure, is gone"
    );
    let other = dir.path().join("facebook/101/attachments/7002");
    assert_eq!(
        std::fs::read_dir(other).unwrap().count(),
        1,
        "the other's is kept"
    );
}
