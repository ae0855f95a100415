//! The transactional producer: one per process, owned by the committer thread, which alone calls
//! its blocking transactional methods (each with a timeout: a broker that vanished mid-commit
//! costs at most `call_timeout`, never a hang).
//!
//! One transaction = begin -> produce every record -> await every delivery report -> the caller's
//! pre-commit step (the shared dedupe store records where each record landed) -> commit.
//! Waiting for the delivery reports (not `flush()`, which since rdkafka 0.37 polls in 100 ms
//! slices and so costs ~100 ms per transaction) is what makes small transactions cheap.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::config::KafkaConfig;
use super::context::{BrokerErrors, with_broker_error};
use super::error::{ErrorClass, classify, describe, record_refusal};
use crate::contract::ValidEvent;
use crate::metrics as m;
use crate::sinks::EventRecord;

/// Where one record of a committed transaction landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    pub partition: i32,
    pub offset: i64,
}

impl Landed {
    /// Where a successful delivery report says the record landed; `None` when it gives no offset.
    /// librdkafka reports success with offset -1 when the broker answers a retried produce with
    /// DUPLICATE_SEQUENCE_NUMBER ("already have it"). A broker that says so without having the
    /// record (tansu after a pause, docs/reliability.md) would turn a commit into a lost event,
    /// so the committer aborts instead: on a correct broker that only discards the earlier copy
    /// with the transaction, and the sender's retry publishes it once.
    pub fn reported(partition: i32, offset: i64) -> Option<Landed> {
        (offset >= 0).then_some(Landed { partition, offset })
    }
}

/// A record librdkafka refused to take (it was left out of the transaction; the others went on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `too_large` or `invalid_record`.
    pub reason: &'static str,
    /// librdkafka's words, for the dead-letter record.
    pub detail: String,
}

/// How a transaction ended.
#[derive(Debug)]
pub enum TxnOutcome {
    /// Committed: for each record in batch order, where it landed, or why it was left out.
    Committed(Vec<Result<Landed, Refusal>>),
    /// Aborted (nothing of it is visible to `read_committed` readers); the producer is still usable.
    Aborted(String),
    /// Aborted because the topic refuses writes (authorization, unknown topic): the producer is
    /// still usable, but batches would fail the same way until someone fixes the topic.
    TopicRefused(String),
    /// The producer is unusable (fenced, broker lost our producer id, an abort outlived its
    /// budget) and the commit was never asked for: nothing of the transaction committed, and the
    /// producer must be rebuilt (its `init_transactions` aborts what is left open).
    Fatal(String),
    /// The commit was asked for but not answered within the call budget: it may still commit.
    /// The producer is still usable; [`TxProducer::finish_commit`] calls it again until the
    /// broker answers. With the records' results as for `Committed`.
    CommitPending(Vec<Result<Landed, Refusal>>, String),
    /// The producer failed after the commit was asked for: whether it committed is unknown until
    /// a new producer's `init_transactions` has ended it and the records are read back.
    CommitUnknown(Vec<Result<Landed, Refusal>>, String),
}

/// Why the start-up probe ([`TxProducer::write_aborted_probe`]) did not give an answer.
#[derive(Debug)]
pub enum ProbeFailure {
    /// It could not write its record (the topic refused it, no delivery report): try again at
    /// the next producer start.
    NotRun(String),
    /// The broker did not end its transaction (no EndTxn, or it timed out): the producer must be
    /// rebuilt, and read-back stays off.
    ProducerUnusable(String),
}

/// How [`TxProducer::finish_commit`] ended a commit that outlasted its budget.
#[derive(Debug)]
pub enum CommitEnd {
    /// The broker answered: committed.
    Committed,
    /// The broker refused the commit and the transaction was aborted: nothing of it committed.
    Aborted(String),
    /// No answer before the transaction timeout, or the producer failed: unknown.
    Unknown(String),
}

/// One record to produce.
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub record: &'a EventRecord,
    /// Its [`coercions_header`].
    pub coercions: &'a str,
}

