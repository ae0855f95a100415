//! Prometheus metrics: the one catalogue of every metric name the service records, the
//! process-wide recorder, and small helpers.
//!
//! Every module records with a name from this catalogue (nowhere else is a metric name written):
//! through the `metrics` macros, or, on the per-request path, through [`count`], [`observe`] and
//! [`GaugeGuard`], which keep the handles they resolve. [`install`] puts the Prometheus recorder
//! in place once per process and `/metrics` renders it. Label values come from closed sets
//! (routes, outcomes, reasons, schema ids and schema paths): never from text a sender chose.
//! docs/operations.md lists the metrics with their labels; the alert rules and the dashboard use
//! only these names.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// --- the process --------------------------------------------------------------------------
/// Always 1, labelled with the build's `version`, git `commit` and `dirty` (`true`, `false`,
/// `unknown`): see [`crate::build_info`].
pub const BUILD_INFO: &str = "cxone_ingest_build_info";
/// Whether each component can take writes (1) or not (0), by `component` (`kafka`,
/// `dead_letter`, `dedupe_store`): what `/readyz` reports.
pub const READY: &str = "cxone_ingest_ready";
/// Tasks that died of a panic, by `task`; `/healthz` fails once a task that must live has died.
pub const TASK_PANICS: &str = "cxone_ingest_task_panics_total";

// --- HTTP ------------------------------------------------------------------------------------
/// Requests answered, by `route` (`webhook`, `healthz`, `readyz`, `metrics`, `version`, `schemas`, `unknown`) and
/// `outcome`.
pub const REQUESTS: &str = "cxone_ingest_requests_total";
/// Request latency from the end of the request head to the response, by `route` and `outcome`.
pub const REQUEST_DURATION: &str = "cxone_ingest_request_duration_seconds";
/// Webhook requests being checked and written right now (signature passed).
pub const IN_FLIGHT: &str = "cxone_ingest_in_flight_requests";
/// Webhook bodies being read right now, before their signature can be checked.
pub const UNVERIFIED_BODIES: &str = "cxone_ingest_unverified_bodies";
/// Webhook requests refused with 401, by `reason` (`missing`, `malformed`, `mismatch`, `timestamp_*`).
pub const SIGNATURE_FAILURES: &str = "cxone_ingest_signature_failures_total";
/// Webhook requests whose signature passed, by `key_index` (which secret of the rotation list matched).
pub const SIGNATURES_VERIFIED: &str = "cxone_ingest_signatures_verified_total";
/// Webhook requests answered, by `source` (a `[[sources]]` name, or `default`) and `outcome`.
pub const SOURCE_REQUESTS: &str = "cxone_ingest_source_requests_total";
/// Webhook requests refused with 401, by `source`, `check` (`signature`, `bearer`, `basic`,
/// `jwt`) and `reason` (`missing`, `repeated`, `malformed`, `mismatch`, `expired`,
/// `not_yet_valid`, `issuer`, `audience`, `algorithm`, `claims`, the signature's `timestamp_*`).
pub const AUTH_FAILURES: &str = "cxone_ingest_auth_failures_total";
/// Credential files re-read and put in force after they changed, by `source`.
pub const CREDENTIAL_RELOADS: &str = "cxone_ingest_credential_reloads_total";
/// Credential files that changed but could not be used (unreadable, empty, too short, shared with
/// another source), by `source`: the previous credentials stay in force.
pub const CREDENTIAL_RELOAD_FAILURES: &str = "cxone_ingest_credential_reload_failures_total";
/// Webhook answers shortened to fit the 32 KiB answer bound (the dead letter keeps every detail).
pub const ANSWERS_TRUNCATED: &str = "cxone_ingest_answers_truncated_total";
/// Validation errors found in payloads, by `schema` (its `$id`), `keyword` and `schema_path`.
pub const VALIDATION_ERRORS: &str = "cxone_ingest_validation_errors_total";
/// Open connections per listener, by `listener` (`public`, `admin`).
pub const OPEN_CONNECTIONS: &str = "cxone_ingest_open_connections";
/// Connections the server closed on a timeout, by `listener` and `reason` (`header_timeout`,
/// `idle_timeout`).
pub const CONNECTIONS_TIMED_OUT: &str = "cxone_ingest_connections_timed_out_total";

