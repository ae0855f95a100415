//! The two places a request can end: Kafka for valid events, S3 for dead letters.
//!
//! The pipeline talks to them through [`EventSink`] and [`DeadLetterSink`]; sinks only report
//! what happened ([`SinkError`]), the pipeline alone decides what the sender is told.

pub mod dead_letter;
pub mod kafka;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::contract::{Rejection, ValidEvent};
use crate::trace::TraceContext;

/// Which webhook source a delivery came in through, where that source's records go, and what the
/// sender said about the delivery. The default (empty source name, no overrides) is what replays
/// and records made outside a live delivery carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The source's name (`default` in a configuration without `[[sources]]`); empty when unknown.
    pub source: Arc<str>,
    /// The source's own topic; `None` routes by `kafka.topics` / `kafka.topic` as before.
    pub topic: Option<Arc<str>>,
    /// The source's own dead-letter key prefix; `None` uses `dead_letter.prefix`.
    pub dead_letter_prefix: Option<Arc<str>>,
    /// The sender's delivery id (`X-Nexus-Delivery-Id` by default), when sent.
    pub delivery_id: Option<String>,
    /// The event type the sender declared in a header (`X-Nexus-Event-Type` by default), when sent.
    pub sender_event_type: Option<String>,
}

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
    /// The delivery's trace context, written as the record's `traceparent`/`tracestate` headers.
    pub trace: TraceContext,
    /// The source it came in through (its topic, when it has one, wins over routing by event type).
    pub origin: Origin,
}

impl EventRecord {
    /// A record of a live delivery (not a replay), in a new trace.
    pub fn new(
        request_id: String,
        received_at: DateTime<Utc>,
        body_sha256: [u8; 32],
        event: ValidEvent,
    ) -> EventRecord {
        EventRecord {
            request_id,
            received_at,
            body_sha256,
            event,
            replayed_from: None,
            trace: TraceContext::start(),
            origin: Origin::default(),
        }
    }
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

/// A payload that failed the contract (or that Kafka refused), on its way to the dead-letter bucket.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The request that delivered it, kept in the record (it names no object: batch objects are
    /// named by a service-made batch id).
    pub request_id: String,
    /// Whether the sender chose `request_id` (`X-Request-Id`): then it is not trusted to be
    /// unique (two records may carry the same one).
    pub request_id_from_sender: bool,
    /// When the service received the request.
    pub received_at: DateTime<Utc>,
    /// The body exactly as received (it may not be UTF-8 or JSON).
    pub raw_body: Bytes,
    /// SHA-256 of `raw_body`.
    pub body_sha256: [u8; 32],
    /// Request headers worth keeping (never the signature or anything secret).
    pub headers: Vec<(String, String)>,
    /// What was wrong. Its `errors` may be cut to `server.max_reported_errors`.
    pub rejection: Rejection,
    /// How many errors were found in all (at least `rejection.errors.len()`).
    pub error_count: usize,
    /// The delivery's trace context, kept in the record.
    pub trace: TraceContext,
    /// The source it came in through (its prefix, when it has one, names the object).
    pub origin: Origin,
}

impl DeadLetter {
    /// A dead letter with every error listed, under a service-made request id, in a new trace.
    pub fn new(
        request_id: String,
        received_at: DateTime<Utc>,
        raw_body: Bytes,
        headers: Vec<(String, String)>,
        rejection: Rejection,
    ) -> DeadLetter {
        use sha2::Digest as _;
        DeadLetter {
            request_id,
            request_id_from_sender: false,
            received_at,
            body_sha256: sha2::Sha256::digest(&raw_body).into(),
            raw_body,
            headers,
            error_count: rejection.errors.len(),
            rejection,
            trace: TraceContext::start(),
            origin: Origin::default(),
        }
    }
}

/// Where a dead letter was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub bucket: String,
    /// The object holding the record: one batch of dead letters, one record per line.
    pub key: String,
    /// The record's line in that object, counted from 1.
    pub line: u64,
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
    /// The sink will never take this record as it is (Kafka: larger than the producer's
    /// `message.max.bytes`). Retrying cannot help: the pipeline dead-letters it instead.
    #[error("{sink} refused the record ({reason}): {detail}")]
    Refused { sink: &'static str, reason: &'static str, detail: String },
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
    /// Facts about how the sink works that an operator should see next to its readiness
    /// (`/readyz` on the admin listener): `(name, text)`.
    fn notes(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Tasks of the sink that died (panicked) and will not come back: the process must be
    /// restarted (`/healthz` fails). Empty while alive.
    fn dead_tasks(&self) -> Vec<String> {
        Vec::new()
    }
    /// Finishes in-flight work (commits gathered batches) before the process exits.
    async fn close(&self) {}
}

/// Stores dead letters; `Ok` only once the object store has acknowledged the object.
#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync + 'static {
    async fn store(&self, letter: DeadLetter, deadline: Instant) -> Result<Stored, SinkError>;
    fn readiness(&self) -> Readiness;
    /// Tasks of the sink that died (panicked) and will not come back (`/healthz` fails).
    fn dead_tasks(&self) -> Vec<String> {
        Vec::new()
    }
    /// Finishes in-flight writes before the process exits.
    async fn close(&self) {}
}