/// The librdkafka settings shared by the producer and the admin client (brokers + pass-through).
fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &cfg.brokers);
    for (key, value) in &cfg.client.0 {
        config.set(key, value);
    }
    config
}

/// The exactly-once producer configuration of the committer using `transactional_id`.
pub fn producer_config(cfg: &KafkaConfig, transactional_id: &str) -> ClientConfig {
    let mut config = base_config(cfg);
    config
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transaction.timeout.ms", cfg.transaction_timeout_ms.to_string());
    // Defaults the pass-through may override.
    let defaults = [
        ("client.id", transactional_id),
        // The committer already gathers batches; librdkafka lingering on top would only add latency.
        ("linger.ms", "0"),
        // Transactions are a chain of small, latency-bound requests (AddPartitionsToTxn, Produce,
        // EndTxn): send each at once instead of letting Nagle hold it for the previous ACK
        // (librdkafka leaves Nagle on by default).
        ("socket.nagle.disable", "true"),
        // Same key -> same partition as the Java client (downstream producers of the same keys agree).
        ("partitioner", "murmur2_random"),
        // Topics are checked (or created on purpose) by the sink, never by a stray metadata request.
        ("allow.auto.create.topics", "false"),
    ];
    for (key, value) in defaults {
        if !cfg.client.0.contains_key(key) {
            config.set(key, value);
        }
    }
    config
}

/// The `coercions` header of an event: its coercion records as a JSON array.
pub fn coercions_header(event: &ValidEvent) -> Cow<'static, str> {
    if event.coercions.is_empty() {
        Cow::Borrowed("[]")
    } else {
        Cow::Owned(serde_json::to_string(&event.coercions).unwrap_or_else(|_| "[]".to_owned()))
    }
}

/// The Kafka headers of one event (`docs/kafka.md` lists them), with its [`coercions_header`].
pub fn headers(record: &EventRecord, coercions: &str) -> OwnedHeaders {
    let event = &record.event;
    let received_at = record.received_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut body_sha256 = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let body_sha256 = match hex::encode_to_slice(record.body_sha256, &mut body_sha256) {
        Ok(()) => std::str::from_utf8(&body_sha256).unwrap_or_default(),
        Err(_) => "",
    };
    let mut headers = OwnedHeaders::new_with_capacity(10)
        .insert(Header { key: "event_type", value: Some(&*event.event_type) })
        .insert(Header { key: "schema_id", value: Some(event.schema.id.as_str()) })
        .insert(Header { key: "schema_version", value: Some(event.schema.version.as_str()) })
        .insert(Header { key: "coercions", value: Some(coercions) })
        .insert(Header { key: "received_at", value: Some(received_at.as_str()) })
        .insert(Header { key: "request_id", value: Some(record.request_id.as_str()) })
        .insert(Header { key: "body_sha256", value: Some(body_sha256) });
    if let Some(from) = &record.replayed_from {
        headers = headers.insert(Header { key: "replayed_from", value: Some(from.as_str()) });
    }
    let traceparent = record.trace.traceparent();
    headers = headers.insert(Header { key: "traceparent", value: Some(traceparent.as_str()) });
    if let Some(tracestate) = &record.trace.tracestate {
        headers = headers.insert(Header { key: "tracestate", value: Some(tracestate.as_str()) });
    }
    for (key, value) in super::origin::origin_headers(&record.origin) {
        headers = headers.insert(Header { key, value: Some(value) });
    }
    headers
}