// --- the contract (schemas) ---------------------------------------------------------------------
/// Schema-folder reload attempts (SIGHUP or a change on disk), by `outcome` (`applied`: the new
/// schemas are in force; `unchanged`: no file's bytes changed; `failed`: the folder does not load
/// and the schemas in force stay).
pub const SCHEMA_RELOADS: &str = "cxone_ingest_schema_reloads_total";
/// 1 while the latest reload attempt of some schema folder failed (the folder on disk is not
/// what runs), else 0.
pub const SCHEMA_RELOAD_FAILING: &str = "cxone_ingest_schema_reload_failing";

// --- Kafka -----------------------------------------------------------------------------------
/// Transactions ended, by `outcome` (`committed`; `committed_late`: the commit outlasted
/// `kafka.call_timeout_ms` and was finished by calling it again; `aborted`; `failed`: the producer
/// failed before the commit was asked for, so nothing of it committed; `unknown`: it failed after,
/// and the outcome is read back).
pub const KAFKA_TRANSACTIONS: &str = "cxone_ingest_kafka_transactions_total";
/// Events in committed transactions.
pub const KAFKA_EVENTS: &str = "cxone_ingest_kafka_events_total";
/// Events per transaction.
pub const KAFKA_BATCH_EVENTS: &str = "cxone_ingest_kafka_batch_events";
/// Time of a whole committed transaction, begin to commit.
pub const KAFKA_COMMIT_DURATION: &str = "cxone_ingest_kafka_commit_seconds";
/// Time spent in each stage of a transaction, by `stage`: `gather` (the committer waiting for and
/// collecting its batch), `begin`, `produce` (building records and handing them to librdkafka),
/// `deliver` (until every delivery report is in), `claims` (offsets written into the shared dedupe
/// store's claims), `release`, `commit` (EndTxn round trip).
pub const KAFKA_TRANSACTION_STAGE: &str = "cxone_ingest_kafka_transaction_stage_seconds";
/// Producers dropped and rebuilt, by `reason` (`init`, `fatal`, `probe`: the start-up probe's
/// transaction was not ended by the broker).
pub const KAFKA_PRODUCER_REBUILDS: &str = "cxone_ingest_kafka_producer_rebuilds_total";
/// Whether unknown commit outcomes are read back (1) or published again (0): the start-up probe's
/// finding about the broker (does it hide aborted records from `read_committed` readers?).
pub const KAFKA_READ_BACK_ENABLED: &str = "cxone_ingest_kafka_read_back_enabled";
/// Time to read offsets back with `read_committed`.
pub const KAFKA_READ_BACK_DURATION: &str = "cxone_ingest_kafka_read_back_seconds";
/// Events waiting for or inside a transaction.
pub const KAFKA_IN_FLIGHT_EVENTS: &str = "cxone_ingest_kafka_in_flight_events";
/// Valid events Kafka will never take as they are, by `reason` (`too_large`): they are dead-lettered.
pub const KAFKA_RECORDS_REFUSED: &str = "cxone_ingest_kafka_records_refused_total";

