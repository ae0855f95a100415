//! Dead-letter sink: invalid payloads kept in S3 as JSON records that say what was wrong.
//!
//! [`S3DeadLetterSink`] builds a [`DeadLetterRecord`] per letter and queues it (bounded) for the
//! [`batcher`], which writes the letters arriving together as ONE JSON-lines object at
//! [`key::batch_key`] through the [`writer::S3Writer`] (retries with backoff inside the earliest
//! deadline) and answers each letter with the object's key and its line. A background HeadBucket
//! probe keeps `/readyz` honest.

pub mod batcher;
pub mod config;
pub mod key;
pub mod record;
pub mod writer;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, oneshot};

pub use config::{DeadLetterConfig, DeadLetterConfigError, ServerSideEncryption};
pub use record::{DeadLetterRecord, OriginalPayload, PayloadEncoding, RecordTrace};

use crate::metrics as m;
use crate::sinks::{DeadLetter, DeadLetterSink, Readiness, SinkError, Stored};
use batcher::{BatchLimits, Pending};
use writer::{Failure, S3Writer, SdkRetries};

/// Sink name in errors and logs.
const SINK: &str = "dead-letter store";

/// Writes dead letters to S3 in batches. Cheap to share behind an `Arc`; dropping it stops the
/// probe and (once the queue is dropped) the batcher.
pub struct S3DeadLetterSink {
    /// Shared with the probe and the batcher.
    shared: Arc<Shared>,
    /// To the batcher; taken by `close` so the batcher drains the queue and stops.
    queue: RwLock<Option<mpsc::Sender<Pending>>>,
    /// The batcher task, awaited by `close`.
    batcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the batcher task ended (panicked) while the sink was open.
    batcher_done: Arc<std::sync::atomic::AtomicBool>,
    /// The readiness probe; aborted on drop.
    probe: tokio::task::JoinHandle<()>,
    /// Set by `close`: the probe and the batcher ended on purpose.
    closed: std::sync::atomic::AtomicBool,
}

/// What the sink, its probe task and its batcher share.
pub(crate) struct Shared {
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
    /// Builds the sink, starts the batcher and starts probing the bucket. Fails only on
    /// configuration errors: an unreachable or misconfigured S3 makes the sink not-ready, never
    /// fails start-up.
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
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let limits = BatchLimits {
            max_records: config.batch_max_records,
            max_bytes: config.batch_max_bytes,
            linger: config.linger(),
        };
        let batcher_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&batcher_done);
        let batcher = tokio::spawn({
            let shared = Arc::clone(&shared);
            let prefix = config.normalized_prefix().to_owned();
            async move {
                // Set however the task ends (a panic included), so `/healthz` can tell.
                let _done = SetOnDrop(done);
                batcher::run(rx, shared, prefix, limits).await;
            }
        });
        Ok(S3DeadLetterSink {
            shared,
            queue: RwLock::new(Some(tx)),
            batcher: std::sync::Mutex::new(Some(batcher)),
            batcher_done,
            probe,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The bucket written to.
    pub fn bucket(&self) -> &str {
        self.shared.writer.bucket()
    }

    /// Queues one letter for its batch; `Overloaded` when the queue is full.
    fn enqueue(&self, pending: Pending) -> Result<(), SinkError> {
        let queue = self.queue.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(queue) = queue.as_ref() else {
            return Err(SinkError::Unavailable { sink: SINK, detail: "shutting down".to_owned() });
        };
        match queue.try_send(pending) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                metrics::counter!(m::DEAD_LETTER_FAILURES, "cause" => "overloaded").increment(1);
                Err(SinkError::Overloaded { sink: SINK })
            }
            Err(TrySendError::Closed(_)) => {
                Err(SinkError::Unavailable { sink: SINK, detail: "the batcher has stopped".to_owned() })
            }
        }
    }
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
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
        let reason = record.reason.as_str();
        let (reply, answer) = oneshot::channel();
        self.enqueue(Pending {
            line: record.to_line(),
            received_at: letter.received_at,
            reason,
            schema: record.schema.as_ref().map_or_else(|| "none".to_owned(), |schema| schema.id.clone()),
            prefix: letter.origin.dead_letter_prefix.clone(),
            deadline,
            enqueued_at: Instant::now(),
            reply,
        })?;
        // The batcher answers every letter it took; a dropped answer means it is gone.
        let result = answer.await.unwrap_or_else(|_| {
            Err(SinkError::Unavailable { sink: SINK, detail: "the batcher has stopped".to_owned() })
        });
        match &result {
            Ok(stored) => tracing::info!(
                request_id = %letter.request_id,
                trace_id = %letter.trace.trace_id_hex(),
                source = %letter.origin.source,
                reason,
                bucket = %stored.bucket,
                key = %stored.key,
                line = stored.line,
                "dead letter stored"
            ),
            Err(error) => tracing::warn!(
                request_id = %letter.request_id,
                trace_id = %letter.trace.trace_id_hex(),
                source = %letter.origin.source,
                reason,
                bucket = %self.bucket(),
                error = %error,
                "dead letter NOT stored"
            ),
        }
        result
    }

    fn readiness(&self) -> Readiness {
        self.shared.readiness()
    }

    /// The readiness probe loops for ever and the batcher until `close`, unless they panicked.
    fn dead_tasks(&self) -> Vec<String> {
        let closed = self.closed.load(std::sync::atomic::Ordering::Acquire);
        let mut dead = Vec::new();
        if self.probe.is_finished() && !closed {
            dead.push("dead-letter readiness probe".to_owned());
        }
        if self.batcher_done.load(std::sync::atomic::Ordering::Acquire) && !closed {
            dead.push("dead-letter batcher".to_owned());
        }
        dead
    }

    /// Stops taking letters, lets the batcher write every letter already queued, then stops.
    async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.queue.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let batcher = self.batcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(batcher) = batcher {
            let _ = batcher.await;
        }
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
