//! Where the local stack is (scripts/start-stack; docs/stack.md) and small clients for it.
//! Addresses come from the environment `.stack/env` exports, with the scripts' defaults, so tests
//! work with or without `source .stack/env`; a test that needs a server and finds its port closed
//! says so ([`require`]).

use std::time::Duration;

use super::kafka::kafka_read_committed;
use super::{poll_until, unique};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

fn stack_var(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// The broker the service and most tests use: `CXONE_INGEST_KAFKA_BROKERS`
/// (the fast memory-storage tansu unless `CXONE_STACK_KAFKA_STORAGE=s3`).
pub fn stack_kafka_brokers() -> String {
    require(
        "Kafka broker (tansu, memory storage)",
        stack_var("CXONE_INGEST_KAFKA_BROKERS", "127.0.0.1:19092"),
    )
}

/// The durable broker (tansu, s3 storage in the kafka-store; survives broker restarts).
pub fn stack_durable_kafka_brokers() -> String {
    require("durable Kafka broker", stack_var("CXONE_STACK_DURABLE_KAFKA_BROKERS", "127.0.0.1:19093"))
}

/// The broker whose `read_committed` hides records of aborted transactions (noida-db; tansu
/// shows them): `CXONE_STACK_FILTERING_KAFKA_BROKERS`.
pub fn stack_filtering_kafka_brokers() -> String {
    require(
        "aborts-filtering Kafka broker (noida-db, kafka-filtering)",
        stack_var("CXONE_STACK_FILTERING_KAFKA_BROKERS", "127.0.0.1:19094"),
    )
}

pub fn stack_s3_endpoint() -> String {
    require("S3 server (garage)", stack_var("CXONE_INGEST_S3_ENDPOINT", "http://127.0.0.1:13900"))
}

/// `addr`, once something answers there; otherwise the test stops at once saying which server of
/// the local stack is missing and how to start it (instead of failing later with a timeout).
/// Checked once per address per test run.
pub fn require(what: &str, addr: String) -> String {
    static CHECKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if !checked.contains(&addr) {
        assert!(
            addr.split(',').any(stack_port_open),
            "this test needs the local stack's {what} at {addr}, and nothing answers there: \
             start the stack with scripts/start-stack (scripts/test does it for you)"
        );
        checked.push(addr.clone());
    }
    addr
}

/// The stack's dead-letter bucket under `prefix`, as `replay` reads it.
pub fn stack_dead_letter_store(prefix: &str) -> cxone_ingest::replay::DeadLetterStore {
    cxone_ingest::replay::DeadLetterStore {
        client: stack_s3_client(),
        bucket: stack_s3_bucket(),
        prefix: prefix.to_owned(),
    }
}

/// The dead-letter bucket start-stack creates.
pub fn stack_s3_bucket() -> String {
    stack_var("CXONE_INGEST_S3_BUCKET", "cxone-dead-letters")
}

/// The fixed test key (key id, secret) start-stack imports into garage.
pub fn stack_s3_credentials() -> (String, String) {
    (
        stack_var("AWS_ACCESS_KEY_ID", "GK11aa22bb33cc44dd55ee66ff"),
        stack_var(
            "AWS_SECRET_ACCESS_KEY",
            "23e1cd09cf28c0750a5d18cd18174727f277c1fbab419f19373c5ba227e72cd8",
        ),
    )
}

pub fn stack_s3_region() -> String {
    stack_var("AWS_REGION", "garage")
}

/// An S3 client for the local garage (path-style, SigV4) with the given key.
pub fn stack_s3_client_with(key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(stack_s3_region()))
        .endpoint_url(stack_s3_endpoint())
        .credentials_provider(Credentials::new(key_id, secret, None, None, "cxone-stack-test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An S3 client for the local garage with the stack's test key.
pub fn stack_s3_client() -> aws_sdk_s3::Client {
    let (id, secret) = stack_s3_credentials();
    stack_s3_client_with(&id, &secret)
}

/// True when something accepts TCP connections at `host:port` (or `http://host:port`).
pub fn stack_port_open(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .is_some_and(|sa| std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(500)).is_ok())
}

/// Runs `scripts/stack-ctl ACTION COMPONENT` (component: garage | kafka |
/// kafka-durable; action: stop | start | restart | kill | pause | resume) and
/// panics with its output if it fails. `start` returns once the component
/// answers again. Blocking: call it from a multi-threaded runtime or
/// `spawn_blocking`. Only tests marked `#[ignore = "restart: ..."]` may call
/// it: scripts/test runs exactly those alone, serially, after the rest.
pub fn stack_ctl(action: &str, component: &str) {
    let ctl = stack_var("CXONE_STACK_CTL", concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack-ctl"));
    let out = std::process::Command::new("bash")
        .arg(&ctl)
        .args([action, component])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {ctl}: {e}"));
    assert!(
        out.status.success(),
        "stack-ctl {action} {component} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates `topic` with `partitions` partitions through the admin API
/// (CreateTopics), waiting until the broker's metadata shows all of them.
pub async fn stack_create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &opts)
        .await
        .expect("CreateTopics request");
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("CreateTopics {name}: {code:?}"),
        }
    }
    let seen = poll_until(Duration::from_secs(20), || async {
        let md = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic)?;
        (t.error().is_none() && t.partitions().len() == partitions as usize).then_some(())
    })
    .await;
    assert!(seen.is_some(), "topic {topic} with {partitions} partitions not in metadata of {brokers}");
}

/// A transactional, idempotent producer (`acks=all`) with transactions initialised.
pub fn stack_transactional_producer(brokers: &str) -> FutureProducer {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", unique("stack-test-tx"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transaction.timeout.ms", "30000")
        .create()
        .expect("transactional producer");
    producer.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    producer
}

/// Sends `(partition, key, value)` records in ONE transaction and commits it;
/// the delivery reports are awaited before the commit.
pub async fn stack_produce_committed(brokers: &str, topic: &str, records: &[(i32, &str, &[u8])]) {
    let producer = stack_transactional_producer(brokers);
    producer.begin_transaction().expect("begin_transaction");
    for (partition, key, value) in records {
        producer
            .send(
                FutureRecord::to(topic).partition(*partition).key(*key).payload(*value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send to {topic}/{partition}: {e}"));
    }
    producer.commit_transaction(Duration::from_secs(30)).expect("commit_transaction");
}

/// One record read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Reads `topic` (partitions `0..partitions`) from the beginning with
/// `isolation.level=read_committed`, by partition ASSIGNMENT (no group join:
/// slow on tansu): [`kafka_read_committed`] without the headers. Blocking.
pub fn stack_read_committed(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
) -> Vec<StackRecord> {
    kafka_read_committed(brokers, topic, partitions, want, timeout)
        .into_iter()
        .map(|record| StackRecord {
            partition: record.partition,
            offset: record.offset,
            key: record.key.map(String::into_bytes),
            value: record.value,
        })
        .collect()
}
