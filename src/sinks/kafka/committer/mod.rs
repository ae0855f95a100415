//! The group committers: each gathers waiting events into a batch, runs one transaction per batch
//! and answers every waiter from that transaction's result. Each owns its own transactional
//! producer and that producer's lifecycle (connect, check topics, rebuild after fatal errors) and
//! runs on its own OS thread with a single-threaded runtime, so librdkafka's blocking calls never
//! stall the server's workers.
//!
//! The committers take turns at the one bounded queue ([`Intake`]): one gathers while the others
//! send or commit, so commits overlap instead of queueing behind each other. Every event is taken
//! by exactly one committer, so exactly-once holds per committer and hence per event.
//!
//! - `shared`: readiness and totals the sink reads.
//! - `unknown`: batches of unknown commit outcome read back, and the start-up probe.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::claims::{committed_states, write_offsets};
use super::config::KafkaConfig;
use super::error::{ErrorClass, classify};
use super::pending::Pending;
use super::producer::{self, CommitEnd, Landed, OutRecord, Refusal, TxProducer, TxnOutcome};
use super::readback::{OutcomeReader, ReadBackMode};
use crate::dedupe::redis::Swap;
use crate::metrics as m;
use crate::sinks::{Committed, Readiness, SinkError};

mod shared;
mod unknown;

pub(crate) use shared::Shared;
use unknown::Unresolved;

const SINK: &str = "kafka";

/// The queue of waiting events, taken in turns by the committers (the holder gathers a batch).
pub(crate) struct Intake {
    rx: mpsc::Receiver<Pending>,
    /// An event that did not fit the previous batch's byte limit: first of the next one.
    carry: Option<Pending>,
}

impl Intake {
    pub fn new(rx: mpsc::Receiver<Pending>) -> Arc<AsyncMutex<Intake>> {
        Arc::new(AsyncMutex::new(Intake { rx, carry: None }))
    }

