//! Raw verified request -> [`Outcome`]: the one place policy lives (what the sender is told).
//!
//! `ingest` takes a bounded in-flight slot (none free: [`Outcome::Overloaded`], never a queue),
//! checks the body against the contract inline (microseconds of CPU), then writes the event to
//! Kafka or the dead letter to S3 under the request deadline. The sender hears 200 only after the
//! write is durable; any [`SinkError`] or the deadline means 503 + `Retry-After`, nothing acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::contract::{Checked, Contract, FieldError, Reason, SchemaRef};
use crate::metrics as m;
use crate::sinks::{
    Committed, DeadLetter, DeadLetterSink, EventRecord, EventSink, Readiness, SinkError, Stored,
};

/// The knobs of the policy.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole-request budget, counted from when the request arrived.
    pub deadline: Duration,
    /// Deliveries checked and written at once; the next one is told to retry.
    pub max_in_flight: usize,
    /// What 503 answers put in `Retry-After`.
    pub retry_after: Duration,
}

impl Limits {
    /// The limits configured in `[server]`.
    pub fn from_config(server: &crate::config::ServerConfig) -> Limits {
        Limits {
            deadline: server.request_deadline(),
            max_in_flight: server.max_in_flight,
            retry_after: server.retry_after(),
        }
    }
}

/// One webhook request whose signature has passed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request's id (`X-Request-Id`): log key, Kafka header, dead-letter object name.
    pub request_id: String,
    /// Wall-clock arrival time, recorded with the event.
    pub received_at: DateTime<Utc>,
    /// Monotonic arrival time: the deadline counts from here.
    pub started: Instant,
    /// The body exactly as received and signed.
    pub body: Bytes,
    /// Allow-listed request headers kept with a dead letter (never the signature).
    pub headers: Vec<(String, String)>,
}

/// Why a delivery must be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// A sink reported it could not make the write durable.
    SinkUnavailable { sink: &'static str, detail: String },
    /// The request deadline passed before a sink confirmed the write.
    DeadlineExceeded,
}

impl RetryReason {
    /// The snake_case name used in the answer, the log and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            RetryReason::SinkUnavailable { .. } => "sink_unavailable",
            RetryReason::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// How a delivery ended. Exactly one per request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Valid, and the Kafka transaction holding it committed.
    Published { event_type: std::sync::Arc<str>, correlation_id: String, committed: Committed },
    /// Not valid (or not JSON), and the dead-letter object is stored; retrying would not help.
    DeadLettered {
        reason: Reason,
        schema: Option<SchemaRef>,
        correlation_id: Option<String>,
        errors: Vec<FieldError>,
        stored: Stored,
    },
    /// Nothing was acknowledged anywhere; the sender should try again after `retry_after`.
    Retry { reason: RetryReason, retry_after: Duration },
    /// A bound was reached: every in-flight slot was taken (nothing was looked at), or a sink's
    /// bounded queue was full (nothing was written).
    Overloaded { retry_after: Duration },
}