/// The librdkafka records of a batch, in batch order: key = correlation id, value = canonical
/// JSON, headers from [`headers`]. The CPU a transaction spends on our side before librdkafka
/// (`benches/group_commit.rs` measures it).
pub fn assemble<'a>(records: &'a [OutRecord<'a>]) -> Vec<FutureRecord<'a, [u8], [u8]>> {
    records
        .iter()
        .map(|out| {
            let rec = out.record;
            FutureRecord::to(out.topic)
                .key(rec.event.correlation_id.as_bytes())
                .payload(rec.event.canonical_json.as_slice())
                .headers(headers(rec, out.coercions))
        })
        .collect()
}

/// An upper bound of an event's size as a Kafka record, the way librdkafka measures it against
/// `message.max.bytes` (key + value + every header's name and value with their length varints +
/// the record's own overhead). Also its share of `batch_max_bytes`.
pub fn record_size(record: &EventRecord, coercions: &str) -> usize {
    const PER_HEADER: usize = 10;
    const RECORD_OVERHEAD: usize = 64;
    let event = &record.event;
    let header_values = event.event_type.len()
        + event.schema.id.len()
        + event.schema.version.len()
        + coercions.len()
        + 32 // received_at, RFC 3339 with microseconds
        + record.request_id.len()
        + 64 // body_sha256, hex
        + record.replayed_from.as_ref().map_or(0, String::len)
        + 55 // traceparent
        + record.trace.tracestate.as_ref().map_or(0, String::len);
    let header_names = "event_type schema_id schema_version coercions received_at request_id body_sha256 \
                        replayed_from traceparent tracestate"
        .len();
    event.correlation_id.len()
        + event.canonical_json.len()
        + header_values
        + header_names
        + 10 * PER_HEADER
        + RECORD_OVERHEAD
        + super::origin::origin_headers_size(&record.origin)
}

/// The largest record the producer takes: the client's `message.max.bytes` (`[kafka.client]`),
/// else librdkafka's default of 1,000,000 bytes. A record above it is refused at once (and
/// dead-lettered by the pipeline) instead of failing its whole batch.
pub fn max_record_bytes(cfg: &KafkaConfig) -> usize {
    cfg.client.0.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(1_000_000)
}

/// The process's transactional producer.
pub struct TxProducer {
    inner: FutureProducer<BrokerErrors>,
    /// What librdkafka's error callback last reported (shared with the producer's context).
    broker_errors: BrokerErrors,
    /// Bound on each blocking call and on a batch's deliveries.
    call_timeout: Duration,
}

impl TxProducer {
    /// Creates the client for `transactional_id` (no network yet: librdkafka connects in the
    /// background).
    pub fn new(cfg: &KafkaConfig, transactional_id: &str) -> Result<TxProducer, KafkaError> {
        let broker_errors = BrokerErrors::default();
        let inner = producer_config(cfg, transactional_id).create_with_context(broker_errors.clone())?;
        Ok(TxProducer { inner, broker_errors, call_timeout: cfg.call_timeout() })
    }

    /// Registers the transactional id with its coordinator (fencing any older producer using it
    /// and aborting its open transaction). Blocks up to `timeout`.
    pub fn init(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.init_transactions(timeout)
    }

    /// `e` in words, followed by the last broker error (TLS, SASL) librdkafka reported meanwhile:
    /// a call waiting for an unreachable broker fails only with a timeout.
    pub fn explain(&self, e: &KafkaError) -> String {
        with_broker_error(describe(e), &self.broker_errors)
    }

    /// Which of `topics` the cluster does not have. Blocks up to `timeout` per topic.
    pub fn missing_topics(&self, topics: &[String], timeout: Duration) -> Result<Vec<String>, KafkaError> {
        let mut missing = Vec::new();
        for topic in topics {
            let metadata = self.inner.client().fetch_metadata(Some(topic), timeout)?;
            let known = metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
            if !known {
                missing.push(topic.clone());
            }
        }
        Ok(missing)
    }

    /// Runs one transaction holding `records`, answering how it ended. Once every delivery report
    /// is in, `before_commit` gets where each record landed (`None`: refused) and may veto the
    /// commit (`Err(why)`: the transaction is aborted). Records how long each stage took in
    /// `cxone_ingest_kafka_transaction_stage_seconds{stage}`.
    pub async fn transact<F, Fut>(&self, records: &[OutRecord<'_>], before_commit: F) -> TxnOutcome
    where
        F: FnOnce(Vec<Option<Landed>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut stages = StageClock::start();
        let budget_end = Instant::now() + self.call_timeout;
        if let Err(e) = self.inner.begin_transaction() {
            // begin_transaction is local: it fails only when the producer is in a state
            // (fatal error, transaction left open) that a new producer is the way out of.
            return TxnOutcome::Fatal(format!("begin_transaction: {}", describe(&e)));
        }
        stages.lap("begin");

        // Per record in batch order: filled with where it landed, or why it was refused.
        let mut results: Vec<Option<Result<Landed, Refusal>>> = Vec::with_capacity(records.len());
        let mut deliveries = Vec::with_capacity(records.len());
        for future_record in assemble(records) {
            match self.inner.send_result(future_record) {
                Ok(delivery) => {
                    deliveries.push((results.len(), delivery));
                    results.push(None);
                }
                Err((e, _)) => match record_refusal(&e) {
                    // Refused before it was queued: the transaction is untouched; the rest go on.
                    Some(reason) => results.push(Some(Err(Refusal { reason, detail: describe(&e) }))),
                    None => return self.fail(e, "produce").await,
                },
            }
        }
        stages.lap("produce");

        let (slots, futures): (Vec<usize>, Vec<_>) = deliveries.into_iter().unzip();
        let reports = match tokio::time::timeout_at(budget_end.into(), futures::future::join_all(futures))
            .await
        {
            Ok(reports) => reports,
            Err(_) => {
                return self.abort(format!("delivery reports not in within {:?}", self.call_timeout)).await;
            }
        };
        stages.lap("deliver");
        for (slot, report) in slots.into_iter().zip(reports) {
            match report {
                Ok(Ok(delivery)) => match Landed::reported(delivery.partition, delivery.offset) {
                    Some(at) => results[slot] = Some(Ok(at)),
                    None => {
                        let why = format!(
                            "delivery to partition {} reported no offset (the broker answered \
                             DUPLICATE_SEQUENCE_NUMBER): whether the record is stored is unknown",
                            delivery.partition
                        );
                        return self.abort(why).await;
                    }
                },
                Ok(Err((e, _))) => return self.fail(e, "delivery").await,
                Err(_cancelled) => return TxnOutcome::Fatal("producer dropped a delivery report".to_owned()),
            }
        }

        let landed = results.iter().map(|r| r.as_ref().and_then(|r| r.as_ref().ok().copied())).collect();
        if let Err(why) = before_commit(landed).await {
            return self.abort(format!("before commit: {why}")).await;
        }
        stages.lap("claims");
        self.wait_delivery_events_released();
        stages.lap("release");
        hold_first_commit_for_tests();
        let mut asked = false;
        loop {
            let remaining = budget_end.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                if !asked {
                    // The deliveries and the claims used the whole budget: the commit was never
                    // asked for, so the transaction surely did not commit. Abort it; the producer
                    // stays usable.
                    let why = format!("no time left to commit within {:?}", self.call_timeout);
                    return self.abort(why).await;
                }
                let why = format!("commit not answered within {:?}", self.call_timeout);
                return TxnOutcome::CommitPending(settled(results), why);
            }
            asked = true;
            match self.inner.commit_transaction(remaining) {
                Ok(()) => {
                    stages.lap("commit");
                    return TxnOutcome::Committed(settled(results));
                }
                Err(e) => match classify(&e) {
                    ErrorClass::Retriable => {
                        tracing::debug!(error = %describe(&e), "commit_transaction: retrying");
                    }
                    ErrorClass::Abortable | ErrorClass::TopicRefused => {
                        return self.abort(format!("commit: {}", describe(&e))).await;
                    }
                    ErrorClass::Fatal => {
                        return TxnOutcome::CommitUnknown(
                            settled(results),
                            format!("commit: {}", describe(&e)),
                        );
                    }
                },
            }
        }
    }

    /// Calls `commit_transaction` again (librdkafka allows it after a timeout) until the broker
    /// answers or `until` (the transaction timeout, counted from its begin) has passed. Blocks.
    pub async fn finish_commit(&self, until: Instant) -> CommitEnd {
        loop {
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return CommitEnd::Unknown(
                    "the commit was not answered within kafka.transaction_timeout_ms".to_owned(),
                );
            }
            let started = Instant::now();
            match self.inner.commit_transaction(remaining.min(self.call_timeout)) {
                Ok(()) => return CommitEnd::Committed,
                Err(e) => match classify(&e) {
                    ErrorClass::Retriable => {
                        tracing::debug!(error = %describe(&e), "commit_transaction (finishing): retrying");
                        // A call that fails at once must not spin.
                        if started.elapsed() < Duration::from_millis(50) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    ErrorClass::Abortable | ErrorClass::TopicRefused => {
                        let why = format!("commit: {}", describe(&e));
                        return match self.abort(why).await {
                            TxnOutcome::Aborted(why) | TxnOutcome::TopicRefused(why) => {
                                CommitEnd::Aborted(why)
                            }
                            // The commit failed abortably: it did not commit, even if the abort failed.
                            TxnOutcome::Fatal(why) => CommitEnd::Aborted(why),
                            other => CommitEnd::Unknown(format!("{other:?}")),
                        };
                    }
                    ErrorClass::Fatal => return CommitEnd::Unknown(format!("commit: {}", describe(&e))),
                },
            }
        }
    }

    /// Writes one record to `topic` in a transaction and aborts it: the start-up probe of
    /// whether the broker hides aborted records ([`super::readback`]). Where it landed, or why
    /// the probe could not run. Blocks up to about twice the call budget.
    pub async fn write_aborted_probe(&self, topic: &str, request_id: &str) -> Result<Landed, ProbeFailure> {
        self.inner
            .begin_transaction()
            .map_err(|e| ProbeFailure::ProducerUnusable(format!("begin_transaction: {}", describe(&e))))?;
        let headers = OwnedHeaders::new()
            .insert(Header { key: super::readback::PROBE_HEADER, value: Some("aborted on purpose") })
            .insert(Header { key: "request_id", value: Some(request_id) });
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .key(b"cxone-ingest-probe".as_slice())
            .payload(b"{}".as_slice())
            .headers(headers);
        let delivered = match self.inner.send_result(record) {
            Ok(delivery) => match tokio::time::timeout(self.call_timeout, delivery).await {
                Ok(Ok(Ok(d))) => {
                    Landed::reported(d.partition, d.offset).ok_or_else(|| "no offset reported".to_owned())
                }
                Ok(Ok(Err((e, _)))) => Err(format!("delivery: {}", describe(&e))),
                Ok(Err(_)) => Err("delivery report dropped".to_owned()),
                Err(_) => Err(format!("no delivery report within {:?}", self.call_timeout)),
            },
            Err((e, _)) => Err(format!("produce: {}", describe(&e))),
        };
        match self.abort("probe".to_owned()).await {
            TxnOutcome::Aborted(_) => delivered.map_err(ProbeFailure::NotRun),
            TxnOutcome::Fatal(why) => {
                Err(ProbeFailure::ProducerUnusable(format!("aborting the probe: {why}")))
            }
            other => Err(ProbeFailure::NotRun(format!("aborting the probe: {other:?}"))),
        }
    }

    /// rust-rdkafka's `commit_transaction` first flushes, and its flush polls in 100 ms slices
    /// whenever librdkafka still counts a message. Every report has been received at this point,
    /// but librdkafka releases a report's messages only after the polling thread has handed the
    /// whole report out, a few microseconds later: wait for that (bounded) so the flush is a no-op.
    fn wait_delivery_events_released(&self) {
        let until = Instant::now() + Duration::from_millis(20);
        while self.inner.in_flight_count() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// A produce or delivery error: abort, or give up on the producer when it is fatal.
    async fn fail(&self, e: KafkaError, step: &str) -> TxnOutcome {
        let detail = format!("{step}: {}", describe(&e));
        match classify(&e) {
            ErrorClass::Fatal => TxnOutcome::Fatal(detail),
            ErrorClass::TopicRefused => match self.abort(detail).await {
                TxnOutcome::Aborted(why) => TxnOutcome::TopicRefused(why),
                other => other,
            },
            ErrorClass::Abortable | ErrorClass::Retriable => self.abort(detail).await,
        }
    }

    /// Aborts the open transaction (librdkafka purges what was not delivered). `why` explains the abort.
    async fn abort(&self, why: String) -> TxnOutcome {
        let budget_end = Instant::now() + self.call_timeout;
        loop {
            let remaining = budget_end.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return TxnOutcome::Fatal(format!(
                    "{why}; abort not finished within {:?}",
                    self.call_timeout
                ));
            }
            match self.inner.abort_transaction(remaining) {
                Ok(()) => return TxnOutcome::Aborted(why),
                Err(e) => match classify(&e) {
                    ErrorClass::Retriable => tokio::task::yield_now().await,
                    ErrorClass::Abortable | ErrorClass::TopicRefused | ErrorClass::Fatal => {
                        return TxnOutcome::Fatal(format!("{why}; abort: {}", describe(&e)));
                    }
                },
            }
        }
    }
}

/// Test hook of the restart tests of unknown commit outcomes (tests/it/outcome.rs): with
/// `CXONE_INGEST_TEST_HOLD_FIRST_COMMIT_MS` set, the first transaction of the process that reaches
/// its commit (offsets already in its claims) waits that long first, after logging "test hook:
/// holding the commit", so that a test can stop the broker or kill the process at exactly that
/// point. Not a setting: never set it in production.
fn hold_first_commit_for_tests() {
    static HOLD: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let hold = HOLD.get_or_init(|| {
        std::env::var("CXONE_INGEST_TEST_HOLD_FIRST_COMMIT_MS").ok().and_then(|v| v.parse().ok())
    });
    let Some(hold) = *hold else { return };
    if !HELD.swap(true, std::sync::atomic::Ordering::AcqRel) {
        tracing::warn!(hold_ms = hold, "test hook: holding the commit");
        std::thread::sleep(Duration::from_millis(hold));
    }
}

/// Every record's result once the commit was asked for (a record without a report, which cannot
/// happen once every report is in, counts as refused).
fn settled(results: Vec<Option<Result<Landed, Refusal>>>) -> Vec<Result<Landed, Refusal>> {
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(Refusal { reason: "invalid_record", detail: "no delivery report".to_owned() })
            })
        })
        .collect()
}

