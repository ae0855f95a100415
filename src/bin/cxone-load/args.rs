//! The command line of `cxone-load`, and its checks before anything is sent.

use clap::Parser;

/// Load driver for `cxone-ingest serve` (and the seed reference): signed payloads, latency, and a Kafka data check.
#[derive(Parser, Debug, Clone)]
#[command(name = "cxone-load", version)]
pub struct Args {
    /// Webhook URL (plain http; loopback unless --allow-non-loopback).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/cxone-data-actions")]
    pub url: String,
    /// HMAC secret shared with the server.
    #[arg(long, env = "CXONE_INGEST_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Number of keep-alive connections (closed loop: also the number of requests in flight).
    #[arg(short, long, default_value_t = 16)]
    pub concurrency: usize,
    /// Open loop: requests per second, spread over the connections; latency counts from each request's due time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop issuing requests after this many seconds (default 10 unless --requests is given).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Kinds of request and their weights: valid, invalid, malformed, badsig, repeat (a repeat resends an earlier valid request's exact body and signature).
    #[arg(long, default_value = "valid=1")]
    pub mix: String,
    /// Body size of valid and invalid payloads (e.g. 300, 4k, 64k); padded through `data.metadata.padding`. 0 = the bare event (~260 B).
    #[arg(long, default_value = "0")]
    pub payload_size: String,
    /// Give up on a request after this many seconds (counted as a timeout; the connection is replaced).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Tokio worker threads of the driver (1 = a single-threaded runtime, the cheapest).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed of the request-kind draw (same seed, same sequence of kinds).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Prefix of this run's correlation ids (default: random); letters, digits, '.', '_' and '-' only.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Name of the run in the report (e.g. "cxone-ingest" or "seed").
    #[arg(long, default_value = "run")]
    pub label: String,
    /// Report CPU time per request and peak RSS of another process: LABEL=PID (repeatable), e.g. server=1234.
    #[arg(long = "cpu-pid")]
    pub cpu_pids: Vec<String>,
    /// After the run, read this Kafka cluster (bootstrap servers) and check acknowledged = published.
    #[arg(long)]
    pub verify_kafka: Option<String>,
    /// Topic the server publishes to (with --verify-kafka).
    #[arg(long, default_value = "cxone.validated.events")]
    pub topic: String,
    /// Create the topic with this many partitions before the run if it does not exist.
    #[arg(long)]
    pub create_topic: Option<i32>,
    /// Deadline for reading the topic back, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub verify_timeout: f64,
    /// Print the report as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_non_loopback: bool,
}

/// When a run stops issuing requests, checked from `--duration` and `--requests`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Seconds after the start; `None` when only `--requests` bounds the run.
    pub duration_s: Option<f64>,
    pub max_requests: Option<u64>,
}

impl Args {
    /// Checks the numbers that clap cannot; returns the run's bounds.
    pub fn check(&self) -> anyhow::Result<Bounds> {
        if self.concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            anyhow::bail!("--rate must be a positive number");
        }
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            anyhow::bail!("--timeout must be a positive number of seconds");
        }
        if !(self.verify_timeout > 0.0 && self.verify_timeout.is_finite()) {
            anyhow::bail!("--verify-timeout must be a positive number of seconds");
        }
        if self.requests == Some(0) {
            anyhow::bail!("--requests must be at least 1");
        }
        let duration_s = match (self.duration, self.requests) {
            (Some(d), _) => Some(d),
            (None, None) => Some(10.0),
            (None, Some(_)) => None,
        };
        if duration_s.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            anyhow::bail!("--duration must be a positive number of seconds");
        }
        if let Some(id) = &self.run_id {
            check_run_id(id)?;
        }
        Ok(Bounds { duration_s, max_requests: self.requests })
    }
}

/// A run id goes verbatim into JSON bodies, Kafka keys and the `X-Request-Id` header: keep it to
/// characters that need no escaping anywhere.
pub fn check_run_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 64 {
        anyhow::bail!("--run-id must be 1 to 64 characters");
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        anyhow::bail!("--run-id may hold only letters, digits, '.', '_' and '-' (found {c:?})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["cxone-load", "--secret", "s"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn duration_defaults_to_ten_seconds_unless_requests_bound_the_run() {
        assert_eq!(args(&[]).check().unwrap(), Bounds { duration_s: Some(10.0), max_requests: None });
        assert_eq!(args(&["-n", "5"]).check().unwrap(), Bounds { duration_s: None, max_requests: Some(5) });
        assert_eq!(
            args(&["-n", "5", "-d", "2"]).check().unwrap(),
            Bounds { duration_s: Some(2.0), max_requests: Some(5) }
        );
    }

    #[test]
    fn rejects_numbers_that_cannot_bound_a_run() {
        for bad in [
            &["-c", "0"][..],
            &["--rate", "0"],
            &["--rate", "NaN"],
            &["-d", "0"],
            &["-d", "inf"],
            &["--timeout", "0"],
            &["-n", "0"],
        ] {
            assert!(args(bad).check().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn run_ids_are_limited_to_characters_that_need_no_escaping() {
        assert!(check_run_id("load-0a1b.x_2").is_ok());
        for bad in ["", "a\"b", "a b", "a\\b", "é", &"x".repeat(65)] {
            assert!(check_run_id(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(args(&["--run-id", "a\"b"]).check().is_err());
    }
}
