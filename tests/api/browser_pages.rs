//! What a merchant's browser is shown where the OAuth steps meet: the next step as a link once
//! the store is connected, and the store first when Facebook is tried before it. API clients
//! (no `Accept: text/html`) keep the JSON answers, tested in the flows' own modules.

use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};

use crate::flow::*;
use crate::helpers::{TestApp, spawn_with_stand_in};
use crate::stand_in::shopify_token;

/// What Chromium sends when it navigates.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";

async fn navigate(app: &TestApp, path: &str, cookies: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).header(ACCEPT, BROWSER_ACCEPT);
    if !cookies.is_empty() {
        let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        request = request.header(COOKIE, header.join("; "));
    }
    request.send().await.unwrap()
}

fn is_html(response: &reqwest::Response) -> bool {
    response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html")
}

#[tokio::test]
async fn a_browser_finishing_the_shopify_step_is_shown_the_facebook_link() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    let started = shopify_login(&app, "demo-store").await;
    let query = signed_shopify_query(&[
        ("code", "shop-code"),
        ("shop", "demo-store.myshopify.com"),
        ("state", &started.state),
    ]);
    let response = navigate(
        &app,
        &format!("/shopify/callback?{query}"),
        &[("shopify_oauth_state", &started.state_cookie)],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(is_html(&response));
    let session = set_cookie(&response, "session_id").expect("the session starts here too");
    let page = response.text().await.unwrap();
    assert!(page.contains("<h1>Shopify store connected</h1>"), "{page}");
    assert!(page.contains("demo-store.myshopify.com"), "{page}");
    // Beside FACEBOOK_REDIRECT_URI (http://127.0.0.1:5000/facebook/callback).
    assert!(
        page.contains(r#"id="next" href="http://127.0.0.1:5000/facebook/login""#),
        "{page}"
    );
    assert!(
        !page.contains(&shopify_token("shop-code")),
        "no token shown"
    );
    assert!(!page.contains("<script"), "{page}");

    // The link leads on: with the session just set, /facebook/login goes to the dialog.
    let next = navigate(
        &app,
        "/facebook/login",
        &[("session_id", &cookie_value(&session))],
    )
    .await;
    assert_eq!(next.status(), 307);
    assert_eq!(location(&next).path(), "/v25.0/dialog/oauth");
}

#[tokio::test]
async fn facebook_before_shopify_shows_a_browser_the_store_step_first() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    for cookies in [vec![], vec![("session_id", "made-up")]] {
        let response = navigate(&app, "/facebook/login", &cookies).await;
        assert_eq!(response.status(), 400);
        assert!(is_html(&response));
        let page = response.text().await.unwrap();
        assert!(
            page.contains("<h1>Connect your Shopify store first</h1>"),
            "{page}"
        );
        // Beside SHOPIFY_REDIRECT_URI (http://127.0.0.1:5000/shopify/callback).
        assert!(
            page.contains(r#"action="http://127.0.0.1:5000/shopify/login""#),
            "{page}"
        );
        assert!(page.contains(r#"name="shop""#), "{page}");
    }

    // The form's request starts the same install as /shopify/<name>/login.
    let by_form = app
        .client
        .get(app.url("/shopify/login?shop=demo-store"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_form.status(), 307);
    let install = location(&by_form);
    assert!(
        install
            .as_str()
            .contains("/shops/demo-store.myshopify.com/admin/oauth/authorize"),
        "{install}"
    );
    assert!(set_cookie(&by_form, "shopify_oauth_state").is_some());

    for (query, fragment) in [
        ("", "Missing shop parameter"),
        ("?shop=", "Missing shop parameter"),
        ("?shop=evil.example.com", "myshopify.com"),
    ] {
        let refused = app
            .client
            .get(app.url(&format!("/shopify/login{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{query}");
        assert!(set_cookie(&refused, "shopify_oauth_state").is_none());
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains(fragment),
            "{query}: {body}"
        );
    }
    assert!(stand_in.token_exchanges().is_empty());
}
