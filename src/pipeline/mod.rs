//! Raw verified request -> [`Outcome`]: the one place policy lives (what the sender is told).
//!
//! `ingest` runs under an in-flight slot taken by the HTTP layer after the signature passed
//! (none free: [`Outcome::Overloaded`], never a queue), checks the body against the contract inline
//! (microseconds of CPU), then writes the event to Kafka or the dead letter to S3 under the request
//! deadline. The sender hears 200 only after the write is durable; a sink that is down or the
//! deadline means 503 + `Retry-After`, nothing acknowledged. An event Kafka will never take (too
//! large) is dead-lettered instead: retrying it could not help.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::contract::{Checked, Contract, FieldError, Reason, Rejection, SchemaRef, ValidEvent};
use crate::metrics as m;
use crate::sinks::{DeadLetter, DeadLetterSink, EventRecord, EventSink, Origin, Readiness, SinkError};
use crate::trace::TraceContext;

mod answer;

pub use answer::{Outcome, RetryReason};

/// The knobs of the policy.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole-request budget, counted from when the request arrived.
    pub deadline: Duration,
    /// Deliveries checked and written at once; the next one is told to retry.
    pub max_in_flight: usize,
    /// What 503 answers put in `Retry-After`.
    pub retry_after: Duration,
    /// Most validation errors listed in an answer or a dead-letter record (the rest are counted).
    pub max_reported_errors: usize,
}

/// One webhook request whose signature has passed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request's id (`X-Request-Id`): log key, Kafka header, dead-letter object name.
    pub request_id: String,
    /// Whether the sender chose `request_id` (else the service made it up, unique).
    pub request_id_from_sender: bool,
    /// Wall-clock arrival time, recorded with the event.
    pub received_at: DateTime<Utc>,
    /// Monotonic arrival time: the deadline counts from here.
    pub started: Instant,
    /// The body exactly as received and signed.
    pub body: Bytes,
    /// Allow-listed request headers kept with a dead letter (never the signature).
    pub headers: Vec<(String, String)>,
    /// Where this delivery sits in a distributed trace; carried into Kafka and the dead letter.
    pub trace: TraceContext,
    /// The source it came in through (topic, dead-letter prefix) and the sender's delivery metadata.
    pub origin: Origin,
    /// The snapshot of the contract this delivery is judged by, taken when it arrived (its
    /// source's); `None`: the pipeline's. Every verdict on it uses this one snapshot, whatever a
    /// schema reload does meanwhile.
    pub contract: Option<Arc<Contract>>,
}

/// The contract and the two sinks, joined by the policy.
pub struct Pipeline {
    /// Judges payloads of deliveries that bring no contract of their own.
    contract: Arc<Contract>,
    /// Where valid events go.
    events: Arc<dyn EventSink>,
    /// Where invalid payloads go.
    dead_letters: Arc<dyn DeadLetterSink>,
    /// Deadline, in-flight bound, Retry-After, error cap.
    limits: Limits,
    /// One permit per delivery being processed.
    in_flight: Semaphore,
    /// The shared dedupe store's readiness, when one is configured (`/readyz` names it).
    dedupe_store: Option<StoreReadiness>,
}

/// Asks a component other than the two sinks whether it can take writes.
pub type StoreReadiness = Arc<dyn Fn() -> Readiness + Send + Sync>;

impl Pipeline {
    /// Joins a contract to its sinks under `limits`.
    pub fn new(
        contract: Arc<Contract>,
        events: Arc<dyn EventSink>,
        dead_letters: Arc<dyn DeadLetterSink>,
        limits: Limits,
    ) -> Pipeline {
        let permits = limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Pipeline {
            contract,
            events,
            dead_letters,
            limits,
            in_flight: Semaphore::new(permits),
            dedupe_store: None,
        }
    }

    /// Adds the shared dedupe store to `/readyz` (as `dedupe_store`).
    pub fn with_dedupe_store(mut self, readiness: StoreReadiness) -> Pipeline {
        self.dedupe_store = Some(readiness);
        self
    }

    /// The policy's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes one of the bounded in-flight slots, or says `Overloaded` at once (no queue).
    ///
    /// The HTTP layer calls this after the signature passed: unsigned clients never hold one.
    pub fn admit(&self) -> Result<Admission<'_>, Overloaded> {
        match self.in_flight.try_acquire() {
            Ok(permit) => Ok(Admission { _permit: permit, _gauge: m::GaugeGuard::enter(m::IN_FLIGHT) }),
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
        match self.contract_of(&delivery).check(&delivery.body) {
            Checked::Valid(event) => match event_type_mismatch(&delivery, &event) {
                Some(rejection) => self.dead_letter(delivery, body_sha256, rejection, deadline).await,
                None => self.publish(delivery, body_sha256, event, deadline).await,
            },
            Checked::Invalid(rejection) => {
                self.dead_letter(delivery, body_sha256, *rejection, deadline).await
            }
        }
    }

