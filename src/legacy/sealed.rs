//! How the original sealed every stored value: Fernet (AES-128-CBC + HMAC-SHA256, Python's
//! `cryptography`) under `urlsafe_base64(PBKDF2-HMAC-SHA256(STATE_TOKEN_SECRET, b"salt_",
//! 100 000 iterations, 32 bytes))`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

const SALT: &[u8] = b"salt_";
const ITERATIONS: u32 = 100_000;

/// The original's key, opening what it sealed.
pub struct LegacyKey(fernet::Fernet);

impl LegacyKey {
    /// Derives the key from the original's `STATE_TOKEN_SECRET`.
    pub fn derive(secret: &SecretString) -> LegacyKey {
        let mut raw = Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<Sha256>(
            secret.expose_secret().as_bytes(),
            SALT,
            ITERATIONS,
            raw.as_mut(),
        );
        let encoded = Zeroizing::new(URL_SAFE.encode(raw.as_ref()));
        LegacyKey(
            fernet::Fernet::new(&encoded).expect("32 bytes in URL-safe base64 is a Fernet key"),
        )
    }

    /// The plain text of one sealed value; `None` when this key did not seal it (a wrong
    /// secret) or the value is damaged.
    pub fn open(&self, sealed: &str) -> Option<SecretString> {
        let plain = self.0.decrypt(sealed.trim()).ok()?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

impl std::fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Python's `cryptography` (tests/fixtures/legacy/make_fixture.py): the first
    /// row of tokens.sql.
    #[test]
    fn opens_what_pythons_cryptography_sealed_and_nothing_under_another_secret() {
        let sql = include_str!("../../tests/fixtures/legacy/tokens.sql");
        let row = sql
            .lines()
            .find(|l| l.contains("'SHOPIFY_ACCESS_TOKEN_demo-store_myshopify_com'"))
            .unwrap();
        let sealed = row.split('\'').nth(3).unwrap();
        let key = LegacyKey::derive(&SecretString::from("the-original-state-token-secret"));
        assert_eq!(
            key.open(sealed).unwrap().expose_secret(),
            "shpat_LEGACY_SHOP_SECRET"
        );
        let wrong = LegacyKey::derive(&SecretString::from("another-secret"));
        assert!(wrong.open(sealed).is_none());
        assert!(key.open("not a fernet token").is_none());
    }
}
