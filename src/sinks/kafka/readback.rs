//! Reading a record's offset back with `read_committed`, to learn whether the transaction that
//! wrote it committed once nobody can tell any more (the producer failed after asking to commit,
//! or the replica that owned it died), and the start-up probe that says whether the broker makes
//! that reading trustworthy.
//!
//! One offset decides it, without knowing the last stable offset in advance: a `read_committed`
//! consumer assigned at the offset returns the record there when it committed; it skips it
//! when it was aborted (the next record returned is further on, or the partition's end, which for a
//! `read_committed` reader is the last stable offset, lies beyond it); and it stops short of it
//! while the transaction is still open. An "aborted" verdict is read again from the start of the
//! partition before it counts ([`OutcomeReader::read`] says why). A broker that shows aborted
//! records to `read_committed` readers (tansu, librdkafka's mock cluster) would make an aborted
//! record read as committed: [`probe`] catches that at start, and read-back then stays off.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::config::KafkaConfig;
use crate::dedupe::claim::{CommitReader, ReadBackAnswer};
use crate::dedupe::store::Offsets;
use crate::metrics as m;

/// What reading one offset back found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// The record is there, with the request id it was written with: its transaction committed.
    Committed,
    /// The offset is below the last stable offset and not visible: its transaction aborted.
    Aborted,
    /// Not decided within the budget (the transaction is still open, or the broker is slow).
    Open,
}

/// One record to read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The `request_id` header the record was written with.
    pub request_id: String,
}

/// Whether read-back can be trusted on this broker, as the start-up probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBackMode {
    /// Not probed yet (no producer has been initialised).
    Unprobed,
    /// The broker hides aborted records from `read_committed` readers: read-back decides.
    On,
    /// It does not: an unknown outcome is published again.
    Off(String),
    /// The probe could not run or could not tell (the topic refused writes, the broker was slow):
    /// treated as `Off`, and probed again when the next producer is initialised.
    Unsure(String),
}

/// Reads offsets back; shared by the committers (their own unknown batches) and the dedupe
/// claims (another replica's abandoned claims).
pub struct OutcomeReader {
    /// The consumer settings: the producer's connection settings + `read_committed`.
    config: ClientConfig,
    mode: Mutex<ReadBackMode>,
}

/// How long after an "aborted" verdict the record is read again, from the start of its partition.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// The confirming read starts at the partition's first offset when at most this many offsets lie
/// before the record (a read of a few seconds at most); past that it starts at the record, as the
/// first read did.
const CONFIRM_FROM_START_WITHIN: i64 = 100_000;

/// Where a read starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadFrom {
    /// At the partition's first target.
    Target,
    /// At the partition's first offset (its low watermark), when within
    /// [`CONFIRM_FROM_START_WITHIN`] offsets of the first target.
    PartitionStart,
}

/// The header of the probe's record, so that a reader that does see aborted records can skip it.
pub const PROBE_HEADER: &str = "cxone_ingest_probe";

impl OutcomeReader {
    pub fn new(cfg: &KafkaConfig) -> OutcomeReader {
        let mut config = read_committed_config(cfg, "cxone-ingest-read-back");
        config.set("auto.offset.reset", "error");
        OutcomeReader { config, mode: Mutex::new(ReadBackMode::Unprobed) }
    }

