//! Real engines started on this machine for tests and benchmarks: a throwaway PostgreSQL
//! server. Nothing in the production code paths refers to them; salesbot reaches them only
//! through its settings (`DATABASE_URL`), exactly as it would reach a managed service.

pub mod postgres;

/// Why an engine could not be started or stopped; says what to install when that is why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(String);

impl EngineError {
    pub fn new(message: impl Into<String>) -> EngineError {
        EngineError(message.into())
    }
}
