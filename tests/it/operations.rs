//! The operations kit (issue 19) proven against a real Prometheus server scraping the real
//! binary: the series the alert rules and the dashboard read exist with the values the traffic
//! implies, the sink-unavailable alert goes pending, fires and resolves around a broker outage,
//! every rule evaluates, and every dashboard query returns data.
//!
//! The service runs on a private broker and a private Redis dedupe store (so stopping them
//! disturbs no other test) and writes its dead letters through a fault-injecting front of the
//! stack's S3 server. Prometheus scrapes
//! every second and loads the shipped rules with their durations divided by
//! [`RULE_TIME_COMPRESSION`] (a 5-minute `for:` becomes 10 s; nothing else changes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use cxone_ingest::dedupe::redis::{RedisStore, SetIfAbsent};
use cxone_ingest::dedupe::store::{ClaimState, claim_key, now_ms};
use sha2::{Digest, Sha256};

use crate::dead_letter::{S3Front, s3_authority};
use crate::support::prometheus::*;
use crate::support::*;

/// Answers of one kind of delivery, by outcome (`published`, `dead_lettered`, `401`, ...).
#[derive(Default, Debug)]
struct Tally(BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, posted: &Posted) {
        let outcome = match posted.status {
            200 => posted.body["status"].as_str().unwrap_or("200").to_owned(),
            503 => posted.body["reason"].as_str().unwrap_or("503").to_owned(),
            status => status.to_string(),
        };
        *self.0.entry(outcome).or_default() += 1;
    }

    fn get(&self, outcome: &str) -> u64 {
        self.0.get(outcome).copied().unwrap_or(0)
    }
}

/// The correlation id of a payload.
fn correlation_of(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("json");
    value["correlation_id"].as_str().expect("correlation_id").to_owned()
}

/// Posts a signed delivery and tallies its answer.
async fn deliver(client: &reqwest::Client, service: &Service, body: &str, tally: &mut Tally) -> Posted {
    let posted =
        e2e_post(client, &service.webhook_url(), body, &e2e_sign(body.as_bytes()), None).await.expect("post");
    tally.add(&posted);
    posted
}

/// Polls until Prometheus reports `query` = `want` (the scrape lags the service by up to 1 s).
async fn wait_for_value(prometheus: &PrivatePrometheus, query: &str, want: f64) {
    let seen = poll_until(Duration::from_secs(30), || async {
        let value = prometheus.query_sum(query).await;
        (value == Some(want)).then_some(())
    })
    .await;
    assert!(seen.is_some(), "{query}: want {want}, Prometheus has {:?}", prometheus.query_sum(query).await);
}

