//! Every way the Shopify flow refuses a request, and what it does with tokens it holds.

use salesbot::shopify::ShopDomain;
use salesbot::store::{TokenKey, unix_now};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::flow::*;
use crate::helpers::{TestApp, spawn_with_stand_in};
use crate::stand_in::{StandIn, Subscribing, shopify_token};

async fn refused(response: reqwest::Response, fragment: &str) {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(fragment), "{detail:?} lacks {fragment:?}");
}

fn no_exchange(stand_in: &StandIn) {
    assert!(
        stand_in.token_exchanges().is_empty(),
        "a token exchange happened: {:?}",
        stand_in.token_exchanges()
    );
}

async fn started(app: &TestApp) -> Started {
    shopify_login(app, "demo-store").await
}

#[tokio::test]
async fn missing_parameters_are_named() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    refused(
        shopify_callback(&app, "", &[]).await,
        "Missing required parameter(s): code, shop, state",
    )
    .await;
    refused(
        shopify_callback(&app, "code=x&state=y", &[]).await,
        "Missing required parameter(s): shop",
    )
    .await;
    no_exchange(&stand_in);
}

#[tokio::test]
async fn a_missing_wrong_or_stale_hmac_is_refused_before_any_exchange() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    let s = started(&app).await;
    let cookie = [("shopify_oauth_state", s.state_cookie.as_str())];
    let params = [
        ("code", "c1"),
        ("shop", "demo-store.myshopify.com"),
        ("state", s.state.as_str()),
    ];

    refused(
        shopify_callback(&app, &form(&params), &cookie).await,
        "Missing hmac",
    )
    .await;
    let tampered = signed_shopify_query(&params).replace("code=c1", "code=c2");
    refused(
        shopify_callback(&app, &tampered, &cookie).await,
        "Invalid HMAC",
    )
    .await;
    let garbled = format!("{}&hmac=nothex", form(&params));
    refused(
        shopify_callback(&app, &garbled, &cookie).await,
        "Invalid HMAC",
    )
    .await;
    let old = signed_shopify_query_at(&params, &(unix_now() - 600).to_string());
    refused(shopify_callback(&app, &old, &cookie).await, "timestamp").await;
    no_exchange(&stand_in);
    // Nothing above spent the state: a correct callback still works.
    let good = signed_shopify_query(&params);
    assert_eq!(shopify_callback(&app, &good, &cookie).await.status(), 200);
}

#[tokio::test]
async fn foreign_shop_hosts_are_refused_at_login_and_callback() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    for shop in [
        "evil.com",
        "a.myshopify.com.evil.com",
        "127.0.0.1:1234",
        "../x",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(shop.as_bytes()).collect();
        let response = app
            .client
            .get(app.url(&format!("/shopify/{encoded}/login")))
            .send()
            .await
            .unwrap();
        refused(response, "Invalid shop").await;

        let s = started(&app).await;
        let query = signed_shopify_query(&[("code", "c"), ("shop", shop), ("state", &s.state)]);
        refused(
            shopify_callback(&app, &query, &[("shopify_oauth_state", &s.state_cookie)]).await,
            "Invalid shop",
        )
        .await;
    }
    no_exchange(&stand_in);
    assert!(
        stand_in.requests().is_empty(),
        "nothing at all was sent anywhere"
    );
}

