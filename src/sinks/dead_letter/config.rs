//! Dead-letter sink configuration: documented data with named defaults.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::telemetry::REDACTED;

/// `[dead_letter]` in the config file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// S3 endpoint URL; unset means AWS. Env `CXONE_INGEST_S3_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Bucket holding dead letters; env `CXONE_INGEST_S3_BUCKET`.
    pub bucket: String,
    /// Key prefix; env `CXONE_INGEST_S3_PREFIX`. Objects go to
    /// `<prefix>/dt=YYYY-MM-DD/hour=HH/<batch id>.jsonl` (one record per line).
    pub prefix: String,
    /// Region to sign for; unset means the default AWS chain (`AWS_REGION`, profile, IMDS).
    /// Env `CXONE_INGEST_S3_REGION`.
    pub region: Option<String>,
    /// Path-style URLs (`http://host/bucket/key`), which MinIO, Garage and most non-AWS stores need.
    /// Unset means: path-style when `endpoint` is set, virtual-hosted style on AWS.
    pub force_path_style: Option<bool>,
    /// Access key id; unset means the default AWS credential chain (`AWS_ACCESS_KEY_ID`, profile,
    /// web identity, ECS/EC2 roles). Set together with `secret_access_key`.
    pub access_key_id: Option<String>,
    /// Secret access key belonging to `access_key_id`; never printed (prefer the AWS chain in production).
    #[serde(serialize_with = "serialize_redacted")]
    pub secret_access_key: Option<String>,
    /// Server-side encryption of every object: `AES256` (S3-managed keys) or `aws:kms`; unset means
    /// whatever the bucket's default is.
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// KMS key id or ARN when `server_side_encryption = "aws:kms"`; unset means the account's default key.
    pub sse_kms_key_id: Option<String>,
    /// How long one PutObject attempt may take before it is abandoned and retried (the request's
    /// deadline bounds the whole series of attempts).
    pub attempt_timeout_ms: u64,
    /// TCP/TLS connect timeout: an unreachable S3 is noticed this fast.
    pub connect_timeout_ms: u64,
    /// First backoff ceiling; each retry doubles it (full jitter: the wait is uniform in `[0, ceiling]`).
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling.
    pub backoff_max_ms: u64,
    /// Most dead letters in one object: a batch is written as soon as it holds this many.
    pub batch_max_records: usize,
    /// Most bytes (records plus newlines) in one object: a letter that would push a batch past it
    /// starts the next batch (a single larger record still gets an object of its own).
    pub batch_max_bytes: usize,
    /// How long a batch may wait for more letters, counted from its oldest letter's arrival (never
    /// past the earliest request deadline in the batch). 0 = write whatever is queued at once.
    pub linger_ms: u64,
    /// Letters waiting for their batch; when it is full a new letter is refused at once
    /// (503 `overloaded`) rather than queued past its deadline.
    pub queue_capacity: usize,
    /// How often the readiness probe (HeadBucket) runs while the bucket is reachable; after a failure
    /// it runs every `backoff_max_ms` until the bucket answers again.
    pub probe_interval_ms: u64,
}

/// Server-side encryption applied to every dead-letter object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerSideEncryption {
    /// S3-managed keys (SSE-S3).
    #[serde(rename = "AES256")]
    Aes256,
    /// KMS-managed keys (SSE-KMS), optionally with `sse_kms_key_id`.
    #[serde(rename = "aws:kms")]
    AwsKms,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            endpoint: None,
            bucket: default_bucket(),
            prefix: default_prefix(),
            region: None,
            force_path_style: None,
            access_key_id: None,
            secret_access_key: None,
            server_side_encryption: None,
            sse_kms_key_id: None,
            attempt_timeout_ms: default_attempt_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            batch_max_records: default_batch_max_records(),
            batch_max_bytes: default_batch_max_bytes(),
            linger_ms: default_linger_ms(),
            queue_capacity: default_queue_capacity(),
            probe_interval_ms: default_probe_interval_ms(),
        }
    }
}

impl fmt::Debug for DeadLetterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| REDACTED))
            .field("server_side_encryption", &self.server_side_encryption)
            .field("sse_kms_key_id", &self.sse_kms_key_id)
            .field("attempt_timeout_ms", &self.attempt_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("batch_max_records", &self.batch_max_records)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("linger_ms", &self.linger_ms)
            .field("queue_capacity", &self.queue_capacity)
            .field("probe_interval_ms", &self.probe_interval_ms)
            .finish()
    }
}

fn serialize_redacted<S: Serializer>(secret: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_some(REDACTED),
        None => serializer.serialize_none(),
    }
}

