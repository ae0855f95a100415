//! The multi-replica chaos accounting test (issue 16 item 5): three replicas of the real
//! binary share the dedupe store while one is SIGKILLed and started again, the store restarts
//! and the durable broker pauses, and senders retry every non-2xx on another replica. Ignored
//! with a "restart:" reason, so scripts/test runs it alone after the suite; what it prints:
//! docs/reliability.md.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// How many replicas serve the webhook.
const REPLICAS: usize = 3;
/// The replica that is SIGKILLed and started again.
const KILLED: usize = 0;

/// One logical event: a body and its signature, delivered (and redelivered) until acknowledged.
#[derive(Debug, Clone)]
struct Event {
    /// Invalid events go to S3 as dead letters; valid ones to the topic.
    valid: bool,
    /// The record key: what identifies the event in the topic.
    correlation_id: String,
    body: String,
    signature: String,
}

/// One HTTP attempt at delivering an event.
#[derive(Debug, Clone)]
struct Attempt {
    /// Chosen by the sender (`x-request-id`): the `request_id` header of the record it writes.
    request_id: String,
    /// The replica it went to (each attempt goes to another one than the one before).
    replica: usize,
    /// `None`: no answer (connection refused while the replica was down, or client timeout).
    status: Option<u16>,
    answer: Value,
    /// Sent to the killed replica before it was started again: its transaction was fenced by the
    /// restart, or committed with an outcome the dedupe could not record (claim taken over).
    to_killed_life: bool,
}

impl Attempt {
    fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Everything that happened to one event.
#[derive(Debug, Clone)]
struct Delivery {
    n: usize,
    event: Event,
    attempts: Vec<Attempt>,
}

impl Delivery {
    fn acknowledged(&self) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.acknowledged())
    }
}

