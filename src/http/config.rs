//! `[server]` and `[signature]`: the HTTP side's settings as documented data with named defaults,
//! and the checks that refuse values the server cannot run with (each message names the key).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::Limits;

/// `[server]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port of the public listener (webhook, `/healthz`, status-only `/readyz`);
    /// env `CXONE_INGEST_LISTEN`, flag `--listen`.
    pub listen: SocketAddr,
    /// Address and port of the admin listener (`/metrics`, `/healthz`, `/readyz` with sink detail),
    /// kept off the public port because it reveals volumes, error paths and backend names;
    /// env `CXONE_INGEST_ADMIN_LISTEN`, flag `--admin-listen`.
    pub admin_listen: SocketAddr,
    /// The path CXone posts Data Action webhooks to.
    pub path: String,
    /// Largest request body accepted, in bytes; larger bodies get 413 without being read further.
    pub body_limit_bytes: u64,
    /// Whole-request deadline in milliseconds (well under CXone's 30 s); past it the answer is 503.
    pub request_deadline_ms: u64,
    /// How long the body of a request may take to arrive, in milliseconds, counted from the end of
    /// its head (the request deadline still applies when it is shorter). Much shorter than the deadline: a body is read before its signature can be
    /// checked, so an unsigned client that trickles one holds a read slot for at most this long.
    pub body_read_timeout_ms: u64,
    /// Bodies being read (not yet verified) at once. Past it the answer is 503 + Retry-After.
    /// Bounds what unsigned clients can hold: at most this many × `body_limit_bytes` of memory,
    /// and they never hold one of the `max_in_flight` slots that signed deliveries use.
    pub max_unverified_bodies: usize,
    /// Signed deliveries checked and written at once; beyond that the answer is 503 + Retry-After,
    /// never a queue.
    pub max_in_flight: usize,
    /// Most validation errors listed in one answer or dead-letter record; the rest are counted
    /// (`error_count`) and flagged (`errors_truncated`), so one hostile body cannot make a huge
    /// answer or record.
    pub max_reported_errors: usize,
    /// After SIGTERM: how long `/readyz` answers 503 while the listener still accepts and serves,
    /// in milliseconds, so load balancers stop routing here before connections are refused. This
    /// is the pod's pre-stop pause. ctrl-c (SIGINT) skips it.
    pub pre_stop_delay_ms: u64,
    /// After the pre-stop delay: how long in-flight requests get to finish, in milliseconds. At
    /// least `request_deadline_ms`, so that a request accepted just before the stop can still end.
    pub drain_timeout_ms: u64,
    /// The `Retry-After` (seconds) sent with every 503.
    pub retry_after_secs: u64,
    /// A connection must finish each request head within this many milliseconds of its first byte
    /// (for the first request: of the connection being accepted), else it is closed: bounds
    /// header slow-loris clients.
    pub header_read_timeout_ms: u64,
    /// An idle keep-alive connection (no request in progress, no byte of the next one yet) is
    /// closed after this many milliseconds. Keep it longer than the load balancer's idle timeout
    /// so the balancer, not the service, closes idle connections (no race on reuse).
    pub keep_alive_timeout_ms: u64,
    /// Connections open at once on the public listener; past it new connections wait in the
    /// kernel's accept backlog until one closes. Bounds file descriptors and per-connection memory.
    pub max_connections: usize,
    /// How often (ms) credential files (`secret_files`, `bearer_token_files`, ...) are re-read;
    /// a changed file takes effect once it reads cleanly.
    pub credential_reload_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            path: default_path(),
            body_limit_bytes: default_body_limit_bytes(),
            request_deadline_ms: default_request_deadline_ms(),
            body_read_timeout_ms: default_body_read_timeout_ms(),
            max_unverified_bodies: default_max_unverified_bodies(),
            max_in_flight: default_max_in_flight(),
            max_reported_errors: default_max_reported_errors(),
            pre_stop_delay_ms: default_pre_stop_delay_ms(),
            drain_timeout_ms: default_drain_timeout_ms(),
            retry_after_secs: default_retry_after_secs(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            keep_alive_timeout_ms: default_keep_alive_timeout_ms(),
            max_connections: default_max_connections(),
            credential_reload_ms: default_credential_reload_ms(),
        }
    }
}

