//! Meta's webhook signature: HMAC of the exact body with the app secret, in
//! `X-Hub-Signature-256: sha256=<hex>` (checked when present) or, as the original did,
//! `X-Hub-Signature: sha1=<hex>`. Compared in constant time, before any parsing.
//! <https://developers.facebook.com/docs/messenger-platform/webhooks#validate-payloads>

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use sha2::Sha256;

pub fn is_valid(headers: &HeaderMap, body: &[u8], secret: &SecretString) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key = secret.expose_secret().as_bytes();
    if let Some(value) = header("x-hub-signature-256") {
        return check::<Hmac<Sha256>>(value, "sha256=", key, body);
    }
    if let Some(value) = header("x-hub-signature") {
        return check::<Hmac<Sha1>>(value, "sha1=", key, body);
    }
    false
}

fn check<M: Mac + KeyInit>(value: &str, prefix: &str, key: &[u8], body: &[u8]) -> bool {
    let Some(given) = value
        .strip_prefix(prefix)
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The two headers Meta would send for `body`; for the self-tests, the demo and tests.
pub fn sign(body: &[u8], secret: &SecretString) -> [(&'static str, String); 2] {
    let key = secret.expose_secret().as_bytes();
    let mut sha256 = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    sha256.update(body);
    let mut sha1 = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
    sha1.update(body);
    [
        (
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(sha256.finalize().into_bytes())),
        ),
        (
            "X-Hub-Signature",
            format!("sha1={}", hex::encode(sha1.finalize().into_bytes())),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn sha256_is_preferred_and_sha1_accepted_alone() {
        let secret = SecretString::from("app-secret");
        let body = br#"{"object":"page"}"#;
        let [sha256, sha1] = sign(body, &secret);
        assert!(is_valid(
            &headers(&[sha256.clone(), sha1.clone()]),
            body,
            &secret
        ));
        assert!(is_valid(
            &headers(std::slice::from_ref(&sha256)),
            body,
            &secret
        ));
        assert!(is_valid(
            &headers(std::slice::from_ref(&sha1)),
            body,
            &secret
        ));
        // A wrong sha256 is not rescued by a right sha1.
        let wrong = ("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)));
        assert!(!is_valid(&headers(&[wrong, sha1]), body, &secret));
    }

    #[test]
    fn missing_malformed_or_foreign_signatures_fail() {
        let secret = SecretString::from("app-secret");
        let body = b"{}";
        assert!(!is_valid(&HeaderMap::new(), body, &secret));
        let [sha256, _] = sign(body, &SecretString::from("other-secret"));
        assert!(!is_valid(&headers(&[sha256]), body, &secret));
        for bad in ["sha256=zz", "sha256=", "md5=abcd", "abcdef"] {
            assert!(
                !is_valid(
                    &headers(&[("X-Hub-Signature-256", bad.to_string())]),
                    body,
                    &secret
                ),
                "{bad}"
            );
        }
        let [sha256, _] = sign(body, &secret);
        assert!(
            !is_valid(&headers(&[sha256]), b"{ }", &secret),
            "the exact bytes are signed"
        );
    }
}