/// A `[dead_letter]` section that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("dead_letter.{field}: {message}")]
pub struct DeadLetterConfigError {
    /// The offending key.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl DeadLetterConfig {
    /// Checks everything that can be checked without talking to S3.
    pub fn validate(&self) -> Result<(), DeadLetterConfigError> {
        let fail = |field, message: &str| Err(DeadLetterConfigError { field, message: message.to_owned() });
        if self.bucket.trim().is_empty() {
            return fail("bucket", "must name the dead-letter bucket (env CXONE_INGEST_S3_BUCKET)");
        }
        let bad_endpoint =
            self.endpoint.as_ref().is_some_and(|e| !(e.starts_with("http://") || e.starts_with("https://")));
        if bad_endpoint {
            return fail("endpoint", "must be an http:// or https:// URL (or unset for AWS)");
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return fail(
                "access_key_id",
                "set both access_key_id and secret_access_key, or neither (to use the AWS credential chain)",
            );
        }
        if self.sse_kms_key_id.is_some() && self.server_side_encryption != Some(ServerSideEncryption::AwsKms)
        {
            return fail("sse_kms_key_id", "only applies with server_side_encryption = \"aws:kms\"");
        }
        for (field, value, low, high) in [
            ("batch_max_records", self.batch_max_records as u64, 1, 100_000),
            ("batch_max_bytes", self.batch_max_bytes as u64, 1_024, 1_073_741_824),
            ("linger_ms", self.linger_ms, 0, 10_000),
            ("queue_capacity", self.queue_capacity as u64, 1, 1_000_000),
        ] {
            if !(low..=high).contains(&value) {
                return fail(field, &format!("{value} is out of range: use {low} to {high}"));
            }
        }
        for (field, value, high) in [
            ("attempt_timeout_ms", self.attempt_timeout_ms, 300_000),
            ("connect_timeout_ms", self.connect_timeout_ms, 300_000),
            ("backoff_base_ms", self.backoff_base_ms, 60_000),
            ("backoff_max_ms", self.backoff_max_ms, 600_000),
            ("probe_interval_ms", self.probe_interval_ms, 3_600_000),
        ] {
            if !(1..=high).contains(&value) {
                return fail(field, &format!("{value} is out of range: use 1 to {high}"));
            }
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return fail("backoff_max_ms", "must be at least backoff_base_ms");
        }
        Ok(())
    }

    /// Whether requests use path-style URLs.
    pub fn path_style(&self) -> bool {
        self.force_path_style.unwrap_or(self.endpoint.is_some())
    }

    /// The prefix without leading or trailing slashes.
    pub fn normalized_prefix(&self) -> &str {
        self.prefix.trim_matches('/')
    }

    pub(crate) fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    pub(crate) fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
}

/// The local stack's bucket (`scripts/start-stack`).
pub fn default_bucket() -> String {
    "cxone-dead-letters".to_owned()
}

/// The seed's prefix.
pub fn default_prefix() -> String {
    "data-actions/errors".to_owned()
}

/// Two seconds: a healthy PutObject of a few KiB takes milliseconds; this leaves room for several
/// attempts inside the default 10 s request deadline.
pub fn default_attempt_timeout_ms() -> u64 {
    2_000
}

/// One second: loopback or same-region S3 connects in well under that.
pub fn default_connect_timeout_ms() -> u64 {
    1_000
}

/// 50 ms first backoff ceiling.
pub fn default_backoff_base_ms() -> u64 {
    50
}

/// 2 s largest backoff ceiling.
pub fn default_backoff_max_ms() -> u64 {
    2_000
}

/// 500 letters per object: at ~2 KB per record a ~1 MB object, and 2 PUTs per 1,000 letters.
pub fn default_batch_max_records() -> usize {
    500
}

/// 8 MiB per object: one PUT of it takes a few ms on a LAN and stays far below S3's limits.
pub fn default_batch_max_bytes() -> usize {
    8 * 1024 * 1024
}

/// 50 ms: one batcher writes at most ~1 / (linger + put time) objects a second, ~18 with a 5 ms put,
/// whatever the load: ≤ 50 PUTs per 1,000 letters from ~400 letters/s up (docs/performance.md), and
/// 5× fewer PUTs than letters at 100 letters/s. It delays only dead letters (valid events never
/// wait for it), by at most 50 ms of a 10 s deadline.
pub fn default_linger_ms() -> u64 {
    50
}

/// 4,096 letters waiting: more than `server.max_in_flight` (1,024) requests can hold at once.
pub fn default_queue_capacity() -> usize {
    4_096
}

/// Probe the bucket every 15 s while healthy.
pub fn default_probe_interval_ms() -> u64 {
    15_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_secret_never_prints() {
        let mut config = DeadLetterConfig::default();
        assert!(config.validate().is_ok());
        assert!(!config.path_style());
        config.endpoint = Some("http://127.0.0.1:13900".into());
        assert!(config.path_style());
        config.access_key_id = Some("GK1".into());
        config.secret_access_key = Some("hunter2".into());
        assert!(config.validate().is_ok());
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
    }

    #[test]
    fn rejects_half_credentials_and_unknown_keys() {
        let config = DeadLetterConfig { access_key_id: Some("GK1".into()), ..Default::default() };
        assert_eq!(config.validate().unwrap_err().field, "access_key_id");
        let parsed: Result<DeadLetterConfig, _> = toml::from_str("bucket = \"b\"\nbukket = \"x\"\n");
        assert!(parsed.is_err());
        let parsed: DeadLetterConfig = toml::from_str("server_side_encryption = \"aws:kms\"\n").unwrap();
        assert_eq!(parsed.server_side_encryption, Some(ServerSideEncryption::AwsKms));
    }

    #[test]
    fn batch_bounds_are_range_checked() {
        let parsed: DeadLetterConfig = toml::from_str(
            "batch_max_records = 50\nbatch_max_bytes = 65536\nlinger_ms = 0\nqueue_capacity = 8\n",
        )
        .unwrap();
        assert!(parsed.validate().is_ok());
        assert_eq!((parsed.batch_max_records, parsed.linger_ms), (50, 0));
        for (config, field) in [
            (DeadLetterConfig { batch_max_records: 0, ..Default::default() }, "batch_max_records"),
            (DeadLetterConfig { batch_max_bytes: 10, ..Default::default() }, "batch_max_bytes"),
            (DeadLetterConfig { linger_ms: 60_000, ..Default::default() }, "linger_ms"),
            (DeadLetterConfig { queue_capacity: 0, ..Default::default() }, "queue_capacity"),
        ] {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