/// Times the stages of one transaction into `cxone_ingest_kafka_transaction_stage_seconds`.
struct StageClock {
    last: Instant,
}

impl StageClock {
    fn start() -> StageClock {
        StageClock { last: Instant::now() }
    }

    /// Records the time since the previous lap as `stage`.
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        metrics::histogram!(m::KAFKA_TRANSACTION_STAGE, "stage" => stage)
            .record(now.duration_since(self.last).as_secs_f64());
        self.last = now;
    }
}

/// Creates `topics` with the configured partition count and the broker's default replication.
pub async fn create_topics(cfg: &KafkaConfig, topics: &[String], timeout: Duration) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(cfg).create().map_err(|e| format!("admin client: {e}"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| NewTopic::new(name, cfg.auto_create_partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = admin.create_topics(new_topics.iter(), &options).await.map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("creating topic {topic}: {code}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (durable chaos run): a success report without an offset must not count as landed.
    #[test]
    fn a_delivery_report_without_an_offset_is_not_a_landed_record() {
        assert_eq!(Landed::reported(2, -1), None);
        assert_eq!(Landed::reported(2, 0), Some(Landed { partition: 2, offset: 0 }));
        assert_eq!(Landed::reported(0, 41), Some(Landed { partition: 0, offset: 41 }));
    }
}
