//! The data check: after a run, read the topic with `read_committed` and prove acknowledged = published, no duplicates.
//!
//! Start offsets are the high watermarks queried before the first request, so only this run's records are
//! read. Partitions are `assign`ed (no consumer-group join: slow on tansu). Records are matched to requests
//! by key (= correlation id, which is unique per request of a run); where the record carries a
//! `request_id` header it must name a request that was answered "published" for that correlation id, and a
//! `body_sha256` header must be the SHA-256 of the body that was sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

/// The topic and the offsets where this run's records begin.
pub struct KafkaCheck {
    brokers: String,
    topic: String,
    /// (partition, high watermark before the run).
    start: Vec<(i32, i64)>,
}

/// One record of the run's range, reduced to what the check compares.
#[derive(Debug)]
pub struct Record {
    pub key: Option<String>,
    pub request_id: Option<String>,
    pub body_sha256: Option<String>,
    /// `correlation_id` inside the value, when the value is a JSON object that has one.
    pub value_correlation_id: Option<String>,
}

/// What the run learnt about one correlation id from the HTTP answers.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// Request ids of the answers that said "published".
    pub published_request_ids: Vec<String>,
    /// Some answer said definitively "not published" (401, 4xx, 5xx, dead-lettered).
    pub refused: bool,
    /// Some request got no answer (timeout, connection error): its fate is unknown.
    pub unknown: bool,
    /// SHA-256 (hex) of the body sent under this correlation id.
    pub body_sha256: Option<String>,
}

/// The check's findings. `passed` is false on any loss, duplicate or foreign record.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub topic: String,
    pub records_read: u64,
    /// Distinct correlation ids answered "published" at least once.
    pub acknowledged: u64,
    /// Acknowledged ids found exactly once.
    pub found_once: u64,
    /// Acknowledged ids not in the topic: lost data.
    pub missing: u64,
    /// Ids found more than once (extra copies counted in `duplicate_records`).
    pub duplicated_ids: u64,
    pub duplicate_records: u64,
    /// Records of this run whose requests were all answered "not published": the answer lied.
    pub published_but_refused: u64,
    /// Records of this run whose requests got no answer (timeout): allowed, reported.
    pub published_unanswered: u64,
    /// Records whose key is not a correlation id of this run.
    pub foreign: u64,
    /// `request_id` header not among the ids answered "published" for that correlation id.
    pub request_id_mismatch: u64,
    /// `body_sha256` header differs from the SHA-256 of the body sent.
    pub body_hash_mismatch: u64,
    /// Records whose `body_sha256` header was compared with the body sent.
    pub body_hash_checked: u64,
    /// Value's `correlation_id` differs from the key.
    pub value_mismatch: u64,
    /// Records that carried a `request_id` header (0 for the seed, which sends none).
    pub with_request_id_header: u64,
    /// First few offending keys, to start an investigation.
    pub examples: Vec<String>,
    pub passed: bool,
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "cxone-load-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()?)
}

/// High watermark of every partition of `topic`, retried until the topic shows up in metadata.
fn watermarks(consumer: &BaseConsumer, topic: &str, deadline: Instant) -> anyhow::Result<Vec<(i32, i64)>> {
    loop {
        let attempt = (|| -> anyhow::Result<Vec<(i32, i64)>> {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
            let t = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .ok_or_else(|| anyhow::anyhow!("topic {topic} not in metadata"))?;
            if let Some(err) = t.error() {
                anyhow::bail!("topic {topic}: {:?}", RDKafkaErrorCode::from(err));
            }
            if t.partitions().is_empty() {
                anyhow::bail!("topic {topic} has no partitions");
            }
            t.partitions()
                .iter()
                .map(|p| {
                    let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
                    Ok((p.id(), high))
                })
                .collect()
        })();
        match attempt {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

impl KafkaCheck {
    /// Creates the topic if asked (already existing is fine) and records where the run's records will start.
    pub async fn prepare(
        brokers: &str,
        topic: &str,
        create_partitions: Option<i32>,
    ) -> anyhow::Result<KafkaCheck> {
        if let Some(partitions) = create_partitions {
            let admin: AdminClient<DefaultClientContext> =
                ClientConfig::new().set("bootstrap.servers", brokers).create()?;
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            for result in admin.create_topics([&new], &opts).await? {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => anyhow::bail!("creating topic {name}: {code:?}"),
                }
            }
        }
        let (brokers, topic) = (brokers.to_string(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let c = consumer(&brokers)?;
            let start = watermarks(&c, &topic, Instant::now() + Duration::from_secs(30))?;
            Ok(KafkaCheck { brokers, topic, start })
        })
        .await?
    }

    /// Reads every committed record from the start offsets to the current end of each partition.
    pub async fn read(self, timeout: Duration) -> anyhow::Result<(String, Vec<Record>)> {
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            let c = consumer(&self.brokers)?;
            let end = watermarks(&c, &self.topic, deadline)?;
            let mut list = TopicPartitionList::new();
            let mut pending = std::collections::HashSet::new();
            for &(partition, start) in &self.start {
                let high = end.iter().find(|(p, _)| *p == partition).map_or(start, |(_, h)| *h);
                if high > start {
                    list.add_partition_offset(&self.topic, partition, Offset::Offset(start))?;
                    pending.insert(partition);
                }
            }
            let mut records = Vec::new();
            if pending.is_empty() {
                return Ok((self.topic, records));
            }
            c.assign(&list)?;
            while !pending.is_empty() {
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "data check timed out after {timeout:?} with partitions {pending:?} not read to the end ({} records so far)",
                        records.len()
                    );
                }
                match c.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        pending.remove(&p);
                    }
                    Some(Err(e)) => anyhow::bail!("reading {}: {e}", self.topic),
                    Some(Ok(m)) => {
                        let mut record = Record {
                            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                            request_id: None,
                            body_sha256: None,
                            value_correlation_id: None,
                        };
                        if let Some(headers) = m.headers() {
                            for h in headers.iter() {
                                let name = h.key.to_ascii_lowercase().replace('-', "_");
                                let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                match name.as_str() {
                                    "request_id" => record.request_id = value,
                                    "body_sha256" => record.body_sha256 = value,
                                    _ => {}
                                }
                            }
                        }
                        if let Some(payload) = m.payload() {
                            record.value_correlation_id = serde_json::from_slice::<serde_json::Value>(payload)
                                .ok()
                                .and_then(|v| v.get("correlation_id").and_then(|c| c.as_str()).map(str::to_string));
                        }
                        records.push(record);
                    }
                }
            }
            Ok((self.topic, records))
        })
        .await?
    }
}

