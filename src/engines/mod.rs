//! Real engines started on this machine for tests and benchmarks: a throwaway PostgreSQL
//! server and a throwaway S3-compatible server (moto). Nothing in the production code paths refers to them; salesbot reaches them only
//! through its settings (`DATABASE_URL`, `STORAGE_URL`, `AWS_ENDPOINT_URL`), exactly as it would reach a managed service.

pub mod postgres;
pub mod s3;

/// Why an engine could not be started or stopped; says what to install when that is why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(String);

impl EngineError {
    pub fn new(message: impl Into<String>) -> EngineError {
        EngineError(message.into())
    }
}
