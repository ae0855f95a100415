//! Kafka sink: valid events, published exactly once through group-committed transactions.
//!
//! - [`config`]: `[kafka]` settings.
//! - [`producer`]: the transactional producer and one transaction's protocol.
//! - [`committer`]: batches waiting events into transactions, owns the producer's lifecycle,
//!   finishes commits that outlast their budget and settles those whose outcome is unknown.
//! - `pending`: an event waiting for its transaction, with the promise to answer its request.
//! - `claims`: the committer's writes to the shared dedupe store (offsets, committed states).
//! - [`readback`]: reading an offset back `read_committed` (unknown outcomes), and the start-up
//!   probe of whether the broker hides aborted records.
//! - `context`: the producer's librdkafka context, keeping the last broker error (TLS, SASL) for readiness.
//! - [`error`]: retriable / abortable / fatal, decided in one place.
//! - [`origin`]: the headers naming an event's source and the sender's delivery metadata.
//!
//! `publish` answers `Ok` only after the transaction holding the event committed. See docs/kafka.md.

mod claims;
mod committer;
pub mod config;
mod context;
pub mod error;
pub mod origin;
mod pending;
pub mod producer;
pub mod readback;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

pub use config::KafkaConfig;
pub use error::KafkaSinkError;

use crate::dedupe::claim::{Admission, ClaimTimings, Deduper};
use crate::dedupe::memory::Dedupe;
use crate::dedupe::redis::RedisStore;
use crate::dedupe::ticket::Ticket;
use crate::dedupe::{DedupeConfig, DedupeStore};
use crate::sinks::{Committed, EventRecord, EventSink, Readiness, SinkError};
use committer::{GroupCommitter, Intake, Shared};
use pending::{Completion, Pending};
use readback::{ClaimReadBack, OutcomeReader, ReadBackMode};

const SINK: &str = "kafka";

/// Running totals since start (the same numbers as the `cxone_ingest_kafka_*` metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaSinkStats {
    /// Committed transactions.
    pub transactions: u64,
    /// Events in committed transactions (`events / transactions` = average batch size).
    pub events: u64,
    /// Aborted transactions.
    pub aborted: u64,
    /// Producers dropped after a fatal error (fenced, lost by the broker, timed out).
    pub rebuilds: u64,
}

/// Publishes valid events to Kafka exactly once (per the dedupe window, for repeated deliveries:
/// per replica with the `memory` store, across replicas with a shared one). Cheap to share
/// behind an `Arc`.
pub struct KafkaSink {
    /// To the committer; taken by `close` so the committer drains and stops.
    queue: Mutex<Option<mpsc::Sender<Pending>>>,
    shared: Arc<Shared>,
    /// Repeats answered from the original commit; with a shared store, the claim per delivery.
    deduper: Deduper,
    /// event type -> topic, for the types routed away from the default topic.
    routes: HashMap<String, Arc<str>>,
    default_topic: Arc<str>,
    /// The committer threads, joined by `close`.
    committers: Mutex<Vec<JoinHandle<()>>>,
    /// The largest record the producer takes (`message.max.bytes`): larger events are refused
    /// before they can fail a batch.
    max_record_bytes: usize,
    /// Reads unknown outcomes back; its mode is what the start-up probe found (`/readyz` shows it).
    reader: Arc<OutcomeReader>,
}