    /// What the probe found.
    pub fn mode(&self) -> ReadBackMode {
        self.mode.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether read-back decides unknown outcomes.
    pub fn enabled(&self) -> bool {
        self.mode() == ReadBackMode::On
    }

    /// Records the probe's finding (logged, and the `cxone_ingest_kafka_read_back_enabled` gauge).
    pub fn set_mode(&self, mode: ReadBackMode) {
        let mut current = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        if *current == mode {
            return;
        }
        match &mode {
            ReadBackMode::On => tracing::info!(
                "the broker hides aborted records from read_committed readers: unknown commit outcomes \
                 are read back"
            ),
            ReadBackMode::Off(why) | ReadBackMode::Unsure(why) => tracing::warn!(
                reason = %why,
                "read-back of unknown commit outcomes is OFF: an event whose commit outcome is unknown \
                 is published again (a duplicate if that commit went through)"
            ),
            ReadBackMode::Unprobed => {}
        }
        metrics::gauge!(m::KAFKA_READ_BACK_ENABLED).set(if mode == ReadBackMode::On { 1.0 } else { 0.0 });
        *current = mode;
    }

    /// Reads every target back within `budget` (blocking: call it from a committer thread or
    /// `spawn_blocking`). The answers are in `targets`' order; `Err` when no consumer could be
    /// made or assigned.
    ///
    /// "Aborted" is the verdict that publishes an event again, so it is read again a second later
    /// (`CONFIRM_AFTER`), from the start of the record's partition, and the second read's verdict
    /// stands. A `read_committed` reader that starts in the middle of a partition trusts
    /// the broker to list only the aborted transactions that reach past its start; one that lists
    /// earlier ones too (seen on the noida-db emulator) makes librdkafka skip every later record of
    /// the same producer, committed ones included, until an abort marker that lies before the
    /// start. Read from the partition's first offset, the reader meets those markers.
    pub fn read(&self, targets: &[Target], budget: Duration) -> Result<Vec<ReadBack>, String> {
        let started = Instant::now();
        let result = self.read_inner(targets, budget, ReadFrom::Target).and_then(|mut answers| {
            let again: Vec<usize> = (0..answers.len()).filter(|&i| answers[i] == ReadBack::Aborted).collect();
            if again.is_empty() {
                return Ok(answers);
            }
            std::thread::sleep(CONFIRM_AFTER);
            let retargets: Vec<Target> = again.iter().map(|&i| targets[i].clone()).collect();
            for (i, later) in
                again.into_iter().zip(self.read_inner(&retargets, budget, ReadFrom::PartitionStart)?)
            {
                if later != ReadBack::Aborted {
                    tracing::warn!(
                        after_ms = started.elapsed().as_millis() as u64,
                        verdict = ?later,
                        "a record read back as aborted was not when read from its partition's start: \
                         the broker lists aborted transactions that ended before a read's start"
                    );
                }
                answers[i] = later;
            }
            Ok(answers)
        });
        m::observe(m::KAFKA_READ_BACK_DURATION, &[], started.elapsed().as_secs_f64());
        result
    }

    fn read_inner(
        &self,
        targets: &[Target],
        budget: Duration,
        from: ReadFrom,
    ) -> Result<Vec<ReadBack>, String> {
        let mut answers = vec![ReadBack::Open; targets.len()];
        if targets.is_empty() {
            return Ok(answers);
        }
        let deadline = Instant::now() + budget;
        let consumer: BaseConsumer = self.config.create().map_err(|e| format!("read-back consumer: {e}"))?;
        // Per partition: the targets still undecided, by offset (several records of a batch may
        // share a partition).
        let mut open: HashMap<(String, i32), BTreeMap<i64, Vec<usize>>> = HashMap::new();
        for (index, t) in targets.iter().enumerate() {
            open.entry((t.topic.clone(), t.partition)).or_default().entry(t.offset).or_default().push(index);
        }
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), offsets) in &open {
            let mut first = offsets.keys().next().copied().unwrap_or(0);
            if from == ReadFrom::PartitionStart {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let (low, _) = consumer
                    .fetch_watermarks(topic, *partition, remaining.max(Duration::from_millis(1)))
                    .map_err(|e| format!("read-back watermarks: {e}"))?;
                if first - low <= CONFIRM_FROM_START_WITHIN {
                    first = low.min(first);
                }
            }
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(first))
                .map_err(|e| format!("read-back assignment: {e}"))?;
        }
        consumer.assign(&assignment).map_err(|e| format!("read-back assignment: {e}"))?;

        while !open.values().all(BTreeMap::is_empty) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match consumer.poll(remaining.min(Duration::from_millis(100))) {
                None => {}
                Some(Ok(message)) => {
                    let key = (message.topic().to_owned(), message.partition());
                    let Some(waiting) = open.get_mut(&key) else { continue };
                    let at = message.offset();
                    // Every target before this record was skipped: aborted (or a control record).
                    let skipped: Vec<i64> = waiting.range(..at).map(|(offset, _)| *offset).collect();
                    for offset in skipped {
                        for index in waiting.remove(&offset).unwrap_or_default() {
                            answers[index] = ReadBack::Aborted;
                        }
                    }
                    if let Some(indexes) = waiting.remove(&at) {
                        let request_id = message
                            .headers()
                            .and_then(|h| h.iter().find(|h| h.key == "request_id").and_then(|h| h.value))
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        for index in indexes {
                            // Another request's record at this offset: not ours, so ours is not here.
                            answers[index] =
                                if request_id.as_deref() == Some(targets[index].request_id.as_str()) {
                                    ReadBack::Committed
                                } else {
                                    ReadBack::Aborted
                                };
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The end a read_committed reader sees is the last stable offset: what lies
                    // before it and was not returned was aborted; what lies at or after it is open.
                    let keys: Vec<(String, i32)> =
                        open.keys().filter(|(_, p)| *p == partition).cloned().collect();
                    for key in keys {
                        let Some(waiting) = open.get_mut(&key) else { continue };
                        if waiting.is_empty() {
                            continue;
                        }
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        let Ok((_, stable_end)) =
                            consumer.fetch_watermarks(&key.0, key.1, remaining.max(Duration::from_millis(1)))
                        else {
                            continue;
                        };
                        let decided: Vec<i64> =
                            waiting.range(..stable_end).map(|(offset, _)| *offset).collect();
                        for offset in decided {
                            for index in waiting.remove(&offset).unwrap_or_default() {
                                answers[index] = ReadBack::Aborted;
                            }
                        }
                    }
                }
                Some(Err(e)) => return Err(format!("reading back: {e}")),
            }
        }
        Ok(answers)
    }
}

