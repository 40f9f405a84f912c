//! OAuth `state` tokens in the original's format (SPEC 9), plus the checks that make them safe.
//!
//! Format: `{ts}:{nonce}[:{extra}]:{sig}`, where `ts` is Unix seconds, `nonce` is 8 random bytes
//! in padded URL-safe base64, `extra` is the merchant UUID when one is carried, and `sig` is the
//! padded URL-safe base64 of HMAC-SHA256(`STATE_TOKEN_SECRET`, everything before it).
//!
//! Unlike the original, the UUID is sealed (`v1.` + ChaCha20-Poly1305 under a key derived from
//! the state secret, bound to `{ts}:{nonce}`): the state travels through Meta's dialog and
//! Meta's logs, and the merchant's id is ours to keep. A clear UUID, signed, is still read.
//!
//! A signature alone is not enough (the original's stateless state allows login CSRF): the
//! callback also requires the same value in a cookie set on this browser ([`check_bound`]) and
//! spends it once (`SessionStore::spend_state`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroize;

use crate::store::cipher::Cipher;
use crate::store::unix_now;

/// Marks a sealed UUID in `extra`; the cipher's own `v1:` with the `:` that states split on
/// turned into a `.`.
const SEALED: &str = "v1.";

/// How long a state is accepted after it was issued.
pub const STATE_MAX_AGE_SECS: i64 = 300;
/// Clock disagreement tolerated for a state issued "in the future" (another replica's clock).
const CLOCK_SKEW_SECS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("Malformed state parameter")]
    Malformed,
    #[error("Invalid state signature")]
    BadSignature,
    #[error("State has expired; start the login again")]
    Expired,
    #[error("Missing state cookie; start the login again in the same browser")]
    MissingCookie,
    #[error("State does not match this browser's login")]
    CookieMismatch,
    #[error("State has already been used; start the login again")]
    Replayed,
}

/// What a verified state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedState {
    pub issued_at: i64,
    /// The merchant UUID, when the state carries one.
    pub user: Option<Uuid>,
}

impl VerifiedState {
    /// When the state stops verifying; a spent-state record may be dropped after this.
    pub fn expires_at(&self) -> i64 {
        self.issued_at + STATE_MAX_AGE_SECS
    }
}

#[derive(Clone)]
pub struct StateSigner {
    secret: SecretString,
    /// Seals the UUID a state carries.
    cipher: Cipher,
}

impl std::fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSigner([REDACTED])")
    }
}

impl StateSigner {
    pub fn new(secret: SecretString) -> StateSigner {
        let hkdf = Hkdf::<Sha256>::new(
            Some(b"salesbot/oauth-state/v1"),
            secret.expose_secret().as_bytes(),
        );
        let mut key = [0u8; 32];
        hkdf.expand(b"state extra sealing key", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher = Cipher::new(&SecretBox::new(Box::new(key)));
        key.zeroize();
        StateSigner { secret, cipher }
    }

    pub fn sign(&self, user: Option<&Uuid>) -> String {
        self.sign_at(user, unix_now())
    }

    pub fn sign_at(&self, user: Option<&Uuid>, now: i64) -> String {
        let nonce: [u8; 8] = rand::random();
        let mut payload = format!("{now}:{}", URL_SAFE.encode(nonce));
        if let Some(user) = user {
            let sealed = self.cipher.seal(payload.as_bytes(), user.as_bytes());
            payload.push(':');
            payload.push_str(&sealed.replacen(':', ".", 1));
        }
        let sig = URL_SAFE.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}:{sig}")
    }

    pub fn verify(&self, state: &str) -> Result<VerifiedState, StateError> {
        self.verify_at(state, unix_now())
    }

    pub fn verify_at(&self, state: &str, now: i64) -> Result<VerifiedState, StateError> {
        let parts: Vec<&str> = state.split(':').collect();
        if !(3..=4).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(StateError::Malformed);
        }
        let (payload, sig) = state.rsplit_once(':').ok_or(StateError::Malformed)?;
        let sig = URL_SAFE.decode(sig).map_err(|_| StateError::BadSignature)?;
        // `verify_slice` compares in constant time.
        self.mac(payload)
            .verify_slice(&sig)
            .map_err(|_| StateError::BadSignature)?;
        // Only signed content is interpreted below.
        let issued_at: i64 = parts[0].parse().map_err(|_| StateError::Malformed)?;
        let age = now - issued_at;
        if !(-CLOCK_SKEW_SECS..=STATE_MAX_AGE_SECS).contains(&age) {
            return Err(StateError::Expired);
        }
        let user = match parts.len() {
            4 => Some(self.user(&parts[..2].join(":"), parts[2])?),
            _ => None,
        };
        Ok(VerifiedState { issued_at, user })
    }

    /// The UUID in a signed `extra`: sealed by [`Self::sign_at`], or in clear (the original's).
    fn user(&self, prefix: &str, extra: &str) -> Result<Uuid, StateError> {
        let Some(sealed) = extra.strip_prefix(SEALED) else {
            return Uuid::parse_str(extra).map_err(|_| StateError::Malformed);
        };
        let opened = self
            .cipher
            .open(prefix.as_bytes(), &format!("v1:{sealed}"))
            .map_err(|_| StateError::Malformed)?;
        Uuid::from_slice(&opened).map_err(|_| StateError::Malformed)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(payload.as_bytes());
        mac
    }
}

/// The state in the callback must equal the one this browser was given in its state cookie.
pub fn check_bound(state: &str, cookie: Option<&str>) -> Result<(), StateError> {
    let cookie = cookie.ok_or(StateError::MissingCookie)?;
    if bool::from(state.as_bytes().ct_eq(cookie.as_bytes())) {
        Ok(())
    } else {
        Err(StateError::CookieMismatch)
    }
}

#[cfg(test)]
mod tests;
