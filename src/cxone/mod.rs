//! CXone OAuth: a client-credentials token manager that caches, refreshes once for many callers, and retries.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cxone_ingest::cxone::CxoneError> {
//! use cxone_ingest::cxone::{CxoneConfig, TokenManager};
//! let tokens = TokenManager::new(&CxoneConfig::default())?; // share it: Arc<TokenManager>
//! let token = tokens.token().await?;
//! println!("expires at {}", token.expires_at());
//! # Ok(()) }
//! ```

pub mod config;
pub mod token;

use std::time::Duration;

pub use config::{ClientSecret, CxoneConfig};
pub use token::{AccessToken, TokenManager};

/// Everything that can go wrong getting a token. Cloneable so that callers who waited on one refresh all see its
/// error. No variant ever holds the client secret: response text is scrubbed of it before it gets here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CxoneError {
    /// The `[cxone]` settings cannot produce a token request; the message names the setting to fix.
    #[error("{0}")]
    Config(String),
    /// CXone refused the request (4xx, e.g. wrong client id/secret or scope); retrying will not help.
    #[error("CXone token endpoint {url} answered {status}: {body}")]
    Rejected {
        /// The token endpoint asked.
        url: String,
        /// The HTTP status CXone answered.
        status: u16,
        /// CXone's response text, truncated, secret scrubbed.
        body: String,
    },
    /// CXone failed (5xx); worth retrying.
    #[error("CXone token endpoint {url} answered {status} (server error): {body}")]
    ServerError {
        /// The token endpoint asked.
        url: String,
        /// The HTTP status CXone answered.
        status: u16,
        /// CXone's response text, truncated, secret scrubbed.
        body: String,
    },
    /// No complete answer within the configured timeout; worth retrying.
    #[error("CXone token endpoint {url} did not answer within {after:?}")]
    Timeout {
        /// The token endpoint asked.
        url: String,
        /// The configured per-request timeout.
        after: Duration,
    },
    /// Connection refused, reset, DNS or TLS failure; worth retrying.
    #[error("cannot reach CXone token endpoint {url}: {reason}")]
    Network {
        /// The token endpoint asked.
        url: String,
        /// The transport error and its causes.
        reason: String,
    },
    /// A 2xx answer that is not a usable token (not JSON, no `access_token`).
    #[error("CXone token endpoint {url} answered {status} but not with a token: {reason}")]
    InvalidResponse {
        /// The token endpoint asked.
        url: String,
        /// The HTTP status CXone answered.
        status: u16,
        /// What is wrong with the body, with the body itself truncated and scrubbed.
        reason: String,
    },
    /// Retryable failures until the retry budget ran out; `last` is the final attempt's error.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Token requests made, the first included.
        attempts: u32,
        /// Why the last one failed.
        last: Box<CxoneError>,
    },
}

impl CxoneError {
    /// The one place that decides what is retried: server errors and transport failures, never 4xx or bad config.
    pub fn is_retryable(&self) -> bool {
        match self {
            CxoneError::ServerError { .. } | CxoneError::Timeout { .. } | CxoneError::Network { .. } => true,
            CxoneError::Config(_)
            | CxoneError::Rejected { .. }
            | CxoneError::InvalidResponse { .. }
            | CxoneError::GaveUp { .. } => false,
        }
    }

    /// The `outcome` label of `cxone_ingest_cxone_token_requests_total` for a request that failed this way.
    pub fn outcome(&self) -> &'static str {
        match self {
            CxoneError::Config(_) => "config",
            CxoneError::Rejected { .. } => "rejected",
            CxoneError::ServerError { .. } => "server_error",
            CxoneError::Timeout { .. } => "timeout",
            CxoneError::Network { .. } => "network",
            CxoneError::InvalidResponse { .. } => "invalid_response",
            CxoneError::GaveUp { last, .. } => last.outcome(),
        }
    }
}