impl ServerConfig {
    /// `request_deadline_ms` as a duration.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }

    /// `body_read_timeout_ms` as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// `pre_stop_delay_ms` as a duration.
    pub fn pre_stop_delay(&self) -> Duration {
        Duration::from_millis(self.pre_stop_delay_ms)
    }

    /// `drain_timeout_ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// `retry_after_secs` as a duration.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.retry_after_secs)
    }

    /// `header_read_timeout_ms` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// `keep_alive_timeout_ms` as a duration.
    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_millis(self.keep_alive_timeout_ms)
    }

    /// `credential_reload_ms` as a duration.
    pub fn credential_reload(&self) -> Duration {
        Duration::from_millis(self.credential_reload_ms)
    }

    /// The pipeline's policy knobs from this section.
    pub fn limits(&self) -> Limits {
        Limits {
            deadline: self.request_deadline(),
            max_in_flight: self.max_in_flight,
            retry_after: self.retry_after(),
            max_reported_errors: self.max_reported_errors,
        }
    }

    /// Appends a message for every value out of range, naming the key and what to use instead.
    pub fn check(&self, problems: &mut Vec<String>) {
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            problems.push(format!("server.path = {:?} must start with '/' and contain no spaces", self.path));
        } else if matches!(self.path.as_str(), "/" | "/healthz" | "/readyz" | "/metrics") {
            problems.push(format!(
                "server.path = {:?} clashes with a built-in endpoint: pick another path",
                self.path
            ));
        }
        let mut range = |key: &str, value: u64, low: u64, high: u64, hint: &str| {
            if !(low..=high).contains(&value) {
                problems.push(format!("server.{key} = {value} is out of range: use {low} to {high}{hint}"));
            }
        };
        range("body_limit_bytes", self.body_limit_bytes, 1, 64 << 20, " (default 1 MiB = 1048576)");
        range("request_deadline_ms", self.request_deadline_ms, 100, 30_000, " (CXone gives up after 30 s)");
        range("body_read_timeout_ms", self.body_read_timeout_ms, 100, 30_000, " (default 5000)");
        range("max_unverified_bodies", self.max_unverified_bodies as u64, 1, 100_000, " (default 256)");
        range("max_in_flight", self.max_in_flight as u64, 1, 1_000_000, " (default 1024)");
        range("max_reported_errors", self.max_reported_errors as u64, 1, 10_000, " (default 100)");
        range("pre_stop_delay_ms", self.pre_stop_delay_ms, 0, 120_000, " (default 5000)");
        range("drain_timeout_ms", self.drain_timeout_ms, 100, 600_000, " (default 20000)");
        range(
            "retry_after_secs",
            self.retry_after_secs,
            1,
            MAX_RETRY_AFTER_SECS,
            " (default 2; CXone Studio gives up on a call after 90 s)",
        );
        range("header_read_timeout_ms", self.header_read_timeout_ms, 100, 600_000, " (default 10000)");
        range("keep_alive_timeout_ms", self.keep_alive_timeout_ms, 100, 3_600_000, " (default 75000)");
        range("max_connections", self.max_connections as u64, 1, 1_000_000, " (default 10000)");
        range("credential_reload_ms", self.credential_reload_ms, 100, 600_000, " (default 5000)");
        if self.drain_timeout_ms < self.request_deadline_ms {
            problems.push(format!(
                "server.drain_timeout_ms ({}) is shorter than server.request_deadline_ms ({}): a request \
                 accepted just before SIGTERM could be cut off mid-write; raise the drain timeout",
                self.drain_timeout_ms, self.request_deadline_ms
            ));
        }
        if self.admin_listen == self.listen && self.listen.port() != 0 {
            problems.push(format!(
                "server.admin_listen = {} is the same as server.listen: give the admin listener its own port \
                 (default 127.0.0.1:9464)",
                self.admin_listen
            ));
        }
    }
}