    /// Answers every queued event "unavailable". False when the sink has closed and nothing is left.
    fn reject_all(&mut self, why: &str) -> bool {
        if let Some(p) = self.carry.take() {
            p.unavailable(why);
        }
        loop {
            match self.rx.try_recv() {
                Ok(p) => p.unavailable(why),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// The sink has closed and every queued event has been taken.
    fn finished(&self) -> bool {
        self.carry.is_none() && self.rx.is_closed() && self.rx.is_empty()
    }
}

/// The producer as far as it got.
enum ProducerState {
    /// None yet (start, or dropped after a fatal error).
    Absent,
    /// Created; `init_transactions` has not succeeded yet.
    Created(TxProducer),
    /// Transactions initialised; the topics are not known to exist yet.
    Initialised(TxProducer),
    /// Transactions initialised and topics checked: batches can run.
    Usable(TxProducer),
}

pub(crate) struct GroupCommitter {
    cfg: KafkaConfig,
    /// Which committer this is (`transactional_id` and readiness slot).
    index: usize,
    transactional_id: String,
    intake: Arc<AsyncMutex<Intake>>,
    shared: Arc<Shared>,
    producer: ProducerState,
    /// Set when a transaction failed because the topic refuses writes (authorization, deleted):
    /// not ready, and no batch is tried, until then; the reason is what `/readyz` shows.
    refused_until: Option<(Instant, String)>,
    /// Reads back the records of a batch whose commit outcome is unknown; runs the start-up probe.
    reader: Arc<OutcomeReader>,
    /// A batch whose producer failed after the commit was asked for: its claims stay pending until
    /// the next producer's `init_transactions` has ended that transaction and the records are read back.
    unresolved: Option<Unresolved>,
}

/// How long a committer stays not ready after the topic refused writes, before it tries again.
const TOPIC_REFUSED_PAUSE: Duration = Duration::from_secs(5);

impl GroupCommitter {
    pub fn new(
        cfg: KafkaConfig,
        index: usize,
        transactional_id: String,
        intake: Arc<AsyncMutex<Intake>>,
        shared: Arc<Shared>,
        first: TxProducer,
        reader: Arc<OutcomeReader>,
    ) -> Self {
        GroupCommitter {
            cfg,
            index,
            transactional_id,
            intake,
            shared,
            producer: ProducerState::Created(first),
            refused_until: None,
            reader,
            unresolved: None,
        }
    }

    /// Runs until the sink closes the queue and every queued event has been answered.
    pub async fn run(mut self) {
        loop {
            if !self.ensure_usable().await {
                break;
            }
            let Some(batch) = self.gather().await else { break };
            if self.shared.crash_requested.swap(false, Ordering::AcqRel) {
                // Test hook: a real panic on this thread, with a batch in hand.
                panic!("kafka committer {}: crash requested by a test", self.index);
            }
            self.commit(batch).await;
        }
        self.shared.set(self.index, Readiness::NotReady("kafka sink closed".to_owned()));
        if let Some(unresolved) = self.unresolved.take() {
            // Closed before a producer could end that transaction: the claims stay pending with
            // their offsets, for whoever claims those deliveries next to read back.
            let why = "kafka sink closed with the commit outcome unknown";
            tracing::warn!(events = unresolved.live.len(), "{why}: their dedupe claims stay pending");
            unresolved.live.into_iter().for_each(|p| p.completion.leave_unknown(why));
        }
        // Dropping the producer here (not on a runtime worker) is fine: this thread is ours.
        self.producer = ProducerState::Absent;
    }

    /// Brings the producer to `Usable`. Meanwhile queued events are answered "unavailable" when
    /// no other committer is usable either (otherwise they are left to the usable ones).
    /// Returns false when the sink closed before that happened.
    async fn ensure_usable(&mut self) -> bool {
        if let Some((until, why)) = self.refused_until.take() {
            self.not_ready(why);
            while Instant::now() < until {
                if !self.reject_queued() {
                    return false;
                }
                tokio::time::sleep(
                    until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)),
                )
                .await;
            }
            // Try again: the next batch tells whether the topic takes writes now.
            if matches!(self.producer, ProducerState::Usable(_)) {
                self.shared.set(self.index, Readiness::Ready);
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let call_timeout = self.cfg.call_timeout();
            let (next, progressed) = match std::mem::replace(&mut self.producer, ProducerState::Absent) {
                ProducerState::Usable(p) => {
                    self.producer = ProducerState::Usable(p);
                    return true;
                }
                ProducerState::Absent => match TxProducer::new(&self.cfg, &self.transactional_id) {
                    Ok(p) => (ProducerState::Created(p), true),
                    Err(e) => {
                        self.not_ready(format!("creating the Kafka producer: {e}"));
                        (ProducerState::Absent, false)
                    }
                },
                ProducerState::Created(p) => match p.init(call_timeout) {
                    Ok(()) => (ProducerState::Initialised(p), true),
                    Err(e) => {
                        let detail = p.explain(&e);
                        self.not_ready(format!("init_transactions against {}: {detail}", self.cfg.brokers));
                        if classify(&e) == ErrorClass::Fatal {
                            metrics::counter!(m::KAFKA_PRODUCER_REBUILDS, "reason" => "init").increment(1);
                            (ProducerState::Absent, false)
                        } else {
                            // Timed out (broker down) or retriable: librdkafka allows calling again.
                            (ProducerState::Created(p), false)
                        }
                    }
                },
                ProducerState::Initialised(p) => match self.check_topics(&p).await {
                    Ok(()) => {
                        // init_transactions has ended the previous producer's transaction: what
                        // it left unknown can be read back now.
                        self.resolve_unknown();
                        let probed =
                            if matches!(self.reader.mode(), ReadBackMode::Unprobed | ReadBackMode::Unsure(_))
                            {
                                self.probe(&p).await
                            } else {
                                true
                            };
                        if probed {
                            self.shared.set(self.index, Readiness::Ready);
                            (ProducerState::Usable(p), true)
                        } else {
                            // The probe left the producer unusable: a new one, without probing.
                            metrics::counter!(m::KAFKA_PRODUCER_REBUILDS, "reason" => "probe").increment(1);
                            (ProducerState::Absent, true)
                        }
                    }
                    Err(why) => {
                        self.not_ready(why);
                        (ProducerState::Initialised(p), false)
                    }
                },
            };
            self.producer = next;
            if matches!(self.producer, ProducerState::Usable(_)) {
                return true;
            }
            if !self.reject_queued() {
                return false;
            }
            if !progressed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    /// Every configured topic exists (created when `auto_create_topics`), or why not.
    async fn check_topics(&self, p: &TxProducer) -> Result<(), String> {
        let topics = self.cfg.all_topics();
        let timeout = self.cfg.call_timeout();
        let missing =
            p.missing_topics(&topics, timeout).map_err(|e| format!("checking topics: {}", p.explain(&e)))?;
        if missing.is_empty() {
            return Ok(());
        }
        if !self.cfg.auto_create_topics {
            return Err(format!(
                "topic(s) {} do not exist: create them, or set kafka.auto_create_topics = true",
                missing.join(", ")
            ));
        }
        producer::create_topics(&self.cfg, &missing, timeout).await?;
        tracing::info!(topics = %missing.join(","), "created kafka topics");
        match p.missing_topics(&topics, timeout) {
            Ok(still) if still.is_empty() => Ok(()),
            Ok(still) => Err(format!("topic(s) {} still missing after creating them", still.join(", "))),
            Err(e) => Err(format!("checking topics: {e}")),
        }
    }

    fn not_ready(&self, why: String) {
        self.shared.set(self.index, Readiness::NotReady(why));
    }

    /// While this committer cannot commit: answers every queued event "unavailable" if no
    /// committer can (publish refuses new events then anyway). False when the sink has closed
    /// and nothing is left to answer.
    fn reject_queued(&mut self) -> bool {
        // Another committer holding the intake is gathering: it sees the close itself.
        let Ok(mut intake) = self.intake.try_lock() else { return true };
        match self.shared.readiness() {
            Readiness::NotReady(why) => intake.reject_all(&why),
            Readiness::Ready => !intake.finished(),
        }
    }

    /// Takes the intake (waiting for its turn), waits for the first event, then gathers more
    /// until a limit, the linger (counted from the oldest event) or the earliest deadline in the
    /// batch. None when the sink has closed and the queue is drained.
    async fn gather(&mut self) -> Option<Vec<Pending>> {
        let mut intake = self.intake.lock().await;
        let first = match intake.carry.take() {
            Some(p) => p,
            None => intake.rx.recv().await?,
        };
        let started = Instant::now();
        let linger_end = first.enqueued_at + self.cfg.linger();
        let mut earliest = first.deadline;
        let mut bytes = first.size;
        let mut batch = Vec::with_capacity(self.cfg.batch_max_events.min(256));
        batch.push(first);
        while batch.len() < self.cfg.batch_max_events && bytes < self.cfg.batch_max_bytes {
            let next = match intake.rx.try_recv() {
                Ok(p) => p,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let until = linger_end.min(earliest);
                    if Instant::now() >= until {
                        break;
                    }
                    match tokio::time::timeout_at(until.into(), intake.rx.recv()).await {
                        Ok(Some(p)) => p,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            if bytes + next.size > self.cfg.batch_max_bytes {
                intake.carry = Some(next);
                break;
            }
            bytes += next.size;
            earliest = earliest.min(next.deadline);
            batch.push(next);
        }
        drop(intake);
        m::observe(m::KAFKA_TRANSACTION_STAGE, &[("stage", "gather")], started.elapsed().as_secs_f64());
        Some(batch)
    }

    /// Runs one transaction for the batch and answers every waiter.
    async fn commit(&mut self, batch: Vec<Pending>) {
        let now = Instant::now();
        let (live, expired): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| p.deadline > now);
        for p in expired {
            p.complete(Err(SinkError::DeadlineExceeded { sink: SINK }));
        }
        if live.is_empty() {
            return;
        }
        let ProducerState::Usable(producer) = &self.producer else {
            let why = "kafka producer not ready".to_owned();
            live.into_iter().for_each(|p| p.unavailable(&why));
            return;
        };
        m::observe(m::KAFKA_BATCH_EVENTS, &[], live.len() as f64);
        let records: Vec<OutRecord<'_>> = live
            .iter()
            .map(|p| OutRecord { topic: &p.topic, record: &p.record, coercions: &p.coercions })
            .collect();
        let started = Instant::now();
        // Offsets written into the shared claims before the commit: (index in `live`, the write,
        // whether it surely landed: else its answer was lost and it may have).
        let mut offsets_written: Vec<(usize, Swap, bool)> = Vec::new();
        let outcome = {
            let (batch, written) = (&live, &mut offsets_written);
            producer.transact(&records, move |landed| write_offsets(batch, landed, written)).await
        };
        drop(records);
        let mut live = live;
        for (index, swap, landed) in &offsets_written {
            if let Some(ticket) = live.get_mut(*index).and_then(|p| p.completion.ticket.as_mut()) {
                if *landed {
                    ticket.swapped(swap);
                } else {
                    ticket.maybe_swapped(swap);
                }
            }
        }
        let outcome = match outcome {
            TxnOutcome::CommitPending(landed, why) => {
                // The commit may still go through: call it again until the broker answers or the
                // transaction timeout has passed. Its requests are answered 503 at their deadline
                // meanwhile; their claims stay pending, so a retry waits (same replica: the local
                // claim; another replica: the shared claim) instead of publishing it again.
                tracing::warn!(events = live.len(), reason = %why, "kafka commit outlasted its budget; finishing it");
                self.not_ready(format!(
                    "finishing a Kafka commit that outlasted kafka.call_timeout_ms: {why}"
                ));
                let until = started + self.cfg.transaction_timeout();
                let end = producer.finish_commit(until).await;
                self.shared.set(self.index, Readiness::Ready);
                match end {
                    CommitEnd::Committed => {
                        tracing::info!(events = live.len(), "the late kafka commit went through");
                        metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "committed_late").increment(1);
                        return self.answer_committed(live, landed, started, false);
                    }
                    CommitEnd::Aborted(why) => TxnOutcome::Aborted(why),
                    CommitEnd::Unknown(why) => TxnOutcome::CommitUnknown(landed, why),
                }
            }
            other => other,
        };
        match outcome {
            TxnOutcome::Committed(landed) => self.answer_committed(live, landed, started, true),
            TxnOutcome::Aborted(why) => {
                metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "aborted").increment(1);
                self.shared.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(events = live.len(), reason = %why, "kafka transaction aborted");
                let why = format!("transaction aborted: {why}");
                live.into_iter().for_each(|p| p.unavailable(&why));
            }
            TxnOutcome::TopicRefused(why) => {
                metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "aborted").increment(1);
                self.shared.aborted.fetch_add(1, Ordering::Relaxed);
                tracing::error!(events = live.len(), reason = %why, "kafka topic refuses writes; not ready");
                let why = format!("the topic refuses writes: {why}");
                // Not ready before anyone is answered, so a sender's next look at /readyz agrees.
                self.not_ready(why.clone());
                self.refused_until = Some((Instant::now() + TOPIC_REFUSED_PAUSE, why.clone()));
                live.into_iter().for_each(|p| p.unavailable(&why));
            }
            TxnOutcome::Fatal(why) => {
                // The commit was never asked for: nothing of the batch committed.
                metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "failed").increment(1);
                self.rebuild(&why);
                let why = format!("kafka producer failed: {why}");
                live.into_iter().for_each(|p| p.unavailable(&why));
            }
            TxnOutcome::CommitUnknown(landed, why) | TxnOutcome::CommitPending(landed, why) => {
                metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "unknown").increment(1);
                self.rebuild(&why);
                let answer = format!("kafka commit outcome unknown: {why}");
                for p in &mut live {
                    p.answer_unavailable_now(&answer);
                }
                tracing::warn!(
                    events = live.len(),
                    "holding the dedupe claims of a batch of unknown commit outcome until a new producer \
                     has ended its transaction"
                );
                self.unresolved = Some(Unresolved { live, landed });
            }
        }
    }

