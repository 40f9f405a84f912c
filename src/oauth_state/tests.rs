use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::*;

const NOW: i64 = 1_800_000_000;

fn signer(secret: &str) -> StateSigner {
    StateSigner::new(SecretString::from(secret))
}

/// The original's Python, re-done independently: HMAC-SHA256 over the payload, padded base64.
fn python_style(secret: &str, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    format!("{payload}:{}", URL_SAFE.encode(mac.finalize().into_bytes()))
}

#[test]
fn a_fresh_state_verifies_and_carries_its_uuid() {
    let s = signer("secret");
    let user = Uuid::new_v4();
    let state = s.sign_at(Some(&user), NOW);
    let parts: Vec<&str> = state.split(':').collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], NOW.to_string());
    assert_eq!(parts[1].len(), 12, "8 bytes, padded URL-safe base64");
    assert_eq!(parts[3].len(), 44, "32 bytes, padded URL-safe base64");
    // The merchant's id does not travel in clear through Meta's dialog.
    assert!(parts[2].starts_with("v1."), "{state}");
    for shown in [user.to_string(), user.simple().to_string()] {
        assert!(!state.contains(&shown), "{state}");
    }
    let verified = s.verify_at(&state, NOW + 10).unwrap();
    assert_eq!(verified.user, Some(user));
    assert_eq!(verified.expires_at(), NOW + 300);

    let plain = s.sign_at(None, NOW);
    assert_eq!(plain.split(':').count(), 3);
    assert_eq!(s.verify_at(&plain, NOW).unwrap().user, None);
}

#[test]
fn states_made_the_original_way_verify() {
    let user = "0b6c1c2e-8f7e-4d55-9d3a-2f1b7e0c9a11";
    let state = python_style("secret", &format!("{NOW}:q83vEjRWeJA=:{user}"));
    assert_eq!(
        signer("secret")
            .verify_at(&state, NOW)
            .unwrap()
            .user
            .unwrap()
            .to_string(),
        user
    );
}

#[test]
fn a_sealed_uuid_opens_only_with_its_secret_and_its_own_prefix() {
    let s = signer("secret");
    let state = s.sign_at(Some(&Uuid::new_v4()), NOW);
    let parts: Vec<&str> = state.split(':').collect();
    // Re-signed with the right secret (so only the sealing is tested): another prefix, or
    // another secret's sealing key, does not open it.
    let moved = python_style("secret", &format!("{NOW}:AAAAAAAAAAA=:{}", parts[2]));
    assert_eq!(s.verify_at(&moved, NOW), Err(StateError::Malformed));
    let other = signer("other");
    let sealed_elsewhere = other.sign_at(Some(&Uuid::new_v4()), NOW);
    let payload = sealed_elsewhere.rsplit_once(':').unwrap().0;
    assert_eq!(
        s.verify_at(&python_style("secret", payload), NOW),
        Err(StateError::Malformed)
    );
}

#[test]
fn each_state_is_unique() {
    let s = signer("secret");
    assert_ne!(s.sign_at(None, NOW), s.sign_at(None, NOW));
}

#[test]
fn expired_and_future_states_are_refused() {
    let s = signer("secret");
    let state = s.sign_at(None, NOW);
    assert!(s.verify_at(&state, NOW + 300).is_ok());
    assert_eq!(s.verify_at(&state, NOW + 301), Err(StateError::Expired));
    assert_eq!(s.verify_at(&state, NOW - 3600), Err(StateError::Expired));
}

#[test]
fn tampered_states_are_refused() {
    let s = signer("secret");
    let user = Uuid::new_v4();
    let state = s.sign_at(Some(&user), NOW);
    // Another merchant's sealed id put in this state's place.
    let parts: Vec<&str> = state.split(':').collect();
    let other = s.sign_at(Some(&Uuid::new_v4()), NOW);
    let other_sealed = other.split(':').nth(2).unwrap();
    let swapped_user = state.replace(parts[2], other_sealed);
    assert_ne!(swapped_user, state);
    assert_eq!(
        s.verify_at(&swapped_user, NOW),
        Err(StateError::BadSignature)
    );
    let later = state.replacen(&NOW.to_string(), &(NOW + 1000).to_string(), 1);
    assert_eq!(
        s.verify_at(&later, NOW + 1000),
        Err(StateError::BadSignature)
    );
    let mut sig_flipped = state.clone();
    let c = if sig_flipped.ends_with("A=") {
        "B="
    } else {
        "A="
    };
    sig_flipped.replace_range(sig_flipped.len() - 2.., c);
    assert_eq!(
        s.verify_at(&sig_flipped, NOW),
        Err(StateError::BadSignature)
    );
    // Dropping the UUID changes the payload, so the signature no longer fits.
    let without_user = format!("{}:{}:{}", parts[0], parts[1], parts[3]);
    assert_eq!(
        s.verify_at(&without_user, NOW),
        Err(StateError::BadSignature)
    );
}

#[test]
fn a_state_signed_with_another_secret_is_refused() {
    let state = signer("attacker").sign_at(None, NOW);
    assert_eq!(
        signer("secret").verify_at(&state, NOW),
        Err(StateError::BadSignature)
    );
}

#[test]
fn malformed_states_are_refused_for_every_split_count() {
    let s = signer("secret");
    for state in [
        "",
        "abc",
        "1:2",
        "::",
        "1:2:3:4:5",
        "1:2:3:4:5:6",
        "a:b:c:d:e:f:g",
        "1::sig",
        ":n:sig",
    ] {
        assert_eq!(
            s.verify_at(state, NOW),
            Err(StateError::Malformed),
            "{state:?}"
        );
    }
    // Right shape, undecodable signature.
    assert_eq!(s.verify_at("1:n:***", NOW), Err(StateError::BadSignature));
    // Correctly signed but nonsense inside: still refused.
    let bad_ts = python_style("secret", "yesterday:q83vEjRWeJA=");
    assert_eq!(s.verify_at(&bad_ts, NOW), Err(StateError::Malformed));
    let bad_uuid = python_style("secret", &format!("{NOW}:q83vEjRWeJA=:not-a-uuid"));
    assert_eq!(s.verify_at(&bad_uuid, NOW), Err(StateError::Malformed));
}

#[test]
fn the_state_must_match_the_browsers_cookie() {
    assert_eq!(check_bound("a:b:c", Some("a:b:c")), Ok(()));
    assert_eq!(check_bound("a:b:c", None), Err(StateError::MissingCookie));
    assert_eq!(
        check_bound("a:b:c", Some("a:b:d")),
        Err(StateError::CookieMismatch)
    );
    assert_eq!(
        check_bound("a:b:c", Some("")),
        Err(StateError::CookieMismatch)
    );
}