// --- dedupe ----------------------------------------------------------------------------------
/// Repeated deliveries answered with the original commit (nothing published again).
pub const DEDUPE_HITS: &str = "cxone_ingest_dedupe_hits_total";
/// New deliveries whose correlation id was already used with another body.
pub const CORRELATION_ID_REUSE: &str = "cxone_ingest_correlation_id_reuse_total";
/// Shared dedupe store calls that failed, by `op`.
pub const DEDUPE_STORE_ERRORS: &str = "cxone_ingest_dedupe_store_errors_total";
/// Shared dedupe store call latency, by `op`.
pub const DEDUPE_STORE_DURATION: &str = "cxone_ingest_dedupe_store_seconds";
/// Requests' claims sent to the shared dedupe store per call (one call per burst).
pub const DEDUPE_CLAIMS_PER_CALL: &str = "cxone_ingest_dedupe_claims_per_call";
/// Deliveries whose commit outcome nobody knew, resolved, by `outcome`: `committed` (read back:
/// answered `duplicate_of`), `aborted` (read back, or a claim without offsets, which never
/// committed: published), `open` (read back, still undecided: 503, retried later), `unknown`
/// (read-back is off on this broker: published again, a duplicate if it had committed).
pub const DEDUPE_RESOLUTIONS: &str = "cxone_ingest_dedupe_resolutions_total";

// --- dead letters ----------------------------------------------------------------------------
/// Dead letters stored, by `reason` and `schema` (its `$id`, or `none`).
pub const DEAD_LETTERS: &str = "cxone_ingest_dead_letters_total";
/// Dead letters that could not be stored, by `cause` (`permanent`, `deadline`, `overloaded`).
pub const DEAD_LETTER_FAILURES: &str = "cxone_ingest_dead_letter_failures_total";
/// PutObject attempts retried, by `cause` (`throttled`, `server_error`, `timeout`, `dispatch`).
pub const DEAD_LETTER_RETRIES: &str = "cxone_ingest_dead_letter_retries_total";
/// PutObject attempt latency, by `outcome` (`ok`, `error`).
pub const DEAD_LETTER_PUT_DURATION: &str = "cxone_ingest_dead_letter_put_seconds";
/// Dead-letter objects stored (one PutObject that succeeded per batch of letters).
pub const DEAD_LETTER_OBJECTS: &str = "cxone_ingest_dead_letter_objects_total";
/// Dead letters per stored object (batch size).
pub const DEAD_LETTER_BATCH_RECORDS: &str = "cxone_ingest_dead_letter_batch_records";

// --- CXone OAuth -----------------------------------------------------------------------------
/// Token requests to CXone, by `outcome`.
pub const CXONE_TOKEN_REQUESTS: &str = "cxone_ingest_cxone_token_requests_total";
/// Token request latency.
pub const CXONE_TOKEN_REQUEST_DURATION: &str = "cxone_ingest_cxone_token_request_duration_seconds";

/// Latency buckets (seconds) for every `*_seconds` histogram: 250 µs to 10 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for events per transaction and dead letters per object: 1 to 10,000.
const BATCH_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 10000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls return the same handle).
///
/// If some other recorder was installed first (a test harness, say), the returned handle renders
/// an empty registry and a warning is logged: metrics are never worth failing start-up for.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .and_then(|builder| {
                    builder
                        .set_buckets_for_metric(Matcher::Full(KAFKA_BATCH_EVENTS.to_owned()), BATCH_BUCKETS)
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(DEDUPE_CLAIMS_PER_CALL.to_owned()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(DEAD_LETTER_BATCH_RECORDS.to_owned()),
                        BATCH_BUCKETS,
                    )
                });
            let builder = match builder {
                Ok(builder) => builder,
                Err(err) => {
                    tracing::warn!(error = %err, "histogram buckets refused; histograms render as summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(err) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %err, "another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            use crate::build_info::{COMMIT, DIRTY, VERSION};
            metrics::gauge!(BUILD_INFO, "version" => VERSION, "commit" => COMMIT, "dirty" => DIRTY).set(1.0);
            handle
        })
        .clone()
}

