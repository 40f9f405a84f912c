//! Every way the Facebook flow refuses a request, and per-merchant token storage.

use salesbot::store::{TokenKey, unix_now};
use secrecy::ExposeSecret;
use serde_json::Value;
use uuid::Uuid;

use crate::flow::*;
use crate::helpers::spawn_with_stand_in;
use crate::stand_in::{long_token, short_token};

async fn detail(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    body["detail"].as_str().unwrap().to_string()
}

/// The 400 of a login without a live session: what was wrong, then what to do first.
fn shopify_first(why: &str) -> String {
    format!(
        "{why}: connect your Shopify store first (/shopify/{{shop_name}}/login), then open /facebook/login in the same browser"
    )
}

#[tokio::test]
async fn login_needs_a_live_session() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    assert_eq!(
        detail(facebook_login(&app, None).await, 400).await,
        shopify_first("Missing session_id cookie")
    );
    assert_eq!(
        detail(facebook_login(&app, Some("made-up")).await, 400).await,
        shopify_first("Invalid or expired session")
    );
    let old = app
        .state
        .sessions
        .create_at(Uuid::new_v4(), unix_now() - 3601)
        .await
        .unwrap();
    assert_eq!(
        detail(
            facebook_login(&app, Some(old.expose_cookie_value())).await,
            400
        )
        .await,
        shopify_first("Invalid or expired session")
    );
}

#[tokio::test]
async fn bad_states_are_refused_before_any_exchange() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    let connected = connect_shop(&app, "demo-store", "shop-code").await;
    let before = stand_in.token_exchanges().len();
    let callback = |state: &str| form(&[("code", "fbcode"), ("state", state)]);

    assert_eq!(
        detail(facebook_callback(&app, "state=x", &[]).await, 400).await,
        "Missing code parameter"
    );
    assert_eq!(
        detail(facebook_callback(&app, "code=x", &[]).await, 400).await,
        "Missing state parameter"
    );

    let s = facebook_start(&app, &connected.session).await;
    // Another merchant's (sealed) id in place of this one's.
    let theirs = app.state.states.sign(Some(&Uuid::new_v4()));
    let sealed = |state: &str| state.split(':').nth(2).unwrap().to_string();
    let swapped = s.state.replace(&sealed(&s.state), &sealed(&theirs));
    assert_ne!(swapped, s.state);
    let r = facebook_callback(
        &app,
        &callback(&swapped),
        &[("facebook_oauth_state", &swapped)],
    )
    .await;
    assert_eq!(detail(r, 400).await, "Invalid state signature");

    let user = Uuid::parse_str(&connected.user).unwrap();
    let expired = app.state.states.sign_at(Some(&user), unix_now() - 400);
    let r = facebook_callback(
        &app,
        &callback(&expired),
        &[("facebook_oauth_state", &expired)],
    )
    .await;
    assert!(detail(r, 400).await.contains("expired"));

    let r = facebook_callback(&app, &callback(&s.state), &[]).await;
    assert!(detail(r, 400).await.contains("Missing state cookie"));
    let other = facebook_start(&app, &connected.session).await;
    let r = facebook_callback(
        &app,
        &callback(&s.state),
        &[("facebook_oauth_state", &other.state_cookie)],
    )
    .await;
    assert!(detail(r, 400).await.contains("does not match"));

    let no_user = app.state.states.sign(None);
    let r = facebook_callback(
        &app,
        &callback(&no_user),
        &[("facebook_oauth_state", &no_user)],
    )
    .await;
    assert_eq!(detail(r, 400).await, "Invalid UUID in state token");
    assert_eq!(
        stand_in.token_exchanges().len(),
        before,
        "no code exchange for any of them"
    );

    let cookie = [("facebook_oauth_state", s.state_cookie.as_str())];
    assert_eq!(
        facebook_callback(&app, &callback(&s.state), &cookie)
            .await
            .status(),
        200
    );
    let r = facebook_callback(&app, &callback(&s.state), &cookie).await;
    assert!(detail(r, 400).await.contains("already been used"));
    assert_eq!(
        stand_in.requests_to("/v25.0/oauth/access_token").len(),
        2,
        "one code and one long-lived exchange"
    );
}

#[tokio::test]
async fn a_second_merchant_does_not_overwrite_the_first_ones_token() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    let mut users = Vec::new();
    for (shop, code) in [("first-store", "fb-first"), ("second-store", "fb-second")] {
        let connected = connect_shop(&app, shop, &format!("{shop}-code")).await;
        let r = connect_pages(&app, &connected.session, code).await;
        assert_eq!(r.status(), 200);
        users.push((Uuid::parse_str(&connected.user).unwrap(), code));
    }
    for (user, code) in users {
        let stored = app
            .state
            .tokens
            .get(&TokenKey::facebook_user_token(&user))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.expose_secret(), long_token(&short_token(code)));
    }
}

#[tokio::test]
async fn the_session_ends_with_the_facebook_callback() {
    let (app, _stand_in) = spawn_with_stand_in(&[]).await;
    let connected = connect_shop(&app, "demo-store", "shop-code").await;
    let s = facebook_start(&app, &connected.session).await;
    let r = facebook_callback(
        &app,
        &form(&[("code", "fbcode"), ("state", &s.state)]),
        &[
            ("facebook_oauth_state", &s.state_cookie),
            ("session_id", &connected.session),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        detail(facebook_login(&app, Some(&connected.session)).await, 400).await,
        shopify_first("Invalid or expired session")
    );
}

#[tokio::test]
async fn a_failing_graph_api_is_a_502_naming_the_step() {
    let (app, stand_in) = spawn_with_stand_in(&[]).await;
    let connected = connect_shop(&app, "demo-store", "shop-code").await;
    let s = facebook_start(&app, &connected.session).await;
    // An empty code makes the stand-in answer with a Graph error object.
    let r = facebook_callback(
        &app,
        &form(&[("code", " "), ("state", &s.state)]),
        &[("facebook_oauth_state", &s.state_cookie)],
    )
    .await;
    let detail = detail(r, 502).await;
    assert!(
        detail.starts_with("Facebook code exchange failed: Graph API error 100"),
        "{detail}"
    );
    assert!(!detail.contains("test-facebook-app-secret"));
    assert_eq!(stand_in.requests_to("/me/accounts").len(), 0);
}
