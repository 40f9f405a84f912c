//! Accepting an OAuth callback's `state`: signed and fresh, the one this browser was given,
//! and not used before (SPEC 8.9). Runs before any outbound request.

use axum_extra::extract::CookieJar;

use super::ApiError;
use crate::oauth_state::{StateError, StateSigner, VerifiedState, check_bound};
use crate::store::SessionStore;

pub async fn accept(
    (signer, sessions): (&StateSigner, &SessionStore),
    state: &str,
    jar: &CookieJar,
    cookie: &'static str,
) -> Result<VerifiedState, ApiError> {
    let refuse = |err: StateError| ApiError::BadRequest(err.to_string());
    let verified = signer.verify(state).map_err(refuse)?;
    check_bound(state, jar.get(cookie).map(|c| c.value())).map_err(refuse)?;
    if !sessions.spend_state(state, verified.expires_at()).await? {
        return Err(refuse(StateError::Replayed));
    }
    Ok(verified)
}