/// Loopback only, until an operator says otherwise.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Loopback only: metrics and readiness detail are for the operator's scraper, not the internet.
/// 9464 is the port Prometheus exporters commonly use.
pub fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// The seed's webhook path.
pub fn default_path() -> String {
    "/webhooks/cxone-data-actions".to_owned()
}

/// 1 MiB: Data Action payloads are a few KiB.
pub fn default_body_limit_bytes() -> u64 {
    1024 * 1024
}

/// 10 s, a third of CXone's 30 s timeout.
pub fn default_request_deadline_ms() -> u64 {
    10_000
}

/// 5 s: CXone sends a few KiB from a data centre in milliseconds; half the deadline is left for
/// the sinks.
pub fn default_body_read_timeout_ms() -> u64 {
    5_000
}

/// 256: at most 256 MiB held by bodies not yet verified (with the 1 MiB body limit).
pub fn default_max_unverified_bodies() -> usize {
    256
}

/// Enough for a burst on two cores; each in-flight request holds at most one capped body.
pub fn default_max_in_flight() -> usize {
    1024
}

/// 100: enough to fix any real payload; a body breaking more rules is counted, not listed.
pub fn default_max_reported_errors() -> usize {
    100
}

/// 5 s: the time a Kubernetes endpoint change or a load balancer's health check needs to stop
/// routing to a stopping pod.
pub fn default_pre_stop_delay_ms() -> u64 {
    5_000
}

/// 20 s: a deadline-long request plus margin; with the 5 s pre-stop delay and the sinks' close,
/// inside a 40 s termination grace period.
pub fn default_drain_timeout_ms() -> u64 {
    20_000
}

/// 2 s: long enough for a sink to recover from a blip, short enough not to stall CXone.
pub fn default_retry_after_secs() -> u64 {
    2
}

/// 10 s: a sender writes a request head in milliseconds; this only stops clients that trickle it.
pub fn default_header_read_timeout_ms() -> u64 {
    10_000
}

/// 75 s: longer than the common load-balancer idle timeouts (AWS ALB 60 s), as nginx's default.
pub fn default_keep_alive_timeout_ms() -> u64 {
    75_000
}

/// 5 s: a rotated Kubernetes Secret (itself propagated within about a minute) is in force seconds later.
pub fn default_credential_reload_ms() -> u64 {
    5_000
}

/// Longest `Retry-After` (seconds): well under the 90 s CXone Studio's REST action waits for an answer.
pub const MAX_RETRY_AFTER_SECS: u64 = 30;

/// 10,000: far above what `max_in_flight` can use, far below the usual 65,536 file-descriptor limit.
pub fn default_max_connections() -> usize {
    10_000
}

/// Shortest webhook secret accepted, in bytes: RFC 2104 asks for an HMAC key at least as long as
/// the hash output (32 bytes for SHA-256); shorter keys are guessable offline from one signed request.
pub const MIN_SECRET_LEN: usize = 32;

/// How the signature header encodes the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lower- or upper-case hex (the seed).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// What the MAC is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedPayload {
    /// The raw body (the seed).
    #[serde(rename = "body")]
    Body,
    /// `{timestamp}.{body}`, with the timestamp (Unix seconds) from `timestamp_header`: replay protection.
    #[serde(rename = "timestamp.body")]
    TimestampDotBody,
}

/// A named signature scheme: fills in the header names, the prefix and what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignaturePreset {
    /// NICE platform webhooks: `X-Nexus-Signature-256: sha256=<hex HMAC-SHA256(secret,
    /// "{X-Nexus-Timestamp}.{raw body}")>`, the timestamp within `timestamp_tolerance_secs` (300 s).
    #[serde(rename = "nice-webhooks")]
    NiceWebhooks,
}