/// Runs the recorder's upkeep every `period` (histogram buffers stay bounded between scrapes).
pub fn spawn_upkeep(handle: PrometheusHandle, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(BUILD_INFO, "Always 1; the version, commit and dirty labels name the build.");
    describe_gauge!(READY, "Whether each component can take writes (1) or not (0).");
    describe_counter!(TASK_PANICS, "Tasks that died of a panic, by task.");
    describe_counter!(REQUESTS, "Requests answered, by route and outcome.");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Request latency, by route and outcome.");
    describe_gauge!(IN_FLIGHT, "Webhook requests being checked and written (signature passed).");
    describe_gauge!(UNVERIFIED_BODIES, "Webhook bodies being read before their signature is checked.");
    describe_counter!(SIGNATURE_FAILURES, "Webhook requests refused with 401, by reason.");
    describe_counter!(SIGNATURES_VERIFIED, "Webhook signatures that passed, by the index of the secret.");
    describe_counter!(
        VALIDATION_ERRORS,
        "Validation errors in payloads, by schema, keyword and schema path."
    );
    describe_gauge!(OPEN_CONNECTIONS, "Open connections, by listener.");
    describe_counter!(CONNECTIONS_TIMED_OUT, "Connections closed on a timeout, by listener and reason.");
    describe_counter!(SCHEMA_RELOADS, "Schema-folder reload attempts, by outcome.");
    describe_gauge!(
        SCHEMA_RELOAD_FAILING,
        "1 while the latest reload of some schema folder failed (the folder is not what runs)."
    );
    describe_counter!(KAFKA_TRANSACTIONS, "Kafka transactions ended, by outcome.");
    describe_counter!(KAFKA_EVENTS, "Events in committed Kafka transactions.");
    describe_histogram!(KAFKA_BATCH_EVENTS, "Events per Kafka transaction.");
    describe_histogram!(KAFKA_COMMIT_DURATION, Unit::Seconds, "Time of a committed Kafka transaction.");
    describe_histogram!(KAFKA_TRANSACTION_STAGE, Unit::Seconds, "Time in each stage of a Kafka transaction.");
    describe_counter!(KAFKA_PRODUCER_REBUILDS, "Kafka producers rebuilt, by reason.");
    describe_gauge!(
        KAFKA_READ_BACK_ENABLED,
        "Whether unknown commit outcomes are read back (1) or published again (0)."
    );
    describe_histogram!(KAFKA_READ_BACK_DURATION, Unit::Seconds, "Time to read offsets back read_committed.");
    describe_gauge!(KAFKA_IN_FLIGHT_EVENTS, "Events waiting for or inside a Kafka transaction.");
    describe_counter!(KAFKA_RECORDS_REFUSED, "Valid events Kafka refused (dead-lettered), by reason.");
    describe_counter!(DEDUPE_HITS, "Repeated deliveries answered with the original commit.");
    describe_counter!(CORRELATION_ID_REUSE, "New deliveries reusing a correlation id with another body.");
    describe_counter!(DEDUPE_STORE_ERRORS, "Failed calls to the shared dedupe store, by operation.");
    describe_histogram!(
        DEDUPE_STORE_DURATION,
        Unit::Seconds,
        "Shared dedupe store call latency, by operation."
    );
    describe_histogram!(DEDUPE_CLAIMS_PER_CALL, "Claims sent to the shared dedupe store per call.");
    describe_counter!(
        DEDUPE_RESOLUTIONS,
        "Unknown commit outcomes resolved by reading Kafka back, by outcome."
    );
    describe_counter!(DEAD_LETTERS, "Dead letters stored, by reason and schema.");
    describe_counter!(DEAD_LETTER_FAILURES, "Dead letters not stored, by cause.");
    describe_counter!(DEAD_LETTER_RETRIES, "Dead-letter PutObject attempts retried, by cause.");
    describe_histogram!(DEAD_LETTER_PUT_DURATION, Unit::Seconds, "Dead-letter PutObject attempt latency.");
    describe_counter!(DEAD_LETTER_OBJECTS, "Dead-letter objects (batches) stored.");
    describe_histogram!(DEAD_LETTER_BATCH_RECORDS, "Dead letters per stored object.");
    describe_counter!(CXONE_TOKEN_REQUESTS, "CXone token requests, by outcome.");
    describe_histogram!(CXONE_TOKEN_REQUEST_DURATION, Unit::Seconds, "CXone token request latency.");
}

