//! The dead-letter batch committer: gathers the letters waiting in the bounded queue into one
//! JSON-lines object (bounded by count, bytes and a linger), puts it through the writer, and
//! answers every letter of the batch from that one put: all stored, or all not (503).
//!
//! Like the Kafka group committer with one committer: one batch is written at a time, and the
//! letters that arrive meanwhile form the next batch, so batches grow with the load and the number
//! of PUTs does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::key;
use super::writer::PutError;
use super::{SINK, Shared};
use crate::metrics as m;
use crate::sinks::{Readiness, SinkError, Stored};

/// `Content-Type` of a batch object.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// A dead letter waiting for its batch.
pub(crate) struct Pending {
    /// The record as one compact JSON line (no newline).
    pub line: Vec<u8>,
    /// When the request arrived: the batch's partition comes from its first letter's.
    pub received_at: DateTime<Utc>,
    /// The record's `reason`, for `cxone_ingest_dead_letters_total`.
    pub reason: &'static str,
    /// The record's schema id (or `none`), for `cxone_ingest_dead_letters_total`.
    pub schema: String,
    /// Its source's own key prefix (normalized), or `None` for `dead_letter.prefix`: a batch
    /// holds letters of one prefix only.
    pub prefix: Option<Arc<str>>,
    /// The request's deadline: the batch neither lingers nor retries past its earliest one.
    pub deadline: Instant,
    /// When it was queued: the linger counts from the batch's oldest letter.
    pub enqueued_at: Instant,
    /// Where the answer goes; closed when the request gave up (deadline, client gone).
    pub reply: oneshot::Sender<Result<Stored, SinkError>>,
}

/// When a batch is complete.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Most letters in one object.
    pub max_records: usize,
    /// Most bytes (lines plus newlines) in one object.
    pub max_bytes: usize,
    /// Longest wait for more letters, from the oldest letter's arrival.
    pub linger: Duration,
}

/// Runs until the queue is closed and drained: gather, put, answer, repeat.
pub(crate) async fn run(
    mut queue: mpsc::Receiver<Pending>,
    shared: Arc<Shared>,
    prefix: String,
    limits: BatchLimits,
) {
    let mut carry = None;
    while let Some(batch) = gather(&mut queue, &mut carry, limits).await {
        commit(&shared, &prefix, batch).await;
    }
}

/// The next batch: at least one live letter, then more until a bound is reached, the linger is over
/// or the queue is empty and closed. `None` once the queue is closed and empty.
async fn gather(
    queue: &mut mpsc::Receiver<Pending>,
    carry: &mut Option<Pending>,
    limits: BatchLimits,
) -> Option<Vec<Pending>> {
    let first = loop {
        let next = match carry.take() {
            Some(pending) => pending,
            None => queue.recv().await?,
        };
        if let Some(live) = still_wanted(next) {
            break live;
        }
    };
    let mut bytes = first.line.len() + 1;
    let mut earliest = first.deadline;
    let linger_end = first.enqueued_at + limits.linger;
    let mut batch = vec![first];
    while batch.len() < limits.max_records && bytes < limits.max_bytes {
        let next = match queue.try_recv() {
            Ok(next) => next,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let until = linger_end.min(earliest);
                match tokio::time::timeout_at(until.into(), queue.recv()).await {
                    Ok(Some(next)) => next,
                    Ok(None) | Err(_) => break,
                }
            }
        };
        let Some(next) = still_wanted(next) else { continue };
        if bytes + next.line.len() + 1 > limits.max_bytes || next.prefix != batch[0].prefix {
            *carry = Some(next);
            break;
        }
        bytes += next.line.len() + 1;
        earliest = earliest.min(next.deadline);
        batch.push(next);
    }
    Some(batch)
}

/// `None` for a letter whose request has already been answered (deadline passed, client gone):
/// writing it would store a record nobody was told about.
fn still_wanted(pending: Pending) -> Option<Pending> {
    if pending.reply.is_closed() || Instant::now() >= pending.deadline { None } else { Some(pending) }
}