/// `[signature]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignatureConfig {
    /// A named scheme (`"nice-webhooks"`) that sets `header`, `encoding`, `prefix`, `signed` and
    /// `timestamp_header`; leave those keys out when using it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<SignaturePreset>,
    /// Header carrying the signature.
    pub header: String,
    /// How the MAC is written in the header.
    pub encoding: SignatureEncoding,
    /// Text before the encoded MAC (e.g. `sha256=`); empty for none. When set, it is required.
    pub prefix: String,
    /// What is signed: `body` or `timestamp.body`.
    pub signed: SignedPayload,
    /// Header carrying the Unix-seconds timestamp (only with `signed = "timestamp.body"`).
    pub timestamp_header: String,
    /// How far (seconds) the timestamp may be from the server's clock, either way.
    pub timestamp_tolerance_secs: u64,
    /// Active secrets; a signature made with any one of them passes (rotation). Env
    /// `CXONE_INGEST_WEBHOOK_SECRET` replaces this list; after loading it also holds the secrets read
    /// from `secret_files`.
    pub secrets: Vec<Secret>,
    /// Files holding one secret each (surrounding whitespace ignored), e.g. mounted Kubernetes secrets.
    pub secret_files: Vec<PathBuf>,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        SignatureConfig {
            preset: None,
            header: default_signature_header(),
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
            signed: SignedPayload::Body,
            timestamp_header: default_timestamp_header(),
            timestamp_tolerance_secs: default_timestamp_tolerance_secs(),
            secrets: Vec::new(),
            secret_files: Vec::new(),
        }
    }
}

impl SignatureConfig {
    /// Fills in the preset's settings (nothing without one). Refuses a preset alongside a key it
    /// sets to something else (`key` names the table, e.g. `signature`).
    pub fn apply_preset(&mut self, key: &str) -> Result<(), String> {
        let Some(SignaturePreset::NiceWebhooks) = self.preset else {
            return Ok(());
        };
        let defaults = SignatureConfig::default();
        let wanted = SignatureConfig {
            preset: self.preset,
            header: "X-Nexus-Signature-256".to_owned(),
            encoding: SignatureEncoding::Hex,
            prefix: "sha256=".to_owned(),
            signed: SignedPayload::TimestampDotBody,
            timestamp_header: "X-Nexus-Timestamp".to_owned(),
            timestamp_tolerance_secs: self.timestamp_tolerance_secs,
            secrets: Vec::new(),
            secret_files: Vec::new(),
        };
        let conflicts: Vec<&str> = [
            ("header", self.header != defaults.header && self.header != wanted.header),
            ("encoding", self.encoding != defaults.encoding && self.encoding != wanted.encoding),
            ("prefix", self.prefix != defaults.prefix && self.prefix != wanted.prefix),
            ("signed", self.signed != defaults.signed && self.signed != wanted.signed),
            (
                "timestamp_header",
                self.timestamp_header != defaults.timestamp_header
                    && self.timestamp_header != wanted.timestamp_header,
            ),
        ]
        .into_iter()
        .filter_map(|(name, conflict)| conflict.then_some(name))
        .collect();
        if !conflicts.is_empty() {
            return Err(format!(
                "{key}.preset = \"nice-webhooks\" sets {}: remove {} from [{key}]",
                conflicts.join(", "),
                if conflicts.len() == 1 { "it" } else { "them" }
            ));
        }
        self.header = wanted.header;
        self.encoding = wanted.encoding;
        self.prefix = wanted.prefix;
        self.signed = wanted.signed;
        self.timestamp_header = wanted.timestamp_header;
        Ok(())
    }

    /// Appends a message for every unusable value; `secret_origin(i)` names where the i-th secret
    /// came from (the variable, the file, the list), never its value.
    pub fn check(&self, problems: &mut Vec<String>, secret_origin: &dyn Fn(usize) -> String) {
        if self.secrets.is_empty() {
            problems.push(
                "signature.secrets is empty: set CXONE_INGEST_WEBHOOK_SECRET or signature.secret_files"
                    .to_owned(),
            );
        }
        for (index, secret) in self.secrets.iter().enumerate() {
            let len = secret.expose().len();
            if len == 0 {
                problems.push(format!("{} is empty: remove it or give it a value", secret_origin(index)));
            } else if len < MIN_SECRET_LEN {
                problems.push(format!(
                    "{} is {len} bytes long: webhook secrets must be at least {MIN_SECRET_LEN} bytes; \
                     generate one with `openssl rand -hex 32` and set it in CXone and here",
                    secret_origin(index)
                ));
            }
        }
        if warp::http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            problems.push(format!("signature.header = {:?} is not a valid HTTP header name", self.header));
        }
        if self.signed == SignedPayload::TimestampDotBody {
            if warp::http::HeaderName::from_bytes(self.timestamp_header.as_bytes()).is_err() {
                problems.push(format!(
                    "signature.timestamp_header = {:?} is not a valid HTTP header name",
                    self.timestamp_header
                ));
            }
            if !(1..=86_400).contains(&self.timestamp_tolerance_secs) {
                problems.push(format!(
                    "signature.timestamp_tolerance_secs = {} is out of range: use 1 to 86400 (e.g. 300)",
                    self.timestamp_tolerance_secs
                ));
            }
        }
    }
}

