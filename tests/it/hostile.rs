//! Hostile input, round two (issue 15): no sender controls the metric series or the size of an
//! answer, a huge object is judged in milliseconds, unsigned slow bodies hold no in-flight slot,
//! and an event Kafka will never take is dead-lettered on its own while its batch commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cxone_ingest::dedupe::DedupeConfig;
use cxone_ingest::http;
use cxone_ingest::sinks::dead_letter::{DeadLetterConfig, S3DeadLetterSink};
use cxone_ingest::sinks::kafka::{KafkaConfig, KafkaSink};
use cxone_ingest::sinks::{EventSink, Readiness};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::http::Response;

use crate::support::*;

const PATH: &str = "/webhooks/cxone-data-actions";
const SECRET: &str = "hostile-input-secret-0123456789abcdef";

fn signed(body: &[u8]) -> warp::test::RequestBuilder {
    warp::test::request()
        .method("POST")
        .path(PATH)
        .header("content-type", "application/json")
        .header("x-cxone-signature", sign_with(SECRET, body))
        .body(body)
}

fn json_of(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body())
        .unwrap_or_else(|err| panic!("not JSON ({err}): {:?}", response.body()))
}

/// A valid `interaction.completed` body under `correlation_id`, with `extra` merged into `data`
/// (`data` takes no undeclared keys) or `data.metadata` (which does).
fn body_with(correlation_id: &str, data_extra: Value, metadata_extra: Value) -> Vec<u8> {
    let mut body = json!({
        "event": "interaction.completed",
        "timestamp": "2026-11-28T10:00:00Z",
        "correlation_id": correlation_id,
        "data": {
            "channel": "voice", "duration_seconds": 120, "agent_id": "a-7",
            "customer_email": "jane@example.com", "metadata": {"score": 4.5}
        }
    });
    if let Value::Object(extra) = data_extra {
        body["data"].as_object_mut().unwrap().extend(extra);
    }
    if let Value::Object(extra) = metadata_extra {
        body["data"]["metadata"].as_object_mut().unwrap().extend(extra);
    }
    serde_json::to_vec(&body).unwrap()
}

