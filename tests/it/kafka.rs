//! Integration tests: the Kafka sink against a real broker (tansu from the stack, or a private
//! one), judged by the transaction markers in the log (tests/it/support/oracle.rs: tansu returns
//! records of ABORTED transactions to read_committed readers), and librdkafka's mock cluster (for
//! injected faults; it writes no markers but hides aborted records from read_committed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cxone_ingest::dedupe::DedupeConfig;
use cxone_ingest::sinks::kafka::{KafkaConfig, KafkaSink};
use cxone_ingest::sinks::{Committed, EventSink, Readiness, SinkError};
use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sha2::Digest;

use crate::support::*;

const READY_WITHIN: Duration = Duration::from_secs(30);

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

async fn wait_ready(sink: &KafkaSink) {
    let ready =
        poll_until(READY_WITHIN, || async { (sink.readiness() == Readiness::Ready).then_some(()) }).await;
    assert!(ready.is_some(), "sink not ready: {:?}", sink.readiness());
}

/// `read_committed` of `topic`: for the mock cluster, which writes no transaction markers for the
/// oracle to read but hides aborted records from this reader. On tansu and noida-db the tests read
/// committed records by their markers ([`oracle_committed_records`]).
async fn read_back(brokers: &str, topic: &str, partitions: i32, want: usize) -> Vec<KafkaRecord> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        kafka_read_committed(&brokers, &topic, partitions, want, Duration::from_secs(30))
    })
    .await
    .unwrap()
}

