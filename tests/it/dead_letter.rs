//! Integration tests: the S3 dead-letter sink and `replay`, against the real S3 server (garage) and
//! broker (tansu) of the local stack. Each test writes under a prefix of its own.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use cxone_ingest::contract::{Checked, Contract, FieldError, Reason, Rejection, SchemaRef};
use cxone_ingest::replay::{ReplayOptions, Summary, replay};
use cxone_ingest::sinks::dead_letter::record::RECORD_SCHEMA;
use cxone_ingest::sinks::dead_letter::{DeadLetterConfig, DeadLetterRecord, S3DeadLetterSink, key};
use cxone_ingest::sinks::{DeadLetter, DeadLetterSink, Readiness, SinkError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

// ---------- helpers ----------

/// A sink config for the stack's garage (or `endpoint`), with short backoffs so tests move fast.
fn sink_config(prefix: &str, endpoint: Option<String>) -> DeadLetterConfig {
    let (id, secret) = stack_s3_credentials();
    DeadLetterConfig {
        endpoint: Some(endpoint.unwrap_or_else(stack_s3_endpoint)),
        bucket: stack_s3_bucket(),
        prefix: prefix.to_owned(),
        region: Some(stack_s3_region()),
        access_key_id: Some(id),
        secret_access_key: Some(secret),
        attempt_timeout_ms: 1_000,
        connect_timeout_ms: 500,
        backoff_base_ms: 20,
        backoff_max_ms: 200,
        probe_interval_ms: 60_000,
        // Long enough that letters stored together in a test form one batch.
        linger_ms: 200,
        ..DeadLetterConfig::default()
    }
}

/// The host:port of the stack's S3 endpoint.
pub(crate) fn s3_authority() -> String {
    stack_s3_endpoint().trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// A dead letter as the pipeline builds it: the real contract's verdict on `raw`.
fn dead_letter(raw: &[u8], received_at: DateTime<Utc>) -> DeadLetter {
    let rejection = match Contract::builtin().check(raw) {
        Checked::Invalid(rejection) => *rejection,
        Checked::Valid(_) => panic!("test payload unexpectedly valid: {}", String::from_utf8_lossy(raw)),
    };
    DeadLetter {
        request_id_from_sender: false,
        error_count: rejection.errors.len(),
        trace: cxone_ingest::trace::TraceContext::start(),
        origin: Default::default(),
        request_id: unique("req"),
        received_at,
        raw_body: Bytes::copy_from_slice(raw),
        body_sha256: Sha256::digest(raw).into(),
        headers: vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("User-Agent".to_owned(), "CXone-DataAction/1.0".to_owned()),
            // Must never reach the record, even if the pipeline forgot to drop it.
            ("X-CXone-Signature".to_owned(), "0badc0de".to_owned()),
        ],
        rejection,
    }
}

/// A payload today's `interaction.completed` schema accepts.
pub(crate) fn valid_payload(correlation_id: &str) -> Value {
    json!({
        "event": "interaction.completed",
        "timestamp": "2026-01-10T09:30:00Z",
        "correlation_id": correlation_id,
        "data": {
            "channel": "chat",
            "duration_seconds": 120,
            "agent_id": "agent-7",
            "customer_email": "jo@example.com",
            "metadata": {"score": 4.5, "priority": "high"}
        }
    })
}

/// Every key under `prefix`.
async fn list_keys(prefix: &str) -> Vec<String> {
    let client = stack_s3_client();
    let out = client
        .list_objects_v2()
        .bucket(stack_s3_bucket())
        .prefix(format!("{prefix}/"))
        .send()
        .await
        .expect("list objects");
    let mut keys: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    keys.sort();
    keys
}

/// The records of one batch object, by line (index 0 = line 1).
async fn batch_lines(key: &str) -> Vec<Value> {
    let object = stack_s3_client().get_object().bucket(stack_s3_bucket()).key(key).send().await.expect("get");
    let body = object.body.collect().await.unwrap().into_bytes();
    assert!(body.ends_with(b"\n"), "every line ends with a newline");
    body.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("each line is one JSON record"))
        .collect()
}

/// Every record under `prefix` by request id: (key, line) of each.
async fn records_by_request_id(prefix: &str) -> std::collections::HashMap<String, Vec<(String, u64)>> {
    let mut found: std::collections::HashMap<String, Vec<(String, u64)>> = Default::default();
    for key in list_keys(prefix).await.into_iter().filter(|k| !k.contains(key::REPLAYED_DIR)) {
        for (n, record) in batch_lines(&key).await.into_iter().enumerate() {
            let id = record["request_id"].as_str().unwrap().to_owned();
            found.entry(id).or_default().push((key.clone(), n as u64 + 1));
        }
    }
    found
}