impl Outcome {
    /// The HTTP status the sender gets.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Published { .. } | Outcome::DeadLettered { .. } => 200,
            Outcome::Retry { .. } | Outcome::Overloaded { .. } => 503,
        }
    }

    /// The `Retry-After` to send, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Outcome::Retry { retry_after, .. } | Outcome::Overloaded { retry_after } => Some(*retry_after),
            Outcome::Published { .. } | Outcome::DeadLettered { .. } => None,
        }
    }

    /// The outcome's name in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Published { .. } => "published",
            Outcome::DeadLettered { .. } => "dead_lettered",
            Outcome::Retry { reason: RetryReason::SinkUnavailable { .. }, .. } => "sink_unavailable",
            Outcome::Retry { reason: RetryReason::DeadlineExceeded, .. } => "deadline_exceeded",
            Outcome::Overloaded { .. } => "overloaded",
        }
    }

    /// The JSON answer body (see docs/server.md, "Response contract").
    pub fn response_json(&self, request_id: &str) -> Vec<u8> {
        let body = match self {
            Outcome::Published { event_type, correlation_id, committed } => Answer::Published {
                request_id,
                correlation_id,
                event: event_type,
                topic: &committed.topic,
                partition: committed.partition,
                offset: committed.offset,
                duplicate_of: committed.duplicate_of.as_deref(),
            },
            Outcome::DeadLettered { reason, schema, correlation_id, errors, .. } => Answer::DeadLettered {
                request_id,
                reason: *reason,
                correlation_id: correlation_id.as_deref(),
                schema: schema.as_ref(),
                errors,
            },
            Outcome::Retry { reason, retry_after } => {
                Answer::Retry { request_id, reason: reason.as_str(), retry_after_secs: retry_after.as_secs() }
            }
            Outcome::Overloaded { retry_after } => {
                Answer::Retry { request_id, reason: "overloaded", retry_after_secs: retry_after.as_secs() }
            }
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"status":"error"}"#.to_vec())
    }
}

/// The wire shape of [`Outcome::response_json`].
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer<'a> {
    Published {
        request_id: &'a str,
        correlation_id: &'a str,
        event: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        duplicate_of: Option<&'a str>,
    },
    DeadLettered {
        request_id: &'a str,
        reason: Reason,
        #[serde(skip_serializing_if = "Option::is_none")]
        correlation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        schema: Option<&'a SchemaRef>,
        errors: &'a [FieldError],
    },
    Retry {
        request_id: &'a str,
        reason: &'a str,
        retry_after_secs: u64,
    },
}

/// The contract and the two sinks, joined by the policy.
pub struct Pipeline {
    /// Judges payloads.
    contract: &'static Contract,
    /// Where valid events go.
    events: Arc<dyn EventSink>,
    /// Where invalid payloads go.
    dead_letters: Arc<dyn DeadLetterSink>,
    /// Deadline, in-flight bound, Retry-After.
    limits: Limits,
    /// One permit per delivery being processed.
    in_flight: Semaphore,
}

impl Pipeline {
    /// Joins a contract to its sinks under `limits`.
    pub fn new(
        contract: &'static Contract,
        events: Arc<dyn EventSink>,
        dead_letters: Arc<dyn DeadLetterSink>,
        limits: Limits,
    ) -> Pipeline {
        let permits = limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Pipeline { contract, events, dead_letters, limits, in_flight: Semaphore::new(permits) }
    }

