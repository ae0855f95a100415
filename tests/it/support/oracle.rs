//! The commit/abort oracle: reads a topic's raw log with the Kafka protocol itself (a
//! `read_uncommitted` Fetch) and tells, for every data record, whether its transaction
//! committed, aborted or is still open, from the transaction markers the broker wrote. Works on
//! any broker that writes markers (tansu, noida-db, Kafka), whether or not its `read_committed`
//! hides aborted records (tansu's does not: docs/stack.md).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::kafka::KafkaRecord;

/// Fetch v4: the oldest version this crate speaks, with `isolation_level` and topic names (no
/// topic ids, no flexible encoding), so every broker here answers it.
const FETCH_VERSION: i16 = 4;
/// Read uncommitted: the whole log, aborted and open transactions included.
const READ_UNCOMMITTED: i8 = 0;
/// Control record types (the key of a control record: version i16, type i16).
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;
/// A record batch's header: base offset (8), length (4) ... last offset delta at byte 23.
const BATCH_LENGTH_AT: usize = 8;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BATCH_LOG_OVERHEAD: usize = 12;

/// What became of the transaction a record was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnOutcome {
    /// A COMMIT marker of its producer follows it on its partition, or it is not transactional.
    Committed,
    /// An ABORT marker of its producer follows it.
    Aborted,
    /// No marker of its producer follows it (yet): invisible to read_committed readers.
    Open,
}

/// One data record of the log and the outcome of its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    /// Header values as UTF-8 (lossy); the service writes `request_id`, `body_sha256`, ...
    pub headers: BTreeMap<String, String>,
    pub producer_id: i64,
    pub transactional: bool,
    pub outcome: TxnOutcome,
    /// The offset of the marker that ended its transaction (`None`: open or not transactional):
    /// records with the same partition and marker were one transaction there.
    pub marker_offset: Option<i64>,
}

impl OracleRecord {
    /// The `request_id` header (every record the sink writes has one).
    pub fn request_id(&self) -> &str {
        self.headers.get("request_id").map_or("", String::as_str)
    }

