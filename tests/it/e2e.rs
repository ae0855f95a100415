//! End-to-end tests: the real `cxone-ingest serve` binary against the real stack (tansu, garage),
//! driven over HTTP with signed requests, checked by reading Kafka (committed records, by their
//! transaction markers: tests/it/support/oracle.rs) and S3 back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxone_ingest::contract::{Checked, Contract};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::Mutex;

use crate::support::*;

/// What the contract (the same code the service runs) makes of a valid body: key, value, headers.
fn expected_record(body: &str) -> (String, Vec<u8>, HashMap<&'static str, String>) {
    let Checked::Valid(event) = Contract::builtin().check(body.as_bytes()) else {
        panic!("test body is not valid: {body}")
    };
    let headers = HashMap::from([
        ("event_type", event.event_type.to_string()),
        ("schema_id", event.schema.id.clone()),
        ("schema_version", event.schema.version.clone()),
        ("coercions", serde_json::to_string(&event.coercions).unwrap()),
        ("body_sha256", hex::encode(sha2::Sha256::digest(body.as_bytes()))),
    ]);
    (event.correlation_id, event.canonical_json, headers)
}

/// Asserts one Kafka record is the event of `body`, written by request `request_id`.
fn assert_record_is(record: &KafkaRecord, body: &str, request_id: &str) {
    let (key, value, headers) = expected_record(body);
    assert_eq!(record.key.as_deref(), Some(key.as_str()), "key = correlation id");
    assert_eq!(record.value, value, "value = canonical JSON of {request_id}");
    assert_eq!(record.request_id(), request_id);
    for (name, want) in headers {
        assert_eq!(record.headers.get(name), Some(&want), "header {name} of {request_id}");
    }
    let received_at = record.headers.get("received_at").expect("received_at header");
    assert!(chrono::DateTime::parse_from_rfc3339(received_at).is_ok(), "received_at {received_at:?}");
}

/// The JSON pointers of a list of field errors (`[{instance_path, ...}]`), sorted.
fn error_paths(errors: &Value) -> Vec<String> {
    let mut paths: Vec<String> = errors
        .as_array()
        .unwrap_or_else(|| panic!("errors is not a list: {errors}"))
        .iter()
        .map(|e| e["instance_path"].as_str().expect("instance_path").to_owned())
        .collect();
    paths.sort();
    paths
}

