//! Graph API failures, parsed so that callers can decide: retry, re-authorise, or give up.
//! <https://developers.facebook.com/docs/graph-api/guides/error-handling>

use std::fmt;

use serde::Deserialize;

/// The `error` object of a Graph API answer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub code: i64,
    pub error_subcode: Option<i64>,
    pub fbtrace_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with an error object.
    #[error("{0}")]
    Api(ApiFailure),
    /// No usable answer: connection, timeout, or a body that is not Graph's.
    #[error("cannot reach the Graph API: {0}")]
    Transport(String),
    #[error("unexpected Graph API answer (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
    /// A `paging.next` link pointed somewhere other than the configured Graph API.
    #[error("Graph API paging link points to another host; not followed")]
    ForeignLink,
}

#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: u16,
    pub error: GraphErrorBody,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.error;
        write!(f, "Graph API error {}", e.code)?;
        if let Some(sub) = e.error_subcode {
            write!(f, "/{sub}")?;
        }
        write!(f, " (HTTP {}): {}", self.status, e.message)?;
        if let Some(trace) = &e.fbtrace_id {
            write!(f, " [fbtrace_id {trace}]")?;
        }
        Ok(())
    }
}

/// Graph's throttling codes, sent as HTTP 400/403 with the code in the body.
const RATE_LIMIT_CODES: [i64; 6] = [4, 17, 32, 613, 80001, 80006];

impl GraphError {
    pub fn body(&self) -> Option<&GraphErrorBody> {
        match self {
            GraphError::Api(failure) => Some(&failure.error),
            _ => None,
        }
    }

    /// Code 190: the token is expired, revoked, or its user lost access (subcode says which).
    pub fn is_token_error(&self) -> bool {
        self.body().is_some_and(|e| e.code == 190)
    }

    /// Meta's rate limiting: HTTP 429 or one of its throttling codes.
    pub fn is_throttling(&self) -> bool {
        match self {
            GraphError::Api(f) => f.status == 429 || RATE_LIMIT_CODES.contains(&f.error.code),
            GraphError::Decode { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// Worth trying again after a pause: throttling, Meta's own failures, the network.
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Api(f) => {
                f.status == 429
                    || f.status >= 500
                    || RATE_LIMIT_CODES.contains(&f.error.code)
                    || f.error.code == 1
                    || f.error.code == 2
            }
            GraphError::Transport(_) => true,
            GraphError::Decode { status, .. } => *status == 429 || *status >= 500,
            GraphError::ForeignLink => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64, subcode: Option<i64>) -> GraphError {
        GraphError::Api(ApiFailure {
            status,
            error: GraphErrorBody {
                message: "m".into(),
                kind: "OAuthException".into(),
                code,
                error_subcode: subcode,
                fbtrace_id: Some("AbC".into()),
            },
        })
    }

    #[test]
    fn classification_follows_metas_codes() {
        assert!(api(400, 190, Some(492)).is_token_error());
        assert!(!api(400, 190, None).is_transient());
        for code in RATE_LIMIT_CODES {
            assert!(api(400, code, None).is_transient(), "{code}");
        }
        assert!(api(500, 0, None).is_transient());
        assert!(api(429, 0, None).is_transient());
        assert!(!api(400, 100, None).is_transient());
        assert!(GraphError::Transport("timed out".into()).is_transient());
        assert_eq!(
            api(400, 190, Some(492)).to_string(),
            "Graph API error 190/492 (HTTP 400): m [fbtrace_id AbC]"
        );
    }
}