/// Retries like CXone: the same body and signature after a short backoff, every attempt on
/// another replica than the one before, until a 2xx or `give_up_at`.
async fn deliver(
    client: &reqwest::Client,
    urls: &RwLock<Vec<String>>,
    restarted: &AtomicBool,
    n: usize,
    event: Event,
    give_up_at: Instant,
) -> Delivery {
    let mut attempts = Vec::new();
    let mut backoff = Duration::from_millis(100);
    for k in 0.. {
        let replica = (n + k) % REPLICAS;
        let url = urls.read().expect("urls lock")[replica].clone();
        let to_killed_life = replica == KILLED && !restarted.load(Ordering::SeqCst);
        let request_id = format!("replicas-{n}-{k}");
        let posted = e2e_post(client, &url, &event.body, &event.signature, Some(&request_id)).await;
        let (status, answer) = match posted {
            Ok(p) => (Some(p.status), p.body),
            Err(_) => (None, Value::Null),
        };
        let attempt = Attempt { request_id, replica, status, answer, to_killed_life };
        let done = attempt.acknowledged();
        attempts.push(attempt);
        if done || Instant::now() > give_up_at {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
    Delivery { n, event, attempts }
}

/// Three replicas (durable broker, shared redis store, a 400 ms request deadline so that some
/// transactions commit after their request was answered 503), eight senders retrying every
/// non-2xx on another replica, while a replica is SIGKILLed and started again with the same
/// instance id, redis restarts and the broker is paused past the deadline. At the end every
/// event is acknowledged, every acknowledged valid event's writer is in the topic exactly once,
/// records of its other attempts appear only where the kill or an aborted/failed transaction
/// explains them (a late commit published again fails the test), and at least one late commit
/// retried on another replica was answered `duplicate_of` (else the run proved nothing). The topic
/// is read read_uncommitted too: tansu can leave read_committed stuck (docs/reliability.md).
#[ignore = "restart: replicas chaos — kills a replica, restarts redis, pauses kafka-durable"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_replicas_and_store_failures_publish_every_acknowledged_event_once() {
    const SENDERS: usize = 8;
    const MAX_EVENTS: usize = 600;
    const PAUSE_BETWEEN_EVENTS: Duration = Duration::from_millis(100);
    let started = Instant::now();
    let brokers = stack_durable_kafka_brokers();
    let mut options = ServiceOptions::new("replicas", &brokers);
    options.dedupe_store = stack_redis_url();
    options.request_deadline_ms = 400;
    // Longer than the broker pause below: the paused transactions complete late instead of
    // failing (tansu never completes a commit behind a transaction it left open: docs/reliability.md).
    options.kafka_call_timeout_ms = 5_000;
    options.retry_after_secs = 1;
    stack_create_topic(&brokers, &options.topic, 3).await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Service::start(options.clone()));
    }
    for replica in &replicas {
        replica.wait_ready(Duration::from_secs(60)).await;
    }
    let urls = Arc::new(RwLock::new(replicas.iter().map(Service::webhook_url).collect::<Vec<_>>()));

    let stop_new = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let give_up_at = Instant::now() + Duration::from_secs(240);
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (urls, stop_new, next, restarted) =
            (Arc::clone(&urls), Arc::clone(&stop_new), Arc::clone(&next), Arc::clone(&restarted));
        senders.push(tokio::spawn(async move {
            let client =
                reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
            let mut log = Vec::new();
            while !stop_new.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= MAX_EVENTS {
                    break;
                }
                let valid = n % 10 != 9;
                let correlation_id = format!("replicas-corr-{n}-{}", uuid::Uuid::new_v4().simple());
                let body =
                    if valid { e2e_valid_body(&correlation_id) } else { e2e_invalid_body(&correlation_id) };
                let signature = e2e_sign(body.as_bytes());
                let event = Event { valid, correlation_id, body, signature };
                log.push(deliver(&client, &urls, &restarted, n, event, give_up_at).await);
                tokio::time::sleep(PAUSE_BETWEEN_EVENTS).await;
            }
            log
        }));
    }

    // The controller: each fault while the senders keep going, each repaired, then a settle.
    let settle = Duration::from_secs(3);
    let hold = Duration::from_millis(options.request_deadline_ms) + Duration::from_secs(2);
    tokio::time::sleep(settle).await;

    println!("replicas: SIGKILL replica 0 (events so far: {})", next.load(Ordering::Relaxed));
    let killed = replicas.remove(KILLED);
    let instance_id = killed.instance_id.clone();
    drop(killed); // SIGKILL, and waits for the exit
    tokio::time::sleep(hold).await;
    let restarted_replica = Service::start_as(options.clone(), instance_id);
    restarted_replica.wait_ready(Duration::from_secs(60)).await;
    urls.write().expect("urls lock")[KILLED] = restarted_replica.webhook_url();
    restarted.store(true, Ordering::SeqCst);
    replicas.insert(KILLED, restarted_replica);
    tokio::time::sleep(settle).await;

    println!("replicas: restart redis (events so far: {})", next.load(Ordering::Relaxed));
    e2e_stack_ctl("restart", "redis").await;
    tokio::time::sleep(settle).await;

    println!("replicas: SIGSTOP kafka-durable (events so far: {})", next.load(Ordering::Relaxed));
    e2e_stack_ctl("pause", "kafka-durable").await;
    tokio::time::sleep(Duration::from_millis(options.request_deadline_ms) + Duration::from_secs(1)).await;
    e2e_stack_ctl("resume", "kafka-durable").await;
    tokio::time::sleep(settle).await;

    stop_new.store(true, Ordering::Relaxed);
    let mut deliveries: Vec<Delivery> = Vec::new();
    for sender in senders {
        deliveries.extend(sender.await.unwrap());
    }
    deliveries.sort_by_key(|d| d.n);

    // What was answered.
    let attempts: Vec<&Attempt> = deliveries.iter().flat_map(|d| &d.attempts).collect();
    let unavailable = attempts.iter().filter(|a| a.status == Some(503)).count();
    let no_answer = attempts.iter().filter(|a| a.status.is_none()).count();
    let duplicate_answers =
        attempts.iter().filter(|a| a.acknowledged() && !a.answer["duplicate_of"].is_null()).count();
    let valid_acks = deliveries.iter().filter(|d| d.event.valid && d.acknowledged().is_some()).count();

    // What is stored: the topic, read_committed.
    let committed = e2e_read_topic(&brokers, &options.topic, valid_acks).await;
    // tansu never ends a transaction whose producer was killed or gave up mid-commit, and then
    // completes no later commit on that partition: read_committed stops at a stuck last stable
    // offset (docs/reliability.md, "A last stable offset stuck behind an open transaction"). It
    // also shows aborted records, so read_uncommitted tells nothing less; the records past the
    // stuck offset are counted ("behind a stuck LSO"), never lost in silence.
    let records = {
        let (brokers, topic, want) =
            (brokers.clone(), options.topic.clone(), committed.len().max(valid_acks));
        tokio::task::spawn_blocking(move || {
            kafka_read_uncommitted(&brokers, &topic, 3, want, Duration::from_secs(60))
        })
        .await
        .expect("reader thread")
    };
    let committed_count = committed.len();
    let readable_committed: std::collections::HashSet<(i32, i64)> =
        committed.iter().map(|r| (r.partition, r.offset)).collect();
    let mut behind_stuck_lso = 0;
    let mut by_correlation: HashMap<&str, Vec<&KafkaRecord>> = HashMap::new();
    for record in &records {
        by_correlation.entry(record.key.as_deref().unwrap_or("")).or_default().push(record);
    }
    // Dead letters are found by request id inside their batch objects.
    let letters = e2e_dead_letters(&options.s3_prefix).await;
    let stored_letters: std::collections::HashSet<&str> =
        letters.iter().map(StoredLetter::request_id).collect();

    let mut unacknowledged = Vec::new();
    let mut wrong = Vec::new();
    let mut missing = Vec::new();
    let mut duplicated = Vec::new();
    let mut unacknowledged_records = Vec::new();
    let mut killed_life_records = 0;
    let mut late_committed = 0;
    let mut late_committed_retried_elsewhere = 0;
    for delivery in &deliveries {
        let Some(ack) = delivery.acknowledged() else {
            unacknowledged.push(delivery.n);
            continue;
        };
        if !delivery.event.valid {
            if ack.answer["status"] != "dead_lettered" {
                wrong.push(format!("{}: {} {}", delivery.n, ack.request_id, ack.answer));
            } else if !stored_letters.contains(ack.request_id.as_str()) {
                missing.push(format!("{}: dead letter of {} not in S3", delivery.n, ack.request_id));
            }
            continue;
        }
        if ack.answer["status"] != "published" {
            wrong.push(format!("{}: {} {}", delivery.n, ack.request_id, ack.answer));
            continue;
        }
        let found = by_correlation.get(delivery.event.correlation_id.as_str()).map_or(&[][..], Vec::as_slice);
        // The record's writer: the acknowledged attempt itself, or (a repeat) the attempt it was
        // answered `duplicate_of`.
        let answered_writer = ack.answer["duplicate_of"].as_str().unwrap_or(&ack.request_id);
        match found.iter().filter(|r| r.request_id() == answered_writer).count() {
            0 => {
                // Diagnosis: what holds the acknowledged position now?
                let at = (ack.answer["partition"].as_i64(), ack.answer["offset"].as_i64());
                let holder = records
                    .iter()
                    .find(|r| (Some(i64::from(r.partition)), Some(r.offset)) == at)
                    .map_or("nothing", |r| r.request_id());
                missing.push(format!(
                    "{}: {answered_writer} at {at:?} not in the topic (held by {holder})",
                    delivery.n
                ));
            }
            1 => {
                let record = found.iter().find(|r| r.request_id() == answered_writer).expect("counted one");
                if !readable_committed.contains(&(record.partition, record.offset)) {
                    behind_stuck_lso += 1;
                }
            }
            k => duplicated.push(format!("{}: {answered_writer} x{k}", delivery.n)),
        }
        for other in found.iter().filter(|r| r.request_id() != answered_writer) {
            match delivery.attempts.iter().find(|a| a.request_id == other.request_id()) {
                // tansu shows aborted records to read_committed readers: a record of an attempt
                // answered 503 (or not at all) may be aborted, or a commit of unknown outcome.
                Some(a) if a.to_killed_life || a.status.is_none() => killed_life_records += 1,
                Some(a) if !a.acknowledged() => unacknowledged_records.push(format!(
                    "{}: {} ({:?}) beside {answered_writer}",
                    delivery.n, a.request_id, a.status
                )),
                _ => duplicated.push(format!("{}: also written by {}", delivery.n, other.request_id())),
            }
        }
        // A late commit: an attempt answered 503 whose transaction committed after the answer,
        // which the service knows (a repeat was answered `duplicate_of` it) and the topic holds.
        let writer_attempt = delivery.attempts.iter().position(|a| a.request_id == answered_writer);
        if let Some(at) = writer_attempt.filter(|at| delivery.attempts[*at].status == Some(503)) {
            late_committed += 1;
            let late = &delivery.attempts[at];
            if delivery.attempts[at + 1..].iter().any(|a| a.replica != late.replica) {
                late_committed_retried_elsewhere += 1;
            }
        }
        if writer_attempt.is_none() {
            wrong.push(format!(
                "{}: answered duplicate_of {answered_writer}, not an attempt of it",
                delivery.n
            ));
        }
    }

    // The replicas' own count (the killed replica's count before the kill is lost with it).
    let (mut aborted, mut failed) = (0.0, 0.0);
    for replica in &replicas {
        let page = replica.metrics().await;
        let txns =
            |outcome| metric_sum(&page, "cxone_ingest_kafka_transactions_total", &[("outcome", outcome)]);
        aborted += txns("aborted");
        failed += txns("failed");
    }
    println!(
        "replicas: events {} ({} valid, {} invalid); attempts {}: 503 {unavailable}, no answer {no_answer}, \
         duplicate_of answers {duplicate_answers}; late-committed 503s {late_committed} (retried on another \
         replica {late_committed_retried_elsewhere}); records in the topic {} (read_committed {}, acknowledged ones behind a stuck LSO {behind_stuck_lso}); dead letters {}; unacknowledged {}, \
         missing {}, duplicated {}, wrong {}, records of unacknowledged attempts {} (+ {killed_life_records} of the killed replica's attempts; transactions aborted {aborted}, failed {failed}); topic {} on {brokers}; run {:?}",
        deliveries.len(),
        deliveries.iter().filter(|d| d.event.valid).count(),
        deliveries.iter().filter(|d| !d.event.valid).count(),
        attempts.len(),
        records.len(),
        committed_count,
        letters.len(),
        unacknowledged.len(),
        missing.len(),
        duplicated.len(),
        wrong.len(),
        unacknowledged_records.len(),
        options.topic,
        started.elapsed(),
    );
    if !missing.is_empty() {
        // Diagnosis for a missing record: which offsets each partition gave the readers (CI run of
        // 2026-12-02: the first records of two partitions were absent from both reads, once).
        let mut spans: std::collections::BTreeMap<i32, (i64, i64, usize)> = std::collections::BTreeMap::new();
        for record in &records {
            let span = spans.entry(record.partition).or_insert((i64::MAX, i64::MIN, 0));
            *span = (span.0.min(record.offset), span.1.max(record.offset), span.2 + 1);
        }
        println!("replicas: read_uncommitted per partition (first offset, last offset, records): {spans:?}");
    }
    for problem in missing.iter().chain(&duplicated).chain(&wrong).chain(&unacknowledged_records) {
        println!("replicas: problem {problem}");
    }
    let troubled: Vec<usize> = missing
        .iter()
        .chain(&duplicated)
        .chain(&wrong)
        .chain(&unacknowledged_records)
        .filter_map(|p| p.split(':').next()?.parse().ok())
        .collect();
    for delivery in deliveries.iter().filter(|d| troubled.contains(&d.n)) {
        let tried: Vec<String> = delivery
            .attempts
            .iter()
            .map(|a| format!("{}@{} {:?} {}", a.request_id, a.replica, a.status, a.answer))
            .collect();
        println!("replicas: event {} attempts: {tried:#?}", delivery.n);
    }
    for replica in &mut replicas {
        assert!(replica.is_running(), "a replica exited\n{}", replica.log_tail(8_000));
    }
    assert!(unacknowledged.is_empty(), "events never acknowledged: {unacknowledged:?}");
    assert!(duplicated.is_empty(), "acknowledged events in the topic more than once: {duplicated:?}");
    assert!(missing.is_empty(), "acknowledged events not stored: {missing:?}");
    assert!(
        unacknowledged_records.is_empty() || aborted + failed > 0.0,
        "records of attempts answered 503 beside the acknowledged writer, with no aborted or failed \
         transaction to explain them (published again): {unacknowledged_records:?}"
    );
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    assert!(
        late_committed_retried_elsewhere > 0,
        "no 503 committed late and was retried on another replica: the run proved nothing \
         (503s {unavailable}, late commits {late_committed})"
    );
}