/// Test 1: concurrent publishes, each committed event exactly once with its key, value and
/// headers; repeated deliveries answered from the original and not written again; a new body
/// under an old correlation id written. Three committers, so transactions overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_each_event_once_with_key_value_and_headers() {
    let brokers = stack_kafka_brokers();
    let topic = unique("kafka-it-once");
    stack_create_topic(&brokers, &topic, 3).await;
    let cfg = KafkaConfig { committers: 3, ..kafka_sink_config(&brokers, &topic) };
    let sink = Arc::new(KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap());
    wait_ready(&sink).await;

    const N: usize = 400;
    let records: Vec<_> = (0..N)
        .map(|i| kafka_event_record(&format!("req-{i}"), &format!("corr-{i}"), &format!("body-{i}")))
        .collect();
    // Every 10th event is also delivered again concurrently (in flight together with the first).
    let mut calls = Vec::new();
    for (i, r) in records.iter().enumerate() {
        calls.push((r.clone(), false));
        if i % 10 == 0 {
            let mut again =
                kafka_event_record(&format!("req-{i}-again"), &format!("corr-{i}"), &format!("body-{i}"));
            again.received_at = r.received_at;
            calls.push((again, true));
        }
    }
    let results = join_all(calls.iter().map(|(r, _)| {
        let sink = Arc::clone(&sink);
        let r = r.clone();
        async move { sink.publish(r, deadline()).await }
    }))
    .await;

    let mut by_request = std::collections::HashMap::new();
    for ((record, _), result) in calls.iter().zip(&results) {
        let committed = result.as_ref().unwrap_or_else(|e| panic!("{}: {e}", record.request_id));
        by_request.insert(record.request_id.clone(), committed.clone());
    }
    // A concurrent repeat and its original: one of them wrote, the other points at it.
    for i in (0..N).step_by(10) {
        let (a, b) = (&by_request[&format!("req-{i}")], &by_request[&format!("req-{i}-again")]);
        assert_eq!((&a.topic, a.partition, a.offset), (&b.topic, b.partition, b.offset), "event {i}");
        let originals = [a, b].iter().filter(|c| c.duplicate_of.is_none()).count();
        assert_eq!(originals, 1, "event {i}: exactly one of the two deliveries was written: {a:?} {b:?}");
    }
    // A later repeat (after commit) is answered from memory.
    let late = sink.publish(kafka_event_record("req-5-late", "corr-5", "body-5"), deadline()).await.unwrap();
    assert_eq!(late.duplicate_of.as_deref(), Some("req-5"));
    assert_eq!(late.offset, by_request["req-5"].offset);
    // Same correlation id, different body: a new event.
    let new_body = kafka_event_record("req-5-new-body", "corr-5", "body-5b");
    let reused = sink.publish(new_body.clone(), deadline()).await.unwrap();
    assert_eq!(reused.duplicate_of, None);

    // Judged by the transaction markers (tansu's read_committed also returns aborted records, and
    // can stay stuck behind a transaction it never ends: docs/reliability.md).
    let log = oracle_read_settled(&brokers, &topic, 3, Duration::from_secs(10)).await;
    let mut attempts: Vec<SentAttempt> = calls
        .iter()
        .zip(&results)
        .map(|((r, _), result)| SentAttempt::from_sink(&r.request_id, &r.event.correlation_id, result))
        .collect();
    attempts.push(SentAttempt::from_sink("req-5-late", "corr-5", &Ok(late.clone())));
    attempts.push(SentAttempt::from_sink("req-5-new-body", "corr-5-new-body", &Ok(reused.clone())));
    let judgement = judge_exactly_once(&attempts, &log);
    println!("kafka: {}", judgement.summary());
    judgement.assert_exactly_once();
    let read: Vec<KafkaRecord> = log
        .iter()
        .filter(|r| r.outcome == TxnOutcome::Committed)
        .map(OracleRecord::to_kafka_record)
        .collect();
    assert_eq!(read.len(), N + 1, "exactly the written events, nothing else");
    let by_id = kafka_by_request_id(&read);
    let written: Vec<_> = calls
        .iter()
        .map(|(r, _)| r)
        .filter(|r| by_request[&r.request_id].duplicate_of.is_none())
        .chain(std::iter::once(&new_body))
        .collect();
    assert_eq!(written.len(), N + 1);
    for r in written {
        let found = by_id.get(&r.request_id).unwrap_or_else(|| panic!("{} not in topic", r.request_id));
        assert_eq!(found.len(), 1, "{} written once", r.request_id);
        let got = &found[0];
        assert_eq!(got.key.as_deref(), Some(r.event.correlation_id.as_str()));
        assert_eq!(got.value, r.event.canonical_json);
        let h = &got.headers;
        assert_eq!(h["event_type"], "interaction.completed");
        assert_eq!(h["schema_id"], "interaction-completed");
        assert_eq!(h["schema_version"], "1.0.0");
        assert_eq!(h["body_sha256"], hex::encode(r.body_sha256));
        let coercions: serde_json::Value = serde_json::from_str(&h["coercions"]).unwrap();
        assert_eq!(coercions[0]["path"], "/data/duration_seconds");
        let received: chrono::DateTime<chrono::Utc> = h["received_at"].parse().unwrap();
        assert_eq!(received.timestamp_micros(), r.received_at.timestamp_micros());
        assert!(!h.contains_key("replayed_from"));
        if let Some(c) = by_request.get(&r.request_id) {
            assert_eq!((got.partition, got.offset), (c.partition, c.offset), "{}", r.request_id);
        }
    }
    sink.close().await;
    assert!(matches!(sink.readiness(), Readiness::NotReady(_)));
    let after = sink.publish(kafka_event_record("req-closed", "corr-closed", "x"), deadline()).await;
    assert!(matches!(after, Err(SinkError::Unavailable { .. })), "{after:?}");
}