    /// The contract `delivery` is judged by: its source's, else the pipeline's.
    fn contract_of<'a>(&'a self, delivery: &'a Delivery) -> &'a Contract {
        delivery.contract.as_deref().unwrap_or(&self.contract)
    }

    async fn publish(
        &self,
        delivery: Delivery,
        body_sha256: [u8; 32],
        event: ValidEvent,
        deadline: Instant,
    ) -> Outcome {
        let event_type = Arc::clone(&event.event_type);
        let correlation_id = event.correlation_id.clone();
        let record = EventRecord {
            request_id: delivery.request_id.clone(),
            received_at: delivery.received_at,
            body_sha256,
            event,
            replayed_from: None,
            trace: delivery.trace.clone(),
            origin: delivery.origin.clone(),
        };
        let write = self.events.publish(record, deadline);
        match self.within_deadline(deadline, write).await {
            Ok(committed) => Outcome::Published { event_type, correlation_id, committed },
            Err(Err(SinkError::Refused { reason, detail, .. })) => {
                metrics::counter!(m::KAFKA_RECORDS_REFUSED, "reason" => reason).increment(1);
                tracing::warn!(request_id = %delivery.request_id, trace_id = %delivery.trace.trace_id_hex(),
                    reason, %detail, "kafka refused the event: dead-lettering it");
                // The verdict is judged again for its schema and coercions (the check is
                // deterministic): rare here, rather than a copy kept on every valid event's path.
                let (schema, coercions) = match self.contract_of(&delivery).check(&delivery.body) {
                    Checked::Valid(event) => (Some(SchemaRef::clone(&event.schema)), event.coercions),
                    Checked::Invalid(_) => (None, Vec::new()),
                };
                let rejection = Rejection {
                    reason: Reason::KafkaRefused,
                    schema,
                    errors: vec![FieldError {
                        instance_path: String::new(),
                        schema_path: String::new(),
                        keyword: "kafka".to_owned(),
                        message: detail,
                    }],
                    coercions,
                    payload: serde_json::from_slice(&delivery.body).ok(),
                    correlation_id: Some(correlation_id),
                };
                self.dead_letter(delivery, body_sha256, rejection, deadline).await
            }
            Err(Err(error)) => self.retry(error),
            Err(Ok(outcome)) => outcome,
        }
    }

    async fn dead_letter(
        &self,
        delivery: Delivery,
        body_sha256: [u8; 32],
        mut rejection: Rejection,
        deadline: Instant,
    ) -> Outcome {
        count_validation_errors(&rejection);
        let error_count = rejection.errors.len();
        rejection.errors.truncate(self.limits.max_reported_errors);
        let reason = rejection.reason;
        let schema = rejection.schema.clone();
        let correlation_id = rejection.correlation_id.clone();
        let errors = rejection.errors.clone();
        let letter = DeadLetter {
            request_id: delivery.request_id,
            request_id_from_sender: delivery.request_id_from_sender,
            received_at: delivery.received_at,
            raw_body: delivery.body,
            body_sha256,
            headers: delivery.headers,
            rejection,
            error_count,
            trace: delivery.trace,
            origin: delivery.origin,
        };
        let write = self.dead_letters.store(letter, deadline);
        match self.within_deadline(deadline, write).await {
            // `cxone_ingest_dead_letters_total{reason, schema}` is counted by the dead-letter sink.
            Ok(stored) => {
                Outcome::DeadLettered { reason, schema, correlation_id, errors, error_count, stored }
            }
            Err(Err(error)) => self.retry(error),
            Err(Ok(outcome)) => outcome,
        }
    }