#[tokio::test]
async fn bad_states_are_refused_before_any_exchange() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    let shop = "demo-store.myshopify.com";
    let callback =
        |state: String| signed_shopify_query(&[("code", "c1"), ("shop", shop), ("state", &state)]);

    // Tampered: one character of the signature changed, cookie to match.
    let s = started(&app).await;
    let mut tampered = s.state.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    refused(
        shopify_callback(
            &app,
            &callback(tampered.clone()),
            &[("shopify_oauth_state", &tampered)],
        )
        .await,
        "state",
    )
    .await;

    // Expired: signed by the app itself, six minutes ago.
    let expired = app.state.states.sign_at(None, unix_now() - 360);
    refused(
        shopify_callback(
            &app,
            &callback(expired.clone()),
            &[("shopify_oauth_state", &expired)],
        )
        .await,
        "expired",
    )
    .await;

    // Without its cookie, or with another browser's.
    let s = started(&app).await;
    refused(
        shopify_callback(&app, &callback(s.state.clone()), &[]).await,
        "Missing state cookie",
    )
    .await;
    let other = started(&app).await;
    refused(
        shopify_callback(
            &app,
            &callback(s.state.clone()),
            &[("shopify_oauth_state", &other.state_cookie)],
        )
        .await,
        "does not match",
    )
    .await;
    no_exchange(&stand_in);

    // Used once, then replayed.
    let cookie = [("shopify_oauth_state", s.state_cookie.as_str())];
    assert_eq!(
        shopify_callback(&app, &callback(s.state.clone()), &cookie)
            .await
            .status(),
        200
    );
    refused(
        shopify_callback(&app, &callback(s.state.clone()), &cookie).await,
        "already been used",
    )
    .await;
    assert_eq!(
        stand_in.token_exchanges().len(),
        1,
        "the replay reached no token endpoint"
    );
}

#[tokio::test]
async fn a_reinstalled_shop_keeps_its_uuid() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    let first = connect_shop(&app, "demo-store", "code-a").await;
    let again = connect_shop(&app, "demo-store", "code-b").await;
    let other = connect_shop(&app, "other-store", "code-c").await;
    assert_eq!(first.user, again.user);
    assert_ne!(first.user, other.user);
    assert_ne!(first.session, again.session, "a fresh session each time");
}

#[tokio::test]
async fn graphql_throttling_is_retried_then_reported_as_bad_gateway() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    stand_in.set(|s| s.graphql_429s = 2);
    let connected = connect_shop(&app, "demo-store", "code-a").await;
    assert_eq!(
        connected.body["shopify_data"]["data"]["shop"]["name"],
        "Demo Store"
    );
    assert_eq!(stand_in.shop_queries().len(), 3);

    stand_in.set(|s| s.graphql_429s = 100);
    let s = started(&app).await;
    let query = signed_shopify_query(&[
        ("code", "code-b"),
        ("shop", "demo-store.myshopify.com"),
        ("state", &s.state),
    ]);
    let response =
        shopify_callback(&app, &query, &[("shopify_oauth_state", &s.state_cookie)]).await;
    assert_eq!(response.status(), 502);
    assert!(
        set_cookie(&response, "session_id").is_some(),
        "the store is connected all the same"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Shopify shop data request failed"),
        "{body}"
    );
    assert_eq!(
        stand_in.shop_queries().len(),
        6,
        "three more tries, no more"
    );
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_before_use_and_the_pair_replaced() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    stand_in.set(|s| s.shopify_expires_in = Some(120)); // inside the five-minute margin
    connect_shop(&app, "demo-store", "code-a").await;
    let shop = ShopDomain::parse("demo-store").unwrap();
    let tokens = &app.state.shopify_tokens;

    let token = tokens.access_token(&shop).await.unwrap();
    assert_eq!(token.expose_secret(), "shpat_refreshed_1_SECRET");
    let refresh = &stand_in.requests_to("/admin/oauth/access_token")[1];
    assert_eq!(refresh.json()["grant_type"], "refresh_token");
    assert_eq!(refresh.json()["refresh_token"], "shprt_code-a_SECRET");
    assert_eq!(refresh.json()["client_secret"], "test-shopify-secret");

    // The new pair is stored: the next use needs no refresh, and the old token is gone.
    let again = tokens.access_token(&shop).await.unwrap();
    assert_eq!(again.expose_secret(), "shpat_refreshed_1_SECRET");
    assert_eq!(stand_in.requests_to("/admin/oauth/access_token").len(), 2);
    let row = app
        .state
        .tokens
        .get(&TokenKey::shopify_token(&shop.key()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.expose_secret().contains("shprt_refreshed_1_SECRET")
            && !row.expose_secret().contains("code-a")
    );

    // An hour later it is refreshed again, with the refresh token that came with the pair.
    let later = tokens
        .access_token_at(&shop, unix_now() + 3600)
        .await
        .unwrap();
    assert_eq!(later.expose_secret(), "shpat_refreshed_2_SECRET");
    assert_eq!(
        stand_in.requests_to("/admin/oauth/access_token")[2].json()["refresh_token"],
        "shprt_refreshed_1_SECRET"
    );

    // A refused refresh is reported clearly, naming the shop and what to do.
    stand_in.set(|s| s.refresh_fails = true);
    let err = tokens
        .access_token_at(&shop, unix_now() + 7200)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("demo-store.myshopify.com") && err.contains("connect the shop again"),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");
}