/// Accounting on librdkafka's mock cluster: every `Ok(Committed)` of many concurrent publishes,
/// repeats included, is in the topic exactly once at the place it reported, and nothing else is.
/// It cannot tell an aborted transaction from a committed one: the mock cluster, like the local
/// broker, sends no aborted-transaction list in Fetch responses (docs/reliability.md, "Mutation
/// checks").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_published_event_is_committed_exactly_once_on_the_mock_cluster() {
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("kafka-it-accounting");
    mock.create_topic(&topic, 3, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let cfg = KafkaConfig { linger_ms: 5, ..kafka_sink_config(&brokers, &topic) };
    let sink = Arc::new(KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap());
    wait_ready(&sink).await;

    const N: usize = 300;
    // Every 7th request repeats the delivery three before it (same correlation id and body).
    let delivery = |i: usize| if i % 7 == 6 { i - 3 } else { i };
    let results = join_all((0..N).map(|i| {
        let record = kafka_event_record(
            &format!("acct-{i}"),
            &format!("corr-{}", delivery(i)),
            &format!("body-{}", delivery(i)),
        );
        let sink = Arc::clone(&sink);
        async move { (format!("acct-{i}"), sink.publish(record, deadline()).await) }
    }))
    .await;

    let deliveries = (0..N).filter(|i| delivery(*i) == *i).count();
    let read = read_back(&brokers, &topic, 3, deliveries).await;
    let by_id = kafka_by_request_id(&read);
    let mut written = 0;
    for (id, result) in &results {
        let committed = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        match &committed.duplicate_of {
            None => {
                written += 1;
                let found = by_id.get(id).unwrap_or_else(|| {
                    panic!("{id} was answered published but is not in the topic (aborted?)")
                });
                assert_eq!(found.len(), 1, "{id} once");
                assert_eq!(
                    (found[0].partition, found[0].offset),
                    (committed.partition, committed.offset),
                    "{id}"
                );
            }
            Some(original) => {
                assert!(!by_id.contains_key(id), "{id}: a repeat was written again");
                assert!(by_id.contains_key(original), "{id}: its original {original} is in the topic");
            }
        }
    }
    assert_eq!(written, deliveries, "each delivery written by exactly one of its requests");
    assert_eq!(read.len(), written, "nothing else in the topic");
    sink.close().await;
}

/// Test 2: an abortable error mid-batch (every Produce of the batch refused) aborts the
/// transaction: every waiter of the batch gets an error, read_committed sees none of it, the
/// retries succeed and appear exactly once. On librdkafka's mock cluster, because tansu shows
/// records of aborted transactions to read_committed readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_batch_fails_every_waiter_and_stays_invisible() {
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("kafka-it-abort");
    mock.create_topic(&topic, 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    // A long linger so that the whole burst below lands in one transaction.
    let cfg = KafkaConfig { linger_ms: 200, ..kafka_sink_config(&brokers, &topic) };
    let sink = Arc::new(KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap());
    wait_ready(&sink).await;

    // `delivery` names the sender's delivery: a retry repeats correlation id and body.
    let publish_all = |prefix: &'static str, delivery: &'static str, n: usize| {
        let sink = Arc::clone(&sink);
        async move {
            join_all((0..n).map(|i| {
                let record = kafka_event_record(
                    &format!("{prefix}-{i}"),
                    &format!("corr-{delivery}-{i}"),
                    &format!("body-{delivery}-{i}"),
                );
                let sink = Arc::clone(&sink);
                async move { sink.publish(record, deadline()).await }
            }))
            .await
        }
    };
    let before = publish_all("before", "b", 3).await;
    assert!(before.iter().all(Result::is_ok), "{before:?}");

    // Every Produce request fails until cleared: non-retriable, so the deliveries fail and the
    // transaction must abort.
    let refuse = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 64];
    mock.request_errors(RDKafkaApiKey::Produce, &refuse);
    let failed = publish_all("failed", "f", 10).await;
    for r in &failed {
        assert!(
            matches!(r, Err(SinkError::Unavailable { .. })),
            "every waiter of the aborted batch fails: {r:?}"
        );
    }
    mock.clear_request_errors(RDKafkaApiKey::Produce);

    // The sender retries (same bodies, new request ids): published now, exactly once.
    let retried = poll_until(Duration::from_secs(20), || {
        let publish_all = &publish_all;
        async move {
            let r = publish_all("retried", "f", 10).await;
            r.iter().all(Result::is_ok).then_some(r)
        }
    })
    .await
    .expect("retries succeed once the broker accepts produces again");
    assert!(retried.iter().all(|r| r.as_ref().unwrap().duplicate_of.is_none()));

    let read = read_back(&brokers, &topic, 1, 13).await;
    let ids: Vec<&str> = read.iter().map(KafkaRecord::request_id).collect();
    assert!(!ids.iter().any(|id| id.starts_with("failed-")), "aborted records are invisible: {ids:?}");
    let by_id = kafka_by_request_id(&read);
    for i in 0..10 {
        assert_eq!(by_id.get(&format!("retried-{i}")).map(Vec::len), Some(1), "retried-{i} once: {ids:?}");
    }
    assert_eq!(read.len(), 13, "{ids:?}");
    let stats = sink.stats();
    assert!(stats.aborted >= 1 && stats.rebuilds == 0, "aborted, not rebuilt: {stats:?}");
    sink.close().await;
}

