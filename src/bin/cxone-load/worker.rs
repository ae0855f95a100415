//! One connection's loop: take the next request number, build, sign and send that request, and record what came back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use sha2::{Digest, Sha256};

use crate::client::{ClientError, Connection, Target};
use crate::pacer::Pacer;
use crate::payload::{Kind, Mix, PayloadFactory, push_decimal, splitmix64};

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx with status "published" (the seed says "kafka_published").
    Published,
    /// 2xx with status "dead_lettered" (the seed says "rejected").
    DeadLettered,
    /// Any other HTTP answer (401, 400, 503, …).
    OtherAnswer,
    /// No HTTP answer: see `Failure`.
    NoAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Io,
    Timeout,
}

/// One request as the driver saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub kind: Kind,
    /// Sequence number of the correlation id sent (a repeat carries its original's).
    pub seq: u64,
    /// Request number, unique per HTTP request; our `X-Request-Id` is `<run id>-r<number>`.
    pub request_no: u64,
    /// HTTP status, 0 when there was no answer.
    pub status: u16,
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    /// From due time (open loop) or send time (closed loop) to the end of the response.
    pub latency_us: u32,
    /// How late the request left after its due time (open loop only): connections were all busy.
    pub start_lag_us: u32,
    /// The request id the server answered with, when it is not the one we sent.
    pub answered_request_id: Option<Box<str>>,
    /// SHA-256 of the body of a valid request (kept only for the data check).
    pub body_sha256: Option<[u8; 32]>,
}

/// Settings and counters shared by the workers.
pub struct Shared {
    pub target: Target,
    pub factory: PayloadFactory,
    pub mix: Mix,
    pub seed: u64,
    /// Next request number to issue.
    pub next: AtomicU64,
    pub start: Instant,
    pub deadline: Option<Instant>,
    pub max_requests: Option<u64>,
    /// Open loop only: releases requests on schedule.
    pub pacer: Option<Arc<Pacer>>,
    pub timeout: Duration,
    /// Keep body hashes for the data check.
    pub hash_bodies: bool,
}

/// What one worker brings back.
#[derive(Debug, Default)]
pub struct WorkerResult {
    pub samples: Vec<Sample>,
    /// The first error message of each kind of failure this worker met, for the report.
    pub failure_examples: Vec<String>,
}

/// A valid request kept so that a later `repeat` can resend it byte for byte.
struct Sent {
    seq: u64,
    body: Bytes,
    signature: HeaderValue,
}

/// How many recent valid requests each connection keeps for repeats.
const REPEAT_WINDOW: usize = 64;

const SIGNATURE: HeaderName = HeaderName::from_static("x-cxone-signature");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The fields of an answer the driver reads. Borrowed from the body (no allocation); an answer with
/// escaped strings, which cannot be borrowed, is read again into `OwnedAnswer`.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    status: Option<&'a str>,
    request_id: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct OwnedAnswer {
    status: Option<String>,
    request_id: Option<String>,
}

/// Reads an HTTP answer: the outcome, and the request id the server answered with when it differs from
/// `sent_request_id`. Only a 2xx whose JSON `status` says so counts as published or dead-lettered; the
/// body of any other answer is not parsed (the data check reads answered request ids of published ones only).
pub fn classify(status: u16, body: &[u8], sent_request_id: &[u8]) -> (Outcome, Option<Box<str>>) {
    if !(200..300).contains(&status) {
        return (Outcome::OtherAnswer, None);
    }
    match serde_json::from_slice::<Answer<'_>>(body) {
        Ok(a) => outcome_of(a.status, a.request_id, sent_request_id),
        Err(_) => match serde_json::from_slice::<OwnedAnswer>(body) {
            Ok(a) => outcome_of(a.status.as_deref(), a.request_id.as_deref(), sent_request_id),
            Err(_) => (Outcome::OtherAnswer, None),
        },
    }
}

