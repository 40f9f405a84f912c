//! The whole story: Shopify login → consent → callback → Facebook login → dialog → callback,
//! with the stand-ins checking every request they receive.

use serde_json::{Value, json};

use crate::flow::*;
use crate::helpers::{captured_logs, spawn_with_stand_in};
use crate::stand_in::{long_token, shopify_token, short_token};

#[tokio::test]
async fn shopify_then_facebook_connects_everything_and_leaks_nothing() {
    let (app, stand_in) = spawn_with_stand_in(&[("OAUTH_SELF_TEST", "true")]).await;

    // Shopify login: 307 to the shop's authorize page, state also in an HttpOnly cookie.
    let started = shopify_login(&app, "Demo-Store").await;
    assert_eq!(
        started.redirect.path(),
        "/shops/demo-store.myshopify.com/admin/oauth/authorize"
    );
    assert_eq!(
        query_param(&started.redirect, "client_id").as_deref(),
        Some("test-shopify-key")
    );
    assert_eq!(
        query_param(&started.redirect, "scope").as_deref(),
        Some("read_product_listings,read_inventory,read_discounts,read_locations,read_products")
    );
    assert_eq!(
        query_param(&started.redirect, "redirect_uri").as_deref(),
        Some("http://127.0.0.1:5000/shopify/callback")
    );
    assert_eq!(started.state, decoded(&started.state_cookie));

    // Shopify redirects back, signed.
    let query = signed_shopify_query(&[
        ("code", "shopcode1"),
        ("shop", "demo-store.myshopify.com"),
        ("state", &started.state),
    ]);
    let response = shopify_callback(
        &app,
        &query,
        &[("shopify_oauth_state", &started.state_cookie)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let session_cookie = set_cookie(&response, "session_id").expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Max-Age=3600", "Path=/"] {
        assert!(
            session_cookie.contains(attribute),
            "{attribute} missing: {session_cookie}"
        );
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain http redirect URI: no Secure"
    );
    let cleared = set_cookie(&response, "shopify_oauth_state").expect("state cookie cleared");
    assert!(
        cleared.contains("Max-Age=0") || cleared.contains("Expires="),
        "{cleared}"
    );
    let session = cookie_value(&session_cookie);
    let shopify_body: Value = response.json().await.unwrap();
    let user = shopify_body["user_uuid"].as_str().unwrap().to_string();
    assert_eq!(
        shopify_body["token_data"],
        json!({"scope": "read_products,read_inventory"})
    );
    assert_eq!(
        shopify_body["shopify_data"]["data"]["shop"]["name"],
        "Demo Store"
    );

    let exchange = &stand_in.requests_to("/admin/oauth/access_token")[0];
    assert_eq!(
        exchange.path,
        "/shops/demo-store.myshopify.com/admin/oauth/access_token"
    );
    assert_eq!(
        exchange.json(),
        json!({"client_id": "test-shopify-key", "client_secret": "test-shopify-secret", "code": "shopcode1", "expiring": 1})
    );
    let graphql = &stand_in.shop_queries()[0];
    assert_eq!(
        graphql.path,
        "/shops/demo-store.myshopify.com/admin/api/2026-10/graphql.json"
    );
    assert_eq!(
        graphql.headers["x-shopify-access-token"],
        shopify_token("shopcode1").as_str()
    );
    assert!(
        graphql.json()["query"]
            .as_str()
            .unwrap()
            .contains("products(first: 50)")
    );

    // Facebook login: needs the session; 307 to the dialog with the merchant's UUID sealed in
    // the state (Meta sees the state; the id is ours).
    let fb = facebook_start(&app, &session).await;
    assert_eq!(fb.redirect.path(), "/v25.0/dialog/oauth");
    assert_eq!(
        query_param(&fb.redirect, "client_id").as_deref(),
        Some("123456789012345")
    );
    assert_eq!(
        query_param(&fb.redirect, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_param(&fb.redirect, "scope").as_deref(),
        Some("pages_messaging,pages_show_list,pages_manage_metadata")
    );
    assert!(
        !fb.redirect.as_str().contains(&user) && !fb.state.contains(&user),
        "the merchant UUID is not in clear in the dialog URL: {}",
        fb.redirect
    );

    let response = facebook_callback(
        &app,
        &form(&[("code", "fbcode1"), ("state", &fb.state)]),
        &[
            ("facebook_oauth_state", &fb.state_cookie),
            ("session_id", &session),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let ended = set_cookie(&response, "session_id").expect("session cookie cleared");
    assert!(
        ended.contains("Max-Age=0") || ended.contains("Expires="),
        "{ended}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["user_uuid"],
        user.as_str(),
        "one merchant across both flows"
    );
    let pages = body["pages"]["data"].as_array().unwrap();
    let ids: Vec<&str> = pages.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["101", "202"],
        "both pages, across two pages of /me/accounts"
    );
    assert!(pages.iter().all(|p| p.get("access_token").is_none()));
    assert!(body["pages"]["paging"].get("next").is_none());
    let statuses = |key: &str| -> Vec<(String, String, String)> {
        body[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["page_id"].as_str().unwrap().to_string(),
                    r["type"].as_str().unwrap().to_string(),
                    r["result"]["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let webhook_tests = statuses("webhook_test");
    assert_eq!(webhook_tests.len(), 4);
    assert!(
        webhook_tests.iter().all(|(_, _, s)| s == "success"),
        "{webhook_tests:?}"
    );
    let polling_tests = statuses("polling_test");
    assert_eq!(polling_tests.len(), 4);
    assert!(
        polling_tests.iter().all(|(_, _, s)| s == "success"),
        "{polling_tests:?}"
    );

    // The Graph stand-in saw the code exchange, then the long-lived exchange with the short token.
    let exchanges = stand_in.requests_to("/v25.0/oauth/access_token");
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].param("code"), Some("fbcode1"));
    assert_eq!(
        exchanges[0].param("client_secret"),
        Some("test-facebook-app-secret")
    );
    assert_eq!(
        exchanges[0].param("redirect_uri"),
        Some("http://127.0.0.1:5000/facebook/callback")
    );
    assert_eq!(exchanges[1].param("grant_type"), Some("fb_exchange_token"));
    assert_eq!(
        exchanges[1].param("fb_exchange_token"),
        Some(short_token("fbcode1").as_str())
    );
    let accounts = stand_in.requests_to("/me/accounts");
    assert_eq!(
        accounts[0].param("access_token"),
        Some(long_token(&short_token("fbcode1")).as_str())
    );
    assert_eq!(accounts.len(), 2, "paging.next followed");
    // Only the unsubscribed page is subscribed, with subscribed_fields alone.
    let subscribes: Vec<_> = stand_in
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/subscribed_apps"))
        .collect();
    assert_eq!(subscribes.len(), 1);
    assert_eq!(subscribes[0].path, "/v25.0/101/subscribed_apps");
    assert_eq!(
        subscribes[0].param("subscribed_fields"),
        Some("name,category,messages")
    );
    assert_eq!(
        subscribes[0].param("access_token"),
        Some("EAAPAGE101SECRETTOKEN")
    );
    assert!(
        subscribes[0].param("callback_url").is_none()
            && subscribes[0].param("verify_token").is_none()
    );
    // The app secret went nowhere but the token endpoints; the Shopify secret only to the shop.
    for request in stand_in.requests() {
        let text = format!("{:?} {}", request.query, request.body);
        if text.contains("test-facebook-app-secret") {
            assert!(
                request.path.ends_with("/v25.0/oauth/access_token"),
                "{}",
                request.path
            );
        }
        if text.contains("test-shopify-secret") {
            assert_eq!(
                request.path,
                "/shops/demo-store.myshopify.com/admin/oauth/access_token"
            );
        }
    }
    // The self-test webhooks were signed with the app secret.
    let posted = stand_in.requests_to("/webhook");
    assert_eq!(posted.len(), 4);
    assert!(
        posted[0].headers["x-hub-signature-256"]
            .to_str()
            .unwrap()
            .starts_with("sha256=")
    );

    // Files: metadata for both pages, no token in any of them.
    let data = app.dir.path();
    let meta: Value = serde_json::from_slice(
        &std::fs::read(data.join("facebook/101/page_metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["data"][0]["id"], "101");
    assert_eq!(meta["data"][0]["name"], "Demo Page");
    assert!(data.join("facebook/202/page_metadata.json").is_file());

    // Stored: long-lived user token per merchant, page tokens, page owners.
    use salesbot::store::TokenKey;
    use secrecy::ExposeSecret;
    let tokens = &app.state.tokens;
    let user_uuid = uuid::Uuid::parse_str(&user).unwrap();
    let stored = tokens
        .get(&TokenKey::facebook_user_token(&user_uuid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expose_secret(), long_token(&short_token("fbcode1")));
    let page = salesbot::domain::PageId::parse("101").unwrap();
    assert_eq!(
        tokens
            .get(&TokenKey::page_uuid(&page))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        user
    );
    assert_eq!(
        tokens
            .get(&TokenKey::page_token(&page))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "EAAPAGE101SECRETTOKEN"
    );

    // No token the stand-ins issued appears in a response, a file, the raw database or the logs.
    let secrets = stand_in.issued_secrets();
    assert!(secrets.len() >= 6, "{secrets:?}");
    let mut haystacks = vec![
        ("shopify response".to_string(), shopify_body.to_string()),
        ("facebook response".into(), body.to_string()),
        ("logs".into(), captured_logs()),
    ];
    for entry in walk(data) {
        haystacks.push((
            entry.display().to_string(),
            String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned(),
        ));
    }
    for secret in &secrets {
        for (name, text) in &haystacks {
            assert!(!text.contains(secret.as_str()), "{secret} found in {name}");
        }
    }
    app.stop().await;
}

/// Every file below `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn the_self_tests_reach_the_real_webhook_and_leave_no_made_up_customer() {
    // The webhook address must name the app's own port, so pick one first.
    let port = crate::helpers::free_port().to_string();
    let webhook = format!("http://127.0.0.1:{port}/facebook/webhook");
    let (app, _stand_in) = crate::helpers::spawn_with_stand_in(&[
        ("OAUTH_SELF_TEST", "true"),
        ("PORT", &port),
        ("FACEBOOK_WEBHOOK_ADDRESS", &webhook),
    ])
    .await;
    let connected = connect_shop(&app, "demo-store", "shop-code").await;
    let s = facebook_start(&app, &connected.session).await;
    let response = facebook_callback(
        &app,
        &form(&[("code", "fbcode"), ("state", &s.state)]),
        &[("facebook_oauth_state", &s.state_cookie)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results = body["webhook_test"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for result in results {
        assert_eq!(result["result"], json!({"status": "success"}), "{result}");
    }
    // The webhook took each page's self-test message and stored none of it: the bot reads
    // only real customers (the original left test_user_id.json with "Test message").
    for file in walk(&app.dir.path().join("facebook")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("test_mid") && !text.contains("test_user_id"),
            "{} holds the self-test: {text}",
            file.display()
        );
    }
    for page in ["101", "202"] {
        let folder = app.dir.path().join(format!("facebook/{page}"));
        assert!(folder.join("page_metadata.json").is_file());
        assert!(!folder.join("conversations/test_user_id.json").exists());
    }
}