fn record_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(RECORD_SCHEMA).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).unwrap()
}

/// A TCP front for S3 on `listener`: answers the first `faults` PUT requests with `503 SlowDown`
/// (closing that connection) and forwards every other request to `upstream` unchanged, so the SigV4
/// signatures stay valid. Requests are handled one by one (each forwarded on a fresh upstream
/// connection), so a kept-alive client connection cannot slip past the fault injection.
pub(crate) struct S3Front {
    addr: SocketAddr,
    /// PUTs still to be answered with 503.
    remaining: Arc<AtomicUsize>,
    /// PUTs answered with 503 so far.
    faulted: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for S3Front {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl S3Front {
    pub(crate) async fn start(listener: TcpListener, upstream: String, faults: usize) -> S3Front {
        let addr = listener.local_addr().unwrap();
        let remaining = Arc::new(AtomicUsize::new(faults));
        let faulted = Arc::new(AtomicUsize::new(0));
        let (remaining2, faulted2) = (Arc::clone(&remaining), Arc::clone(&faulted));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(front_connection(
                    client,
                    upstream.clone(),
                    Arc::clone(&remaining2),
                    Arc::clone(&faulted2),
                ));
            }
        });
        S3Front { addr, remaining, faulted, accept }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` PUTs with 503 (instead of what was left of the earlier count).
    pub(crate) fn fail_next(&self, n: usize) {
        self.remaining.store(n, Ordering::SeqCst);
    }

    /// PUTs answered with 503 so far.
    pub(crate) fn faulted(&self) -> usize {
        self.faulted.load(Ordering::SeqCst)
    }
}

/// Reads from `stream` into `buf` until it holds a whole HTTP head; returns the head's length.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads until `buf` holds at least `len` bytes.
async fn read_to_len(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Option<()> {
    while buf.len() < len {
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(())
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn front_connection(
    mut client: TcpStream,
    upstream: String,
    remaining: Arc<AtomicUsize>,
    faulted: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut client, &mut buf).await else { return };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if read_to_len(&mut client, &mut buf, head_end + length).await.is_none() {
            return;
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        let fault = head.starts_with("PUT ")
            && remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fault {
            faulted.fetch_add(1, Ordering::SeqCst);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>";
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            let _ = client.shutdown().await;
            return;
        }
        let Ok(mut up) = TcpStream::connect(&upstream).await else { return };
        if up.write_all(&request).await.is_err() {
            return;
        }
        let Some(response) = read_response(&mut up, head.starts_with("HEAD ")).await else { return };
        if client.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// One whole HTTP/1.1 response from `up` (content-length, chunked, or bodiless).
async fn read_response(up: &mut TcpStream, to_head: bool) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let head_end = read_head(up, &mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    if to_head || status == 204 || status == 304 {
        buf.truncate(head_end);
    } else if let Some(length) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        read_to_len(up, &mut buf, head_end + length).await?;
        buf.truncate(head_end + length);
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while !buf[head_end..].ends_with(b"0\r\n\r\n") {
            if up.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    } else {
        up.read_to_end(&mut buf).await.ok()?;
    }
    Some(buf)
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

// ---------- records in the bucket ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_malformed_and_non_utf8_bodies_each_become_one_valid_record() {
    let prefix = unique("it-dl-records");
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, None)).await.unwrap();
    let received_at: DateTime<Utc> = "2026-03-04T05:06:07.250Z".parse().unwrap();
    let invalid = serde_json::to_vec(&json!({
        "event": "interaction.completed",
        "timestamp": "2026-03-04T05:06:00Z",
        "correlation_id": "corr-invalid",
        "data": {"channel": "fax", "duration_seconds": 120, "agent_id": "a-1", "customer_email": "jo@example.com"}
    }))
    .unwrap();
    let malformed = br#"{"event": "interaction.completed", "data": "#.to_vec();
    let non_utf8 = vec![0xff, 0xfe, b'{', 0x80, b'}'];
    let cases = [
        (invalid, Reason::SchemaValidation, "json"),
        (malformed, Reason::MalformedJson, "text"),
        (non_utf8, Reason::MalformedJson, "base64"),
    ];
    let validator = record_validator();
    let client = stack_s3_client();
    for (raw, reason, encoding) in cases {
        let letter = dead_letter(&raw, received_at);
        let request_id = letter.request_id.clone();
        let expected_errors = letter.rejection.errors.clone();
        let stored = sink.store(letter, Instant::now() + Duration::from_secs(10)).await.expect("stored");
        assert_eq!(stored.bucket, stack_s3_bucket());
        let name = stored.key.strip_prefix(&format!("{prefix}/dt=2026-03-04/hour=05/")).expect("partition");
        let batch_id = name.strip_suffix(".jsonl").expect("a JSON-lines object");
        assert!(uuid::Uuid::parse_str(batch_id).is_ok_and(|id| id.get_version_num() == 7), "{name}");
        assert_eq!(stored.line, 1, "alone in its batch");

        let object =
            client.get_object().bucket(&stored.bucket).key(&stored.key).send().await.expect("get object");
        assert_eq!(object.content_type(), Some("application/x-ndjson"));
        let metadata_sha = object.metadata().and_then(|m| m.get("sha256")).cloned();
        let body = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(metadata_sha.as_deref(), Some(hex::encode(Sha256::digest(&body)).as_str()));
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 1, "one record, one line");

        let json: Value = serde_json::from_slice(&body).expect("record parses as JSON");
        let schema_errors: Vec<String> = validator.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(schema_errors.is_empty(), "record breaks its own schema: {schema_errors:?}\n{json:#}");
        assert_eq!(json["reason"], reason.as_str());
        assert_eq!(json["payload_encoding"], encoding);
        assert_eq!(json["request_id"], request_id.as_str());
        assert_eq!(json["received_at"], "2026-03-04T05:06:07.250Z");
        assert_eq!(json["body_sha256"], hex::encode(Sha256::digest(&raw)));
        assert_eq!(json["body_size"], raw.len());
        assert_eq!(
            json["headers"],
            json!({"content-type": "application/json", "user-agent": "CXone-DataAction/1.0"})
        );

        let record: DeadLetterRecord = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(record.errors, expected_errors);
        let paths: Vec<&str> = record.errors.iter().map(|e| e.instance_path.as_str()).collect();
        match reason {
            Reason::SchemaValidation => {
                assert!(paths.contains(&"/data/channel"), "{paths:?}");
                assert!(record.errors.iter().any(|e| e.keyword == "enum"), "{:?}", record.errors);
                assert_eq!(json["payload"]["data"]["channel"], "fax");
                assert_eq!(json["correlation_id"], "corr-invalid");
                assert!(json["schema"]["id"].as_str().is_some_and(|id| id.contains("interaction-completed")));
            }
            _ => {
                assert!(paths.iter().all(|p| p.is_empty()), "parse errors point at the root: {paths:?}");
                assert_eq!(json["schema"], Value::Null);
                match record.original_payload().unwrap() {
                    cxone_ingest::sinks::dead_letter::OriginalPayload::Raw(bytes) => assert_eq!(bytes, raw),
                    other => panic!("expected raw payload, got {other:?}"),
                }
            }
        }
    }
    let keys = list_keys(&prefix).await;
    assert_eq!(keys.len(), 3, "one object per batch, each letter stored alone: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(&format!("{prefix}/dt=2026-03-04/hour=05/"))), "{keys:?}");
}

// ---------- batches ----------

/// Letters arriving together share one object; each is answered with its own line, holds exactly
/// its record there, and is stored exactly once (found by its request id inside the object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_stored_together_share_one_object_each_on_its_own_line_exactly_once() {
    let prefix = unique("it-dl-batch");
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, None)).await.unwrap();
    let first_received: DateTime<Utc> = "2026-03-04T23:59:59.900Z".parse().unwrap();
    let letters: Vec<DeadLetter> = (0..20)
        .map(|n| {
            let at = first_received + chrono::Duration::milliseconds(n * 10);
            dead_letter(format!("{{\"broken\": {n}").as_bytes(), at)
        })
        .collect();
    let ids: Vec<String> = letters.iter().map(|l| l.request_id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let results = futures::future::join_all(letters.into_iter().map(|l| sink.store(l, deadline))).await;
    let stored: Vec<_> = results.into_iter().map(|r| r.expect("every letter stored")).collect();

    let found = records_by_request_id(&prefix).await;
    for (id, stored) in ids.iter().zip(&stored) {
        assert_eq!(
            found.get(id),
            Some(&vec![(stored.key.clone(), stored.line)]),
            "{id}: exactly once, where answered"
        );
    }
    assert_eq!(found.len(), ids.len(), "nothing else stored");
    let keys = list_keys(&prefix).await;
    assert!(
        keys.len() < ids.len(),
        "letters arriving together were batched: {} objects for {}",
        keys.len(),
        ids.len()
    );
    let mut lines: Vec<(&str, u64)> = stored.iter().map(|s| (s.key.as_str(), s.line)).collect();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), ids.len(), "no two letters share a line");
    // The partition comes from the batch's first letter: the 23:59 hour, even for letters of the next day.
    assert!(keys.iter().all(|k| k.starts_with(&format!("{prefix}/dt=2026-03-04/hour=23/"))), "{keys:?}");
}

// ---------- S3 unavailable, permanent errors, retries ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_fails_within_the_deadline_and_the_next_write_succeeds_once_it_is_back() {
    let prefix = unique("it-dl-down");
    let port = free_port().await; // nothing listens here: S3 is "down"
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, Some(format!("http://127.0.0.1:{port}"))))
        .await
        .expect("an unreachable S3 must not fail start-up");
    let not_ready = poll_until(Duration::from_secs(10), || async {
        match sink.readiness() {
            Readiness::NotReady(why) if !why.contains("not probed yet") => Some(why),
            _ => None,
        }
    })
    .await
    .expect("probe reports not ready");
    assert!(not_ready.contains(&stack_s3_bucket()), "{not_ready}");

    let letter = dead_letter(b"{oops", Utc::now());
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let result = tokio::time::timeout(Duration::from_secs(5), sink.store(letter, deadline))
        .await
        .expect("store returns by its deadline (plus slack), it does not hang");
    assert!(
        matches!(result, Err(SinkError::DeadlineExceeded { .. } | SinkError::Unavailable { .. })),
        "{result:?}"
    );
    assert!(list_keys(&prefix).await.is_empty(), "nothing may be stored when the write was refused");

    // S3 comes back on the same address.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let _front = S3Front::start(listener, s3_authority(), 0).await;
    let letter = dead_letter(b"{oops again", Utc::now());
    let request_id = letter.request_id.clone();
    let stored =
        sink.store(letter, Instant::now() + Duration::from_secs(10)).await.expect("stored once S3 is back");
    assert_eq!(batch_lines(&stored.key).await[0]["request_id"], request_id.as_str());
    assert_eq!(sink.readiness(), Readiness::Ready);
    assert_eq!(list_keys(&prefix).await, vec![stored.key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_puts_are_retried_with_backoff_until_they_succeed() {
    let prefix = unique("it-dl-retry");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = S3Front::start(listener, s3_authority(), 3).await;
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, Some(front.endpoint()))).await.unwrap();
    let letters: Vec<DeadLetter> = (0..5).map(|_| dead_letter(b"not json", Utc::now())).collect();
    let ids: Vec<String> = letters.iter().map(|l| l.request_id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let results = futures::future::join_all(letters.into_iter().map(|l| sink.store(l, deadline))).await;
    let stored: Vec<_> = results.into_iter().map(|r| r.expect("stored after retries")).collect();
    assert_eq!(
        front.faulted.load(Ordering::SeqCst),
        3,
        "three PUTs answered 503 SlowDown, the fourth went through"
    );
    let keys = list_keys(&prefix).await;
    assert!(stored.iter().all(|s| s.key == keys[0]), "one batch: {stored:?}");
    assert_eq!(keys.len(), 1, "exactly one object despite the retries: {keys:?}");
    let found = records_by_request_id(&prefix).await;
    assert!(ids.iter().all(|id| found.get(id).is_some_and(|at| at.len() == 1)), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_throttling_ends_at_the_deadline_with_nothing_stored() {
    let prefix = unique("it-dl-throttled");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = S3Front::start(listener, s3_authority(), usize::MAX).await;
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, Some(front.endpoint()))).await.unwrap();
    // A batch of five: the failed put answers every one of them "not stored".
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let stores = (0..5).map(|_| sink.store(dead_letter(b"not json", Utc::now()), deadline));
    let results = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(stores))
        .await
        .expect("store returns by its deadline");
    for result in &results {
        assert!(matches!(result, Err(SinkError::DeadlineExceeded { .. })), "{results:?}");
    }
    assert!(front.faulted.load(Ordering::SeqCst) >= 2, "it retried before giving up");
    assert!(list_keys(&prefix).await.is_empty());
}

/// Stores one dead letter through a sink built from `config`, expecting a permanent failure well
/// before the (long) deadline; returns the sink and the failure's detail.
async fn store_fails_fast(config: &DeadLetterConfig) -> (S3DeadLetterSink, String) {
    let sink = S3DeadLetterSink::new(config).await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        sink.store(dead_letter(b"x", Utc::now()), Instant::now() + Duration::from_secs(30)),
    )
    .await
    .expect("a permanent error does not wait for the deadline");
    match result {
        Err(SinkError::Unavailable { detail, .. }) => (sink, detail),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_and_bad_credentials_fail_fast_naming_bucket_and_cause() {
    let prefix = unique("it-dl-perm");
    let missing = DeadLetterConfig { bucket: unique("no-such-bucket"), ..sink_config(&prefix, None) };
    let (sink, detail) = store_fails_fast(&missing).await;
    assert!(detail.contains(&missing.bucket), "{detail}");
    assert!(detail.contains("NoSuchBucket"), "{detail}");
    let why = poll_until(Duration::from_secs(5), || async {
        match sink.readiness() {
            Readiness::NotReady(why) if why.contains(&missing.bucket) && !why.contains("not probed") => {
                Some(why)
            }
            _ => None,
        }
    })
    .await;
    assert!(why.is_some(), "readiness names the bucket: {:?}", sink.readiness());

    let wrong_secret =
        DeadLetterConfig { secret_access_key: Some("0".repeat(64)), ..sink_config(&prefix, None) };
    let (_sink, detail) = store_fails_fast(&wrong_secret).await;
    assert!(detail.contains(&wrong_secret.bucket), "{detail}");
    assert!(
        ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden"]
            .iter()
            .any(|code| detail.contains(code)),
        "{detail}"
    );
    assert!(list_keys(&prefix).await.is_empty());
}

/// Starts garage again even when the test fails half-way.
struct RestartGarageOnDrop;

impl Drop for RestartGarageOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            stack_ctl("start", "garage");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restart: stops and starts the shared garage"]
async fn restart_garage_stopped_gives_503_class_errors_and_restarted_garage_takes_the_next_write() {
    let prefix = unique("it-dl-restart");
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, None)).await.unwrap();
    let ready = poll_until(Duration::from_secs(10), || async {
        (sink.readiness() == Readiness::Ready).then_some(())
    });
    assert!(ready.await.is_some(), "{:?}", sink.readiness());

    tokio::task::spawn_blocking(|| stack_ctl("stop", "garage")).await.unwrap();
    let guard = RestartGarageOnDrop;
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        sink.store(dead_letter(b"{down", Utc::now()), Instant::now() + Duration::from_millis(1_500)),
    )
    .await
    .expect("store returns by its deadline");
    assert!(
        matches!(result, Err(SinkError::DeadlineExceeded { .. } | SinkError::Unavailable { .. })),
        "{result:?}"
    );
    let not_ready = poll_until(Duration::from_secs(10), || async {
        matches!(sink.readiness(), Readiness::NotReady(_)).then_some(())
    });
    assert!(not_ready.await.is_some(), "the probe notices garage is gone");

    tokio::task::spawn_blocking(|| stack_ctl("start", "garage")).await.unwrap();
    drop(guard);
    let ready = poll_until(Duration::from_secs(20), || async {
        (sink.readiness() == Readiness::Ready).then_some(())
    });
    assert!(ready.await.is_some(), "ready again after garage restarted: {:?}", sink.readiness());
    let stored = sink
        .store(dead_letter(b"{back", Utc::now()), Instant::now() + Duration::from_secs(10))
        .await
        .expect("the next write succeeds");
    assert_eq!(list_keys(&prefix).await, vec![stored.key]);
}

// ---------- replay ----------

/// Replay of every day under the prefix, 4 at a time.
fn replay_all() -> ReplayOptions {
    ReplayOptions {
        since: None,
        until: None,
        dry_run: false,
        concurrency: 4,
        publish_timeout: Duration::from_secs(5),
    }
}

/// A dead letter as an older, stricter contract would have rejected it.
fn old_letter(raw: &[u8], payload: Option<Value>, received_at: DateTime<Utc>) -> DeadLetter {
    DeadLetter {
        request_id_from_sender: false,
        error_count: 1,
        trace: cxone_ingest::trace::TraceContext::start(),
        origin: Default::default(),
        request_id: unique("old-req"),
        received_at,
        raw_body: Bytes::copy_from_slice(raw),
        body_sha256: Sha256::digest(raw).into(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        rejection: Rejection {
            reason: if payload.is_some() { Reason::SchemaValidation } else { Reason::MalformedJson },
            schema: payload.as_ref().map(|_| SchemaRef {
                id: "https://schemas.cxone-ingest.dev/events/interaction-completed/v0.json".to_owned(),
                version: "0.9.0".to_owned(),
            }),
            errors: vec![FieldError {
                instance_path: "/data/metadata".to_owned(),
                schema_path: "/properties/data/additionalProperties".to_owned(),
                keyword: "additionalProperties".to_owned(),
                message: "metadata was not allowed in 0.9".to_owned(),
            }],
            coercions: vec![],
            correlation_id: payload.as_ref().and_then(|p| p["correlation_id"].as_str().map(str::to_owned)),
            payload,
        },
    }
}

/// Puts a record as an older, stricter contract would have written it, in the single-record layout
/// written before batching (`<request id>.json`).
pub(crate) async fn put_record(
    prefix: &str,
    raw: &[u8],
    payload: Option<Value>,
    received_at: DateTime<Utc>,
) -> String {
    let letter = old_letter(raw, payload, received_at);
    let record = DeadLetterRecord::build(&letter, received_at);
    let (json, _) = record.to_json();
    let key = key::object_key(prefix, received_at, &letter.request_id);
    stack_s3_client()
        .put_object()
        .bucket(stack_s3_bucket())
        .key(&key)
        .content_type("application/json")
        .body(json.into())
        .send()
        .await
        .expect("put record");
    key
}

/// The bucket for replay: two now-valid payloads, three still-invalid ones (JSON, text, binary) in
/// range, and one valid payload outside the date range. Returns (valid keys in range, out-of-range key).
async fn seed_replay_bucket(prefix: &str) -> (Vec<String>, String) {
    let day1: DateTime<Utc> = "2026-01-10T09:30:01Z".parse().unwrap();
    let day2: DateTime<Utc> = "2026-01-11T23:59:59Z".parse().unwrap();
    let before: DateTime<Utc> = "2026-01-09T12:00:00Z".parse().unwrap();
    let mut valid = Vec::new();
    for (n, at) in [(1, day1), (2, day2)] {
        let payload = valid_payload(&unique(&format!("corr-replay-{n}")));
        let raw = serde_json::to_vec(&payload).unwrap();
        assert!(
            matches!(Contract::builtin().check(&raw), Checked::Valid(_)),
            "precondition: today's contract accepts the payload"
        );
        valid.push(put_record(prefix, &raw, Some(payload), at).await);
    }
    valid.sort();
    let mut still_bad = valid_payload("corr-still-bad");
    still_bad["data"]["channel"] = json!("fax");
    put_record(prefix, &serde_json::to_vec(&still_bad).unwrap(), Some(still_bad), day1).await;
    put_record(prefix, b"{\"event\": ", None, day1).await;
    put_record(prefix, &[0xff, 0x00, 0xfe], None, day2).await;
    let outside = valid_payload(&unique("corr-outside"));
    let outside_key = put_record(prefix, &serde_json::to_vec(&outside).unwrap(), Some(outside), before).await;
    (valid, outside_key)
}

/// `cxone-ingest replay` of 2026-01-10..11 under `prefix` of the stack's bucket into `topic`, as
/// replica `instance`, configured by flags and the environment only.
pub(crate) fn replay_cli(prefix: &str, topic: &str, instance: &str) -> Command {
    let (id, secret) = stack_s3_credentials();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cxone-ingest"));
    command
        .args(["replay", "--since", "2026-01-10", "--until", "2026-01-11"])
        .args([
            "--s3-endpoint",
            &stack_s3_endpoint(),
            "--s3-bucket",
            &stack_s3_bucket(),
            "--s3-prefix",
            prefix,
        ])
        .args(["--kafka-brokers", &stack_kafka_brokers(), "--kafka-topic", topic])
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", stack_s3_region())
        .env("POD_NAME", instance)
        .env_remove("CXONE_INGEST_CONFIG");
    command
}

/// Runs `cxone-ingest replay` and returns its JSON summary.
fn run_replay_cli(prefix: &str, topic: &str, instance: &str, extra: &[&str]) -> Summary {
    let out = replay_cli(prefix, topic, instance).args(extra).output().expect("run cxone-ingest replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}"));
    summary_from_json(&summary)
}

/// The counters of a printed summary (the lists are checked separately where needed).
fn summary_from_json(json: &Value) -> Summary {
    let count = |field: &str| json[field].as_u64().unwrap_or_else(|| panic!("summary lacks {field}: {json}"));
    Summary {
        dry_run: json["dry_run"].as_bool().unwrap(),
        scanned: count("scanned"),
        skipped_already_replayed: count("skipped_already_replayed"),
        now_valid: count("now_valid"),
        published: count("published"),
        duplicates: count("duplicates"),
        still_invalid_by_reason: serde_json::from_value(json["still_invalid_by_reason"].clone()).unwrap(),
        failed: count("failed"),
        still_invalid: json["still_invalid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| cxone_ingest::replay::InvalidItem {
                key: item["key"].as_str().unwrap().to_owned(),
                reason: item["reason"].as_str().unwrap().to_owned(),
                errors: serde_json::from_value(item["errors"].clone()).unwrap(),
            })
            .collect(),
        replayable: vec![],
        failures: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_each_now_valid_dead_letter_exactly_once() {
    let prefix = unique("it-dl-replay");
    let topic = unique("it-dl-replay");
    let brokers = stack_kafka_brokers();
    stack_create_topic(&brokers, &topic, 1).await;
    let (valid_keys, outside_key) = seed_replay_bucket(&prefix).await;
    let instance = unique("it-replay");

    // Dry run: judges, publishes nothing, marks nothing.
    let (p, t, i) = (prefix.clone(), topic.clone(), instance.clone());
    let dry = tokio::task::spawn_blocking(move || run_replay_cli(&p, &t, &i, &["--dry-run"])).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!((dry.scanned, dry.now_valid, dry.published, dry.failed), (5, 2, 0, 0), "{dry:?}");
    let reasons: Vec<(String, u64)> = dry.still_invalid_by_reason.clone().into_iter().collect();
    assert_eq!(reasons, [("malformed_json".to_owned(), 2), ("schema_validation".to_owned(), 1)]);
    let fax = dry.still_invalid.iter().find(|item| item.reason == "schema_validation").unwrap();
    assert!(
        fax.errors.iter().any(|e| e.instance_path == "/data/channel"),
        "current errors: {:?}",
        fax.errors
    );
    assert!(list_keys(&prefix).await.iter().all(|k| !k.contains(key::REPLAYED_DIR)), "dry run marks nothing");

    // First run: the two now-valid ones are published and marked.
    let (p, t, i) = (prefix.clone(), topic.clone(), instance.clone());
    let first = tokio::task::spawn_blocking(move || run_replay_cli(&p, &t, &i, &[])).await.unwrap();
    assert_eq!((first.scanned, first.now_valid, first.published, first.failed), (5, 2, 2, 0), "{first:?}");
    assert_eq!(first.skipped_already_replayed, 0);
    assert_eq!(first.still_invalid_by_reason.values().sum::<u64>(), 3);

    // Second run: nothing new.
    let (p, t, i) = (prefix.clone(), topic.clone(), instance.clone());
    let second = tokio::task::spawn_blocking(move || run_replay_cli(&p, &t, &i, &[])).await.unwrap();
    assert_eq!((second.scanned, second.published, second.skipped_already_replayed), (5, 0, 2), "{second:?}");
    assert_eq!(second.still_invalid_by_reason.values().sum::<u64>(), 3);

    let keys = list_keys(&prefix).await;
    for valid in &valid_keys {
        assert!(keys.contains(&key::marker_key(&prefix, valid)), "marker for {valid} in {keys:?}");
    }
    assert!(!keys.contains(&key::marker_key(&prefix, &outside_key)), "--since excluded the older day");

    let b = brokers.clone();
    let t = topic.clone();
    let records =
        tokio::task::spawn_blocking(move || kafka_read_committed(&b, &t, 1, 2, Duration::from_secs(10)))
            .await
            .unwrap();
    let mut replayed: Vec<&str> =
        records.iter().filter_map(|r| r.headers.get("replayed_from").map(String::as_str)).collect();
    replayed.sort_unstable();
    assert_eq!(replayed, valid_keys.iter().map(String::as_str).collect::<Vec<_>>(), "each exactly once");
    assert_eq!(records.len(), 2, "nothing else was published: {records:?}");
    for record in &records {
        let value: Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(value["event"], "interaction.completed");
        assert_eq!(record.key.as_deref(), value["correlation_id"].as_str());
        assert!(
            record.request_id().starts_with("old-req-"),
            "original request id kept: {:?}",
            record.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_leaves_unpublished_dead_letters_unmarked_for_the_next_run() {
    let prefix = unique("it-dl-replay-core");
    let (valid_keys, _) = seed_replay_bucket(&prefix).await;
    let (store, options) = (stack_dead_letter_store(&prefix), replay_all());
    let sink = FakeSink::ok();
    sink.set_failing(true);
    let no_progress = |_| {};

    let down = replay(&store, Contract::builtin(), Some(&*sink), &options, &no_progress).await.unwrap();
    // Without date filters every partition counts, including the older day.
    assert_eq!((down.scanned, down.now_valid, down.published, down.failed), (6, 3, 0, 3), "{down:?}");
    assert!(down.failures.iter().all(|f| f.error.contains("down for the test")), "{:?}", down.failures);

    sink.set_failing(false);
    let up = replay(&store, Contract::builtin(), Some(&*sink), &options, &no_progress).await.unwrap();
    assert_eq!((up.published, up.failed, up.skipped_already_replayed), (3, 0, 0), "{up:?}");
    let again = replay(&store, Contract::builtin(), Some(&*sink), &options, &no_progress).await.unwrap();
    assert_eq!((again.published, again.skipped_already_replayed), (0, 3), "{again:?}");

    let published = sink.published_records();
    assert_eq!(published.len(), 3, "each now-valid dead letter published once in total");
    for key in &valid_keys {
        let event =
            published.iter().find(|r| r.replayed_from.as_deref() == Some(key.as_str())).expect("published");
        let record: Value = serde_json::from_slice(&event.event.canonical_json).unwrap();
        assert_eq!(record["data"]["channel"], "chat");
    }
}

/// Replay reads both layouts: letters batched by the sink into one JSON-lines object (each replayed
/// once, marked `<key>#<line>`) and a single-record object written before batching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_batch_objects_is_exactly_once_and_old_single_record_objects_still_replay() {
    let prefix = unique("it-dl-replay-batch");
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, None)).await.unwrap();
    let at: DateTime<Utc> = "2026-01-10T09:30:01Z".parse().unwrap();
    let mut letters = Vec::new();
    for n in 0..3 {
        let payload = valid_payload(&unique(&format!("corr-batch-{n}")));
        letters.push(old_letter(&serde_json::to_vec(&payload).unwrap(), Some(payload), at));
    }
    letters.push(old_letter(b"{\"event\": ", None, at));
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored: Vec<_> = futures::future::join_all(letters.into_iter().map(|l| sink.store(l, deadline)))
        .await
        .into_iter()
        .map(|r| r.expect("stored"))
        .collect();
    let mut now_valid: Vec<String> =
        stored[..3].iter().map(|s| key::letter_id(&s.key, Some(s.line))).collect();
    let old_payload = valid_payload(&unique("corr-old-layout"));
    let old_key =
        put_record(&prefix, &serde_json::to_vec(&old_payload).unwrap(), Some(old_payload), at).await;
    now_valid.push(old_key.clone());
    now_valid.sort();

    let (store, options) = (stack_dead_letter_store(&prefix), replay_all());
    let sink = FakeSink::ok();
    let no_progress = |_| {};
    let first = replay(&store, Contract::builtin(), Some(&*sink), &options, &no_progress).await.unwrap();
    assert_eq!((first.scanned, first.now_valid, first.published, first.failed), (5, 4, 4, 0), "{first:?}");
    assert_eq!(first.still_invalid_by_reason.get("malformed_json"), Some(&1), "{first:?}");
    let second = replay(&store, Contract::builtin(), Some(&*sink), &options, &no_progress).await.unwrap();
    assert_eq!((second.scanned, second.published, second.skipped_already_replayed), (5, 0, 4), "{second:?}");

    let mut replayed: Vec<String> =
        sink.published_records().iter().filter_map(|r| r.replayed_from.clone()).collect();
    replayed.sort();
    assert_eq!(replayed, now_valid, "each now-valid letter published exactly once, old layout included");
    let keys = list_keys(&prefix).await;
    for id in &now_valid {
        assert!(keys.contains(&key::marker_key(&prefix, id)), "marker for {id} in {keys:?}");
    }
}