/// Counts one answered request and records its latency.
pub fn record_request(route: &'static str, outcome: &'static str, elapsed: Duration) {
    let labels = [("route", route), ("outcome", outcome)];
    count(REQUESTS, &labels, 1);
    observe(REQUEST_DURATION, &labels, elapsed.as_secs_f64());
}

/// Adds `by` to the counter `name` with `labels` (at most two pairs).
pub fn count(name: &'static str, labels: &[(&'static str, &'static str)], by: u64) {
    with_handle(
        |handles| &mut handles.counters,
        name,
        labels,
        |n, l| metrics::counter!(n, l),
        |counter| counter.increment(by),
    );
}

/// Records `value` in the histogram `name` with `labels` (at most two pairs).
pub fn observe(name: &'static str, labels: &[(&'static str, &'static str)], value: f64) {
    with_handle(
        |handles| &mut handles.histograms,
        name,
        labels,
        |n, l| metrics::histogram!(n, l),
        |histogram| histogram.record(value),
    );
}

/// Adds `delta` (negative: subtracts) to the gauge `name`, which has no labels.
fn shift_gauge(name: &'static str, delta: f64) {
    with_handle(
        |handles| &mut handles.gauges,
        name,
        &[],
        |n, l| metrics::gauge!(n, l),
        |gauge| gauge.increment(delta),
    );
}

/// Where a metric's name and up to two label pairs (unused ones empty) are in memory, with their
/// lengths: what a kept handle is found by. Every one is a `&'static str`, so the same text at
/// the same place is the same metric; the same text at two places (two call sites) merely keeps
/// two handles of the one series.
type HandleKey = [(usize, usize); 5];

/// The handles a thread kept. The keys are addresses, not text: hashing the text of a name and
/// four labels cost more than the registry lookup it replaces (SipHash ~1,000 instructions).
type HandleTable<H> = HashMap<HandleKey, H, foldhash::fast::FixedState>;

/// Handles resolved by one thread.
#[derive(Default)]
struct Handles {
    counters: HandleTable<Counter>,
    histograms: HandleTable<Histogram>,
    gauges: HandleTable<Gauge>,
}

thread_local! {
    /// Resolving a handle through the recorder builds the key, copies its labels and looks it up
    /// in the shared registry: 1,500 to 3,000 instructions, several times per request
    /// (docs/performance.md). Kept per thread, a handle is found again with one hash lookup, no
    /// allocation and no lock shared between threads.
    static HANDLES: RefCell<Handles> = RefCell::new(Handles::default());
}