/// Test 3: producers with our committers' transactional.ids fence ours; the sink rebuilds its
/// producers (fencing the intruders in turn) and carries on; every acknowledged event is in the
/// topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fenced_producer_is_rebuilt_and_nothing_is_acknowledged_twice() {
    let brokers = stack_kafka_brokers();
    let topic = unique("kafka-it-fence");
    stack_create_topic(&brokers, &topic, 1).await;
    let cfg = KafkaConfig { committers: 2, ..kafka_sink_config(&brokers, &topic) };
    let sink = KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap();
    wait_ready(&sink).await;

    let mut acknowledged = Vec::new();
    let publish = |tag: String| {
        let record = kafka_event_record(&tag, &format!("corr-{tag}"), &tag);
        let sink = &sink;
        async move { (tag, sink.publish(record, deadline()).await) }
    };
    for i in 0..3 {
        let (tag, r) = publish(format!("before-{i}")).await;
        acknowledged.push((tag, r.unwrap()));
    }

    // The zombie's successor: the same transactional.id for every committer (init_transactions
    // bumps each epoch), so no committer is left unfenced.
    let transactional_ids = cfg.transactional_ids();
    assert_eq!(transactional_ids.len(), 2, "{transactional_ids:?}");
    let intruder = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || {
            transactional_ids
                .iter()
                .map(|transactional_id| {
                    let p: FutureProducer = ClientConfig::new()
                        .set("bootstrap.servers", &brokers)
                        .set("transactional.id", transactional_id)
                        .set("enable.idempotence", "true")
                        .create()
                        .unwrap();
                    p.init_transactions(Duration::from_secs(20)).unwrap();
                    p
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();

    // The next publishes fail (fenced -> rebuild -> not ready) until a rebuilt producer is up.
    let mut saw_failure = false;
    let mut failed: Vec<String> = Vec::new();
    let mut recovered = false;
    let until = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while Instant::now() < until {
        let (tag, r) = publish(format!("after-{i}")).await;
        i += 1;
        match r {
            Ok(c) => {
                acknowledged.push((tag, c));
                if saw_failure {
                    recovered = true;
                    break;
                }
            }
            Err(e) => {
                assert!(
                    matches!(e, SinkError::Unavailable { .. } | SinkError::DeadlineExceeded { .. }),
                    "{e}"
                );
                failed.push(tag);
                saw_failure = true;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(saw_failure, "the fenced producer's transaction must fail");
    assert!(recovered, "the sink recovers with a new producer: {:?}", sink.readiness());
    assert!(sink.stats().rebuilds >= 1, "{:?}", sink.stats());
    drop(intruder);

    // Every acknowledged event committed exactly once, where it was answered; the failed ones
    // not committed (their transactions aborted by the fencing), judged by the markers.
    let log = oracle_read_settled(&brokers, &topic, 1, Duration::from_secs(10)).await;
    let mut attempts: Vec<SentAttempt> = acknowledged
        .iter()
        .map(|(tag, c)| SentAttempt::from_sink(tag, &format!("corr-{tag}"), &Ok(c.clone())))
        .collect();
    attempts.extend(failed.iter().map(|tag| SentAttempt {
        request_id: tag.clone(),
        event: format!("corr-{tag}"),
        answered: Answered::NotPublished,
    }));
    let judgement = judge_exactly_once(&attempts, &log);
    println!("kafka: fenced: {}", judgement.summary());
    judgement.assert_exactly_once();
    assert_eq!(judgement.events_acknowledged, acknowledged.len());
    sink.close().await;
}

/// Test 4: the broker is not there at start: the sink starts anyway, is not ready and answers
/// unavailable (no waiting for the deadline); once a broker appears it becomes ready; after the
/// broker crashes and comes back empty it fails requests, then recovers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_without_a_broker_and_recovers_after_a_broker_restart() {
    let mut broker = PrivateTansu::on_free_port();
    let brokers = broker.brokers();
    let topic = unique("kafka-it-down");
    let sink = KafkaSink::start(&kafka_sink_config(&brokers, &topic), &DedupeConfig::default()).unwrap();
    assert!(matches!(sink.readiness(), Readiness::NotReady(_)));
    let r = sink.publish(kafka_event_record("down-1", "corr-down-1", "a"), deadline()).await;
    assert!(matches!(r, Err(SinkError::Unavailable { .. })), "{r:?}");

    // (Blocking for a moment; the sink runs on its own thread.)
    broker.start();
    // Reachable, but the topic is missing: not ready, and readiness says which topic.
    let says_topic = poll_until(READY_WITHIN, || async {
        match sink.readiness() {
            Readiness::NotReady(why) if why.contains(&topic) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(says_topic.is_some(), "readiness names the missing topic: {:?}", sink.readiness());
    stack_create_topic(&brokers, &topic, 1).await;
    wait_ready(&sink).await;
    let first = sink.publish(kafka_event_record("up-1", "corr-up-1", "b"), deadline()).await.unwrap();

    // Crash + restart (memory storage: the broker forgets our producer id and the topic).
    broker.stop();
    let during = sink.publish(kafka_event_record("gone-1", "corr-gone-1", "c"), deadline()).await;
    assert!(during.is_err(), "no 2xx while the broker is down: {during:?}");
    broker.start();
    stack_create_topic(&brokers, &topic, 1).await;
    let recovered = poll_until(Duration::from_secs(60), || async {
        sink.publish(kafka_event_record("back-1", "corr-back-1", "d"), deadline()).await.ok()
    })
    .await;
    let recovered = recovered.unwrap_or_else(|| panic!("no recovery: {:?}", sink.readiness()));
    assert_eq!(sink.readiness(), Readiness::Ready);
    let read = oracle_committed_records(&brokers, &topic, 1).await;
    let by_id = kafka_by_request_id(&read);
    assert_eq!(by_id.get("back-1").map(Vec::len), Some(1));
    assert_eq!(by_id["back-1"][0].offset, recovered.offset);
    assert!(first.duplicate_of.is_none());
    sink.close().await;
    drop(broker);
}

/// Throughput of the sink on the memory broker at batch sizes 1 / 100 / 1000 (docs/kafka.md).
/// `cargo test --release --test it kafka::measure_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_throughput() {
    let brokers = stack_kafka_brokers();
    for (batch, concurrency, events) in
        [(1usize, 1usize, 1_000usize), (100, 100, 20_000), (1_000, 1_000, 100_000)]
    {
        let topic = unique("kafka-bench");
        stack_create_topic(&brokers, &topic, 3).await;
        let cfg =
            KafkaConfig { batch_max_events: batch, linger_ms: 5, ..kafka_sink_config(&brokers, &topic) };
        let sink = Arc::new(KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap());
        wait_ready(&sink).await;
        let started = Instant::now();
        let per_worker = events / concurrency;
        let workers = (0..concurrency).map(|w| {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                let mut last: Option<Committed> = None;
                for i in 0..per_worker {
                    let id = format!("w{w}-{i}");
                    let body = format!("{{\"padding\":\"{}\"}}", "x".repeat(250));
                    let mut record = kafka_event_record(&id, &id, &body);
                    record.body_sha256 = sha2::Sha256::digest(id.as_bytes()).into();
                    last =
                        Some(sink.publish(record, Instant::now() + Duration::from_secs(30)).await.unwrap());
                }
                last
            })
        });
        let done = join_all(workers).await;
        let elapsed = started.elapsed().as_secs_f64();
        assert!(done.iter().all(|r| matches!(r, Ok(Some(_)))));
        let total = per_worker * concurrency;
        let stats = sink.stats();
        println!(
            "batch_max_events={batch:>5} concurrency={concurrency:>5}: {total} events in {elapsed:.2}s = {:.0} events/s, \
             {} transactions = {:.0} transactions/s, {:.1} events/transaction",
            total as f64 / elapsed,
            stats.transactions,
            stats.transactions as f64 / elapsed,
            stats.events as f64 / stats.transactions.max(1) as f64,
        );
        sink.close().await;
    }
}

/// A request that gave up at its deadline (503) while its event still committed: the sender's
/// retry is answered with the original commit, and the topic holds the event once. Also: a full
/// queue answers `Overloaded` at once. (Mock cluster with a slow broker, to make a transaction
/// outlive a deadline deterministically.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_deadline_is_deduplicated_and_a_full_queue_sheds_load() {
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("kafka-it-deadline");
    mock.create_topic(&topic, 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let cfg = KafkaConfig { queue_capacity: 2, batch_max_events: 1, ..kafka_sink_config(&brokers, &topic) };
    let sink = Arc::new(KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap());
    wait_ready(&sink).await;
    mock.broker_round_trip_time(1, Duration::from_millis(300)).unwrap();

    let first = kafka_event_record("late-1", "corr-late", "body-late");
    let gave_up = sink.publish(first, Instant::now() + Duration::from_millis(50)).await;
    assert!(matches!(gave_up, Err(SinkError::DeadlineExceeded { .. })), "{gave_up:?}");
    let retry =
        sink.publish(kafka_event_record("late-2", "corr-late", "body-late"), deadline()).await.unwrap();
    assert_eq!(
        retry.duplicate_of.as_deref(),
        Some("late-1"),
        "the retry is answered from the first delivery"
    );

    // One transaction at a time takes >= 300 ms; a burst overflows the two-slot queue.
    let burst = join_all((0..20).map(|i| {
        let sink = Arc::clone(&sink);
        async move {
            sink.publish(kafka_event_record(&format!("burst-{i}"), &format!("b-{i}"), "x"), deadline()).await
        }
    }))
    .await;
    let shed = burst.iter().filter(|r| matches!(r, Err(SinkError::Overloaded { .. }))).count();
    let ok = burst.iter().filter(|r| r.is_ok()).count();
    assert!(shed >= 1, "a full queue sheds load: {burst:?}");
    assert!(burst.iter().all(|r| r.is_ok() || matches!(r, Err(SinkError::Overloaded { .. }))), "{burst:?}");
    mock.broker_round_trip_time(1, Duration::ZERO).unwrap();

    let read = read_back(&brokers, &topic, 1, 1 + ok).await;
    let by_id = kafka_by_request_id(&read);
    assert_eq!(by_id.get("late-1").map(Vec::len), Some(1), "the late commit is in the topic once");
    assert!(!by_id.contains_key("late-2"), "the retry was not written");
    assert_eq!(read.len(), 1 + ok);
    sink.close().await;
}

/// Routing per event type, with `auto_create_topics` creating the routed topic on first contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_event_types_and_creates_missing_topics_when_asked() {
    let brokers = stack_kafka_brokers();
    let default_topic = unique("kafka-it-default");
    let routed_topic = unique("kafka-it-routed");
    stack_create_topic(&brokers, &default_topic, 1).await;
    let mut cfg = KafkaConfig {
        auto_create_topics: true,
        auto_create_partitions: 1,
        ..kafka_sink_config(&brokers, &default_topic)
    };
    cfg.topics.insert("survey.scored".to_owned(), routed_topic.clone());
    let sink = KafkaSink::start(&cfg, &DedupeConfig::default()).unwrap();
    wait_ready(&sink).await;

    let mut survey = kafka_event_record("route-1", "corr-route-1", "s");
    survey.event.event_type = "survey.scored".into();
    let routed = sink.publish(survey, deadline()).await.unwrap();
    assert_eq!(routed.topic, routed_topic);
    let other = sink.publish(kafka_event_record("route-2", "corr-route-2", "i"), deadline()).await.unwrap();
    assert_eq!(other.topic, default_topic);

    let read = oracle_committed_records(&brokers, &routed_topic, 1).await;
    assert_eq!(read.iter().map(KafkaRecord::request_id).collect::<Vec<_>>(), vec!["route-1"]);
    assert_eq!(read[0].headers["event_type"], "survey.scored");
    sink.close().await;
}