    /// Awaits a sink write, but never past the deadline (a sink that ignores it is cut off here).
    /// `Err(Ok(outcome))` is the deadline's answer; `Err(Err(error))` the sink's failure.
    async fn within_deadline<T>(
        &self,
        deadline: Instant,
        write: impl Future<Output = Result<T, SinkError>>,
    ) -> Result<T, Result<Outcome, SinkError>> {
        match tokio::time::timeout_at(deadline.into(), write).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(Err(error)),
            Err(_) => Err(Ok(self.retry(SinkError::DeadlineExceeded { sink: "pipeline" }))),
        }
    }

    /// What the sender is told when a sink could not confirm a write.
    fn retry(&self, error: SinkError) -> Outcome {
        let retry_after = self.limits.retry_after;
        match error {
            SinkError::DeadlineExceeded { .. } => {
                Outcome::Retry { reason: RetryReason::DeadlineExceeded, retry_after }
            }
            SinkError::Overloaded { .. } => Outcome::Overloaded { retry_after },
            SinkError::Unavailable { sink, detail } | SinkError::Refused { sink, detail, .. } => {
                let detail = crate::telemetry::redact_emails(&detail).into_owned();
                Outcome::Retry { reason: RetryReason::SinkUnavailable { sink, detail }, retry_after }
            }
        }
    }

    /// Each sink's readiness, by name (`kafka`, `dead_letter`, and `dedupe_store` when shared),
    /// for `/readyz`.
    pub fn readiness(&self) -> Vec<(&'static str, Readiness)> {
        let mut each =
            vec![("kafka", self.events.readiness()), ("dead_letter", self.dead_letters.readiness())];
        if let Some(store) = &self.dedupe_store {
            each.push(("dedupe_store", store()));
        }
        each
    }

    /// The sinks' notes for `/readyz` (e.g. whether unknown Kafka commit outcomes are read back).
    pub fn notes(&self) -> Vec<(&'static str, String)> {
        self.events.notes()
    }

    /// Tasks that died and will not come back (`/healthz` fails while this is not empty).
    pub fn dead_tasks(&self) -> Vec<String> {
        let mut dead = self.events.dead_tasks();
        dead.extend(self.dead_letters.dead_tasks());
        dead
    }

    /// Lets both sinks finish in-flight work (commit gathered batches) before exit.
    pub async fn close(&self) {
        tokio::join!(self.events.close(), self.dead_letters.close());
    }
}

/// A valid payload whose `event` is not the event type the sender declared in its delivery header:
/// a rejection of its own (the sender or its configuration is confused; nothing is published).
fn event_type_mismatch(delivery: &Delivery, event: &ValidEvent) -> Option<Rejection> {
    let declared = delivery.origin.sender_event_type.as_deref()?;
    if declared == &*event.event_type {
        return None;
    }
    Some(Rejection {
        reason: Reason::EventTypeMismatch,
        schema: Some(SchemaRef::clone(&event.schema)),
        errors: vec![FieldError {
            instance_path: "/event".to_owned(),
            schema_path: String::new(),
            keyword: "event_type_header".to_owned(),
            message: format!(
                "the delivery's event-type header says {declared:?} but the payload's event is {:?}: \
                 send the header that matches the body (or none)",
                &*event.event_type
            ),
        }],
        coercions: event.coercions.clone(),
        payload: serde_json::from_slice(&delivery.body).ok(),
        correlation_id: Some(event.correlation_id.clone()),
    })
}

/// Every in-flight slot is taken: answer with [`Pipeline::overloaded`].
#[derive(Debug)]
pub struct Overloaded;

/// One in-flight slot, held from the verified signature until the answer is decided.
pub struct Admission<'p> {
    /// The slot itself; released on drop.
    _permit: tokio::sync::SemaphorePermit<'p>,
    /// Keeps `cxone_ingest_in_flight_requests` in step with the slots held, even when a request
    /// is cancelled mid-way.
    _gauge: m::GaugeGuard,
}

/// Counts a rejection's validation errors by labels from a closed set (the schema's id, the
/// keyword, the path into the schema): never by anything the sender chose, such as a key name.
fn count_validation_errors(rejection: &Rejection) {
    if rejection.reason != Reason::SchemaValidation {
        return;
    }
    let schema = rejection.schema.as_ref().map_or("none", |schema| schema.id.as_str());
    // One increment per label set, however many errors share it (a body may hold thousands).
    let mut counts: std::collections::BTreeMap<(&str, &str), u64> = std::collections::BTreeMap::new();
    for error in &rejection.errors {
        *counts.entry((error.keyword.as_str(), error.schema_path.as_str())).or_default() += 1;
    }
    for ((keyword, schema_path), count) in counts {
        metrics::counter!(
            m::VALIDATION_ERRORS,
            "schema" => schema.to_owned(),
            "keyword" => keyword.to_owned(),
            "schema_path" => schema_path.to_owned(),
        )
        .increment(count);
    }
}