/// A sender-chosen `X-Request-Id` names nothing any more: two different invalid bodies under the
/// same id, and a repeat, are three records; nothing answered 200 is overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_sender_request_id_does_not_overwrite_an_earlier_dead_letter() {
    let prefix = unique("dl-reused-id");
    let sink = S3DeadLetterSink::new(&sink_config(&prefix, None)).await.expect("sink");
    let received_at = Utc::now();
    let with_sender_id = |raw: &[u8]| {
        let mut letter = dead_letter(raw, received_at);
        letter.request_id = "sender-chosen-42".to_owned();
        letter.request_id_from_sender = true;
        letter.headers.push(("x-request-id".to_owned(), "sender-chosen-42".to_owned()));
        letter
    };
    let bodies: [&[u8]; 3] = [
        br#"{"event":"interaction.completed","data":{"channel":"fax"}}"#,
        br#"{"event":"interaction.completed","data":{"channel":"pigeon"}}"#,
        br#"{"event":"interaction.completed","data":{"channel":"fax"}}"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stored = Vec::new();
    for raw in bodies {
        stored.push(sink.store(with_sender_id(raw), deadline).await.expect("stored"));
    }
    let found = records_by_request_id(&prefix).await;
    let mut at = found["sender-chosen-42"].clone();
    at.sort();
    let mut answered: Vec<(String, u64)> = stored.iter().map(|s| (s.key.clone(), s.line)).collect();
    answered.sort();
    assert_eq!(at, answered, "every acknowledged record is still where its answer said");
    for (s, raw) in stored.iter().zip(bodies) {
        let record = &batch_lines(&s.key).await[s.line as usize - 1];
        assert_eq!(record["body_sha256"], hex::encode(Sha256::digest(raw)));
    }
}