    /// Drops the producer after a fatal error: not ready until a new one is initialised.
    fn rebuild(&mut self, why: &str) {
        metrics::counter!(m::KAFKA_PRODUCER_REBUILDS, "reason" => "fatal").increment(1);
        self.shared.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::error!(reason = %why, "kafka producer unusable; rebuilding it");
        self.not_ready(format!("rebuilding the Kafka producer after: {why}"));
        self.producer = ProducerState::Absent;
    }

    /// Answers a committed batch (its commit returned): every waiter at once, the committed states
    /// of its shared claims written in the background (one round trip). The guarantee does not
    /// wait for them: until they land the claims are pending with offsets, which a repeat on
    /// another replica waits on while this owner is alive, and this replica's own table answers.
    fn answer_committed(
        &self,
        mut live: Vec<Pending>,
        landed: Vec<Result<Landed, Refusal>>,
        started: Instant,
        on_time: bool,
    ) {
        if on_time {
            m::observe(m::KAFKA_COMMIT_DURATION, &[], started.elapsed().as_secs_f64());
            m::count(m::KAFKA_TRANSACTIONS, &[("outcome", "committed")], 1);
        }
        m::count(m::KAFKA_EVENTS, &[], live.len() as u64);
        self.shared.transactions.fetch_add(1, Ordering::Relaxed);
        self.shared.events.fetch_add(live.len() as u64, Ordering::Relaxed);
        let results: Vec<_> = live.iter().zip(landed).map(|(p, result)| committed_at(p, result)).collect();
        if let Some(states) = committed_states(&mut live, &results) {
            states.write_in_background();
        }
        for (p, result) in live.into_iter().zip(results) {
            let result = match result {
                Ok(committed) => Ok(committed),
                Err(refusal) => Err(SinkError::Refused {
                    sink: SINK,
                    reason: refusal.reason,
                    detail: format!("librdkafka refused the record: {}", refusal.detail),
                }),
            };
            p.complete(result);
        }
    }
}

/// Where a committed record of the batch is, as the answer to its request.
pub(super) fn committed_at(p: &Pending, landed: Result<Landed, Refusal>) -> Result<Committed, Refusal> {
    landed.map(|at| Committed {
        topic: p.topic.to_string(),
        partition: at.partition,
        offset: at.offset,
        duplicate_of: None,
    })
}
