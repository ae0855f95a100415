//! Chaos and overload tests of the real `cxone-ingest serve` binary: the broker and the object
//! store killed, stopped and paused under a steady stream of retried deliveries, and offered load
//! far above capacity. All are ignored with a "restart:" reason, so scripts/test runs them alone
//! after the suite. What they print and can and cannot prove: docs/reliability.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use crate::support::*;

/// One chaos phase: its name, the `stack-ctl` steps that break something, those that repair it.
type Phase = (&'static str, &'static [(&'static str, &'static str)], &'static [(&'static str, &'static str)]);

/// What one logical event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    Invalid,
}

/// One logical event: a body and its signature, delivered (and redelivered) until acknowledged.
#[derive(Debug, Clone)]
struct Event {
    kind: Kind,
    correlation_id: String,
    body: Arc<str>,
    signature: Arc<str>,
    /// A deliberate repeat of an event acknowledged earlier (same body, same signature).
    repeat_of: Option<usize>,
}

/// One HTTP attempt at delivering an event.
#[derive(Debug, Clone)]
struct Attempt {
    request_id: String,
    /// `None`: no answer (transport error or client timeout).
    status: Option<u16>,
    answer: Value,
    /// The controller's phase when the answer came (0 = before the first fault): each fault must
    /// show as 503s while it lasts.
    phase: usize,
}

/// Everything that happened to one event.
#[derive(Debug, Clone)]
struct Delivery {
    event: Event,
    attempts: Vec<Attempt>,
    /// The controller's phase (0 = before the first fault) when the event was acknowledged.
    acked_in_phase: usize,
}

impl Delivery {
    fn acknowledged(&self) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.status.is_some_and(|s| (200..300).contains(&s)))
    }
}

/// Retries like CXone would: the exact same body and signature, after Retry-After (capped) or
/// an exponential backoff; bounded in attempts and time.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    event: Event,
    phase: &AtomicUsize,
) -> Delivery {
    const MAX_ATTEMPTS: usize = 60;
    const GIVE_UP_AFTER: Duration = Duration::from_secs(150);
    let first = Instant::now();
    let mut attempts = Vec::new();
    let mut backoff = Duration::from_millis(200);
    for k in 0..MAX_ATTEMPTS {
        let request_id = format!("chaos-{n}-{k}");
        let posted = e2e_post(client, url, &event.body, &event.signature, Some(&request_id)).await;
        let (status, answer, retry_after) = match posted {
            Ok(p) => (Some(p.status), p.body, p.retry_after.and_then(|r| r.parse::<u64>().ok())),
            Err(_) => (None, Value::Null, None),
        };
        let done = status.is_some_and(|s| (200..300).contains(&s));
        attempts.push(Attempt { request_id, status, answer, phase: phase.load(Ordering::Relaxed) });
        if done || first.elapsed() > GIVE_UP_AFTER {
            break;
        }
        let wait = retry_after.map_or(backoff, |s| Duration::from_secs(s).min(Duration::from_secs(2)));
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    Delivery { event, attempts, acked_in_phase: phase.load(Ordering::Relaxed) }
}

/// The CI chaos test: valid, invalid and repeated deliveries keep arriving (and
/// are retried on non-2xx) while the **memory** broker is paused (SIGSTOP) for longer than the
/// request deadline, garage is stopped and restarted, and garage is paused past the deadline. At
/// the end every event is acknowledged, every acknowledged event is in Kafka (by the request id
/// that wrote it) or in S3 exactly once, and the same service process is still serving. The
/// memory broker is never killed or stopped: that deletes its data by design.
#[ignore = "restart: chaos — pauses kafka (memory), stops and pauses garage"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_chaos_paused_broker_and_failing_object_store_lose_and_duplicate_no_acknowledged_event() {
    run_chaos(
        stack_kafka_brokers(),
        &[
            ("SIGSTOP kafka (memory)", &[("pause", "kafka")], &[("resume", "kafka")]),
            ("stop garage", &[("stop", "garage")], &[("start", "garage")]),
            ("SIGSTOP garage", &[("pause", "garage")], &[("resume", "garage")]),
        ],
    )
    .await;
}