/// Regression (issue 15, item 2): 2,000 unexpected keys named like e-mail addresses used to become
/// 2,000 permanent series labelled with the addresses, and an answer listing all 2,000 errors.
#[tokio::test]
async fn sender_key_names_never_reach_metrics_and_errors_are_capped() {
    let config = test_config(SECRET);
    let sink = FakeSink::ok();
    let state = app_state(&config, sink.clone(), sink.clone());
    let (routes, admin) = (http::routes(state.clone()), http::admin_routes(state));
    let keys: serde_json::Map<String, Value> =
        (0..2_000).map(|i| (format!("jane.doe{i}@example.com"), json!(1))).collect();
    let body = body_with("c-hostile-keys", Value::Object(keys), Value::Null);

    let response = signed(&body).reply(&routes).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let answer = json_of(&response);
    assert_eq!(answer["status"], "dead_lettered");
    assert_eq!(answer["errors"].as_array().unwrap().len(), 100, "the default cap");
    assert_eq!(answer["error_count"], 2_000);
    assert_eq!(answer["errors_truncated"], true);
    assert!(response.body().len() < 40_000, "answer of {} bytes", response.body().len());
    let letter = sink.last_letter().expect("a dead letter");
    assert_eq!((letter.rejection.errors.len(), letter.error_count), (100, 2_000));

    let page = warp::test::request().path("/metrics").reply(&admin).await;
    let page = String::from_utf8_lossy(page.body());
    assert!(!page.contains("jane.doe") && !page.contains("@example.com"), "sender text on /metrics");
    let series: Vec<&str> =
        page.lines().filter(|l| l.starts_with("cxone_ingest_validation_errors_total{")).collect();
    assert!(!series.is_empty(), "validation errors are counted");
    assert!(series.len() < 50, "label sets come from the schema, not the payload: {}", series.len());
    let ours: f64 = series
        .iter()
        .filter(|l| l.contains("keyword=\"additionalProperties\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(ours >= 2_000.0, "all 2,000 counted under one series: {series:?}");
}

/// Regression (issue 15, item 4): one object of 80,000 distinct keys (a 1 MiB body) took 11 s of a
/// runtime worker (a quadratic duplicate-key scan) and was answered 503 at the deadline.
#[tokio::test]
async fn eighty_thousand_keys_are_judged_within_the_deadline() {
    let config = test_config(SECRET);
    let sink = FakeSink::ok();
    let routes = http::routes(app_state(&config, sink.clone(), sink.clone()));
    let keys: serde_json::Map<String, Value> = (0..80_000).map(|i| (format!("k{i}"), json!(0))).collect();

    let allowed = body_with("c-80k-metadata", Value::Null, Value::Object(keys.clone()));
    assert!(allowed.len() < 1 << 20, "{} bytes", allowed.len());
    let response = signed(&allowed).reply(&routes).await;
    assert_eq!(response.status(), 200, "{:?}", String::from_utf8_lossy(response.body()));
    assert_eq!(json_of(&response)["status"], "published", "metadata takes any keys");

    let refused = body_with("c-80k-data", Value::Object(keys), Value::Null);
    let response = signed(&refused).reply(&routes).await;
    assert_eq!(response.status(), 200, "answered, not 503 at the deadline");
    let answer = json_of(&response);
    assert_eq!(
        (answer["status"].as_str(), answer["error_count"].as_u64()),
        (Some("dead_lettered"), Some(80_000))
    );
}

/// Regression (issue 15, item 3): `max_in_flight` unsigned connections that send a head and one
/// byte of body used to hold every in-flight slot, so the next signed delivery got 503 overloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_trickling_bodies_hold_no_in_flight_slot() {
    let mut config = test_config(SECRET);
    config.server.max_in_flight = 64;
    let sink = FakeSink::ok();
    let state = app_state(&config, sink.clone(), sink.clone());
    let server = http::server::start(state, &config.server).await.unwrap();
    let addr = server.local_addr();

    let mut trickling = Vec::new();
    for _ in 0..72 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        trickling.push(stream);
    }
    // Every trickler is reading its body (counted), none holds an in-flight slot.
    let admin = server.admin_addr();
    let reading = poll_until(Duration::from_secs(10), || async {
        let page =
            e2e_client().get(format!("http://{admin}/metrics")).send().await.ok()?.text().await.ok()?;
        (metric_sum(&page, "cxone_ingest_unverified_bodies", &[]) >= 72.0).then_some(())
    })
    .await;
    assert!(reading.is_some(), "the 72 bodies are being read");

    let body = body_with("c-signed-beside-tricklers", Value::Null, Value::Null);
    let posted = e2e_post(
        &e2e_client(),
        &format!("http://{addr}{PATH}"),
        std::str::from_utf8(&body).unwrap(),
        &sign_with(SECRET, &body),
        None,
    )
    .await
    .unwrap();
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    assert_eq!(posted.body["status"], "published");
    assert_eq!(sink.counts(), (1, 0), "only the signed delivery reached a sink");
    drop(trickling);
    server.shutdown(Duration::from_secs(5)).await;
}

/// Unsigned bodies have their own bound: past `max_unverified_bodies` the answer is 503 at once,
/// and a trickled body is cut at the body-read timeout (408), long before the request deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_bodies_are_bounded_in_number_and_time() {
    let mut config = test_config(SECRET);
    config.server.max_unverified_bodies = 4;
    // Long enough that the four bodies still hold their slots while the probes below run; far
    // below the 10 s request deadline.
    config.server.body_read_timeout_ms = 2_000;
    let sink = FakeSink::ok();
    let server =
        http::server::start(app_state(&config, sink.clone(), sink.clone()), &config.server).await.unwrap();
    let addr = server.local_addr();
    let head = format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{");

    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // Probe until one is turned away: a probe let in (the server had not yet started reading all
    // four bodies) holds a slot itself until it is cut, which only fills the slots sooner.
    let mut let_in = Vec::new();
    let answer = loop {
        assert!(started.elapsed() < Duration::from_millis(1_500), "no 503 while four bodies were being read");
        let mut probe = tokio::net::TcpStream::connect(addr).await.unwrap();
        probe.write_all(head.as_bytes()).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(100), read_whole_answer(&mut probe)).await {
            Ok(answer) => break answer,
            Err(_) => let_in.push(probe),
        }
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"reason\":\"overloaded\""), "{answer}");

    let answer = read_whole_answer(&mut slow[0]).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "cut at the body-read timeout, not the deadline");
    assert_eq!(sink.calls(), 0);
    server.shutdown(Duration::from_secs(5)).await;
}

