//! Dead-letter sink: invalid payloads kept in S3 as JSON records that say what was wrong.
//!
//! [`S3DeadLetterSink`] builds a [`DeadLetterRecord`], puts it at its [`key::object_key`] through the
//! [`writer::S3Writer`] (retries with backoff inside the deadline) and keeps `/readyz` honest with a
//! background HeadBucket probe.

pub mod config;
pub mod key;
pub mod record;
pub mod writer;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::Notify;

pub use config::{DeadLetterConfig, DeadLetterConfigError, ServerSideEncryption};
pub use record::{DeadLetterRecord, OriginalPayload, PayloadEncoding, RecordTrace};

use crate::metrics as m;
use crate::sinks::{DeadLetter, DeadLetterSink, Readiness, SinkError, Stored};
use writer::{Failure, PutError, S3Writer, SdkRetries};

/// Sink name in errors and logs.
const SINK: &str = "dead-letter store";

/// Writes dead letters to S3. Cheap to share behind an `Arc`; dropping it stops the probe.
pub struct S3DeadLetterSink {
    /// Shared with the probe task.
    shared: Arc<Shared>,
    /// Key prefix, normalized.
    prefix: String,
    /// The readiness probe; aborted on drop.
    probe: tokio::task::JoinHandle<()>,
    /// Set by `close`: the probe ended on purpose.
    closed: std::sync::atomic::AtomicBool,
}

/// What the sink and its probe task share.
struct Shared {
    /// S3 writes with the retry policy.
    writer: S3Writer,
    /// Latest readiness verdict, from the probe or from the last write.
    readiness: RwLock<Readiness>,
    /// Wakes the probe early (after a failed write).
    wake: Notify,
    /// Probe period while healthy.
    probe_interval: std::time::Duration,
}