fn note(v: &mut Verdict, what: &str, key: &str) {
    if v.examples.len() < 10 {
        v.examples.push(format!("{what}: {key}"));
    }
}

/// Compares the records with the answers. `parse_key` turns a key into this run's sequence number.
pub fn judge(
    topic: String,
    records: &[Record],
    answers: &HashMap<u64, Answers>,
    parse_key: impl Fn(&str) -> Option<u64>,
) -> Verdict {
    let mut v = Verdict { topic, records_read: records.len() as u64, ..Verdict::default() };
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for r in records {
        let key = r.key.as_deref().unwrap_or("<no key>");
        if r.request_id.is_some() {
            v.with_request_id_header += 1;
        }
        let Some(seq) = r.key.as_deref().and_then(&parse_key) else {
            v.foreign += 1;
            note(&mut v, "foreign", key);
            continue;
        };
        *seen.entry(seq).or_default() += 1;
        let a = answers.get(&seq).cloned().unwrap_or_default();
        if a.published_request_ids.is_empty() {
            if a.unknown {
                v.published_unanswered += 1;
            } else {
                v.published_but_refused += 1;
                note(&mut v, "published but answered not-published (or never sent)", key);
            }
        }
        if r.request_id.as_ref().is_some_and(|rid| {
            !a.published_request_ids.is_empty() && !a.published_request_ids.iter().any(|p| p == rid)
        }) {
            v.request_id_mismatch += 1;
            note(&mut v, "request_id header names no published answer", key);
        }
        if let (Some(got), Some(sent)) = (&r.body_sha256, &a.body_sha256) {
            v.body_hash_checked += 1;
            if !got.eq_ignore_ascii_case(sent) {
                v.body_hash_mismatch += 1;
                note(&mut v, "body_sha256 differs from the body sent", key);
            }
        }
        if r.value_correlation_id.is_some() && r.value_correlation_id.as_deref() != r.key.as_deref() {
            v.value_mismatch += 1;
            note(&mut v, "value correlation_id differs from key", key);
        }
    }
    for (seq, a) in answers {
        if a.published_request_ids.is_empty() {
            continue;
        }
        v.acknowledged += 1;
        match seen.get(seq).copied().unwrap_or(0) {
            0 => {
                v.missing += 1;
                if v.examples.len() < 10 {
                    v.examples.push(format!("acknowledged but missing: seq {seq}"));
                }
            }
            1 => v.found_once += 1,
            _ => {}
        }
    }
    for (seq, n) in &seen {
        if *n > 1 {
            v.duplicated_ids += 1;
            v.duplicate_records += n - 1;
            if v.examples.len() < 10 {
                v.examples.push(format!("{n} copies: seq {seq}"));
            }
        }
    }
    v.passed = v.missing == 0
        && v.duplicated_ids == 0
        && v.published_but_refused == 0
        && v.foreign == 0
        && v.request_id_mismatch == 0
        && v.body_hash_mismatch == 0
        && v.value_mismatch == 0;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str) -> Record {
        Record { key: Some(key.into()), request_id: None, body_sha256: None, value_correlation_id: None }
    }

    fn published(rid: &str) -> Answers {
        Answers { published_request_ids: vec![rid.into()], ..Answers::default() }
    }

    #[test]
    fn passes_when_every_acknowledged_id_is_there_once() {
        let answers = HashMap::from([
            (1, published("r1")),
            (2, published("r2")),
            (3, Answers { refused: true, ..Default::default() }),
        ]);
        let v = judge("t".into(), &[rec("1"), rec("2")], &answers, |k| k.parse().ok());
        assert!(v.passed, "{v:?}");
        assert_eq!((v.acknowledged, v.found_once), (2, 2));
    }

    #[test]
    fn fails_on_loss_duplicates_lies_and_foreign_records() {
        let answers = HashMap::from([
            (1, published("r1")),
            (2, published("r2")),
            (3, Answers { refused: true, ..Default::default() }),
        ]);
        let v = judge("t".into(), &[rec("1"), rec("1"), rec("3"), rec("x")], &answers, |k| k.parse().ok());
        assert!(!v.passed);
        assert_eq!((v.missing, v.duplicated_ids, v.published_but_refused, v.foreign), (1, 1, 1, 1));
    }

    #[test]
    fn fails_when_the_request_id_header_names_another_request() {
        let answers = HashMap::from([(1, published("r1"))]);
        let mut r = rec("1");
        r.request_id = Some("r9".into());
        let v = judge("t".into(), &[r], &answers, |k| k.parse().ok());
        assert!(!v.passed);
        assert_eq!(v.request_id_mismatch, 1);
    }
}