/// Issue 8: one valid, one invalid and two forged requests through the real binary; the valid
/// one is the only record in the topic, the invalid one the only dead letter under the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_valid_invalid_and_forged_requests_end_in_kafka_s3_or_nowhere() {
    let brokers = stack_kafka_brokers();
    let options = ServiceOptions::new("e2e-flow", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options.clone()).await;
    let client = e2e_client();

    // Valid: 200 published, then exactly one matching record in the topic.
    let correlation_id = unique("corr-valid");
    let valid = e2e_valid_body(&correlation_id);
    let valid_id = unique("req-valid");
    let answer =
        e2e_post(&client, &service.webhook_url(), &valid, &e2e_sign(valid.as_bytes()), Some(&valid_id))
            .await
            .unwrap();
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, service.log_tail(4000));
    assert_eq!(answer.body["status"], "published");
    assert_eq!(answer.body["correlation_id"], correlation_id.as_str());
    assert_eq!(answer.body["topic"], options.topic.as_str());
    assert_eq!(answer.request_id, valid_id);

    // Invalid: 200 dead_lettered, with the contract's error paths.
    let invalid = e2e_invalid_body(&unique("corr-invalid"));
    let Checked::Invalid(rejection) = Contract::builtin().check(invalid.as_bytes()) else {
        panic!("test body is valid")
    };
    let mut want_paths: Vec<String> = rejection.errors.iter().map(|e| e.instance_path.clone()).collect();
    want_paths.sort();
    assert!(want_paths.contains(&"/data/channel".to_owned()), "{want_paths:?}");
    let invalid_id = unique("req-invalid");
    let before = chrono::Utc::now();
    let answer =
        e2e_post(&client, &service.webhook_url(), &invalid, &e2e_sign(invalid.as_bytes()), Some(&invalid_id))
            .await
            .unwrap();
    let after = chrono::Utc::now();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "dead_lettered");
    assert_eq!(error_paths(&answer.body["errors"]), want_paths);

    // Forged: a wrong secret, and no signature at all: 401, nothing stored.
    let forged = e2e_valid_body(&unique("corr-forged"));
    let forged_invalid = e2e_invalid_body(&unique("corr-forged-invalid"));
    for (body, signature) in [
        (&forged, sign_with("not-the-secret", forged.as_bytes())),
        (&forged_invalid, sign_with("not-the-secret", forged_invalid.as_bytes())),
        (&forged, String::new()),
    ] {
        let answer = e2e_post(&client, &service.webhook_url(), body, &signature, None).await.unwrap();
        assert_eq!(answer.status, 401, "{:?}", answer.body);
        assert_eq!(answer.body["error"], "unauthorized");
    }

    // Kafka: exactly the valid event, nothing from the forged requests.
    let records = e2e_committed_records(&brokers, &options.topic).await;
    assert_eq!(records.len(), 1, "exactly one record in {}: {records:?}", options.topic);
    assert_record_is(&records[0], &valid, &valid_id);

    // S3: exactly the invalid payload's dead letter, line 1 of one batch object at
    // <prefix>/dt=YYYY-MM-DD/hour=HH/<batch id>.jsonl, as the answer said (the sender chose the
    // request id: it names nothing; the record carries it).
    let keys = e2e_s3_keys(&options.s3_prefix).await;
    assert_eq!(keys.len(), 1, "exactly one dead-letter object under {}: {keys:?}", options.s3_prefix);
    assert_eq!(answer.body["key"], keys[0].as_str(), "the answer names the object");
    assert_eq!(answer.body["line"], 1, "and the record's line");
    let name = keys[0].rsplit('/').next().unwrap().trim_end_matches(".jsonl");
    assert!(keys[0].ends_with(".jsonl") && uuid::Uuid::parse_str(name).is_ok(), "batch id: {}", keys[0]);
    assert!(!keys[0].contains(&invalid_id), "a sender's request id names no object: {}", keys[0]);
    let key_for = |at: chrono::DateTime<chrono::Utc>| {
        format!("{}/dt={}/hour={}/{name}.jsonl", options.s3_prefix, at.format("%Y-%m-%d"), at.format("%H"))
    };
    assert!(
        keys[0] == key_for(before) || keys[0] == key_for(after),
        "key {} (expected {})",
        keys[0],
        key_for(before)
    );
    let record = e2e_s3_json(&keys[0]).await;
    assert_eq!(record["request_id"], invalid_id.as_str());
    assert_eq!(record["reason"], rejection.reason.as_str());
    assert_eq!(record["correlation_id"], rejection.correlation_id.as_deref().unwrap());
    assert_eq!(error_paths(&record["errors"]), want_paths);
    assert_eq!(record["payload"], serde_json::from_str::<Value>(&invalid).unwrap());
    assert_eq!(record["body_sha256"], hex::encode(sha2::Sha256::digest(invalid.as_bytes())));
    let received_at: chrono::DateTime<chrono::Utc> =
        record["received_at"].as_str().unwrap().parse().expect("received_at");
    assert_eq!(keys[0], key_for(received_at), "the partition comes from received_at");
    let headers = record["headers"].as_object().expect("headers");
    assert!(!headers.keys().any(|h| h.contains("signature")), "no signature kept: {headers:?}");
}

/// A delivery answered 200 (correlation id, body), which a later request may repeat.
type Answered = (String, Arc<str>);

/// One request of the accounting run.
#[derive(Debug, Clone)]
struct Sent {
    request_id: String,
    correlation_id: String,
    body: Arc<str>,
    /// A resend of an earlier delivery (same body, same signature).
    repeat: bool,
    status: u16,
    answer: Value,
    latency: Duration,
}