/// The chaos test on the **durable** broker (tansu, s3 storage in the stack's kafka-store): the
/// same deliveries while the broker is SIGKILLed and restarted, garage is stopped and restarted,
/// and each of them is paused past the deadline. The broker keeps its records in its own object
/// store, which stays up: garage ignores conditional writes, and tansu stored there reused
/// offsets after a kill (docs/reliability.md).
#[ignore = "restart: chaos — kills and pauses kafka-durable, stops and pauses garage"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_chaos_broker_and_object_store_failures_lose_and_duplicate_no_acknowledged_event() {
    run_chaos(
        stack_durable_kafka_brokers(),
        &[
            ("SIGKILL kafka-durable", &[("kill", "kafka-durable")], &[("start", "kafka-durable")]),
            ("stop garage", &[("stop", "garage")], &[("start", "garage")]),
            ("SIGSTOP kafka-durable", &[("pause", "kafka-durable")], &[("resume", "kafka-durable")]),
            ("SIGSTOP garage", &[("pause", "garage")], &[("resume", "garage")]),
        ],
    )
    .await;
}

/// The chaos run both tests share: a service on `brokers` and the stack's garage, eight senders
/// retrying like CXone, the controller running `phases` (break, hold past the deadline, repair,
/// settle), then the accounting; panics on any lost, duplicated or never-acknowledged event.
async fn run_chaos(brokers: String, phases: &[Phase]) {
    const WORKERS: usize = 8;
    const PAUSE_BETWEEN_EVENTS: Duration = Duration::from_millis(150);
    let mut options = ServiceOptions::new("chaos", &brokers);
    options.request_deadline_ms = 2_000;
    options.kafka_call_timeout_ms = 1_500;
    options.retry_after_secs = 1;
    options.s3_probe_interval_ms = 1_000;
    stack_create_topic(&brokers, &options.topic, 3).await;
    let mut service = Service::start_ready(options.clone()).await;
    let pid = service.pid();
    let url = service.webhook_url();

    let stop_new = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged: Arc<Mutex<Vec<(usize, Event)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (url, stop_new, next, acknowledged, phase) = (
            url.clone(),
            Arc::clone(&stop_new),
            Arc::clone(&next),
            Arc::clone(&acknowledged),
            Arc::clone(&phase),
        );
        workers.push(tokio::spawn(async move {
            let client =
                reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
            let mut log: Vec<(usize, Delivery)> = Vec::new();
            while !stop_new.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let earlier = if n % 10 == 9 {
                    let acknowledged = acknowledged.lock().await;
                    (!acknowledged.is_empty()).then(|| acknowledged[(n * 7919) % acknowledged.len()].clone())
                } else {
                    None
                };
                let event = match earlier {
                    Some((of, event)) => Event { repeat_of: Some(of), ..event },
                    None => {
                        let kind = if n % 10 < 7 { Kind::Valid } else { Kind::Invalid };
                        let correlation_id = format!("chaos-corr-{n}-{}", uuid::Uuid::new_v4().simple());
                        let body = match kind {
                            Kind::Valid => e2e_valid_body(&correlation_id),
                            Kind::Invalid => e2e_invalid_body(&correlation_id),
                        };
                        let signature = e2e_sign(body.as_bytes());
                        Event {
                            kind,
                            correlation_id,
                            body: body.into(),
                            signature: signature.into(),
                            repeat_of: None,
                        }
                    }
                };
                let delivery = deliver(&client, &url, n, event, &phase).await;
                if delivery.acknowledged().is_some() && delivery.event.repeat_of.is_none() {
                    acknowledged.lock().await.push((n, delivery.event.clone()));
                }
                log.push((n, delivery));
                tokio::time::sleep(PAUSE_BETWEEN_EVENTS).await;
            }
            log
        }));
    }

    // The controller: each phase breaks something, holds it past the deadline, repairs it, settles.
    let hold = Duration::from_millis(options.request_deadline_ms) + Duration::from_secs(2);
    let settle = Duration::from_secs(4);
    tokio::time::sleep(settle).await;
    for (index, (name, breaks, repairs)) in phases.iter().enumerate() {
        phase.store(index + 1, Ordering::Relaxed);
        println!("chaos: phase {name} (events so far: {})", next.load(Ordering::Relaxed));
        for (action, component) in breaks.iter() {
            e2e_stack_ctl(action, component).await;
        }
        tokio::time::sleep(hold).await;
        for (action, component) in repairs.iter() {
            e2e_stack_ctl(action, component).await;
        }
        tokio::time::sleep(settle).await;
    }
    stop_new.store(true, Ordering::Relaxed);
    let mut deliveries: Vec<(usize, Delivery)> = Vec::new();
    for worker in workers {
        deliveries.extend(worker.await.unwrap());
    }
    deliveries.sort_by_key(|(n, _)| *n);

    // What was answered.
    let attempts: Vec<&Attempt> = deliveries.iter().flat_map(|(_, d)| &d.attempts).collect();
    let count = |f: &dyn Fn(&Attempt) -> bool| attempts.iter().filter(|a| f(a)).count();
    let ok = count(&|a| a.status.is_some_and(|s| (200..300).contains(&s)));
    let unavailable = count(&|a| a.status == Some(503));
    let no_answer = count(&|a| a.status.is_none());
    let other = attempts.len() - ok - unavailable - no_answer;
    let retried = deliveries.iter().map(|(_, d)| d.attempts.len() - 1).sum::<usize>();
    let mut unavailable_by_phase = vec![0usize; phases.len() + 1];
    for a in attempts.iter().filter(|a| a.status == Some(503)) {
        unavailable_by_phase[a.phase] += 1;
    }

    // What is stored: the topic's log, each record judged by its transaction's marker (tansu's
    // read_committed shows aborted records too), and the dead letters under the prefix.
    let log = oracle_read_settled(&brokers, &options.topic, 3, Duration::from_secs(10)).await;
    let kafka_attempts: Vec<SentAttempt> = deliveries
        .iter()
        .filter(|(_, d)| d.event.kind == Kind::Valid)
        .flat_map(|(_, d)| {
            d.attempts
                .iter()
                .map(|a| SentAttempt::from_http(&a.request_id, &d.event.correlation_id, a.status, &a.answer))
        })
        .collect();
    let judgement = judge_exactly_once(&kafka_attempts, &log);
    let committed: HashMap<&str, &OracleRecord> =
        log.iter().filter(|r| r.outcome == TxnOutcome::Committed).map(|r| (r.request_id(), r)).collect();
    // Dead letters are lines of batch objects: found by the request id inside each record (every
    // attempt has its own request id), and at the key and line its answer named.
    let letters = e2e_dead_letters(&options.s3_prefix).await;
    let mut objects_by_request: HashMap<String, usize> = HashMap::new();
    let mut letter_at: HashMap<(&str, u64), &str> = HashMap::new();
    for letter in &letters {
        *objects_by_request.entry(letter.request_id().to_owned()).or_default() += 1;
        letter_at.insert((letter.key.as_str(), letter.line), letter.request_id());
    }

    let mut unacknowledged = Vec::new();
    let mut missing = Vec::new();
    let mut missing_by_phase = vec![0usize; phases.len() + 1];
    let mut duplicated = Vec::new();
    let mut wrong = Vec::new();
    let (mut found_kafka, mut found_s3) = (0, 0);
    for (n, delivery) in &deliveries {
        let Some(ack) = delivery.acknowledged() else {
            unacknowledged.push(*n);
            continue;
        };
        match delivery.event.kind {
            Kind::Valid => {
                if ack.answer["status"] != "published" {
                    wrong.push(format!("{}: {}", ack.request_id, ack.answer));
                    continue;
                }
                // A repeat is answered with the commit of the attempt that wrote the event; how
                // often it is committed is the judgement's business (below).
                let writer = ack.answer["duplicate_of"].as_str().unwrap_or(&ack.request_id);
                match committed.get(writer) {
                    Some(record) => {
                        found_kafka += 1;
                        if record.key.as_deref() != Some(delivery.event.correlation_id.as_str()) {
                            wrong.push(format!("{writer}: key {:?}", record.key));
                        }
                    }
                    None => {
                        // Diagnosis: what holds the acknowledged position now?
                        let at = (ack.answer["partition"].as_i64(), ack.answer["offset"].as_i64());
                        let holder = log
                            .iter()
                            .find(|r| (Some(i64::from(r.partition)), Some(r.offset)) == at)
                            .map_or("nothing".to_owned(), |r| {
                                format!("{} ({:?})", r.request_id(), r.outcome)
                            });
                        missing_by_phase[delivery.acked_in_phase] += 1;
                        missing.push(format!("{n}: {writer} at {at:?} not committed (held by {holder})"));
                    }
                }
            }
            Kind::Invalid => {
                if ack.answer["status"] != "dead_lettered" {
                    wrong.push(format!("{}: {}", ack.request_id, ack.answer));
                    continue;
                }
                let named =
                    (ack.answer["key"].as_str().unwrap_or(""), ack.answer["line"].as_u64().unwrap_or(0));
                match objects_by_request.get(ack.request_id.as_str()) {
                    Some(1) if letter_at.get(&named) == Some(&ack.request_id.as_str()) => found_s3 += 1,
                    Some(1) => wrong.push(format!(
                        "{}: answer names {named:?}, which holds another record",
                        ack.request_id
                    )),
                    Some(k) => duplicated.push(format!("{} x{k} in S3", ack.request_id)),
                    None => {
                        missing_by_phase[delivery.acked_in_phase] += 1;
                        missing.push(format!("{n}: {} not in S3 (answer named {named:?})", ack.request_id));
                    }
                }
            }
        }
    }
    let attempt_by_id: HashMap<&str, &Attempt> =
        attempts.iter().map(|a| (a.request_id.as_str(), *a)).collect();
    let unacknowledged_objects: usize = objects_by_request
        .iter()
        .filter(|(id, _)| attempt_by_id.get(id.as_str()).is_some_and(|a| a.status.is_none_or(|s| s >= 300)))
        .map(|(_, k)| k)
        .sum();
    let foreign_objects: Vec<&String> =
        objects_by_request.keys().filter(|id| !attempt_by_id.contains_key(id.as_str())).collect();

    let page = service.metrics().await;
    let txns = |outcome| metric_sum(&page, "cxone_ingest_kafka_transactions_total", &[("outcome", outcome)]);
    let (committed_txns, aborted, failed) = (txns("committed"), txns("aborted"), txns("failed"));
    let rebuilds = metric_sum(&page, "cxone_ingest_kafka_producer_rebuilds_total", &[]);
    println!(
        "chaos: events {} ({} valid, {} invalid, {} repeats); attempts {}: 2xx {ok}, 503 {unavailable}, \
         no answer {no_answer}, other {other}; retried {retried}; found in Kafka {found_kafka}, in S3 {found_s3}; \
         missing {}, S3 duplicates {}, unacknowledged events {}; dead letters of unacknowledged attempts \
         {unacknowledged_objects}; transactions committed {committed_txns}, aborted {aborted}, failed {failed}; \
         producer rebuilds {rebuilds}; Kafka by the markers: {}",
        deliveries.len(),
        deliveries.iter().filter(|(_, d)| d.event.kind == Kind::Valid && d.event.repeat_of.is_none()).count(),
        deliveries
            .iter()
            .filter(|(_, d)| d.event.kind == Kind::Invalid && d.event.repeat_of.is_none())
            .count(),
        deliveries.iter().filter(|(_, d)| d.event.repeat_of.is_some()).count(),
        attempts.len(),
        missing.len(),
        duplicated.len(),
        unacknowledged.len(),
        judgement.summary(),
    );

    // Evidence for lost records: the broker's high watermarks now vs the highest offsets it acknowledged.
    let mut highest_acknowledged = [-1i64; 3];
    for ack in deliveries.iter().filter_map(|(_, d)| d.acknowledged()) {
        if let (Some(p), Some(o)) = (ack.answer["partition"].as_i64(), ack.answer["offset"].as_i64()) {
            let slot = &mut highest_acknowledged[p as usize];
            *slot = (*slot).max(o);
        }
    }
    let watermarks = {
        let (brokers, topic) = (brokers.clone(), options.topic.clone());
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", unique("chaos-watermarks"))
                .create()
                .unwrap();
            (0..3)
                .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    println!(
        "chaos: topic {} on {brokers}, prefix {}; 503 by phase (0 = before any fault): {unavailable_by_phase:?}; \
         missing by phase acknowledged in: {missing_by_phase:?}; (low, high) watermarks now {watermarks:?}; highest acknowledged offsets {highest_acknowledged:?}",
        options.topic, options.s3_prefix
    );
    assert!(service.is_running(), "the service exited\n{}", service.log_tail(8000));
    assert_eq!(service.pid(), pid);
    service.wait_ready(Duration::from_secs(60)).await;
    for (index, (name, _, _)) in phases.iter().enumerate() {
        assert!(unavailable_by_phase[index + 1] > 0, "phase {name} never showed: no 503 while it lasted");
    }
    assert!(unacknowledged.is_empty(), "events never acknowledged: {unacknowledged:?}");
    assert!(wrong.is_empty(), "wrong answers or records: {wrong:?}");
    assert!(
        missing.is_empty(),
        "{} acknowledged but missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(duplicated.is_empty(), "acknowledged and duplicated in S3: {duplicated:?}");
    assert!(foreign_objects.is_empty(), "dead letters never sent: {foreign_objects:?}");
    // Kafka: every acknowledged event committed exactly once where answered; a 503'd attempt's
    // record only aborted, open, or committed and caught by a retry's duplicate_of; nothing else.
    judgement.assert_exactly_once();
}

/// Overload: offered load at three times the measured capacity for 20 s, with a small
/// `max_in_flight`. The excess gets 503 + Retry-After, the server's RSS stays under the bound,
/// every answer comes within the deadline (+ margin for the client), every accepted event is in
/// the topic once, and the first request after the load is answered 200.
#[ignore = "restart: not a restart, but must run alone: saturates both cores for ~30 s"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_overload_sheds_with_503_keeps_memory_bounded_and_recovers_at_once() {
    const MAX_IN_FLIGHT: usize = 8;
    const DEADLINE: Duration = Duration::from_millis(2_000);
    const CLIENT_MARGIN: Duration = Duration::from_secs(2);
    const OVERLOAD_FOR: Duration = Duration::from_secs(20);
    const MAX_OUTSTANDING: usize = 512;
    /// The documented bound (docs/reliability.md).
    const RSS_BOUND_KIB: u64 = 256 * 1024;
    let brokers = stack_kafka_brokers();
    let mut options = ServiceOptions::new("overload", &brokers);
    options.max_in_flight = MAX_IN_FLIGHT;
    options.request_deadline_ms = DEADLINE.as_millis() as u64;
    options.retry_after_secs = 1;
    stack_create_topic(&brokers, &options.topic, 3).await;
    let service = Service::start_ready(options.clone()).await;
    let url = service.webhook_url();
    let rss_idle = service.rss_kib().expect("VmRSS");

    // Capacity: closed loop with as many connections as in-flight slots.
    let measure_for = Duration::from_secs(4);
    let measured = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..MAX_IN_FLIGHT {
        let (url, measured) = (url.clone(), Arc::clone(&measured));
        loops.push(tokio::spawn(async move {
            let client = e2e_client();
            while started.elapsed() < measure_for {
                let body = e2e_valid_body(&unique("cap"));
                let p = e2e_post(&client, &url, &body, &e2e_sign(body.as_bytes()), None).await.unwrap();
                if p.status == 200 {
                    measured.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for l in loops {
        l.await.unwrap();
    }
    let capacity = measured.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let rate = (capacity * 3.0).clamp(50.0, 5_000.0);

    // RSS sampler.
    let sampling = Arc::new(AtomicBool::new(true));
    let pid = service.pid();
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut max = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u64>()
                        .ok()
                }) {
                    max = max.max(kib);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            max
        })
    };

    // Open loop: request k is due at start + k / rate, whatever happened before.
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let outstanding = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let results: Arc<Mutex<Vec<(String, Posted)>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut not_sent = 0usize;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut k = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        if due.duration_since(start) >= OVERLOAD_FOR {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        k += 1;
        let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        let (client, url, results, errors) =
            (client.clone(), url.clone(), Arc::clone(&results), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let request_id = format!("over-{k}");
            let body = e2e_valid_body(&format!("corr-{request_id}-{}", uuid::Uuid::new_v4().simple()));
            match e2e_post(&client, &url, &body, &e2e_sign(body.as_bytes()), Some(&request_id)).await {
                Ok(p) => results.lock().await.push((request_id, p)),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let offered_for = start.elapsed();
    // Load gone: the very next request is served.
    let body = e2e_valid_body(&unique("after"));
    let after = e2e_post(&e2e_client(), &url, &body, &e2e_sign(body.as_bytes()), None).await.unwrap();
    sampling.store(false, Ordering::Relaxed);
    let rss_max = sampler.await.unwrap();

    let results = results.lock().await;
    let accepted: Vec<&(String, Posted)> = results.iter().filter(|(_, p)| p.status == 200).collect();
    let shed: Vec<&(String, Posted)> = results.iter().filter(|(_, p)| p.status == 503).collect();
    let other = results.len() - accepted.len() - shed.len();
    let slowest_accepted = accepted.iter().map(|(_, p)| p.latency).max().unwrap_or_default();
    let slowest = results.iter().map(|(_, p)| p.latency).max().unwrap_or_default();
    let mut accepted_latency: Vec<Duration> = accepted.iter().map(|(_, p)| p.latency).collect();
    accepted_latency.sort();
    let page = service.metrics().await;
    let overloaded =
        metric_sum(&page, "cxone_ingest_requests_total", &[("route", "webhook"), ("outcome", "overloaded")]);
    println!(
        "overload: capacity {capacity:.0} req/s (closed loop, {MAX_IN_FLIGHT} connections); offered {rate:.0} req/s for \
         {:.1} s: sent {}, not sent (client at {MAX_OUTSTANDING} outstanding) {not_sent}, 200 {}, 503 {} \
         (server counted {overloaded} overloaded), other {other}, transport errors {}; accepted p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; slowest answer {:.1} ms; RSS idle {} KiB, max {} KiB (bound {} KiB); \
         after the load: {}",
        offered_for.as_secs_f64(),
        results.len() + errors.load(Ordering::Relaxed),
        accepted.len(),
        shed.len(),
        errors.load(Ordering::Relaxed),
        percentile(&accepted_latency, 50.0).as_secs_f64() * 1e3,
        percentile(&accepted_latency, 99.0).as_secs_f64() * 1e3,
        slowest_accepted.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3,
        rss_idle,
        rss_max,
        RSS_BOUND_KIB,
        after.status,
    );

    assert!(!shed.is_empty(), "no 503 at three times capacity");
    assert!(shed.iter().all(|(_, p)| p.retry_after.as_deref() == Some("1")), "a 503 without Retry-After: 1");
    assert_eq!(other, 0, "answers other than 200/503");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "requests without an answer");
    assert!(slowest <= DEADLINE + CLIENT_MARGIN, "an answer took {slowest:?} (deadline {DEADLINE:?})");
    assert!(rss_max < RSS_BOUND_KIB, "RSS {rss_max} KiB over the bound {RSS_BOUND_KIB} KiB");
    assert_eq!(after.status, 200, "not recovered at once: {:?}", after.body);

    // Every accepted event is in the topic exactly once; nothing shed is.
    let records = e2e_committed_records(&brokers, &options.topic).await;
    let by_request = kafka_by_request_id(&records);
    for (request_id, _) in &accepted {
        assert_eq!(by_request.get(request_id).map(Vec::len), Some(1), "{request_id} once in the topic");
    }
    // Shed for want of a slot (not after a deadline, whose write may still commit): never written.
    for (request_id, _) in shed.iter().filter(|(_, p)| p.body["reason"] == "overloaded") {
        assert!(!by_request.contains_key(request_id), "{request_id} was shed but written");
    }
}