impl KafkaSink {
    /// Validates the config, creates the producer and starts the committer thread. Does not wait
    /// for the broker: until `init_transactions` succeeded (retried in the background) and the
    /// topics are there, `readiness()` says why not and `publish` answers `Unavailable`.
    pub fn start(cfg: &KafkaConfig, dedupe: &DedupeConfig) -> Result<KafkaSink, KafkaSinkError> {
        cfg.validate()?;
        let store = match &dedupe.store {
            DedupeStore::Memory => None,
            DedupeStore::Redis(url) => Some(
                RedisStore::connect_with_ca(url, dedupe.store.redacted(), dedupe.ca_file.as_deref())
                    .map_err(|e| KafkaSinkError::Config(e.to_string()))?,
            ),
        };
        let transactional_ids = cfg.transactional_ids();
        let shared = Shared::new(
            transactional_ids.len(),
            Readiness::NotReady(format!("connecting to Kafka at {}", cfg.brokers)),
        );
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let intake = Intake::new(rx);
        let reader = Arc::new(OutcomeReader::new(cfg));
        let mut committers = Vec::with_capacity(transactional_ids.len());
        for (index, transactional_id) in transactional_ids.iter().enumerate() {
            let first = producer::TxProducer::new(cfg, transactional_id)
                .map_err(|e| KafkaSinkError::Client(e.to_string()))?;
            let committer = GroupCommitter::new(
                cfg.clone(),
                index,
                transactional_id.clone(),
                Arc::clone(&intake),
                Arc::clone(&shared),
                first,
                Arc::clone(&reader),
            );
            let committer_shared = Arc::clone(&shared);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| KafkaSinkError::Thread(e.to_string()))?;
            let handle = std::thread::Builder::new()
                .name(format!("kafka-committer-{index}"))
                .spawn(move || {
                    // Should the committer panic, it must stop counting as ready.
                    let _not_ready_on_exit = NotReadyOnExit(committer_shared, index);
                    runtime.block_on(committer.run());
                })
                .map_err(|e| KafkaSinkError::Thread(e.to_string()))?;
            committers.push(handle);
        }
        tracing::info!(
            brokers = %cfg.brokers,
            transactional_ids = %transactional_ids.join(","),
            topic = %cfg.topic,
            "kafka sink started"
        );
        Ok(KafkaSink {
            queue: Mutex::new(Some(tx)),
            shared,
            deduper: Deduper::new(
                Dedupe::new(dedupe.window(), dedupe.max_entries),
                store,
                cfg.transactional_id(),
                ClaimTimings {
                    window: dedupe.window(),
                    transaction_timeout: cfg.transaction_timeout(),
                    call_timeout: cfg.call_timeout(),
                },
                Arc::new(ClaimReadBack { reader: Arc::clone(&reader), call_timeout: cfg.call_timeout() }),
            ),
            routes: cfg
                .topics
                .iter()
                .map(|(event, topic)| (event.clone(), Arc::from(topic.as_str())))
                .collect(),
            default_topic: Arc::from(cfg.topic.as_str()),
            committers: Mutex::new(committers),
            max_record_bytes: producer::max_record_bytes(cfg),
            reader,
        })
    }

    /// Totals since start.
    pub fn stats(&self) -> KafkaSinkStats {
        self.shared.stats()
    }

    /// The shared dedupe store's readiness (`None` with the `memory` store): `/readyz` names it.
    pub fn dedupe_store_readiness(&self) -> Option<Readiness> {
        self.deduper.store_readiness()
    }

    /// Makes the next committer that takes a batch panic, as a bug would: for the tests that show
    /// a dead committer turns `/healthz` red. Never called by the service itself.
    #[doc(hidden)]
    pub fn crash_committer_for_tests(&self) {
        self.shared.crash_requested.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The record's source's own topic when it has one, else the event type's route, else `kafka.topic`.
    fn topic_for(&self, record: &EventRecord) -> Arc<str> {
        if let Some(topic) = &record.origin.topic {
            return Arc::clone(topic);
        }
        Arc::clone(self.routes.get(&*record.event.event_type).unwrap_or(&self.default_topic))
    }

    /// Hands a new (not duplicate) event to the committer and waits for its transaction.
    async fn enqueue(
        &self,
        record: EventRecord,
        deadline: Instant,
        ticket: Ticket,
    ) -> Result<Committed, SinkError> {
        let coercions = producer::coercions_header(&record.event);
        let size = producer::record_size(&record, &coercions);
        if size > self.max_record_bytes {
            return Err(SinkError::Refused {
                sink: SINK,
                reason: "too_large",
                detail: format!(
                    "the event is up to {size} bytes as a Kafka record (key, value and headers), more than \
                     the producer's message.max.bytes of {} bytes: raise kafka.client.\"message.max.bytes\" \
                     (and the topic's max.message.bytes), then replay this dead letter",
                    self.max_record_bytes
                ),
            });
        }
        if let Readiness::NotReady(why) = self.shared.readiness() {
            return Err(SinkError::Unavailable { sink: SINK, detail: why });
        }
        let Some(queue) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Err(SinkError::Unavailable { sink: SINK, detail: "kafka sink closed".to_owned() });
        };
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            topic: self.topic_for(&record),
            size,
            record,
            coercions,
            deadline,
            enqueued_at: Instant::now(),
            completion: Completion::new(reply, ticket),
        };
        match queue.try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(SinkError::Overloaded { sink: SINK }),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(SinkError::Unavailable { sink: SINK, detail: "kafka sink closed".to_owned() });
            }
        }
        drop(queue);
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                Err(SinkError::Unavailable { sink: SINK, detail: "kafka committer stopped".to_owned() })
            }
            Err(_) => Err(SinkError::DeadlineExceeded { sink: SINK }),
        }
    }
}

#[async_trait::async_trait]
impl EventSink for KafkaSink {
    /// `Ok` once the event's transaction committed, or at once with the original commit when
    /// this is a repeat of a delivery already committed within the dedupe window.
    async fn publish(&self, record: EventRecord, deadline: Instant) -> Result<Committed, SinkError> {
        let admission = self
            .deduper
            .admit(&record.event.correlation_id, record.body_sha256, &record.request_id, deadline)
            .await?;
        match admission {
            Admission::Duplicate(committed) => Ok(committed),
            Admission::Publish(ticket) => self.enqueue(record, deadline, ticket).await,
        }
    }

    fn readiness(&self) -> Readiness {
        self.shared.readiness()
    }

    fn notes(&self) -> Vec<(&'static str, String)> {
        let read_back = match self.reader.mode() {
            ReadBackMode::Unprobed => "not probed yet (Kafka not reached since start)".to_owned(),
            ReadBackMode::On => "on: unknown commit outcomes are read back read_committed".to_owned(),
            ReadBackMode::Off(why) | ReadBackMode::Unsure(why) => {
                format!("off: {why}; an event whose commit outcome is unknown is published again")
            }
        };
        vec![("kafka_read_back", read_back)]
    }

    fn dead_tasks(&self) -> Vec<String> {
        self.shared.dead_committers()
    }

    /// Stops taking events, commits what is queued, and stops the committer threads.
    async fn close(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handles = std::mem::take(&mut *self.committers.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("kafka committer thread panicked");
            }
        }
    }
}

/// Marks a committer dead (and not ready) when its thread panics (a normal end says "closed").
struct NotReadyOnExit(Arc<Shared>, usize);

impl Drop for NotReadyOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let task = format!("kafka-committer-{}", self.1);
            tracing::error!(task, "task panicked: the process must be restarted (/healthz fails)");
            metrics::counter!(crate::metrics::TASK_PANICS, "task" => task).increment(1);
            self.0.set(self.1, Readiness::NotReady("kafka committer thread panicked".to_owned()));
            self.0.mark_dead(self.1);
        }
    }
}