/// Issue 4, the accounting test: 5,000 signed valid requests over 64 keep-alive connections,
/// about one in eight a repeated delivery (the exact body and signature again, sometimes while
/// the original is still in flight). Every 200 is in the topic exactly once (by `request_id`),
/// with its key, value and headers; repeats are answered with the original's commit and not
/// written again; nothing else is in the topic. Prints throughput, latency and batch size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounting_every_acknowledged_request_is_in_the_topic_exactly_once() {
    const TOTAL: usize = 5_000;
    const CONNECTIONS: usize = 64;
    let brokers = stack_kafka_brokers();
    let options = ServiceOptions::new("e2e-accounting", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options.clone()).await;
    let url = service.webhook_url();

    // Bodies already answered (any worker may resend one of them) and the next request number.
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let (url, answered, next) = (url.clone(), Arc::clone(&answered), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            // One client per worker: its own keep-alive connection.
            let client = e2e_client();
            let mut sent = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= TOTAL {
                    break;
                }
                let earlier = if n % 8 == 7 {
                    let answered = answered.lock().await;
                    (!answered.is_empty()).then(|| answered[(n * 7919) % answered.len()].clone())
                } else {
                    None
                };
                let (correlation_id, body, repeat) = match earlier {
                    Some((correlation_id, body)) => (correlation_id, body, true),
                    None => {
                        let correlation_id = format!("corr-{worker}-{n}-{}", uuid::Uuid::new_v4().simple());
                        let body: Arc<str> = e2e_valid_body(&correlation_id).into();
                        (correlation_id, body, false)
                    }
                };
                let request_id = format!("acct-{n}");
                let signature = e2e_sign(body.as_bytes());
                let posted = e2e_post(&client, &url, &body, &signature, Some(&request_id))
                    .await
                    .unwrap_or_else(|e| panic!("{request_id}: {e}"));
                if posted.status == 200 && !repeat {
                    answered.lock().await.push((correlation_id.clone(), Arc::clone(&body)));
                }
                sent.push(Sent {
                    request_id,
                    correlation_id,
                    body,
                    repeat,
                    status: posted.status,
                    answer: posted.body,
                    latency: posted.latency,
                });
            }
            sent
        }));
    }
    // A few deliveries repeated while the original is in flight (two connections at once).
    let client = e2e_client();
    let mut concurrent = Vec::new();
    for i in 0..50 {
        let correlation_id = unique("corr-concurrent");
        let body: Arc<str> = e2e_valid_body(&correlation_id).into();
        let signature = e2e_sign(body.as_bytes());
        let (a, b) = (format!("conc-{i}-a"), format!("conc-{i}-b"));
        let (first, second) = tokio::join!(
            e2e_post(&client, &url, &body, &signature, Some(&a)),
            e2e_post(&client, &url, &body, &signature, Some(&b)),
        );
        for (request_id, posted, repeat) in [(a, first.unwrap(), false), (b, second.unwrap(), true)] {
            concurrent.push(Sent {
                request_id,
                correlation_id: correlation_id.clone(),
                body: Arc::clone(&body),
                repeat,
                status: posted.status,
                answer: posted.body,
                latency: posted.latency,
            });
        }
    }
    let mut sent: Vec<Sent> = Vec::new();
    for worker in workers {
        sent.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    let main_run = sent.len();
    sent.extend(concurrent);

    let not_ok: Vec<&Sent> = sent.iter().filter(|s| s.status != 200).collect();
    let published: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.status == 200 && s.answer.get("duplicate_of").is_none_or(Value::is_null))
        .collect();
    let duplicates: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.status == 200 && s.answer.get("duplicate_of").is_some_and(|d| !d.is_null()))
        .collect();
    for s in &sent {
        if s.status == 200 {
            assert_eq!(s.answer["status"], "published", "{}: {}", s.request_id, s.answer);
        }
    }

    // Kafka, judged by the transaction markers: one committed record per published request, none
    // for a repeat, nothing else.
    let log = oracle_read_settled(&brokers, &options.topic, 3, Duration::from_secs(10)).await;
    let attempts: Vec<SentAttempt> = sent
        .iter()
        .map(|s| SentAttempt::from_http(&s.request_id, &s.correlation_id, Some(s.status), &s.answer))
        .collect();
    let judgement = judge_exactly_once(&attempts, &log);
    println!("accounting: {}", judgement.summary());
    judgement.assert_exactly_once();
    let records: Vec<KafkaRecord> = log
        .iter()
        .filter(|r| r.outcome == TxnOutcome::Committed)
        .map(OracleRecord::to_kafka_record)
        .collect();
    let by_request = kafka_by_request_id(&records);
    let sent_by_id: HashMap<&str, &Sent> = sent.iter().map(|s| (s.request_id.as_str(), s)).collect();
    let mut missing = Vec::new();
    for s in &published {
        match by_request.get(&s.request_id).map(Vec::as_slice) {
            Some([record]) => {
                assert_record_is(record, &s.body, &s.request_id);
                assert_eq!(s.answer["partition"], record.partition, "{}", s.request_id);
                assert_eq!(s.answer["offset"], record.offset, "{}", s.request_id);
            }
            Some(many) => panic!("{} is in the topic {} times", s.request_id, many.len()),
            None => missing.push(s.request_id.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged requests missing from the topic: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let foreign: Vec<&str> = by_request
        .keys()
        .map(String::as_str)
        .filter(|id| {
            sent_by_id
                .get(id)
                .is_none_or(|s| s.status != 200 || s.answer.get("duplicate_of").is_some_and(|d| !d.is_null()))
        })
        .collect();
    let detail: Vec<String> = foreign
        .iter()
        .take(5)
        .map(|id| {
            let r = &by_request[*id][0];
            format!(
                "{id}: record key {:?} at {}/{}, answer {:?}",
                r.key,
                r.partition,
                r.offset,
                sent_by_id.get(id).map(|s| (s.status, s.correlation_id.clone(), s.answer.to_string()))
            )
        })
        .collect();
    assert!(foreign.is_empty(), "records not acknowledged as published: {foreign:?}; e.g. {detail:#?}");
    assert_eq!(records.len(), published.len(), "nothing else in the topic");

    // Repeats: answered with the original's commit, and each correlation id written once.
    let mut per_correlation: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        *per_correlation.entry(r.key.as_deref().unwrap_or("")).or_default() += 1;
    }
    assert!(per_correlation.values().all(|&n| n == 1), "a correlation id written twice");
    let repeats = sent.iter().filter(|s| s.repeat && s.status == 200).count();
    for s in &duplicates {
        let original = s.answer["duplicate_of"].as_str().unwrap();
        let record = &by_request[original][0];
        assert_eq!(
            record.key.as_deref(),
            Some(s.correlation_id.as_str()),
            "{} points at {original}",
            s.request_id
        );
        assert_eq!(s.answer["offset"], record.offset);
    }
    assert_eq!(duplicates.len(), repeats, "every acknowledged repeat was answered from its original");

    // Numbers for the closing note (printed, never asserted).
    let mut latencies: Vec<Duration> = sent[..main_run].iter().map(|s| s.latency).collect();
    latencies.sort();
    let page = service.metrics().await;
    let batch_sum = metric_sum(&page, "cxone_ingest_kafka_batch_events_sum", &[]);
    let batch_count = metric_sum(&page, "cxone_ingest_kafka_batch_events_count", &[]);
    let unique_ids: HashSet<&str> = sent.iter().map(|s| s.request_id.as_str()).collect();
    assert_eq!(unique_ids.len(), sent.len());
    println!(
        "accounting: {} requests ({} repeats, {} concurrent pairs) over {CONNECTIONS} connections in {:.2} s = {:.0} req/s; \
         p50 {:.2} ms, p99 {:.2} ms; 200: {}, non-200: {}; records: {}; transactions: {batch_count}, \
         average batch {:.1} events",
        main_run,
        sent[..main_run].iter().filter(|s| s.repeat).count(),
        50,
        elapsed.as_secs_f64(),
        main_run as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        sent.len() - not_ok.len(),
        not_ok.len(),
        records.len(),
        if batch_count > 0.0 { batch_sum / batch_count } else { 0.0 },
    );
    assert!(not_ok.is_empty(), "{} requests not answered 200, e.g. {:?}", not_ok.len(), not_ok.first());
}

/// Issue 4, broker down: a service whose broker port is closed says not ready and answers posts
/// 503 + Retry-After within its (2 s) deadline; invalid payloads still go to S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_on_a_closed_port_means_not_ready_and_503_with_retry_after() {
    let closed = format!("127.0.0.1:{}", free_loopback_port());
    let mut options = ServiceOptions::new("e2e-no-broker", &closed);
    options.request_deadline_ms = 2_000;
    options.kafka_call_timeout_ms = 1_000;
    let service = Service::start(options.clone());
    // Up (it answers), but not ready, because of Kafka.
    let readyz = poll_until(Duration::from_secs(30), || async {
        service.readyz().await.filter(|(_, body)| body["sinks"]["dead_letter"] == "ready")
    })
    .await
    .unwrap_or_else(|| panic!("no /readyz answer\n{}", service.log_tail(4000)));
    assert_eq!(readyz.0, 503, "{}", readyz.1);
    assert!(readyz.1["sinks"]["kafka"].as_str().unwrap().starts_with("not ready"), "{}", readyz.1);

    let client = e2e_client();
    let margin = Duration::from_secs(3);
    for _ in 0..3 {
        let body = e2e_valid_body(&unique("corr"));
        let answer =
            e2e_post(&client, &service.webhook_url(), &body, &e2e_sign(body.as_bytes()), None).await.unwrap();
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert_eq!(answer.retry_after.as_deref(), Some("2"), "Retry-After");
        assert!(answer.latency < Duration::from_secs(2) + margin, "answered after {:?}", answer.latency);
        assert_eq!(answer.body["status"], "retry", "{}", answer.body);
    }
    let invalid = e2e_invalid_body(&unique("corr"));
    let answer = e2e_post(&client, &service.webhook_url(), &invalid, &e2e_sign(invalid.as_bytes()), None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "dead letters do not need Kafka: {:?}", answer.body);
    assert_eq!(answer.body["status"], "dead_lettered");
}