#[tokio::test]
async fn cookies_are_secure_when_the_app_is_served_over_https() {
    let (app, _stand_in) = spawn_with_stand_in(&[
        (
            "SHOPIFY_REDIRECT_URI",
            "https://shop.example/shopify/callback",
        ),
        (
            "FACEBOOK_REDIRECT_URI",
            "https://shop.example/facebook/callback",
        ),
    ])
    .await;
    let response = app
        .client
        .get(app.url("/shopify/demo-store/login"))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&response, "shopify_oauth_state").unwrap();
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Max-Age=300"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
}

#[tokio::test]
async fn the_daily_sweep_refreshes_every_shop_before_its_tokens_lapse() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    // Both shops' access tokens last an hour: outside the five-minute margin of a request,
    // inside the sweep's (the next sweep is a day away).
    connect_shop(&app, "demo-store", "code-a").await;
    connect_shop(&app, "other-store", "code-b").await;
    let tokens = &app.state.shopify_tokens;
    let exchanges = || stand_in.requests_to("/admin/oauth/access_token").len();
    assert_eq!(exchanges(), 2);

    let report = tokens.refresh_expiring(unix_now()).await.unwrap();
    assert_eq!((report.shops, report.refreshed), (2, 2));
    assert!(report.failed.is_empty());
    assert_eq!(exchanges(), 4);
    let row = |shop: &str| {
        let key = TokenKey::shopify_token(&ShopDomain::parse(shop).unwrap().key());
        let tokens = app.state.tokens.clone();
        async move { tokens.get(&key).await.unwrap().unwrap() }
    };
    let stored = row("demo-store").await;
    assert!(
        stored.expose_secret().contains("shprt_refreshed_"),
        "the new pair is kept"
    );
    assert!(!stored.expose_secret().contains("code-a"));

    // A shop whose token never expires is left alone; a refused refresh names the shop.
    stand_in.set(|s| s.refresh_fails = true);
    let report = tokens.refresh_expiring(unix_now()).await.unwrap();
    assert_eq!(report.refreshed, 0);
    let failed: Vec<&str> = report
        .failed
        .iter()
        .map(|(shop, _)| shop.as_str())
        .collect();
    assert_eq!(
        failed,
        ["demo-store.myshopify.com", "other-store.myshopify.com"]
    );
    assert!(report.failed.iter().all(|(_, why)| !why.contains("SECRET")));
    // The stored pair is unchanged by a failed refresh: the next sweep can try again.
    assert_eq!(
        row("demo-store").await.expose_secret(),
        stored.expose_secret()
    );

    stand_in.set(|s| {
        s.refresh_fails = false;
        s.shopify_expires_in = None;
    });
    connect_shop(&app, "forever-store", "code-c").await;
    let before = exchanges();
    let report = tokens.refresh_expiring(unix_now()).await.unwrap();
    assert_eq!(report.shops, 3);
    assert_eq!(
        report.refreshed, 2,
        "the two expiring shops, not the non-expiring one"
    );
    assert_eq!(exchanges(), before + 2);
}