/// Runs `use_handle` on this thread's handle for (`name`, `labels`), resolving it with `resolve`
/// the first time. Before [`install`] nothing is kept (a handle resolved then would stay a no-op
/// after the recorder arrives), nor with more than two label pairs or while the thread ends.
fn with_handle<H>(
    table: fn(&mut Handles) -> &mut HandleTable<H>,
    name: &'static str,
    labels: &[(&'static str, &'static str)],
    resolve: fn(&'static str, &[(&'static str, &'static str)]) -> H,
    use_handle: impl FnOnce(&H),
) {
    if HANDLE.get().is_none() || labels.len() > 2 {
        return use_handle(&resolve(name, labels));
    }
    let at = |text: &'static str| (text.as_ptr() as usize, text.len());
    let mut key = [at(name), (0, 0), (0, 0), (0, 0), (0, 0)];
    for (slot, (label, value)) in labels.iter().enumerate() {
        key[1 + 2 * slot] = at(label);
        key[2 + 2 * slot] = at(value);
    }
    let mut use_handle = Some(use_handle);
    let _ = HANDLES.try_with(|handles| {
        let mut handles = handles.borrow_mut();
        let handle = table(&mut handles).entry(key).or_insert_with(|| resolve(name, labels));
        if let Some(use_handle) = use_handle.take() {
            use_handle(handle);
        }
    });
    if let Some(use_handle) = use_handle {
        use_handle(&resolve(name, labels));
    }
}

/// Sets `cxone_ingest_ready{component}`.
pub fn set_ready(component: &'static str, ready: bool) {
    metrics::gauge!(READY, "component" => component).set(if ready { 1.0 } else { 0.0 });
}

/// Holds a gauge (without labels) one higher while alive: the gauge stays right even when the
/// holder is dropped mid-way (a cancelled request).
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    /// Increments the gauge `name` until the guard is dropped.
    pub fn enter(name: &'static str) -> GaugeGuard {
        shift_gauge(name, 1.0);
        GaugeGuard(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        shift_gauge(self.0, -1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders() {
        let first = install();
        let second = install();
        metrics::counter!(REQUESTS, "route" => "test", "outcome" => "ok").increment(1);
        assert!(second.render().contains("cxone_ingest_requests_total") || first.render().is_empty());
    }

    /// The handles kept per thread record into the same series the recorder renders, from any
    /// thread, and a gauge guard gives back what it took.
    #[test]
    fn kept_handles_record_what_the_recorder_renders() {
        let handle = install();
        let labels = [("route", "kept-handles-test"), ("outcome", "ok")];
        for _ in 0..3 {
            count(REQUESTS, &labels, 2);
            observe(REQUEST_DURATION, &labels, 0.001);
        }
        std::thread::spawn(move || count(REQUESTS, &labels, 1)).join().expect("counting thread");
        // Another value of a label is another series.
        count(REQUESTS, &[("route", "kept-handles-test"), ("outcome", "other")], 5);
        let gauge = "cxone_ingest_kept_handles_test_gauge";
        let outer = GaugeGuard::enter(gauge);
        drop(GaugeGuard::enter(gauge));
        let inner = std::thread::spawn(move || GaugeGuard::enter(gauge)).join().expect("gauge thread");
        let text = handle.render();
        assert!(
            text.contains(r#"cxone_ingest_requests_total{route="kept-handles-test",outcome="ok"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"cxone_ingest_request_duration_seconds_count{route="kept-handles-test",outcome="ok"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"cxone_ingest_requests_total{route="kept-handles-test",outcome="other"} 5"#),
            "{text}"
        );
        assert!(text.contains("cxone_ingest_kept_handles_test_gauge 2"), "{text}");
        drop((outer, inner));
        assert!(handle.render().contains("cxone_ingest_kept_handles_test_gauge 0"));
    }

    /// Every name in the catalogue is unique and follows the naming rules (prefix, `_total` for
    /// counters), so a dashboard query cannot silently point at two things.
    #[test]
    fn catalogue_names_are_unique_and_well_formed() {
        let source = include_str!("metrics.rs");
        let names: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub const "))
            .filter_map(|rest| rest.split_once("= \"").map(|(_, name)| name.trim_end_matches("\";")))
            .collect();
        assert!(names.len() >= 30, "{names:?}");
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate metric names");
        for name in names {
            assert!(name.starts_with("cxone_ingest_"), "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        }
    }

    /// The alert rules and the dashboard are checked against `deploy/metrics-catalogue.txt`
    /// (names with their types and labels); it must list exactly the names defined here.
    #[test]
    fn the_deploy_catalogue_lists_exactly_these_names() {
        let source = include_str!("metrics.rs");
        let mut here: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub const "))
            .filter_map(|rest| rest.split_once("= \"").map(|(_, name)| name.trim_end_matches("\";")))
            .collect();
        let listed = include_str!("../deploy/metrics-catalogue.txt");
        let mut there: Vec<&str> = listed
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        here.sort_unstable();
        there.sort_unstable();
        assert_eq!(here, there, "src/metrics.rs and deploy/metrics-catalogue.txt disagree");
    }
}