    /// The policy's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes one of the bounded in-flight slots, or answers `Overloaded` at once (no queue).
    ///
    /// The HTTP layer calls this before it reads the body, so the memory held by bodies being
    /// read or processed is bounded by `max_in_flight × body limit`, whoever sends them.
    pub fn admit(&self) -> Result<Admission<'_>, Overloaded> {
        match self.in_flight.try_acquire() {
            Ok(permit) => Ok(Admission { _permit: permit, _gauge: InFlightGauge::enter() }),
            Err(_) => Err(Overloaded),
        }
    }

    /// The answer to a delivery that found no free slot.
    pub fn overloaded(&self) -> Outcome {
        Outcome::Overloaded { retry_after: self.limits.retry_after }
    }

    /// Checks and stores one admitted delivery; see the module docs for what each [`Outcome`] promises.
    pub async fn ingest(&self, admission: Admission<'_>, delivery: Delivery) -> Outcome {
        let _admission = admission;
        let deadline = delivery.started + self.limits.deadline;
        let body_sha256: [u8; 32] = Sha256::digest(&delivery.body).into();
        match self.contract.check(&delivery.body) {
            Checked::Valid(event) => {
                let event_type = event.event_type.clone();
                let correlation_id = event.correlation_id.clone();
                let record = EventRecord {
                    request_id: delivery.request_id,
                    received_at: delivery.received_at,
                    body_sha256,
                    event,
                    replayed_from: None,
                };
                let write = self.events.publish(record, deadline);
                match self.within_deadline(deadline, write).await {
                    Ok(committed) => Outcome::Published { event_type, correlation_id, committed },
                    Err(outcome) => outcome,
                }
            }
            Checked::Invalid(rejection) => {
                let rejection = *rejection;
                count_validation_errors(&rejection.schema, &rejection.errors);
                let reason = rejection.reason;
                let schema = rejection.schema.clone();
                let correlation_id = rejection.correlation_id.clone();
                let errors = rejection.errors.clone();
                let letter = DeadLetter {
                    request_id: delivery.request_id,
                    received_at: delivery.received_at,
                    raw_body: delivery.body,
                    body_sha256,
                    headers: delivery.headers,
                    rejection,
                };
                let write = self.dead_letters.store(letter, deadline);
                match self.within_deadline(deadline, write).await {
                    // `cxone_ingest_dead_letters_total{reason}` is counted by the dead-letter sink.
                    Ok(stored) => Outcome::DeadLettered { reason, schema, correlation_id, errors, stored },
                    Err(outcome) => outcome,
                }
            }
        }
    }

    /// Awaits a sink write, but never past the deadline (a sink that ignores it is cut off here).
    async fn within_deadline<T>(
        &self,
        deadline: Instant,
        write: impl Future<Output = Result<T, SinkError>>,
    ) -> Result<T, Outcome> {
        let retry_after = self.limits.retry_after;
        match tokio::time::timeout_at(deadline.into(), write).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(SinkError::DeadlineExceeded { .. })) | Err(_) => {
                Err(Outcome::Retry { reason: RetryReason::DeadlineExceeded, retry_after })
            }
            Ok(Err(SinkError::Overloaded { .. })) => Err(Outcome::Overloaded { retry_after }),
            Ok(Err(SinkError::Unavailable { sink, detail })) => {
                let detail = crate::telemetry::redact_emails(&detail).into_owned();
                Err(Outcome::Retry { reason: RetryReason::SinkUnavailable { sink, detail }, retry_after })
            }
        }
    }

    /// Each sink's readiness, by name (`kafka`, `dead_letter`), for `/readyz`.
    pub fn readiness(&self) -> [(&'static str, Readiness); 2] {
        [("kafka", self.events.readiness()), ("dead_letter", self.dead_letters.readiness())]
    }

    /// Lets both sinks finish in-flight work (commit gathered batches) before exit.
    pub async fn close(&self) {
        tokio::join!(self.events.close(), self.dead_letters.close());
    }
}

/// Keeps `cxone_ingest_in_flight_requests` right even when a request is cancelled mid-way.
/// Every in-flight slot is taken: answer with [`Pipeline::overloaded`].
#[derive(Debug)]
pub struct Overloaded;

/// One in-flight slot, held from before the body is read until the answer is decided.
pub struct Admission<'p> {
    /// The slot itself; released on drop.
    _permit: tokio::sync::SemaphorePermit<'p>,
    /// Keeps `cxone_ingest_in_flight_requests` in step with the slots held.
    _gauge: InFlightGauge,
}

struct InFlightGauge;

impl InFlightGauge {
    fn enter() -> InFlightGauge {
        metrics::gauge!(m::IN_FLIGHT).increment(1.0);
        InFlightGauge
    }
}

impl Drop for InFlightGauge {
    fn drop(&mut self) {
        metrics::gauge!(m::IN_FLIGHT).decrement(1.0);
    }
}

fn count_validation_errors(schema: &Option<SchemaRef>, errors: &[FieldError]) {
    let schema = schema.as_ref().map_or("none", |schema| schema.id.as_str()).to_owned();
    for error in errors {
        metrics::counter!(
            m::VALIDATION_ERRORS,
            "schema" => schema.clone(),
            "instance_path" => m::path_label(&error.instance_path),
            "keyword" => error.keyword.clone(),
        )
        .increment(1);
    }
}