/// Posts fresh valid events (one per try) until one is answered with `status`; returns it.
async fn post_valid_until(service: &Service, status: u16, within: Duration) -> Option<Posted> {
    let client = e2e_client();
    poll_until(within, || async {
        let body = e2e_valid_body(&unique("corr-poll"));
        let answer =
            e2e_post(&client, &service.webhook_url(), &body, &e2e_sign(body.as_bytes()), None).await.ok()?;
        (answer.status == status).then_some(answer)
    })
    .await
}

/// Issue 4, broker down and back: stopping the durable broker turns posts into 503s (with
/// Retry-After, within the deadline); starting it again brings 200s back without a service restart,
/// and the 200s before and after are each in the topic once.
#[ignore = "restart: stops and starts the shared kafka-durable"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_durable_broker_stop_gives_503_and_the_service_recovers_without_restart() {
    let brokers = stack_durable_kafka_brokers();
    let mut options = ServiceOptions::new("e2e-broker-restart", &brokers);
    options.request_deadline_ms = 2_000;
    options.kafka_call_timeout_ms = 1_500;
    stack_create_topic(&brokers, &options.topic, 3).await;
    let mut service = Service::start_ready(options.clone()).await;
    let first = post_valid_until(&service, 200, Duration::from_secs(10)).await.expect("200 before the stop");

    e2e_stack_ctl("stop", "kafka-durable").await;
    let down = post_valid_until(&service, 503, Duration::from_secs(30)).await;
    e2e_stack_ctl("start", "kafka-durable").await;
    let down = down.unwrap_or_else(|| panic!("no 503 with the broker stopped\n{}", service.log_tail(4000)));
    assert!(down.retry_after.is_some(), "503 without Retry-After");
    assert!(down.latency < Duration::from_secs(5), "503 after {:?} (deadline 2 s)", down.latency);

    let back = post_valid_until(&service, 200, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no 200 after the broker came back\n{}", service.log_tail(6000)));
    assert!(service.is_running(), "the service exited");
    service.wait_ready(Duration::from_secs(30)).await;
    let records = e2e_committed_records(&brokers, &options.topic).await;
    let by_request = kafka_by_request_id(&records);
    for answer in [&first, &back] {
        let found: Vec<(i32, i64)> = by_request
            .get(&answer.request_id)
            .map(|rs| rs.iter().map(|r| (r.partition, r.offset)).collect())
            .unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "{} ({:?}) once in the topic; found at {found:?}; all {} records: {:?}\n{}",
            answer.request_id,
            answer.body,
            records.len(),
            records.iter().map(|r| (r.request_id(), r.partition, r.offset)).collect::<Vec<_>>(),
            service.log_tail(6000)
        );
    }
}

