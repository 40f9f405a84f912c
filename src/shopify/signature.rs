//! Verifying the `hmac` Shopify adds to its OAuth redirect, and the freshness of `timestamp`.
//!
//! HMAC-SHA256 (hex) with the app secret over every other query parameter except `hmac` and
//! `signature`, sorted by name and joined as `k=v` with `&`.
//! <https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant#step-1-verify-the-installation-request>

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// How far `timestamp` may be from now, as Shopify's own JavaScript library allows.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Missing hmac parameter")]
    Missing,
    #[error("Invalid HMAC")]
    Invalid,
    #[error("Missing or invalid timestamp parameter")]
    BadTimestamp,
    #[error("Request timestamp is too old or in the future")]
    Stale,
}

/// Checks `hmac` over `params` (decoded query pairs, in any order), then `timestamp`.
pub fn verify(
    params: &[(String, String)],
    secret: &SecretString,
    now: i64,
) -> Result<(), SignatureError> {
    let given = params
        .iter()
        .find(|(k, _)| k == "hmac")
        .map(|(_, v)| v.as_str())
        .ok_or(SignatureError::Missing)?;
    let given = hex::decode(given).map_err(|_| SignatureError::Invalid)?;
    let mut mac = keyed(secret);
    mac.update(message(params).as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Invalid)?;

    let timestamp: i64 = params
        .iter()
        .find(|(k, _)| k == "timestamp")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or(SignatureError::BadTimestamp)?;
    if (now - timestamp).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The signed message; also what a stand-in for Shopify signs.
pub fn message(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "hmac" && k != "signature")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs `params` as Shopify does: the hex HMAC to put in `hmac`.
pub fn sign(params: &[(String, String)], secret: &SecretString) -> String {
    let mut mac = keyed(secret);
    mac.update(message(params).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 under the app secret: how Shopify signs its redirects and its webhooks alike.
pub fn keyed(secret: &SecretString) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_documented_example_verifies() {
        // Shopify's documented example, re-signed with our own secret and fresh timestamp.
        let secret = SecretString::from("hush");
        let ts = NOW.to_string();
        let mut p = params(&[
            ("code", "0907a61c0c8d55e99db179b68161bc00"),
            ("shop", "some-shop.myshopify.com"),
            ("state", "0.6784241404160823"),
            ("timestamp", &ts),
        ]);
        assert_eq!(
            message(&p),
            format!(
                "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com&state=0.6784241404160823&timestamp={ts}"
            )
        );
        let hmac = sign(&p, &secret);
        p.insert(0, ("hmac".into(), hmac));
        assert_eq!(verify(&p, &secret, NOW), Ok(()));
        assert_eq!(verify(&p, &secret, NOW + 90), Ok(()));
        assert_eq!(verify(&p, &secret, NOW + 91), Err(SignatureError::Stale));
        assert_eq!(verify(&p, &secret, NOW - 91), Err(SignatureError::Stale));
        assert_eq!(
            verify(&p, &SecretString::from("other"), NOW),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn missing_changed_or_garbled_hmacs_are_refused() {
        let secret = SecretString::from("hush");
        let ts = NOW.to_string();
        let mut p = params(&[
            ("code", "c"),
            ("shop", "s.myshopify.com"),
            ("timestamp", &ts),
        ]);
        assert_eq!(verify(&p, &secret, NOW), Err(SignatureError::Missing));
        let hmac = sign(&p, &secret);
        p.push(("hmac".into(), hmac.clone()));
        p[0].1 = "other-code".into();
        assert_eq!(verify(&p, &secret, NOW), Err(SignatureError::Invalid));
        for bad in ["zz", "abc", ""] {
            let q = params(&[("code", "c"), ("hmac", bad), ("timestamp", &ts)]);
            assert_eq!(
                verify(&q, &secret, NOW),
                Err(SignatureError::Invalid),
                "{bad:?}"
            );
        }
        let q = params(&[
            ("code", "c"),
            ("hmac", &sign(&params(&[("code", "c")]), &secret)),
        ]);
        assert_eq!(verify(&q, &secret, NOW), Err(SignatureError::BadTimestamp));
    }
}
