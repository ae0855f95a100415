//! The real `cxone-ingest serve` binary as a child process on a free loopback port (killed on
//! drop), signed webhook requests, payload makers, `/metrics` parsing and dead-letter reads.

use std::time::{Duration, Instant};

use super::kafka::KafkaRecord;
use super::oracle::oracle_committed_records;
use super::stack::*;
use super::{poll_until, unique};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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
    /// `server.pre_stop_delay_ms` (0 here: most tests stop the service by killing it).
    pub pre_stop_delay_ms: u64,
    /// `dedupe.store` (env `CXONE_INGEST_DEDUPE_STORE`): `memory` unless a test shares a store
    /// between services (`support::stack_redis_url()`), whatever the test's own environment says.
    pub dedupe_store: String,
    /// The S3 endpoint for dead letters (a fault-injecting front, say); the stack's garage when `None`.
    pub s3_endpoint: Option<String>,
    /// More config lines, each `(section, "key = value")`, e.g. `("kafka.client",
    /// "\"message.max.bytes\" = 20000")`.
    pub extra_config: Vec<(&'static str, String)>,
    /// `--log-format` (env `CXONE_INGEST_LOG_FORMAT`): `json`, which the tests parse, unless a
    /// test reads the human format.
    pub log_format: &'static str,
    /// More environment variables of the child (set last): a test hook, or
    /// `CXONE_INGEST_KAFKA_SASL_PASSWORD`, say.
    pub extra_env: Vec<(&'static str, String)>,
    /// TOML appended to the config file as is, after the sections (e.g. `[[sources]]` tables).
    pub extra_toml: String,
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
            pre_stop_delay_ms: 0,
            dedupe_store: "memory".to_owned(),
            s3_endpoint: None,
            extra_config: Vec::new(),
            log_format: "json",
            extra_env: Vec::new(),
            extra_toml: String::new(),
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
    /// How the child exited, once it has.
    exit: Option<std::process::ExitStatus>,
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
        Service::start_as(options, unique("e2e"))
    }

    /// Like [`Service::start`] with a given `kafka.instance_id`: a replica started again after a
    /// crash (same transactional id, so it fences its old self; same dedupe claim owner).
    pub fn start_as(options: ServiceOptions, instance_id: String) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("cxone-ingest.toml");
        let admin_addr: SocketAddr =
            format!("127.0.0.1:{}", free_loopback_port()).parse().expect("admin addr");
        let mut sections: Vec<(&str, Vec<String>)> = vec![
            (
                "server",
                vec![
                    format!("admin_listen = \"{admin_addr}\""),
                    format!("request_deadline_ms = {}", options.request_deadline_ms),
                    format!("max_in_flight = {}", options.max_in_flight),
                    format!("retry_after_secs = {}", options.retry_after_secs),
                    format!("pre_stop_delay_ms = {}", options.pre_stop_delay_ms),
                ],
            ),
            (
                "kafka",
                vec![
                    format!("instance_id = \"{instance_id}\""),
                    format!("call_timeout_ms = {}", options.kafka_call_timeout_ms),
                ],
            ),
            ("dead_letter", vec![format!("probe_interval_ms = {}", options.s3_probe_interval_ms)]),
        ];
        for (section, line) in &options.extra_config {
            match sections.iter_mut().find(|(name, _)| name == section) {
                Some((_, lines)) => lines.push(line.clone()),
                None => sections.push((section, vec![line.clone()])),
            }
        }
        let mut config: String =
            sections.iter().map(|(name, lines)| format!("[{name}]\n{}\n", lines.join("\n"))).collect();
        config.push_str(&options.extra_toml);
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
            .env("CXONE_INGEST_DEDUPE_STORE", &options.dedupe_store)
            .env("CXONE_INGEST_S3_ENDPOINT", options.s3_endpoint.clone().unwrap_or_else(stack_s3_endpoint))
            .env("CXONE_INGEST_S3_BUCKET", stack_s3_bucket())
            .env("CXONE_INGEST_S3_PREFIX", &options.s3_prefix)
            .env("CXONE_INGEST_S3_REGION", stack_s3_region())
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", stack_s3_region())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CXONE_INGEST_LOG_FORMAT", options.log_format)
            .env("CXONE_INGEST_LOG", "info")
            .envs(options.extra_env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start cxone-ingest serve");
        Service { child, addr, admin_addr, options, instance_id, log_path, exit: None, _dir: dir }
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
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit.is_none()
    }

    /// The exit code, once the child has exited (`None` while running or when killed by a signal).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.is_running();
        self.exit.and_then(|status| status.code())
    }

    /// Resident set size of the server process in KiB (`VmRSS` of /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The last `max_bytes` of the service's log (for failure messages).
    /// SIGKILLs the process (a crash) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

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

/// The signature under [`E2E_SECRET`].
pub fn e2e_sign(body: &[u8]) -> String {
    super::sign_with(E2E_SECRET, body)
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
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
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

/// The records of one dead-letter object: one per line of a `.jsonl` batch object, the whole
/// object for a single-record `.json` one (the layout before batching).
pub async fn e2e_s3_records(key: &str) -> Vec<Value> {
    let object = stack_s3_client()
        .get_object()
        .bucket(stack_s3_bucket())
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    let bytes = object.body.collect().await.expect("object body").into_bytes();
    if !key.ends_with(".jsonl") {
        return vec![serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))];
    }
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_slice(line).unwrap_or_else(|e| panic!("{key} line {} is not JSON: {e}", n + 1))
        })
        .collect()
}

/// The one record of a dead-letter object that holds exactly one.
pub async fn e2e_s3_json(key: &str) -> Value {
    let mut records = e2e_s3_records(key).await;
    assert_eq!(records.len(), 1, "{key} holds {} records, expected one", records.len());
    records.remove(0)
}

/// One dead letter read back from the bucket.
#[derive(Debug, Clone)]
pub struct StoredLetter {
    /// The object holding it.
    pub key: String,
    /// Its line in that object, from 1 (1 for a single-record object).
    pub line: u64,
    /// The record.
    pub record: Value,
}

impl StoredLetter {
    /// The record's `request_id`: how a dead letter is found inside its batch object.
    pub fn request_id(&self) -> &str {
        self.record["request_id"].as_str().unwrap_or("")
    }
}

/// Every dead letter under `prefix/`, read out of its objects (skipping `_replayed/` markers).
pub async fn e2e_dead_letters(prefix: &str) -> Vec<StoredLetter> {
    let mut letters = Vec::new();
    for key in e2e_s3_keys(prefix).await {
        if key.contains("/_replayed/") {
            continue;
        }
        for (n, record) in e2e_s3_records(&key).await.into_iter().enumerate() {
            letters.push(StoredLetter { key: key.clone(), line: n as u64 + 1, record });
        }
    }
    letters
}

/// The committed records of a service's topic (three partitions), decided by the transaction
/// markers in its log ([`oracle_committed_records`]): a broker's `read_committed` (tansu's) may
/// show aborted records too.
pub async fn e2e_committed_records(brokers: &str, topic: &str) -> Vec<KafkaRecord> {
    oracle_committed_records(brokers, topic, 3).await
}

/// `p`-th percentile (0..=100) of `sorted` latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs `scripts/stack-ctl action component` off the async runtime.
pub async fn e2e_stack_ctl(action: &'static str, component: &'static str) {
    tokio::task::spawn_blocking(move || stack_ctl(action, component)).await.expect("stack-ctl thread");
}
