//! Lifecycle (issue 15, item 5): a dead committer turns `/healthz` red, a topic that refuses writes
//! turns `/readyz` red, every configuration bound is checked at start, and SIGTERM on the real
//! binary serves through the pre-stop delay, drains, and loses or doubles nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxone_ingest::dedupe::DedupeConfig;
use cxone_ingest::http;
use cxone_ingest::sinks::kafka::KafkaSink;
use cxone_ingest::sinks::{EventSink, Readiness, SinkError};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;

use crate::support::*;

async fn wait_ready(sink: &KafkaSink) {
    let ready = poll_until(Duration::from_secs(30), || async {
        (sink.readiness() == Readiness::Ready).then_some(())
    });
    assert!(ready.await.is_some(), "sink not ready: {:?}", sink.readiness());
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Regression: a committer panic used to leave the sink not ready for ever while `/healthz` said
/// 200, so an orchestrator never restarted the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committer_panic_turns_healthz_red() {
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("lifecycle-panic");
    mock.create_topic(&topic, 1, 1).unwrap();
    let events = Arc::new(
        KafkaSink::start(&kafka_sink_config(&mock.bootstrap_servers(), &topic), &DedupeConfig::default())
            .unwrap(),
    );
    wait_ready(&events).await;
    let config = test_config("lifecycle-secret-0123456789abcdefgh");
    let state = app_state(&config, events.clone(), FakeSink::ok());
    let (public, admin) = (http::routes(state.clone()), http::admin_routes(state));
    let healthz = || warp::test::request().path("/healthz");
    assert_eq!(healthz().reply(&admin).await.status(), 200);

    events.crash_committer_for_tests();
    let answer = events.publish(kafka_event_record("r-crash", "c-crash", "b"), deadline()).await;
    assert!(matches!(answer, Err(SinkError::Unavailable { .. })), "{answer:?}");

    // The panic unwinds the committer thread; its guard marks it dead as the thread ends.
    let red = poll_until(Duration::from_secs(10), || async {
        (healthz().reply(&admin).await.status() == 503).then_some(())
    });
    assert!(red.await.is_some(), "/healthz never turned red");
    for response in [healthz().reply(&public).await, healthz().reply(&admin).await] {
        assert_eq!(response.status(), 503, "{:?}", response.body());
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["dead_tasks"][0], "kafka-committer-0");
    }
}

/// A topic that loses write permission after start: the batch is aborted (503 for its requests,
/// never a 200), `/readyz` says why, and the sink comes back once the topic takes writes again.
/// On librdkafka's mock cluster, which can refuse produces with an authorization error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_refusing_writes_makes_kafka_not_ready_until_it_takes_them() {
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("lifecycle-topic-auth");
    mock.create_topic(&topic, 1, 1).unwrap();
    let events =
        KafkaSink::start(&kafka_sink_config(&mock.bootstrap_servers(), &topic), &DedupeConfig::default())
            .unwrap();
    wait_ready(&events).await;

    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 16],
    );
    let refused = events.publish(kafka_event_record("r-auth", "c-auth", "b"), deadline()).await;
    assert!(matches!(refused, Err(SinkError::Unavailable { .. })), "{refused:?}");
    match events.readiness() {
        Readiness::NotReady(why) => assert!(why.contains("refuses writes"), "{why}"),
        Readiness::Ready => panic!("still ready while the topic refuses writes"),
    }
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    let back = poll_until(Duration::from_secs(30), || async {
        events.publish(kafka_event_record("r-auth-retry", "c-auth", "b"), deadline()).await.ok()
    })
    .await;
    assert!(back.is_some(), "publishes again once the topic takes writes");
    assert_eq!(events.readiness(), Readiness::Ready);
    events.close().await;
}