async fn read_whole_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if whole_answer(&buffer).is_some() {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no answer within 10 s");
    String::from_utf8_lossy(&buffer).into_owned()
}

/// Regression (issue 15, item 1): a valid event larger than the producer's `message.max.bytes`
/// used to fail its whole transaction (every event batched with it got 503) and was answered 503
/// on every retry. Now it alone is dead-lettered (`kafka_refused`) and the rest commit. Real broker,
/// real S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_kafka_refuses_is_dead_lettered_and_its_neighbours_commit() {
    let brokers = stack_kafka_brokers();
    let topic = unique("hostile-too-large");
    stack_create_topic(&brokers, &topic, 3).await;
    // A long linger, so the small events and the large one arrive within one batch's window.
    let kafka = KafkaConfig { linger_ms: 200, ..kafka_sink_config(&brokers, &topic) };
    let events = Arc::new(KafkaSink::start(&kafka, &DedupeConfig::default()).unwrap());
    let ready = poll_until(Duration::from_secs(30), || async {
        (events.readiness() == Readiness::Ready).then_some(())
    });
    assert!(ready.await.is_some(), "{:?}", events.readiness());
    let prefix = unique("hostile-too-large");
    let (key_id, secret) = stack_s3_credentials();
    let dead_letters = Arc::new(
        S3DeadLetterSink::new(&DeadLetterConfig {
            endpoint: Some(stack_s3_endpoint()),
            bucket: stack_s3_bucket(),
            prefix: prefix.clone(),
            region: Some(stack_s3_region()),
            access_key_id: Some(key_id),
            secret_access_key: Some(secret),
            ..DeadLetterConfig::default()
        })
        .await
        .unwrap(),
    );
    let config = test_config(SECRET);
    let routes = http::routes(app_state(&config, events.clone(), dead_letters));

    // 1,000,100 bytes: under the 1 MiB body cap, over librdkafka's default 1,000,000.
    let mut large = body_with("c-large", Value::Null, json!({"padding": ""}));
    let pad = 1_000_100 - large.len();
    large = body_with("c-large", Value::Null, json!({"padding": "x".repeat(pad)}));
    assert_eq!(large.len(), 1_000_100);
    let small: Vec<Vec<u8>> =
        (0..20).map(|i| body_with(&format!("c-small-{i}"), Value::Null, Value::Null)).collect();
    let answers = futures::future::join_all(
        std::iter::once(&large).chain(&small).map(|body| signed(body).reply(&routes)),
    )
    .await;

    let large_answer = json_of(&answers[0]);
    assert_eq!(answers[0].status(), 200, "{large_answer}");
    assert_eq!(large_answer["status"], "dead_lettered", "{large_answer}");
    assert_eq!(large_answer["reason"], "kafka_refused");
    assert!(large_answer["errors"][0]["message"].as_str().unwrap().contains("message.max.bytes"));
    for answer in &answers[1..] {
        assert_eq!(json_of(answer)["status"], "published", "{:?}", answer.body());
    }
    let read = tokio::task::spawn_blocking(move || {
        kafka_read_committed(&brokers, &topic, 3, 20, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let mut keys: Vec<String> = read.iter().filter_map(|r| r.key.clone()).collect();
    keys.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("c-small-{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected, "the twenty small events, once each, and not the large one");
    let stored = e2e_s3_keys(&prefix).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let record = e2e_s3_json(&stored[0]).await;
    assert_eq!(record["reason"], "kafka_refused");
    assert_eq!(record["body_size"], 1_000_100);
    assert_eq!(record["correlation_id"], "c-large");
    assert_eq!(record["payload_encoding"], "json", "replayable as it was sent");
    events.close().await;
}
