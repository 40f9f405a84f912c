//! The HTTP edge: one router, one state, one place where the layers are added.

mod error;
mod health;
mod layers;

use std::sync::Arc;

use axum::Router;

use crate::config::Config;
use crate::oauth_state::StateSigner;
use crate::store::{FileStore, SessionStore, TokenStore};

pub use error::ApiError;

/// What every handler may use. Cheap to clone: everything inside is shared.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub tokens: TokenStore,
    pub sessions: SessionStore,
    pub files: FileStore,
    pub states: StateSigner,
}

/// All routes with their layers; `app::Application` serves it, tests may call it directly.
pub fn router(state: AppState) -> Router {
    let routes = Router::new().merge(health::router());
    layers::apply(routes.fallback(error::not_found)).with_state(state)
}