/// Issue 5, S3 down and back: with garage stopped invalid payloads get 503 within the deadline
/// (valid ones still publish); with garage back they are dead-lettered again, no restart.
#[ignore = "restart: stops and starts the shared garage"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_garage_stop_gives_503_for_invalid_payloads_and_the_service_recovers() {
    let brokers = stack_kafka_brokers();
    let mut options = ServiceOptions::new("e2e-s3-restart", &brokers);
    options.request_deadline_ms = 2_000;
    options.s3_probe_interval_ms = 1_000;
    stack_create_topic(&brokers, &options.topic, 3).await;
    let mut service = Service::start_ready(options.clone()).await;
    let client = e2e_client();
    let post_invalid = || {
        let client = client.clone();
        let url = service.webhook_url();
        async move {
            let body = e2e_invalid_body(&unique("corr-s3"));
            e2e_post(&client, &url, &body, &e2e_sign(body.as_bytes()), None).await.ok()
        }
    };
    assert_eq!(post_invalid().await.unwrap().status, 200);

    e2e_stack_ctl("stop", "garage").await;
    let down =
        poll_until(Duration::from_secs(30), || async { post_invalid().await.filter(|a| a.status == 503) })
            .await;
    let valid_while_down = post_valid_until(&service, 200, Duration::from_secs(10)).await;
    let readyz_down = service.readyz().await;
    e2e_stack_ctl("start", "garage").await;

    let down = down.unwrap_or_else(|| panic!("no 503 with garage stopped\n{}", service.log_tail(4000)));
    assert!(down.retry_after.is_some(), "503 without Retry-After");
    assert!(down.latency < Duration::from_secs(5), "503 after {:?} (deadline 2 s)", down.latency);
    assert!(valid_while_down.is_some(), "valid events kept publishing while S3 was down");
    let (code, body) = readyz_down.expect("readyz answered");
    assert_eq!(code, 503, "{body}");

    let back =
        poll_until(Duration::from_secs(60), || async { post_invalid().await.filter(|a| a.status == 200) })
            .await
            .unwrap_or_else(|| panic!("no dead letter after garage came back\n{}", service.log_tail(6000)));
    assert_eq!(back.body["status"], "dead_lettered");
    assert!(service.is_running(), "the service exited");
    let letters = e2e_dead_letters(&options.s3_prefix).await;
    let stored = letters.iter().find(|l| l.request_id() == back.request_id);
    let stored = stored.unwrap_or_else(|| panic!("{} not among {letters:?}", back.request_id));
    assert_eq!(
        (back.body["key"].as_str(), back.body["line"].as_u64()),
        (Some(stored.key.as_str()), Some(stored.line))
    );
    service.wait_ready(Duration::from_secs(30)).await;
}

