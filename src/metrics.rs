//! Prometheus metrics: the process-wide recorder, and the names and helpers of the server's metrics.
//!
//! Every module records through the `metrics` macros with names prefixed `cxone_ingest_`;
//! [`install`] puts the Prometheus recorder in place once per process and `/metrics` renders it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `route` (`webhook`, `healthz`, `readyz`, `metrics`, `unknown`) and `outcome`.
pub const REQUESTS: &str = "cxone_ingest_requests_total";
/// Request latency from the first byte of headers to the response, by `route` and `outcome`.
pub const REQUEST_DURATION: &str = "cxone_ingest_request_duration_seconds";
/// Webhook requests refused with 401, by `reason` (`missing`, `malformed`, `mismatch`, `timestamp_*`).
pub const SIGNATURE_FAILURES: &str = "cxone_ingest_signature_failures_total";
/// Webhook requests whose signature passed, by `key_index` (which secret of the rotation list matched).
pub const SIGNATURES_VERIFIED: &str = "cxone_ingest_signatures_verified_total";
/// Validation errors found in payloads, by `schema`, `instance_path` (array indices as `*`) and `keyword`.
pub const VALIDATION_ERRORS: &str = "cxone_ingest_validation_errors_total";
/// Webhook requests being processed right now.
pub const IN_FLIGHT: &str = "cxone_ingest_in_flight_requests";

/// Latency buckets (seconds) for every `*_seconds` histogram: 250 µs to 10 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls return the same handle).
///
/// If some other recorder was installed first (a test harness, say), the returned handle renders
/// an empty registry and a warning is logged: metrics are never worth failing start-up for.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
            {
                Ok(builder) => builder,
                Err(err) => {
                    tracing::warn!(error = %err, "latency buckets refused; histograms render as summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(err) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %err, "another metrics recorder is installed; /metrics will be empty");
            }
            describe();
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
    describe_counter!(REQUESTS, "Requests answered, by route and outcome.");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Request latency, by route and outcome.");
    describe_counter!(SIGNATURE_FAILURES, "Webhook requests refused with 401, by reason.");
    describe_counter!(
        SIGNATURES_VERIFIED,
        "Webhook signatures that passed, by the index of the secret that matched."
    );
    describe_counter!(
        VALIDATION_ERRORS,
        "Validation errors in payloads, by schema, instance path and keyword."
    );
    describe_gauge!(IN_FLIGHT, "Webhook requests being processed.");
}

/// Counts one answered request and records its latency.
pub fn record_request(route: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(REQUESTS, "route" => route, "outcome" => outcome).increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// An instance path with array indices replaced by `*` and cut to 128 bytes, so that payloads
/// cannot blow up the label cardinality.
pub fn path_label(instance_path: &str) -> String {
    let mut label = String::with_capacity(instance_path.len().min(128));
    for segment in instance_path.split('/').skip(1) {
        let segment =
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) { "*" } else { segment };
        if label.len() + segment.len() + 1 > 128 {
            label.push_str("/...");
            break;
        }
        label.push('/');
        label.push_str(segment);
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_labels_fold_indices_and_stay_short() {
        assert_eq!(path_label(""), "");
        assert_eq!(path_label("/data/channel"), "/data/channel");
        assert_eq!(path_label("/items/12/name"), "/items/*/name");
        let long = format!("/{}", "a".repeat(300));
        assert_eq!(path_label(&long), "/...");
    }

    #[test]
    fn install_is_idempotent_and_renders() {
        let first = install();
        let second = install();
        metrics::counter!(REQUESTS, "route" => "test", "outcome" => "ok").increment(1);
        assert!(second.render().contains("cxone_ingest_requests_total") || first.render().is_empty());
    }
}