    /// The record as the librdkafka readers return it (without its outcome).
    pub fn to_kafka_record(&self) -> KafkaRecord {
        KafkaRecord {
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// The whole log of `topic` (partitions `0..partitions`) at `brokers` (the first address),
/// every data record classified by the marker that follows it. Reads each partition from
/// offset 0 up to the high watermark it reports; fails on a broker error or a timeout.
pub async fn oracle_read(brokers: &str, topic: &str, partitions: i32) -> Result<Vec<OracleRecord>> {
    let addr = brokers.split(',').next().context("no broker address")?;
    let mut conn = Connection::open(addr).await?;
    let mut out = Vec::new();
    for partition in 0..partitions {
        let log = conn.read_partition(topic, partition).await?;
        out.extend(classify(partition, log));
    }
    Ok(out)
}

/// [`oracle_read`] that panics with the reason: for tests.
pub async fn oracle_read_or_panic(brokers: &str, topic: &str, partitions: i32) -> Vec<OracleRecord> {
    oracle_read(brokers, topic, partitions)
        .await
        .unwrap_or_else(|e| panic!("oracle: reading {topic} at {brokers}: {e:#}"))
}

/// [`oracle_read_or_panic`], read again until no record is open or `settle` has passed (a broker
/// may answer EndTxn before its markers are in the partitions; a transaction the broker never
/// ends stays open, and its records are returned as [`TxnOutcome::Open`]).
pub async fn oracle_read_settled(
    brokers: &str,
    topic: &str,
    partitions: i32,
    settle: Duration,
) -> Vec<OracleRecord> {
    let deadline = std::time::Instant::now() + settle;
    loop {
        let records = oracle_read_or_panic(brokers, topic, partitions).await;
        if std::time::Instant::now() >= deadline || records.iter().all(|r| r.outcome != TxnOutcome::Open) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The records of `topic` whose transaction committed (decided by the markers, not by the
/// broker's `read_committed`, which on tansu shows aborted records too), in partition and
/// offset order.
pub async fn oracle_committed_records(brokers: &str, topic: &str, partitions: i32) -> Vec<KafkaRecord> {
    oracle_read_settled(brokers, topic, partitions, Duration::from_secs(10))
        .await
        .iter()
        .filter(|r| r.outcome == TxnOutcome::Committed)
        .map(OracleRecord::to_kafka_record)
        .collect()
}

/// One record of a partition's raw log, in offset order, control records included.
struct RawRecord {
    offset: i64,
    producer_id: i64,
    transactional: bool,
    /// `Some(type)` for a control record.
    control: Option<i16>,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: BTreeMap<String, String>,
}

/// Each data record with the outcome of the next marker of its producer id on the partition.
fn classify(partition: i32, log: Vec<RawRecord>) -> Vec<OracleRecord> {
    let mut out: Vec<OracleRecord> = Vec::new();
    // Indexes into `out` of the records of each producer's transaction still without a marker.
    let mut open: HashMap<i64, Vec<usize>> = HashMap::new();
    for r in log {
        if let Some(control) = r.control {
            let outcome = match control {
                CONTROL_COMMIT => TxnOutcome::Committed,
                CONTROL_ABORT => TxnOutcome::Aborted,
                _ => continue, // other control records (e.g. leader changes) end no transaction
            };
            for i in open.remove(&r.producer_id).unwrap_or_default() {
                out[i].outcome = outcome;
                out[i].marker_offset = Some(r.offset);
            }
            continue;
        }
        let outcome = if r.transactional { TxnOutcome::Open } else { TxnOutcome::Committed };
        if r.transactional {
            open.entry(r.producer_id).or_default().push(out.len());
        }
        out.push(OracleRecord {
            partition,
            offset: r.offset,
            key: r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
            value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
            headers: r.headers,
            producer_id: r.producer_id,
            transactional: r.transactional,
            outcome,
            marker_offset: None,
        });
    }
    out
}

/// A Kafka protocol connection: length-prefixed request/response frames.
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    async fn open(addr: &str) -> Result<Connection> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Connection { stream, correlation_id: 0 })
    }

    /// Sends `request` (API `api_key`) at `version` and decodes its response.
    async fn call<Req, Resp>(&mut self, api_key: ApiKey, request: &Req, version: i16) -> Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("cxone-ingest-oracle")));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, Req::header_version(version))?;
        request.encode(&mut frame, version)?;
        let length = i32::try_from(frame.len())?;
        let io = async {
            self.stream.write_all(&length.to_be_bytes()).await?;
            self.stream.write_all(&frame).await?;
            let length = self.stream.read_i32().await?;
            let mut answer = vec![0u8; usize::try_from(length)?];
            self.stream.read_exact(&mut answer).await?;
            anyhow::Ok(answer)
        };
        let answer =
            tokio::time::timeout(Duration::from_secs(30), io).await.context("no answer within 30 s")??;
        let mut answer = Bytes::from(answer);
        let response_header = ResponseHeader::decode(&mut answer, Resp::header_version(version))?;
        ensure!(
            response_header.correlation_id == self.correlation_id,
            "answer to request {} for request {}",
            response_header.correlation_id,
            self.correlation_id
        );
        Resp::decode(&mut answer, version)
    }

    /// Every record of one partition from offset 0 to its high watermark.
    async fn read_partition(&mut self, topic: &str, partition: i32) -> Result<Vec<RawRecord>> {
        let mut log = Vec::new();
        let mut offset = 0i64;
        let mut empty_answers = 0;
        for _round in 0..100_000 {
            let request = FetchRequest::default()
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_max_bytes(32 << 20)
                .with_isolation_level(READ_UNCOMMITTED)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(16 << 20),
                        ]),
                ]);
            let response: FetchResponse = self.call(ApiKey::Fetch, &request, FETCH_VERSION).await?;
            ensure!(response.error_code == 0, "Fetch error {}", response.error_code);
            let data = response
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == partition)
                .with_context(|| format!("no partition {partition} of {topic} in the Fetch answer"))?;
            ensure!(data.error_code == 0, "Fetch {topic}/{partition}: error code {}", data.error_code);
            let high_watermark = data.high_watermark;
            if offset >= high_watermark {
                return Ok(log);
            }
            let before = offset;
            let mut bytes = data.records.clone().unwrap_or_default();
            // A Fetch answer may end with a partial batch: decode only whole ones.
            while bytes.len() >= BATCH_LOG_OVERHEAD {
                let length = usize::try_from((&bytes[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]).get_i32())?;
                if bytes.len() < BATCH_LOG_OVERHEAD + length {
                    break;
                }
                let mut batch = bytes.split_to(BATCH_LOG_OVERHEAD + length);
                let base_offset = (&batch[..8]).get_i64();
                let last_offset_delta = (&batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]).get_i32();
                let next = base_offset + i64::from(last_offset_delta) + 1;
                if next <= offset {
                    continue; // a batch before the fetch offset (brokers answer whole batches)
                }
                let set = RecordBatchDecoder::decode(&mut batch)
                    .with_context(|| format!("decoding the batch at {topic}/{partition}@{base_offset}"))?;
                for r in set.records {
                    if r.offset < offset {
                        continue;
                    }
                    let control = if r.control {
                        let mut key = r.key.clone().context("a control record without a key")?;
                        ensure!(key.len() >= 4, "a control record key of {} bytes", key.len());
                        let _version = key.get_i16();
                        Some(key.get_i16())
                    } else {
                        None
                    };
                    log.push(RawRecord {
                        offset: r.offset,
                        producer_id: r.producer_id,
                        transactional: r.transactional,
                        control,
                        key: r.key,
                        value: r.value,
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                let v = v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
                                (k.to_string(), v.unwrap_or_default())
                            })
                            .collect(),
                    });
                }
                offset = next;
            }
            if offset == before {
                // Nothing at this offset although the high watermark is beyond it: asked a few
                // times, it is a hole in the log (tansu's durable storage can leave one after a
                // SIGKILL: an offset counted but its batch never stored). Step over it; a record
                // acknowledged there shows up as missing in the accounting.
                empty_answers += 1;
                if empty_answers >= 3 {
                    offset += 1;
                    empty_answers = 0;
                }
            } else {
                empty_answers = 0;
            }
        }
        bail!("{topic}/{partition}: still not at the high watermark after 100,000 fetches")
    }
}

/// How many transactions ended with an ABORT marker (per partition: a transaction over three
/// partitions counts three times).
pub fn oracle_aborted_markers(records: &[OracleRecord]) -> usize {
    let ended: std::collections::HashSet<(i32, i64)> = records
        .iter()
        .filter(|r| r.outcome == TxnOutcome::Aborted)
        .filter_map(|r| Some((r.partition, r.marker_offset?)))
        .collect();
    ended.len()
}

/// Counts of records by outcome.
pub fn oracle_counts(records: &[OracleRecord]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let name = match r.outcome {
            TxnOutcome::Committed => "committed",
            TxnOutcome::Aborted => "aborted",
            TxnOutcome::Open => "open",
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}
