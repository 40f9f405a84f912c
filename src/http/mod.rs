//! The HTTP edge every request passes through (request id, timeout, access log), the error
//! type that becomes `{"detail": ...}`, cookies, plain HTML pages and the OAuth state check.
//! It knows no feature: the routes are assembled in `app`, the state they share is `state`.

pub mod cookies;
mod edge;
mod error;
pub mod html;
pub mod state_check;

pub use edge::Edge;
pub use error::{ApiError, chain as error_chain, not_found};