/// Writes one batch as one object and answers every letter in it from that put.
async fn commit(shared: &Shared, prefix: &str, batch: Vec<Pending>) {
    let Some(first) = batch.first() else { return };
    let prefix = first.prefix.as_deref().unwrap_or(prefix);
    let key = key::batch_key(prefix, first.received_at, &uuid::Uuid::now_v7());
    let earliest = batch.iter().map(|p| p.deadline).min().unwrap_or_else(Instant::now);
    let mut body = BytesMut::with_capacity(batch.iter().map(|p| p.line.len() + 1).sum());
    for pending in &batch {
        body.put_slice(&pending.line);
        body.put_u8(b'\n');
    }
    let body: Bytes = body.freeze();
    let sha256 = hex::encode(Sha256::digest(&body));
    let bucket = shared.writer.bucket().to_owned();
    let result = shared.writer.put(&key, body, &sha256, CONTENT_TYPE, earliest).await;
    let records = batch.len();
    match result {
        Ok(report) => {
            shared.set_readiness(Readiness::Ready);
            m::count(m::DEAD_LETTER_OBJECTS, &[], 1);
            m::observe(m::DEAD_LETTER_BATCH_RECORDS, &[], records as f64);
            tracing::debug!(bucket = %bucket, key = %key, records, attempts = report.attempts,
                "dead-letter batch stored");
            // One increment per label set: a batch is mostly letters of one reason and schema.
            let mut stored_by_label: Vec<(&'static str, String, u64)> = Vec::new();
            for (index, pending) in batch.into_iter().enumerate() {
                match stored_by_label
                    .iter_mut()
                    .find(|(r, s, _)| *r == pending.reason && *s == pending.schema)
                {
                    Some((_, _, count)) => *count += 1,
                    None => stored_by_label.push((pending.reason, pending.schema, 1)),
                }
                let stored = Stored { bucket: bucket.clone(), key: key.clone(), line: index as u64 + 1 };
                let _ = pending.reply.send(Ok(stored));
            }
            for (reason, schema, count) in stored_by_label {
                metrics::counter!(m::DEAD_LETTERS, "reason" => reason, "schema" => schema).increment(count);
            }
        }
        Err(err) => {
            let (cause, last_error) = match &err {
                PutError::Permanent { detail } => ("permanent", Some(detail.clone())),
                PutError::Deadline { last, attempts } => {
                    ("deadline", last.as_ref().map(|last| format!("{last} (after {attempts} attempts)")))
                }
            };
            let error = match err {
                // Fails at once and marks the sink not ready; the next scheduled probe (or a
                // successful write) clears it. Not re-probed at once: HeadBucket may succeed
                // where PutObject is refused (a read-only key), which would hide the cause.
                PutError::Permanent { detail } => {
                    let detail = format!("bucket {bucket}: {detail}");
                    shared.set_readiness(Readiness::NotReady(detail.clone()));
                    SinkError::Unavailable { sink: SINK, detail }
                }
                // Retryable failures until the deadline: the probe, woken now, judges whether
                // the bucket is reachable at all (throttling alone is no readiness failure).
                PutError::Deadline { .. } => {
                    shared.wake.notify_one();
                    SinkError::DeadlineExceeded { sink: SINK }
                }
            };
            metrics::counter!(m::DEAD_LETTER_FAILURES, "cause" => cause).increment(records as u64);
            tracing::warn!(bucket = %bucket, key = %key, records, cause, error = %error,
                last_error = last_error.as_deref().unwrap_or(""), "dead-letter batch NOT stored");
            for pending in batch {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(line: &str, linger_ago: Duration) -> (Pending, oneshot::Receiver<Result<Stored, SinkError>>) {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            line: line.as_bytes().to_vec(),
            received_at: Utc::now(),
            reason: "malformed_json",
            schema: "none".to_owned(),
            prefix: None,
            deadline: Instant::now() + Duration::from_secs(10),
            enqueued_at: Instant::now() - linger_ago,
            reply,
        };
        (pending, answer)
    }

    fn limits(max_records: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits { max_records, max_bytes, linger: Duration::from_millis(20) }
    }

    #[tokio::test]
    async fn batches_are_cut_by_count_then_by_bytes_with_the_overflow_carried() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for line in ["aaaa", "bbbb", "cccc", "dddd", "eeee"] {
            let (p, a) = pending(line, Duration::ZERO);
            answers.push(a);
            tx.send(p).await.unwrap();
        }
        let mut carry = None;
        let batch = gather(&mut rx, &mut carry, limits(2, 1_000)).await.unwrap();
        assert_eq!(batch.iter().map(|p| p.line.clone()).collect::<Vec<_>>(), [b"aaaa", b"bbbb"]);
        // 5 bytes per line (with its newline): two fit in 12, the third is carried into the next batch.
        let batch = gather(&mut rx, &mut carry, limits(100, 12)).await.unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(carry.as_ref().map(|p| p.line.clone()), Some(b"eeee".to_vec()));
        drop(tx);
        let batch = gather(&mut rx, &mut carry, limits(100, 1_000)).await.unwrap();
        assert_eq!(batch.len(), 1, "the carried letter leads the next batch");
        assert!(gather(&mut rx, &mut carry, limits(100, 1_000)).await.is_none(), "closed and drained");
    }

    #[tokio::test]
    async fn letters_whose_request_gave_up_are_left_out() {
        let (tx, mut rx) = mpsc::channel(16);
        let (gone, answer) = pending("gone", Duration::ZERO);
        drop(answer);
        let (expired, _expired_answer) = {
            let (mut p, a) = pending("late", Duration::ZERO);
            p.deadline = Instant::now() - Duration::from_millis(1);
            (p, a)
        };
        let (live, _live_answer) = pending("live", Duration::from_secs(1));
        for p in [gone, expired, live] {
            tx.send(p).await.unwrap();
        }
        let batch = gather(&mut rx, &mut None, limits(100, 1_000)).await.unwrap();
        assert_eq!(batch.iter().map(|p| p.line.clone()).collect::<Vec<_>>(), [b"live"]);
    }

    #[tokio::test]
    async fn the_linger_counts_from_the_oldest_letter() {
        let (tx, mut rx) = mpsc::channel(16);
        let (old, _a) = pending("old", Duration::from_secs(1));
        tx.send(old).await.unwrap();
        // The oldest letter has waited longer than the linger: the batch is cut at once, with the
        // sender still open (no wait for a letter that is not coming).
        let mut carry = None;
        let cut =
            tokio::time::timeout(Duration::from_secs(5), gather(&mut rx, &mut carry, limits(100, 1_000)));
        let batch = cut.await.expect("cut at once, not waiting for more").unwrap();
        assert_eq!(batch.len(), 1);
        drop(tx);
    }
}