fn outcome_of(
    answer_status: Option<&str>,
    answer_request_id: Option<&str>,
    sent_request_id: &[u8],
) -> (Outcome, Option<Box<str>>) {
    let outcome = match answer_status {
        Some("published" | "kafka_published") => Outcome::Published,
        Some("dead_lettered" | "rejected") => Outcome::DeadLettered,
        _ => Outcome::OtherAnswer,
    };
    let answered = answer_request_id.filter(|rid| rid.as_bytes() != sent_request_id).map(Box::from);
    (outcome, answered)
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Reuses the connection when hyper says it can take a request, opens a new one otherwise, and sends.
async fn send_once(
    conn: &mut Option<Connection>,
    target: &Target,
    request: Request<Full<Bytes>>,
) -> Result<crate::client::Response, ClientError> {
    if conn.as_mut().is_some_and(|c| !c.reusable()) {
        *conn = None;
    }
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Connection::connect(target.addr).await?),
    };
    c.post(request).await
}

/// The next request number of this worker and when it is due, or `None` when the run is over.
async fn next_request(shared: &Shared) -> Option<(u64, Instant)> {
    if let Some(pacer) = &shared.pacer {
        // Open loop: wait until the pacer says one more request is due.
        pacer.released.acquire().await.ok()?.forget();
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        if n >= pacer.limit.load(Ordering::SeqCst) || shared.max_requests.is_some_and(|max| n >= max) {
            return None;
        }
        return Some((n, pacer.due_at(shared.start, n)));
    }
    let n = shared.next.fetch_add(1, Ordering::SeqCst);
    let now = Instant::now();
    if shared.max_requests.is_some_and(|max| n >= max) || shared.deadline.is_some_and(|d| now >= d) {
        return None;
    }
    Some((n, now))
}

/// Header values a worker reuses from one request to the next.
struct HeaderCache {
    content_type: HeaderValue,
    /// `Content-Length` values of the body sizes seen (one per kind at most): set by us, hyper does not
    /// allocate its own for every request.
    lengths: Vec<(usize, HeaderValue)>,
}

impl HeaderCache {
    fn content_length(&mut self, len: usize) -> HeaderValue {
        if let Some((_, v)) = self.lengths.iter().find(|(l, _)| *l == len) {
            return v.clone();
        }
        let v = HeaderValue::from(len);
        self.lengths.push((len, v.clone()));
        v
    }
}

/// The POST of one request, with its headers.
fn build_request(
    target: &Target,
    cache: &mut HeaderCache,
    body: Bytes,
    signature: HeaderValue,
    request_id: HeaderValue,
) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(header::HOST, target.host.clone());
    headers.insert(header::CONTENT_TYPE, cache.content_type.clone());
    headers.insert(header::CONTENT_LENGTH, cache.content_length(body.len()));
    headers.insert(SIGNATURE, signature);
    headers.insert(REQUEST_ID, request_id);
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.path.clone();
    *request.headers_mut() = headers;
    request
}