#[tokio::test]
async fn the_install_subscribes_app_uninstalled_and_a_refusal_leaves_it_standing() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    connect_shop(&app, "demo-store", "code-a").await;
    let made = stand_in.webhook_subscriptions();
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0].path,
        "/shops/demo-store.myshopify.com/admin/api/2026-10/graphql.json"
    );
    assert_eq!(
        made[0].headers["x-shopify-access-token"],
        shopify_token("code-a").as_str()
    );
    let request = made[0].json();
    assert!(
        request["query"]
            .as_str()
            .unwrap()
            .contains("topic: APP_UNINSTALLED"),
        "{request}"
    );
    // Beside SHOPIFY_REDIRECT_URI (http://127.0.0.1:5000/shopify/callback).
    assert_eq!(
        request["variables"]["uri"],
        "http://127.0.0.1:5000/shopify/webhooks"
    );

    // Already there (a re-install), or refused outright: the store is connected all the same.
    for (answer, code) in [
        (Subscribing::AlreadyTaken, "code-b"),
        (Subscribing::Forbidden, "code-c"),
    ] {
        stand_in.set(|s| s.uninstall_subscription = answer);
        let connected = connect_shop(&app, "demo-store", code).await;
        assert_eq!(
            connected.body["shopify_data"]["data"]["shop"]["name"], "Demo Store",
            "{answer:?}"
        );
        let shop = ShopDomain::parse("demo-store").unwrap();
        let stored = app
            .state
            .tokens
            .get(&TokenKey::shopify_token(&shop.key()))
            .await
            .unwrap()
            .unwrap();
        let pair: Value = serde_json::from_str(stored.expose_secret()).unwrap();
        assert_eq!(pair["access_token"], shopify_token(code), "{answer:?}");
    }
    assert_eq!(stand_in.webhook_subscriptions().len(), 3);
}

/// `demo-store` and its merchant's two pages connected through both OAuth flows.
async fn install(app: &TestApp) -> Connected {
    let connected = connect_shop(app, "demo-store", "code-a").await;
    let pages = connect_pages(app, &connected.session, "fbcode").await;
    assert_eq!(pages.status(), 200);
    connected
}

/// A Shopify webhook delivery of `topic` for `demo-store`, signed with `secret`.
async fn shopify_webhook(app: &TestApp, topic: &str, id: &str, secret: &str) -> u16 {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let body = br#"{"id": 1, "domain": "demo-store.myshopify.com"}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    app.client
        .post(app.url("/shopify/webhooks"))
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", "demo-store.myshopify.com")
        .header("x-shopify-webhook-id", id)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn app_uninstalled_deletes_the_tokens_keeps_the_merchant_and_a_reinstall_works() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    let connected = install(&app).await;
    let shop = ShopDomain::parse("demo-store").unwrap();
    let page = |id: &str| salesbot::domain::PageId::parse(id).unwrap();
    let tokens = &app.state.tokens;
    let shop_token = TokenKey::shopify_token(&shop.key());
    let page_token = TokenKey::page_token(&page("101"));
    assert!(tokens.get(&page_token).await.unwrap().is_some());

    // A wrong signature does nothing.
    let forged = shopify_webhook(&app, "app/uninstalled", "w-1", "not-the-app-secret").await;
    assert_eq!(forged, 401);
    assert!(tokens.get(&shop_token).await.unwrap().is_some());

    assert_eq!(
        shopify_webhook(&app, "app/uninstalled", "w-1", "test-shopify-secret").await,
        200
    );
    assert!(
        tokens.get(&shop_token).await.unwrap().is_none(),
        "shop token deleted"
    );
    assert!(
        tokens.get(&page_token).await.unwrap().is_none(),
        "page tokens deleted"
    );
    let merchant = TokenKey::shop_uuid(&shop.key());
    assert_eq!(
        tokens
            .get(&merchant)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        connected.user
    );
    assert!(
        tokens
            .get(&TokenKey::page_uuid(&page("101")))
            .await
            .unwrap()
            .is_some()
    );
    // The pages are no longer served: their events are not stored.
    assert!(!app.state.pages.is_connected(&page("101")).await.unwrap());
    // The same delivery again is harmless; the compliance topics are acknowledged.
    assert_eq!(
        shopify_webhook(&app, "app/uninstalled", "w-1", "test-shopify-secret").await,
        200
    );
    for topic in ["customers/data_request", "customers/redact"] {
        assert_eq!(
            shopify_webhook(&app, topic, topic, "test-shopify-secret").await,
            200
        );
    }

    // A fresh install: the same merchant, a new token.
    let again = connect_shop(&app, "demo-store", "code-b").await;
    assert_eq!(again.user, connected.user, "the merchant's UUID was kept");
    assert!(tokens.get(&shop_token).await.unwrap().is_some());
}