impl S3DeadLetterSink {
    /// Builds the sink and starts probing the bucket. Fails only on configuration errors: an
    /// unreachable or misconfigured S3 makes the sink not-ready, never fails start-up.
    pub async fn new(config: &DeadLetterConfig) -> Result<S3DeadLetterSink, DeadLetterConfigError> {
        let client = writer::build_client(config, SdkRetries::Off).await?;
        let writer = S3Writer::new(client, config);
        let shared = Arc::new(Shared {
            readiness: RwLock::new(Readiness::NotReady(format!(
                "bucket {}: not probed yet",
                writer.bucket()
            ))),
            writer,
            wake: Notify::new(),
            probe_interval: config.probe_interval(),
        });
        m::set_ready("dead_letter", false);
        let probe = tokio::spawn(probe_loop(Arc::clone(&shared)));
        Ok(S3DeadLetterSink {
            shared,
            prefix: config.normalized_prefix().to_owned(),
            probe,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The bucket written to.
    pub fn bucket(&self) -> &str {
        self.shared.writer.bucket()
    }

    /// The object key a dead letter goes to.
    ///
    /// A request id the service generated is unique, so it names the object alone. A sender-chosen
    /// `X-Request-Id` is not trusted to be: two different bodies under one id would overwrite each
    /// other's record, already answered 200. Such names get the body hash's first 12 hex digits, so
    /// a repeated delivery (same id, same body) still lands on the same object and a different body
    /// on its own.
    pub fn key_for(&self, letter: &DeadLetter) -> String {
        if letter.request_id_from_sender {
            let name = format!("{}-{}", letter.request_id, hex::encode(&letter.body_sha256[..6]));
            key::object_key(&self.prefix, letter.received_at, &name)
        } else {
            key::object_key(&self.prefix, letter.received_at, &letter.request_id)
        }
    }
}

impl Drop for S3DeadLetterSink {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for S3DeadLetterSink {
    async fn store(&self, letter: DeadLetter, deadline: Instant) -> Result<Stored, SinkError> {
        let record = DeadLetterRecord::build(&letter, Utc::now());
        let (json, sha256) = record.to_json();
        let key = self.key_for(&letter);
        let reason = record.reason.as_str();
        let schema = record.schema.as_ref().map_or_else(|| "none".to_owned(), |schema| schema.id.clone());
        let bucket = self.bucket().to_owned();
        let result = self.shared.writer.put(&key, Bytes::from(json), &sha256, deadline).await;
        match result {
            Ok(report) => {
                metrics::counter!(m::DEAD_LETTERS, "reason" => reason, "schema" => schema).increment(1);
                self.shared.set_readiness(Readiness::Ready);
                tracing::info!(request_id = %letter.request_id, reason, bucket = %bucket, key = %key,
                    attempts = report.attempts, "dead letter stored");
                Ok(Stored { bucket, key })
            }
            Err(err) => {
                let (cause, last_error) = match &err {
                    PutError::Permanent { detail } => ("permanent", Some(detail.clone())),
                    PutError::Deadline { last, attempts } => {
                        ("deadline", last.as_ref().map(|last| format!("{last} (after {attempts} attempts)")))
                    }
                    PutError::Overloaded => ("overloaded", None),
                };
                let error = match err {
                    // Fails at once and marks the sink not ready; the next scheduled probe (or a
                    // successful write) clears it. Not re-probed at once: HeadBucket may succeed
                    // where PutObject is refused (a read-only key), which would hide the cause.
                    PutError::Permanent { detail } => {
                        let detail = format!("bucket {bucket}: {detail}");
                        self.shared.set_readiness(Readiness::NotReady(detail.clone()));
                        SinkError::Unavailable { sink: SINK, detail }
                    }
                    // Retryable failures until the deadline: the probe, woken now, judges whether
                    // the bucket is reachable at all (throttling alone is no readiness failure).
                    PutError::Deadline { .. } => {
                        self.shared.wake.notify_one();
                        SinkError::DeadlineExceeded { sink: SINK }
                    }
                    PutError::Overloaded => SinkError::Overloaded { sink: SINK },
                };
                metrics::counter!(m::DEAD_LETTER_FAILURES, "cause" => cause).increment(1);
                tracing::warn!(request_id = %letter.request_id, reason, bucket = %bucket, key = %key, cause,
                    error = %error, last_error = last_error.as_deref().unwrap_or(""), "dead letter NOT stored");
                Err(error)
            }
        }
    }

    fn readiness(&self) -> Readiness {
        self.shared.readiness()
    }

    /// The readiness probe is the one task of this sink; it loops for ever unless it panicked.
    fn dead_tasks(&self) -> Vec<String> {
        let closed = self.closed.load(std::sync::atomic::Ordering::Acquire);
        if self.probe.is_finished() && !closed {
            vec!["dead-letter readiness probe".to_owned()]
        } else {
            Vec::new()
        }
    }

    async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.shared.writer.close().await;
        self.probe.abort();
    }
}

impl Shared {
    fn readiness(&self) -> Readiness {
        match self.readiness.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_readiness(&self, readiness: Readiness) {
        m::set_ready("dead_letter", readiness == Readiness::Ready);
        let mut guard = match self.readiness.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *guard != readiness {
            match &readiness {
                Readiness::Ready => {
                    tracing::info!(bucket = %self.writer.bucket(), "dead-letter bucket ready")
                }
                Readiness::NotReady(why) => tracing::warn!(why = %why, "dead-letter bucket not ready"),
            }
            *guard = readiness;
        }
    }
}

/// HeadBucket at start, then every `probe_interval` while healthy and every `backoff_max` while not
/// (or at once when a write fails).
async fn probe_loop(shared: Arc<Shared>) {
    loop {
        let verdict = match shared.writer.probe().await {
            Ok(()) => Readiness::Ready,
            Err(Failure::Permanent { detail } | Failure::Retryable { detail, .. }) => {
                Readiness::NotReady(format!("bucket {}: {detail}", shared.writer.bucket()))
            }
        };
        let pause =
            if verdict == Readiness::Ready { shared.probe_interval } else { shared.writer.backoff_max() };
        shared.set_readiness(verdict);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shared.wake.notified() => {}
        }
    }
}