/// Issue 19 item 3 and 4: a real scrape. Fails when a metric the rules or the dashboard use is
/// renamed or no longer recorded, when the sink-unavailable rule does not fire on a broker
/// outage (or does not resolve after it), or when a rule stops evaluating.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_sees_the_traffic_fires_the_outage_alert_and_fills_every_panel() {
    let mut broker = PrivateTansu::on_free_port();
    broker.start();
    let s3_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let front = S3Front::start(s3_listener, s3_authority(), 0).await;

    let mut redis = PrivateRedis::start();
    let mut options = ServiceOptions::new("ops", &broker.brokers());
    options.s3_endpoint = Some(front.endpoint());
    options.dedupe_store = redis.url();
    options.request_deadline_ms = 4_000;
    options.kafka_call_timeout_ms = 1_500;
    options.extra_config = vec![
        // Small enough that one valid event below is refused by the size pre-check.
        ("kafka.client", "\"message.max.bytes\" = \"20000\"".to_owned()),
        // A connection that sends half a request head is closed after 1 s.
        ("server", "header_read_timeout_ms = 1000".to_owned()),
        ("dead_letter", "backoff_base_ms = 20".to_owned()),
        ("dead_letter", "backoff_max_ms = 100".to_owned()),
    ];
    stack_create_topic(&broker.brokers(), &options.topic, 1).await;
    let service = Service::start_ready(options).await;
    let rules = compress_rule_durations(
        &std::fs::read_to_string(shipped_rules_path()).expect("read the shipped rules"),
        RULE_TIME_COMPRESSION,
    );
    let prometheus = PrivatePrometheus::start(&service.admin_addr.to_string(), &rules).await;
    let client = e2e_client();

    // --- traffic of every kind the dashboard shows -----------------------------------------
    let mut tally = Tally::default();
    let mut valid = Vec::new();
    for n in 0..20 {
        let body = e2e_valid_body(&format!("ops-valid-{n}-{}", unique("c")));
        assert_eq!(deliver(&client, &service, &body, &mut tally).await.status, 200);
        valid.push(body);
    }
    for n in 0..6 {
        let body = e2e_invalid_body(&format!("ops-invalid-{n}-{}", unique("c")));
        assert_eq!(deliver(&client, &service, &body, &mut tally).await.status, 200);
    }
    // A repeat (dedupe hit) and a new body under a used correlation id.
    let repeat = deliver(&client, &service, &valid[0], &mut tally).await;
    assert!(repeat.body["duplicate_of"].is_string(), "a repeat is answered duplicate_of: {:?}", repeat.body);
    let reused: serde_json::Value = serde_json::from_str(&valid[1]).expect("json");
    let mut reused = reused;
    reused["data"]["agent_id"] = "a-8".into();
    assert_eq!(deliver(&client, &service, &reused.to_string(), &mut tally).await.status, 200);
    // A valid event larger than the client's message.max.bytes: dead-lettered as kafka_refused.
    let mut big: serde_json::Value = serde_json::from_str(&e2e_valid_body(&unique("ops-big"))).expect("json");
    big["data"]["metadata"]["notes"] = "n".repeat(30_000).into();
    let big = deliver(&client, &service, &big.to_string(), &mut tally).await;
    assert_eq!(big.body["status"], "dead_lettered", "{:?}", big.body);
    // A delivery whose claim a replica that died left pending (no offsets: it never committed):
    // taken over once the transaction timeout has passed, and counted as a resolution.
    let orphan = e2e_valid_body(&unique("ops-orphan"));
    let store = RedisStore::connect(&redis.url(), "ops redis".to_owned()).expect("redis client");
    let key = claim_key(&correlation_of(&orphan), &Sha256::digest(orphan.as_bytes()).into());
    let stale = ClaimState::Pending {
        owner: "a-replica-that-died".to_owned(),
        request_id: "its-request".to_owned(),
        claimed_at: now_ms() - 3_600_000,
        offsets: None,
    };
    let planted = store.set_if_absent("claim", &key, &stale.to_json(), Duration::from_secs(600)).await;
    assert!(matches!(planted, Ok(SetIfAbsent::Created)), "planting the stale claim");
    assert_eq!(deliver(&client, &service, &orphan, &mut tally).await.status, 200, "the orphan is taken over");
    // Forged deliveries.
    let mut forged = 0;
    for n in 0..5 {
        let body = e2e_valid_body(&format!("ops-forged-{n}"));
        let posted =
            e2e_post(&client, &service.webhook_url(), &body, &"0".repeat(64), None).await.expect("post");
        assert_eq!(posted.status, 401);
        forged += 1;
    }
    // S3 answers one PUT with 503 (retried), then every PUT of one letter (it fails: 503 answer).
    front.fail_next(1);
    let retried = deliver(&client, &service, &e2e_invalid_body(&unique("ops-retry")), &mut tally).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    front.fail_next(usize::MAX);
    let failed = deliver(&client, &service, &e2e_invalid_body(&unique("ops-fail")), &mut tally).await;
    assert_eq!(failed.status, 503, "{:?}", failed.body);
    front.fail_next(0);
    assert!(front.faulted() >= 2, "the front refused PUTs");
    // Half a request head: the connection is closed on the header timeout.
    let mut slow = TcpStream::connect(service.addr).await.expect("connect");
    slow.write_all(b"POST /webhooks/cxone-data-actions HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    assert!(closed_within(&mut slow, Duration::from_secs(10)).await, "header timeout closes the connection");

    // --- the series exist with the values the traffic implies ------------------------------
    let webhook = |outcome: &str| {
        format!(
            "sum(cxone_ingest_requests_total{{job=\"{SCRAPE_JOB}\", route=\"webhook\", outcome=\"{outcome}\"}})"
        )
    };
    wait_for_value(&prometheus, &webhook("published"), tally.get("published") as f64).await;
    wait_for_value(&prometheus, &webhook("dead_lettered"), tally.get("dead_lettered") as f64).await;
    wait_for_value(&prometheus, &webhook("unauthorized"), forged as f64).await;
    wait_for_value(&prometheus, "sum(cxone_ingest_dead_letters_total)", tally.get("dead_lettered") as f64)
        .await;
    wait_for_value(&prometheus, "sum(cxone_ingest_dedupe_hits_total)", 1.0).await;
    wait_for_value(&prometheus, "sum(cxone_ingest_kafka_records_refused_total)", 1.0).await;
    wait_for_value(&prometheus, "sum(cxone_ingest_dedupe_resolutions_total{outcome=\"aborted\"})", 1.0).await;
    // Every `published` answer but the repeat's is an event in a committed transaction.
    wait_for_value(&prometheus, "sum(cxone_ingest_kafka_events_total)", (tally.get("published") - 1) as f64)
        .await;
    wait_for_value(&prometheus, "min(cxone_ingest_ready)", 1.0).await;
    wait_for_value(&prometheus, "sum(up{job=\"cxone-ingest\"})", 1.0).await;
    assert!(prometheus.query_sum("sum(cxone_ingest_dead_letter_failures_total)").await >= Some(1.0));
    assert!(prometheus.query_sum("sum(cxone_ingest_dead_letter_retries_total)").await >= Some(2.0));
    assert_eq!(prometheus.alert_state("CxoneIngestSinkUnavailable").await, None, "no outage yet");

    // --- a broker outage: 503 sink_unavailable, the alert goes pending, then fires ------------
    broker.stop();
    let senders_stop = Arc::new(AtomicBool::new(false));
    let outage_tally = Arc::new(tokio::sync::Mutex::new(Tally::default()));
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (stop, tally, client) = (Arc::clone(&senders_stop), Arc::clone(&outage_tally), client.clone());
        let url = service.webhook_url();
        senders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = e2e_valid_body(&format!("ops-outage-{sender}-{n}-{}", unique("c")));
                if let Ok(posted) = e2e_post(&client, &url, &body, &e2e_sign(body.as_bytes()), None).await {
                    tally.lock().await.add(&posted);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    let mut states: Vec<Option<String>> = Vec::new();
    let outage_deadline = std::time::Instant::now() + Duration::from_secs(120);
    while states.last() != Some(&Some("firing".to_owned())) && std::time::Instant::now() < outage_deadline {
        let state = prometheus.alert_state("CxoneIngestSinkUnavailable").await;
        if states.last() != Some(&state) {
            states.push(state);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        states.last() == Some(&Some("firing".to_owned())),
        "CxoneIngestSinkUnavailable did not fire during the outage; states seen {states:?}; answers {:?}",
        outage_tally.lock().await
    );
    assert!(states.contains(&Some("pending".to_owned())), "it went pending before firing: {states:?}");
    assert!(outage_tally.lock().await.get("sink_unavailable") > 0, "{:?}", outage_tally.lock().await);
    let failed_transactions = "sum(cxone_ingest_kafka_transactions_total{outcome=~\"aborted|failed\"})";
    let seen = poll_until(Duration::from_secs(30), || async {
        (prometheus.query_sum(failed_transactions).await >= Some(1.0)).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the outage's transactions are counted as aborted or failed");

    // --- the broker returns (empty: a memory broker): published again, the alert resolves ----
    broker.start();
    stack_create_topic(&broker.brokers(), &service.options.topic, 1).await;
    let published_before = outage_tally.lock().await.get("published");
    let recovered = poll_until(Duration::from_secs(60), || async {
        (outage_tally.lock().await.get("published") > published_before + 10).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "published again after the broker returned: {:?}",
        outage_tally.lock().await
    );
    let resolved = poll_until(Duration::from_secs(90), || async {
        prometheus.alert_state("CxoneIngestSinkUnavailable").await.is_none().then_some(())
    })
    .await;
    assert!(
        resolved.is_some(),
        "CxoneIngestSinkUnavailable still {:?} long after recovery",
        prometheus.alert_state("CxoneIngestSinkUnavailable").await
    );
    senders_stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender");
    }
    println!("operations: traffic {tally:?}; during and after the outage {:?}", outage_tally.lock().await);

    // --- the dedupe store goes away: valid deliveries 503, its errors counted --------------
    redis.stop();
    let body = e2e_valid_body(&unique("ops-no-store"));
    let refused = deliver(&client, &service, &body, &mut tally).await;
    assert_eq!(refused.status, 503, "no claim, no publish: {:?}", refused.body);
    let errors = poll_until(Duration::from_secs(30), || async {
        (prometheus.query_sum("sum(cxone_ingest_dedupe_store_errors_total)").await >= Some(1.0)).then_some(())
    })
    .await;
    assert!(errors.is_some(), "the store's errors are counted");
    redis.restart();
    service.wait_ready(Duration::from_secs(60)).await;

    // --- every rule evaluates; every dashboard query returns data --------------------------
    let errors = prometheus.rule_errors().await;
    assert!(errors.is_empty(), "rules failing to evaluate: {errors:?}");
    let queries =
        std::process::Command::new(env!("CARGO_MANIFEST_DIR").to_owned() + "/scripts/dashboard-queries")
            .args(["--rate-interval", "5m", "--range", "5m"])
            .output()
            .expect("run scripts/dashboard-queries");
    assert!(queries.status.success(), "{}", String::from_utf8_lossy(&queries.stderr));
    let queries = String::from_utf8(queries.stdout).expect("utf-8");
    let mut empty = Vec::new();
    let mut checked = 0;
    for query in queries.lines().filter(|q| !q.trim().is_empty()) {
        checked += 1;
        if prometheus.query(query).await.is_empty() {
            empty.push(query.to_owned());
        }
    }
    assert!(checked >= 30, "the dashboard lost its panels? {checked} queries checked");
    assert!(empty.is_empty(), "dashboard queries with no data:\n{}", empty.join("\n"));
}
