//! Reading one topic's recent committed records, read-only: a `read_committed` consumer with its
//! partitions assigned (no group join, no offset commit), from `offsets_for_times(window start)`
//! to the high watermark each partition had when the read began, at most `limit` records; records
//! stamped before the window start are skipped (not every broker's time index finds it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::Window;
use crate::sinks::kafka::config::KafkaConfig;
use crate::sinks::kafka::readback::{PROBE_HEADER, read_committed_config};

/// How long a metadata, watermark or offset lookup may take before Kafka counts as unreachable.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the read may go without a record or an end-of-partition before it gives up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What was read from one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopicRead {
    /// The topic.
    pub topic: String,
    /// Its partitions.
    pub partitions: usize,
    /// Records judged.
    pub records: u64,
    /// Records of the service's start-up probe (an aborted transaction, header
    /// `cxone_ingest_probe`), shown by brokers that do not hide aborted records: not judged.
    pub probe_records_skipped: u64,
    /// Records read from the start offset but stamped before the window (brokers whose time index
    /// cannot place the window start, e.g. tansu, whose `offsets_for_times` answers offset 0):
    /// not judged.
    pub before_window_skipped: u64,
    /// Whether `--limit` stopped the read before the high watermark.
    pub limited: bool,
}

/// The consumer: the sink's connection and security settings + `read_committed`, never
/// committing anything.
fn consumer(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer> {
    read_committed_config(kafka, "cxone-ingest-what-if")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the Kafka consumer")
}

/// Reads `topic`'s committed records of `window` (blocking), calling `on_value` with each value, at
/// most `limit` of them, until `stop` is set. Unreachable brokers or a missing topic are errors.
pub fn read(
    kafka: &KafkaConfig,
    topic: &str,
    window: &Window,
    limit: Option<u64>,
    stop: &AtomicBool,
    on_value: &mut dyn FnMut(&[u8]),
) -> anyhow::Result<TopicRead> {
    let consumer = consumer(kafka)?;
    let unreachable =
        || format!("Kafka at {} is unreachable or does not answer for topic {topic}", kafka.brokers);
    let metadata = consumer.fetch_metadata(Some(topic), LOOKUP_TIMEOUT).with_context(unreachable)?;
    let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(found) if found.error().is_none() && !found.partitions().is_empty() => {
            found.partitions().iter().map(|p| p.id()).collect()
        }
        _ => anyhow::bail!("topic {topic} does not exist on {}", kafka.brokers),
    };
    let mut read =
        TopicRead { topic: topic.to_owned(), partitions: partitions.len(), ..TopicRead::default() };

    // Where each partition ends now: records arriving during the run are not read.
    let mut ends = HashMap::new();
    for &partition in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)
            .with_context(|| format!("{}: watermarks of partition {partition}", unreachable()))?;
        ends.insert(partition, high);
    }
    let mut times = TopicPartitionList::new();
    for &partition in &partitions {
        times.add_partition_offset(topic, partition, Offset::Offset(window.since.timestamp_millis()))?;
    }
    let starts = consumer
        .offsets_for_times(times, LOOKUP_TIMEOUT)
        .with_context(|| format!("{}: offsets for the window start", unreachable()))?;
    let mut assignment = TopicPartitionList::new();
    // Partitions with something to read, and the offset after which they are done.
    let mut open: HashMap<i32, i64> = HashMap::new();
    for element in starts.elements_for_topic(topic) {
        let partition = element.partition();
        let end = ends.get(&partition).copied().unwrap_or(0);
        let start = match element.offset() {
            Offset::Offset(offset) => Offset::Offset(offset),
            // No record at or after the window start.
            Offset::End => continue,
            // A broker without a time index: the window start is unknown, so read it all.
            _ => Offset::Beginning,
        };
        if matches!(start, Offset::Offset(offset) if offset >= end) {
            continue;
        }
        assignment.add_partition_offset(topic, partition, start)?;
        open.insert(partition, end);
    }
    if open.is_empty() {
        return Ok(read);
    }
    consumer.assign(&assignment).context("assigning the topic's partitions")?;

    let (since, until) = (window.since.timestamp_millis(), window.until.timestamp_millis());
    let mut last_progress = Instant::now();
    while !open.is_empty() && !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                anyhow::ensure!(
                    last_progress.elapsed() < STALL_TIMEOUT,
                    "{}: no record nor partition end for {} s",
                    unreachable(),
                    STALL_TIMEOUT.as_secs()
                );
            }
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let partition = message.partition();
                let Some(&end) = open.get(&partition) else { continue };
                let timestamp = message.timestamp().to_millis();
                // At or past the end taken at start, and stamped after the run began: written
                // since. (Not the offset alone: tansu reports a high watermark below the last
                // records of the partition's last batch.)
                if message.offset() >= end && timestamp.is_none_or(|at| at > until) {
                    open.remove(&partition);
                    continue;
                }
                // Before the window (a broker whose time index could not place the start).
                if timestamp.is_some_and(|at| at < since) {
                    read.before_window_skipped += 1;
                    continue;
                }
                let probe =
                    message.headers().is_some_and(|headers| headers.iter().any(|h| h.key == PROBE_HEADER));
                if probe {
                    read.probe_records_skipped += 1;
                    continue;
                }
                // One more than the limit: the read stops short of the end.
                if limit.is_some_and(|limit| read.records >= limit) {
                    read.limited = true;
                    break;
                }
                read.records += 1;
                on_value(message.payload().unwrap_or_default());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // The end a read_committed reader sees: the last stable offset (what follows is
                // an open transaction's, not committed yet) or the high watermark.
                last_progress = Instant::now();
                open.remove(&partition);
            }
            Some(Err(err)) => return Err(anyhow::anyhow!("{}: {err}", unreachable())),
        }
    }
    Ok(read)
}
