use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn root_says_where_to_start() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "ok", "message": "Use /facebook/login or /shopify/{shop_name}/login"})
    );
    app.stop().await;
}

#[tokio::test]
async fn healthz_answers_when_the_stores_open() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
    assert!(app.dir.path().join("data/tokens.db").is_file());
    assert!(app.dir.path().join("data/sessions.db").is_file());
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );
    app.stop().await;
}

#[tokio::test]
async fn in_flight_requests_finish_before_shutdown_completes() {
    let app = spawn_app().await;
    let url = app.url("/healthz");
    let client = app.client.clone();
    let request = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    // Stopping while a request may be in flight must not fail it.
    tokio::task::yield_now().await;
    let addr = app.addr;
    app.stop().await;
    if let Ok(status) = request.await.unwrap() {
        assert_eq!(status, 200);
    }
    // After stop, nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