/// Runs one connection until the run is over. Fails only if a request cannot even be built (a run id
/// that is not a valid header value, which `--run-id`'s check rules out).
pub async fn worker(shared: Arc<Shared>) -> anyhow::Result<WorkerResult> {
    let mut result = WorkerResult::default();
    let mut conn: Option<Connection> = None;
    let mut recent: Vec<Sent> = Vec::with_capacity(REPEAT_WINDOW);
    let mut cache =
        HeaderCache { content_type: HeaderValue::from_static("application/json"), lengths: Vec::new() };
    let mut scratch = Vec::with_capacity(shared.factory.target_size + 512);
    let request_id_prefix = format!("{}-r", shared.factory.run_id);
    let mut request_id = Vec::with_capacity(request_id_prefix.len() + 20);
    while let Some((n, due)) = next_request(&shared).await {
        let mut kind = shared.mix.pick(n, shared.seed);
        if kind == Kind::Repeat && recent.is_empty() {
            kind = Kind::Valid;
        }
        let (seq, body, signature) = if kind == Kind::Repeat {
            let earlier = &recent[(splitmix64(n) % recent.len() as u64) as usize];
            (earlier.seq, earlier.body.clone(), earlier.signature.clone())
        } else {
            shared.factory.body(kind, n, &mut scratch);
            let signature = HeaderValue::from_bytes(&shared.factory.signature(kind, &scratch))?;
            (n, Bytes::copy_from_slice(&scratch), signature)
        };
        request_id.clear();
        request_id.extend_from_slice(request_id_prefix.as_bytes());
        push_decimal(&mut request_id, n, 0);
        // A valid request is kept for later repeats (and its hash for the data check).
        let kept = (kind == Kind::Valid).then(|| (body.clone(), signature.clone()));
        let request =
            build_request(&shared.target, &mut cache, body, signature, HeaderValue::from_bytes(&request_id)?);

        let sent_at = Instant::now();
        let answer =
            tokio::time::timeout(shared.timeout, send_once(&mut conn, &shared.target, request)).await;
        let done = Instant::now();
        let mut sample = Sample {
            kind,
            seq,
            request_no: n,
            status: 0,
            outcome: Outcome::NoAnswer,
            failure: None,
            latency_us: micros(done - due),
            start_lag_us: micros(sent_at.saturating_duration_since(due)),
            answered_request_id: None,
            body_sha256: None,
        };
        match answer {
            Ok(Ok(response)) => {
                sample.status = response.status;
                (sample.outcome, sample.answered_request_id) =
                    classify(response.status, &response.body, &request_id);
                if response.close {
                    conn = None;
                }
            }
            Ok(Err(e)) => {
                let failure = match e {
                    ClientError::Connect(_) => Failure::Connect,
                    ClientError::Io(_) => Failure::Io,
                };
                note_failure(&mut result, failure, &e.to_string());
                sample.failure = Some(failure);
                conn = None;
            }
            Err(_elapsed) => {
                note_failure(
                    &mut result,
                    Failure::Timeout,
                    &format!("timeout: no answer within {:?}", shared.timeout),
                );
                sample.failure = Some(Failure::Timeout);
                conn = None;
            }
        }
        if let Some((body, signature)) = kept {
            if shared.hash_bodies {
                sample.body_sha256 = Some(Sha256::digest(&body).into());
            }
            let sent = Sent { seq, body, signature };
            if recent.len() < REPEAT_WINDOW {
                recent.push(sent);
            } else {
                recent[(n % REPEAT_WINDOW as u64) as usize] = sent;
            }
        }
        result.samples.push(sample);
    }
    Ok(result)
}

/// Keeps the first message of each kind of failure.
fn note_failure(result: &mut WorkerResult, failure: Failure, message: &str) {
    let prefix = match failure {
        Failure::Connect => "connect",
        Failure::Io => "io",
        Failure::Timeout => "timeout",
    };
    if !result.failure_examples.iter().any(|m| m.starts_with(prefix)) {
        result.failure_examples.push(message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_status_and_json_status() {
        assert_eq!(
            classify(200, br#"{"status":"published","request_id":"r1"}"#, b"r1"),
            (Outcome::Published, None)
        );
        assert_eq!(classify(200, br#"{"status":"kafka_published"}"#, b"r1").0, Outcome::Published);
        assert_eq!(classify(202, br#"{"status":"dead_lettered"}"#, b"r1").0, Outcome::DeadLettered);
        assert_eq!(classify(200, br#"{"status":"rejected"}"#, b"r1").0, Outcome::DeadLettered);
        // A "published" that is not a 2xx, an unknown status, or no JSON at all: some other answer.
        assert_eq!(classify(503, br#"{"status":"published"}"#, b"r1").0, Outcome::OtherAnswer);
        assert_eq!(classify(200, br#"{"status":"queued"}"#, b"r1").0, Outcome::OtherAnswer);
        assert_eq!(classify(200, b"", b"r1"), (Outcome::OtherAnswer, None));
        assert_eq!(
            classify(401, br#"{"detail":"Invalid webhook signature"}"#, b"r1"),
            (Outcome::OtherAnswer, None)
        );
        // The server answered with another request id (a repeat answered from the dedupe store).
        assert_eq!(
            classify(200, br#"{"status":"published","request_id":"r0"}"#, b"r1"),
            (Outcome::Published, Some("r0".into()))
        );
    }

    #[test]
    fn only_the_first_failure_of_each_kind_is_kept() {
        let mut r = WorkerResult::default();
        note_failure(&mut r, Failure::Io, "io: closed");
        note_failure(&mut r, Failure::Io, "io: reset");
        note_failure(&mut r, Failure::Connect, "connect: refused");
        assert_eq!(r.failure_examples, ["io: closed", "connect: refused"]);
    }
}