/// The dedupe claims' view of the reader: reads an abandoned claim's record back off the
/// request's task (the read blocks), within the request's deadline and the call timeout.
pub struct ClaimReadBack {
    pub reader: Arc<OutcomeReader>,
    pub call_timeout: Duration,
}

#[async_trait::async_trait]
impl CommitReader for ClaimReadBack {
    async fn read_back(&self, offsets: &Offsets, request_id: &str, deadline: Instant) -> ReadBackAnswer {
        match self.reader.mode() {
            ReadBackMode::On => {}
            ReadBackMode::Off(_) | ReadBackMode::Unsure(_) => return ReadBackAnswer::Off,
            ReadBackMode::Unprobed => {
                return ReadBackAnswer::Undecided("Kafka has not been reached since start".to_owned());
            }
        }
        let budget = deadline.saturating_duration_since(Instant::now()).min(self.call_timeout);
        let target = Target {
            topic: offsets.topic.clone(),
            partition: offsets.partition,
            offset: offsets.offset,
            request_id: request_id.to_owned(),
        };
        let reader = Arc::clone(&self.reader);
        let read =
            tokio::task::spawn_blocking(move || reader.read(std::slice::from_ref(&target), budget)).await;
        match read {
            Ok(Ok(found)) => match found.first() {
                Some(ReadBack::Committed) => ReadBackAnswer::Committed,
                Some(ReadBack::Aborted) => ReadBackAnswer::Aborted,
                _ => ReadBackAnswer::Undecided("its transaction is still open".to_owned()),
            },
            Ok(Err(e)) => ReadBackAnswer::Undecided(e),
            Err(e) => ReadBackAnswer::Undecided(format!("read-back task failed: {e}")),
        }
    }
}

/// A consumer's settings for reading committed records at assigned offsets: the sink's
/// connection, security and client-wide properties + `read_committed`, end-of-partition events,
/// and nothing ever committed. `group` names the consumer in broker logs; partitions are assigned,
/// so the group is never joined (librdkafka only insists on having one).
pub(crate) fn read_committed_config(kafka: &KafkaConfig, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.client.0 {
        // Producer-only properties would make the consumer refuse to start.
        if is_consumer_property(key) {
            config.set(key, value);
        }
    }
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    config
}

/// Properties that mean something to a consumer: connection, security and client-wide settings.
/// Producer-only ones (`linger.ms`, `compression.type`, `message.max.bytes`' producer meaning,
/// batch settings) are left out.
fn is_consumer_property(key: &str) -> bool {
    const PREFIXES: [&str; 6] = ["security.", "ssl.", "sasl.", "socket.", "client.", "broker."];
    PREFIXES.iter().any(|p| key.starts_with(p))
        || matches!(
            key,
            "debug" | "metadata.max.age.ms" | "reconnect.backoff.ms" | "reconnect.backoff.max.ms"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_and_security_settings_reach_the_consumer() {
        for key in ["security.protocol", "sasl.password", "ssl.ca.location", "socket.timeout.ms", "client.id"]
        {
            assert!(is_consumer_property(key), "{key}");
        }
        for key in ["linger.ms", "compression.type", "batch.num.messages", "message.timeout.ms"] {
            assert!(!is_consumer_property(key), "{key}");
        }
    }
}