/// Every bound of the configuration is checked at start (`config check` and `serve` alike), each
/// problem naming its key: a huge linger used to overflow an `Instant` at run time.
#[test]
fn config_check_names_every_value_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nrequest_deadline_ms = 10000\ndrain_timeout_ms = 2000\nbody_read_timeout_ms = 0\n\
         [kafka]\nlinger_ms = 18446744073709551615\n[dedupe]\nwindow_secs = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cxone-ingest"))
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("CXONE_INGEST_WEBHOOK_SECRET", "lifecycle-secret-0123456789abcdefgh")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "server.drain_timeout_ms (2000) is shorter than server.request_deadline_ms (10000)",
        "server.body_read_timeout_ms = 0 is out of range",
        "kafka.linger_ms = 18446744073709551615 is out of range",
        "dedupe.window_secs = 0 is out of range",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
}

/// SIGTERM on the real binary with real sinks, under load: `/readyz` turns 503 at once while the
/// webhook is still served through the pre-stop delay; then the listener closes and in-flight
/// requests finish; the process exits 0. Every request answered 200 is in the topic exactly once;
/// every other one, retried against a restarted service, ends up there exactly once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_serves_through_the_pre_stop_delay_drains_and_loses_nothing() {
    let brokers = stack_kafka_brokers();
    let mut options = ServiceOptions::new("lifecycle-sigterm", &brokers);
    options.pre_stop_delay_ms = 1_500;
    stack_create_topic(&brokers, &options.topic, 3).await;
    let mut service = Service::start_ready(options.clone()).await;
    let client = e2e_client();
    let url = service.webhook_url();
    let bodies: Vec<String> = (0..400).map(|i| e2e_valid_body(&format!("sigterm-{i:04}"))).collect();

    // Senders keep posting; SIGTERM lands in the middle of it.
    let sender = {
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        tokio::spawn(async move {
            let mut answers: HashMap<usize, u16> = HashMap::new();
            for (i, body) in bodies.iter().enumerate() {
                if let Ok(posted) = e2e_post(&client, &url, body, &e2e_sign(body.as_bytes()), None).await {
                    answers.insert(i, posted.status);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &service.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Not ready at once, yet still publishing during the pre-stop delay.
    let not_ready = poll_until(Duration::from_secs(1), || async {
        matches!(service.readyz().await, Some((503, _))).then_some(())
    })
    .await;
    assert!(not_ready.is_some(), "/readyz turns 503 right after SIGTERM");
    let during = e2e_valid_body("sigterm-during-pre-stop");
    let posted = e2e_post(&client, &url, &during, &e2e_sign(during.as_bytes()), None).await.unwrap();
    assert!(signalled.elapsed() < Duration::from_millis(1_500), "checked inside the delay");
    assert_eq!(posted.status, 200, "still served during the pre-stop delay: {:?}", posted.body);

    let exited = poll_until(Duration::from_secs(30), || {
        let done = !service.is_running();
        async move { done.then_some(()) }
    })
    .await;
    assert!(exited.is_some(), "the service exits after draining\n{}", service.log_tail(4_000));
    assert_eq!(service.exit_code(), Some(0), "a graceful stop exits 0\n{}", service.log_tail(4_000));
    let answers = sender.await.unwrap();

    // Retry every delivery that was not answered 200 against a restarted service.
    let restarted = Service::start_ready(options.clone()).await;
    let mut published: HashSet<String> = HashSet::from(["sigterm-during-pre-stop".to_owned()]);
    for (i, body) in bodies.iter().enumerate() {
        let id = format!("sigterm-{i:04}");
        if answers.get(&i) == Some(&200) {
            published.insert(id);
            continue;
        }
        let posted = e2e_post(&client, &restarted.webhook_url(), body, &e2e_sign(body.as_bytes()), None)
            .await
            .unwrap();
        assert_eq!(posted.status, 200, "{id}: {:?}", posted.body);
        published.insert(id);
    }
    let answered_before = answers.values().filter(|s| **s == 200).count();
    assert!(answered_before > 10, "the load ran before the signal: {answered_before}");
    let read = e2e_committed_records(&brokers, &options.topic).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for record in &read {
        *counts.entry(record.key.clone().unwrap_or_default()).or_default() += 1;
    }
    for id in &published {
        assert_eq!(counts.get(id), Some(&1), "{id} once in the topic");
    }
    assert_eq!(read.len(), published.len(), "nothing else in the topic");
}
