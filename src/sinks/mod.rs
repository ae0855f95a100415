//! The two places a request can end: Kafka for valid events, S3 for dead letters.
//!
//! The pipeline talks to them through [`EventSink`] and [`DeadLetterSink`]; sinks only report
//! what happened ([`SinkError`]), the pipeline alone decides what the sender is told.

pub mod dead_letter;
pub mod kafka;

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::contract::{Rejection, ValidEvent};

/// A valid event on its way to Kafka, with where it came from.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// The request that delivered it (`X-Request-Id`), carried as a header for tracing.
    pub request_id: String,
    /// When the service received the request.
    pub received_at: DateTime<Utc>,
    /// SHA-256 of the raw body as signed by the sender: identifies a repeated delivery.
    pub body_sha256: [u8; 32],
    /// The checked event itself.
    pub event: ValidEvent,
    /// Set by `replay`: the dead-letter object this event was re-driven from.
    pub replayed_from: Option<String>,
}

/// Proof that an event's transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Set when this delivery repeated an earlier one that had already committed: the
    /// request id of that first delivery. Nothing new was written.
    pub duplicate_of: Option<String>,
}

/// A payload that failed the contract, on its way to the dead-letter bucket.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The request that delivered it; also the object's name.
    pub request_id: String,
    /// When the service received the request.
    pub received_at: DateTime<Utc>,
    /// The body exactly as received (it may not be UTF-8 or JSON).
    pub raw_body: Bytes,
    /// SHA-256 of `raw_body`.
    pub body_sha256: [u8; 32],
    /// Request headers worth keeping (never the signature or anything secret).
    pub headers: Vec<(String, String)>,
    /// What was wrong.
    pub rejection: Rejection,
}

/// Where a dead letter was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub bucket: String,
    pub key: String,
}

/// Why a sink could not confirm a write. Every variant means "not durable: the sender must retry".
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The sink is down, misconfigured or refusing writes right now.
    #[error("{sink} unavailable: {detail}")]
    Unavailable { sink: &'static str, detail: String },
    /// The write did not complete before the request's deadline.
    #[error("{sink}: deadline exceeded")]
    DeadlineExceeded { sink: &'static str },
    /// The sink's bounded queue is full.
    #[error("{sink}: overloaded")]
    Overloaded { sink: &'static str },
}

/// Whether a sink can take writes now (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// Publishes valid events; `Ok` only once the transaction holding the event has committed.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn publish(&self, record: EventRecord, deadline: Instant) -> Result<Committed, SinkError>;
    fn readiness(&self) -> Readiness;
    /// Finishes in-flight work (commits gathered batches) before the process exits.
    async fn close(&self) {}
}

/// Stores dead letters; `Ok` only once the object store has acknowledged the object.
#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync + 'static {
    async fn store(&self, letter: DeadLetter, deadline: Instant) -> Result<Stored, SinkError>;
    fn readiness(&self) -> Readiness;
    /// Finishes in-flight writes before the process exits.
    async fn close(&self) {}
}