/// Trace context (issue 17, item 3), on the real binary with real sinks: the sender's trace id
/// reaches the Kafka record's `traceparent` header (with this service's span as the parent) and
/// `tracestate`, the dead-letter record's `trace`, and the service's log lines of the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_trace_reaches_kafka_the_dead_letter_and_the_logs() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let brokers = stack_kafka_brokers();
    let options = ServiceOptions::new("e2e-trace", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options.clone()).await;
    let client = e2e_client();
    let post = |body: String| {
        let (client, url, sent) = (client.clone(), service.webhook_url(), sent.clone());
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-cxone-signature", e2e_sign(body.as_bytes()))
                .header("traceparent", sent)
                .header("tracestate", "cxone=studio-7")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let parent_of = |traceparent: &str| -> String {
        assert!(traceparent.starts_with(&format!("00-{TRACE_ID}-")), "{traceparent}");
        assert!(traceparent.ends_with("-01"), "{traceparent}");
        traceparent.split('-').nth(2).unwrap().to_owned()
    };

    let (status, published) = post(e2e_valid_body(&unique("corr-trace"))).await;
    assert_eq!(status, 200, "{published}");
    let read = e2e_committed_records(&brokers, &options.topic).await;
    assert_eq!(read.len(), 1);
    let span = parent_of(&read[0].headers["traceparent"]);
    assert_ne!(span, "00f067aa0ba902b7", "this service's span is the parent downstream");
    assert_eq!(read[0].headers["tracestate"], "cxone=studio-7");

    let (status, answer) = post(e2e_invalid_body(&unique("corr-trace-invalid"))).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("dead_lettered")), "{answer}");
    let keys = e2e_s3_keys(&options.s3_prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record = e2e_s3_json(&keys[0]).await;
    parent_of(record["trace"]["traceparent"].as_str().unwrap());
    assert_eq!(record["trace"]["tracestate"], "cxone=studio-7");

    // Each request logs its "webhook" line; the dead letter also logs where it was stored. Every
    // one of them names the request and the trace.
    let expected = [
        ("webhook", published["request_id"].as_str().unwrap().to_owned()),
        ("webhook", answer["request_id"].as_str().unwrap().to_owned()),
        ("dead letter stored", answer["request_id"].as_str().unwrap().to_owned()),
    ];
    let logged = poll_until(Duration::from_secs(10), || {
        let log = service.log_tail(64_000);
        let found: Vec<(String, String)> = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["fields"]["trace_id"] == TRACE_ID)
            .map(|line| {
                let field = |name: &str| line["fields"][name].as_str().unwrap_or_default().to_owned();
                (field("message"), field("request_id"))
            })
            .collect();
        let all = expected.iter().all(|(message, id)| found.contains(&(message.to_string(), id.clone())));
        async move { all.then_some(()) }
    })
    .await;
    assert!(
        logged.is_some(),
        "log lines naming request and trace: {expected:?}\n{}",
        service.log_tail(4_000)
    );
}

