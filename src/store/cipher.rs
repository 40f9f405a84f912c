//! Where a token is encrypted: ChaCha20-Poly1305 with a fresh random nonce per write and the
//! row's key as associated data, so a sealed value copied onto another row does not open.
//!
//! Stored form: `v1:` + URL-safe base64 (no padding) of `nonce (12 bytes) || ciphertext+tag`.
//! The version prefix lets a later scheme coexist with rows written by this one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

const VERSION: &str = "v1:";
const NONCE_LEN: usize = 12;

/// The failure to open a sealed value. Deliberately says nothing about why: tampering, a moved
/// row and a wrong key look the same to an AEAD, and the caller names the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed value does not open")]
pub struct OpenError;

#[derive(Clone)]
pub struct Cipher {
    aead: ChaCha20Poly1305,
    /// Keys of before a rotation: they open, never seal.
    previous: Vec<ChaCha20Poly1305>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([REDACTED])")
    }
}

impl Cipher {
    pub fn new(key: &SecretBox<[u8; 32]>) -> Cipher {
        let key = Key::from(*key.expose_secret());
        Cipher {
            aead: ChaCha20Poly1305::new(&key),
            previous: Vec::new(),
        }
    }

    /// Seals under `key`; opens what `key` or any of `previous` sealed.
    pub fn with_previous(key: &SecretBox<[u8; 32]>, previous: &[SecretBox<[u8; 32]>]) -> Cipher {
        let mut cipher = Cipher::new(key);
        cipher.previous = previous
            .iter()
            .map(|key| ChaCha20Poly1305::new(&Key::from(*key.expose_secret())))
            .collect();
        cipher
    }

    /// Seals `plaintext`, bound to `aad` (the row it belongs to).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let nonce = Nonce::generate();
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("ChaCha20-Poly1305 encryption cannot fail for in-memory inputs");
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Opens a value sealed by [`Cipher::seal`] with the same `aad`, under the current key or
    /// a previous one.
    pub fn open(&self, aad: &[u8], sealed: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let encoded = sealed.strip_prefix(VERSION).ok_or(OpenError)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| OpenError)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError)?;
        std::iter::once(&self.aead)
            .chain(&self.previous)
            .find_map(|aead| {
                aead.decrypt(
                    &nonce,
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .ok()
            })
            .map(Zeroizing::new)
            .ok_or(OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(byte: u8) -> Cipher {
        Cipher::new(&SecretBox::new(Box::new([byte; 32])))
    }

    #[test]
    fn sealed_values_open_with_the_same_key_and_row() {
        let c = cipher(1);
        let sealed = c.seal(b"ROW", b"EAAB-secret");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("EAAB-secret"));
        assert_eq!(c.open(b"ROW", &sealed).unwrap().as_slice(), b"EAAB-secret");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let c = cipher(1);
        assert_ne!(c.seal(b"ROW", b"same"), c.seal(b"ROW", b"same"));
    }

    #[test]
    fn tampering_moving_and_wrong_keys_are_refused() {
        let c = cipher(1);
        let sealed = c.seal(b"ROW", b"value");
        assert_eq!(c.open(b"OTHER_ROW", &sealed), Err(OpenError));
        assert_eq!(cipher(2).open(b"ROW", &sealed), Err(OpenError));
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            c.open(b"ROW", std::str::from_utf8(&flipped).unwrap()),
            Err(OpenError)
        );
        for garbage in [
            "",
            "v1:",
            "v1:!!!",
            "v2:AAAA",
            "plaintext-token",
            &sealed[3..],
        ] {
            assert_eq!(c.open(b"ROW", garbage), Err(OpenError), "{garbage:?}");
        }
    }

    #[test]
    fn previous_keys_open_but_only_the_current_one_seals() {
        let key = |byte: u8| SecretBox::new(Box::new([byte; 32]));
        let old = cipher(1).seal(b"ROW", b"sealed under A");
        let rotated = Cipher::with_previous(&key(2), &[key(3), key(1)]);
        assert_eq!(
            rotated.open(b"ROW", &old).unwrap().as_slice(),
            b"sealed under A"
        );
        assert_eq!(
            rotated.open(b"OTHER_ROW", &old),
            Err(OpenError),
            "still bound to its row"
        );
        let new = rotated.seal(b"ROW", b"sealed under B");
        assert_eq!(
            cipher(2).open(b"ROW", &new).unwrap().as_slice(),
            b"sealed under B"
        );
        assert_eq!(cipher(1).open(b"ROW", &new), Err(OpenError));
    }
}