/// Every file below `dir`, relative, sorted (the listing the issue asks for).
fn listing(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn shop_redact_removes_every_file_and_row_of_the_shop_and_its_pages() {
    use salesbot::store::TokenKind;
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    install(&app).await;
    let message = serde_json::json!({"object": "page", "entry": [{"id": "101", "messaging": [{
        "sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 1_800_000_000_000_i64,
        "message": {"mid": "m.1", "text": "hello"}}]}]});
    let body = serde_json::to_vec(&message).unwrap();
    assert_eq!(crate::webhook::post(&app, &body, true).await.status(), 200);
    let kept = app.dir.path().join("facebook/101/attachments/7001");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("m_1-0.png"), b"photo").unwrap();

    let facebook = app.dir.path().join("facebook");
    let before = listing(&facebook);
    for file in [
        "101/page_metadata.json",
        "101/conversations/7001.json",
        "101/attachments/7001/m_1-0.png",
        "202/page_metadata.json",
    ] {
        assert!(before.contains(&file.to_string()), "{file} in {before:?}");
    }
    let rows = || async {
        let mut rows = Vec::new();
        for kind in [TokenKind::Token, TokenKind::Uuid] {
            for key in app.state.tokens.keys_of_kind(kind).await.unwrap() {
                rows.push(key.as_str().to_string());
            }
        }
        rows
    };
    assert!(rows().await.len() >= 6, "{:?}", rows().await);
    assert_eq!(app.state.poller.state().all().await.unwrap().len(), 2);

    // Wrongly signed: nothing changes.
    assert_eq!(
        shopify_webhook(&app, "shop/redact", "r-1", "not-the-app-secret").await,
        401
    );
    assert_eq!(listing(&facebook), before);

    assert_eq!(
        shopify_webhook(&app, "shop/redact", "r-1", "test-shopify-secret").await,
        200
    );
    assert_eq!(
        listing(&facebook),
        Vec::<String>::new(),
        "no file of the shop's pages is left"
    );
    assert_eq!(
        rows().await,
        Vec::<String>::new(),
        "no token or UUID row is left"
    );
    assert!(
        app.state.poller.state().all().await.unwrap().is_empty(),
        "no checkpoint is left"
    );
    assert!(
        !app.state
            .pages
            .is_connected(&salesbot::domain::PageId::parse("101").unwrap())
            .await
            .unwrap()
    );
    // Delivered twice (and a second id for the same shop): harmless.
    assert_eq!(
        shopify_webhook(&app, "shop/redact", "r-1", "test-shopify-secret").await,
        200
    );
    assert_eq!(
        shopify_webhook(&app, "shop/redact", "r-2", "test-shopify-secret").await,
        200
    );
    // And a webhook for a redacted page stores nothing.
    assert_eq!(crate::webhook::post(&app, &body, true).await.status(), 200);
    assert_eq!(listing(&facebook), Vec::<String>::new());
}