/// The human log format off a terminal (a file, a pipe, a container runtime): the webhook line is
/// written while the service runs (the log thread flushes whenever its queue empties, not only at
/// exit), names the request and its trace, and carries no colour escape codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_log_lines_are_flushed_while_serving_and_plain_off_a_terminal() {
    let brokers = stack_kafka_brokers();
    let mut options = ServiceOptions::new("e2e-pretty-log", &brokers);
    options.log_format = "pretty";
    stack_create_topic(&brokers, &options.topic, 1).await;
    let service = Service::start_ready(options).await;
    let body = e2e_valid_body(&unique("corr-pretty-log"));
    let response = e2e_client()
        .post(service.webhook_url())
        .header("content-type", "application/json")
        .header("x-cxone-signature", e2e_sign(body.as_bytes()))
        .header("x-request-id", "pretty-log-1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let line = poll_until(Duration::from_secs(10), || {
        let log = service.log_tail(64_000);
        let line = log.lines().find(|line| line.contains("request_id=pretty-log-1")).map(str::to_owned);
        async move { line }
    })
    .await;
    let Some(line) = line else {
        panic!("no webhook line while serving\n{}", service.log_tail(4_000));
    };
    assert!(
        line.contains("webhook") && line.contains("trace_id=") && line.contains("outcome=\"published\""),
        "{line}"
    );
    let log = service.log_tail(64_000);
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{log}");
}