/// The seed's header.
pub fn default_signature_header() -> String {
    "X-CXone-Signature".to_owned()
}

/// Used only with `signed = "timestamp.body"`.
pub fn default_timestamp_header() -> String {
    "X-CXone-Timestamp".to_owned()
}

/// 5 minutes, the usual webhook replay window.
pub fn default_timestamp_tolerance_secs() -> u64 {
    300
}

/// A secret value: usable by the code, invisible in `Debug`, `Display` and serialized output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's bytes, for keying a MAC. Never log them.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

pub use crate::telemetry::REDACTED;

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(server: &ServerConfig) -> String {
        let mut problems = Vec::new();
        server.check(&mut problems);
        problems.join("\n")
    }

    #[test]
    fn defaults_pass_their_own_checks() {
        assert_eq!(problems_of(&ServerConfig::default()), "");
        let mut problems = Vec::new();
        let signature = SignatureConfig { secrets: vec![Secret::new("s".repeat(32))], ..Default::default() };
        signature.check(&mut problems, &|i| format!("signature.secrets[{i}]"));
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// Regression: every bound is checked at start, with the key named (a huge value used to
    /// overflow an `Instant` later, at run time).
    #[test]
    fn every_bound_is_checked_and_named() {
        let server = ServerConfig {
            body_read_timeout_ms: u64::MAX,
            max_unverified_bodies: 0,
            max_reported_errors: 0,
            pre_stop_delay_ms: u64::MAX,
            drain_timeout_ms: 1_000,
            ..ServerConfig::default()
        };
        let all = problems_of(&server);
        for needle in [
            "server.body_read_timeout_ms = 18446744073709551615 is out of range",
            "server.max_unverified_bodies = 0",
            "server.max_reported_errors = 0",
            "server.pre_stop_delay_ms = 18446744073709551615",
            "server.drain_timeout_ms (1000) is shorter than server.request_deadline_ms (10000)",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn the_nice_preset_fills_the_scheme_and_refuses_a_conflicting_key() {
        let mut preset =
            SignatureConfig { preset: Some(SignaturePreset::NiceWebhooks), ..Default::default() };
        preset.apply_preset("sources[0].signature").unwrap();
        assert_eq!(preset.header, "X-Nexus-Signature-256");
        assert_eq!(preset.prefix, "sha256=");
        assert_eq!(preset.signed, SignedPayload::TimestampDotBody);
        assert_eq!(preset.timestamp_header, "X-Nexus-Timestamp");
        assert_eq!(preset.timestamp_tolerance_secs, 300);
        // Applying it again (config check, then start) changes nothing.
        let again = preset.clone();
        preset.apply_preset("sources[0].signature").unwrap();
        assert_eq!(format!("{again:?}"), format!("{preset:?}"));

        let mut conflicting = SignatureConfig {
            preset: Some(SignaturePreset::NiceWebhooks),
            header: "X-Other".to_owned(),
            signed: SignedPayload::TimestampDotBody,
            ..Default::default()
        };
        let message = conflicting.apply_preset("signature").unwrap_err();
        assert_eq!(message, "signature.preset = \"nice-webhooks\" sets header: remove it from [signature]");
        let mut none = SignatureConfig::default();
        none.apply_preset("signature").unwrap();
        assert_eq!(none.header, default_signature_header());
    }
}
