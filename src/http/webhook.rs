//! The webhook of one source: Authorization header (bearer, Basic, JWT: before any of the body is
//! read) -> body (bounded in size, time and number of unverified readers) -> signature -> content
//! type -> the source's and the pipeline's in-flight slots -> `pipeline::ingest` -> the answer.
//!
//! Order matters for hostile input: a body has to be read before its signature can be checked,
//! so unsigned requests only ever hold one of `server.max_unverified_bodies` read slots, for at
//! most `server.body_read_timeout_ms`, with a buffer that grows as bytes arrive (never from the
//! declared length). Only a delivery whose signature passed takes one of the `max_in_flight` slots
//! that sink writes run under.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use warp::http::{HeaderMap, HeaderName, StatusCode};

use super::AppState;
use super::reply::Reply;
use super::signature::{self, SignatureError, Verified};
use crate::metrics as m;
use crate::pipeline::{Delivery, Outcome, RetryReason};
use crate::sources::{Failure, Source};
use crate::trace::TraceContext;

/// The route label of everything answered here.
const ROUTE: &str = "webhook";

/// The first buffer of a body that arrives in several pieces; it grows as more arrives.
const FIRST_BUFFER_BYTES: usize = 16 << 10;

/// What the webhook knows about the request before its body is read.
pub(super) struct Arrival<'a> {
    pub headers: &'a HeaderMap,
    pub request_id: &'a str,
    /// Whether the sender chose `request_id`.
    pub request_id_from_sender: bool,
    /// When the request head was complete: the deadline and the body timeout count from here.
    pub started: Instant,
    pub trace: TraceContext,
}

/// Handles one POST to a source's path.
pub(super) async fn webhook<S, B>(state: &AppState, source: &Source, arrival: Arrival<'_>, body: S) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let Arrival { headers, request_id, request_id_from_sender, started, trace } = arrival;
    let received_at = chrono::Utc::now();
    let limits = state.pipeline.limits();
    let deadline = started + limits.deadline;
    let credentials = source.credentials();

    // A header-borne credential is checked before a byte of the body is read.
    if let Err(failure) = credentials.check_authorization(headers) {
        let mut reply = unauthorized(source, failure, "missing or invalid credentials", request_id);
        // The body is never read: do not keep the connection for the next request.
        reply.close = true;
        return reply;
    }

    let raw = match read_unverified(state, source, headers, body, started, request_id).await {
        Ok(raw) => raw,
        Err(reply) => return *reply,
    };

    if let Some(verifier) = credentials.signature() {
        match verifier.verify(headers, &raw, signature::now_unix()) {
            Ok(Verified { key_index }) => {
                m::count(m::SIGNATURES_VERIFIED, &[("key_index", key_label(key_index))], 1);
            }
            Err(err) => {
                m::count(m::SIGNATURE_FAILURES, &[("reason", err.as_str())], 1);
                // An ambiguous request is told why (it says nothing about the secret); every other
                // failure gets the same message, its reason only in metrics and the log.
                let repeated = match err {
                    SignatureError::Repeated => Some(verifier.signature_header()),
                    SignatureError::TimestampRepeated => verifier.timestamp_header(),
                    _ => None,
                };
                let message = match repeated {
                    Some(header) => {
                        format!("the {header} header was sent more than once: send it exactly once")
                    }
                    None => "missing or invalid signature".to_owned(),
                };
                let failure = Failure { check: "signature", reason: err.as_str() };
                return unauthorized(source, failure, &message, request_id);
            }
        }
    }

    if !acceptable_content_type(headers) {
        return Reply::error(
            ROUTE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON body as application/json (application/x-www-form-urlencoded is accepted too)",
            request_id,
        );
    }

    // The source's share of the in-flight bound first (a flood to one source cannot take the
    // others' slots), then the pipeline's.
    let Some(_share) = source.try_in_flight() else {
        return outcome_reply(state.pipeline.overloaded(), request_id);
    };
    let Ok(admission) = state.pipeline.admit() else {
        return outcome_reply(state.pipeline.overloaded(), request_id);
    };
    if Instant::now() >= deadline {
        let outcome =
            Outcome::Retry { reason: RetryReason::DeadlineExceeded, retry_after: limits.retry_after };
        return outcome_reply(outcome, request_id);
    }
    let delivery = Delivery {
        request_id: request_id.to_owned(),
        request_id_from_sender,
        received_at,
        started,
        body: raw,
        headers: kept_headers(headers, source.kept_headers()),
        trace,
        origin: source.origin(headers),
        // The one snapshot this delivery is judged by, taken as its processing starts.
        contract: Some(source.contract()),
    };
    let outcome = state.pipeline.ingest(admission, delivery).await;
    outcome_reply(outcome, request_id)
}

/// 401, counted by source, check and reason; the reply remembers the failure for the log line.
fn unauthorized(source: &Source, failure: Failure, message: &str, request_id: &str) -> Reply {
    m::count(
        m::AUTH_FAILURES,
        &[("source", source.name()), ("check", failure.check), ("reason", failure.reason)],
        1,
    );
    let mut reply = Reply::error(ROUTE, StatusCode::UNAUTHORIZED, "unauthorized", message, request_id);
    reply.auth_failure = Some(failure);
    reply
}

/// Reads the body under one of the source's unverified-read slots (and one of the server's), and
/// the body-read timeout.
async fn read_unverified<S, B>(
    state: &AppState,
    source: &Source,
    headers: &HeaderMap,
    body: S,
    started: Instant,
    request_id: &str,
) -> Result<Bytes, Box<Reply>>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let Some(_share) = source.try_unverified() else {
        return Err(Box::new(outcome_reply(state.pipeline.overloaded(), request_id)));
    };
    let Ok(_slot) = state.unverified.try_acquire() else {
        return Err(Box::new(outcome_reply(state.pipeline.overloaded(), request_id)));
    };
    let _reading = m::GaugeGuard::enter(m::UNVERIFIED_BODIES);
    let too_large = || {
        let message = format!("the body is larger than {} bytes", state.body_limit);
        let mut reply =
            Reply::error(ROUTE, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &message, request_id);
        reply.close = true;
        Box::new(reply)
    };
    let declared_length =
        headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > state.body_limit) {
        return Err(too_large());
    }
    let read_for = state.body_read_timeout.min(state.pipeline.limits().deadline);
    match tokio::time::timeout_at((started + read_for).into(), read_capped(body, state.body_limit)).await {
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(BodyError::TooLarge)) => Err(too_large()),
        Ok(Err(BodyError::Read)) => Err(Box::new(Reply::error(
            ROUTE,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body could not be read",
            request_id,
        ))),
        Err(_) => {
            let message =
                format!("the body did not arrive within {} ms of the request head", read_for.as_millis());
            let mut reply =
                Reply::error(ROUTE, StatusCode::REQUEST_TIMEOUT, "request_timeout", &message, request_id);
            reply.close = true;
            Err(Box::new(reply))
        }
    }
}

/// The webhook's answer for a pipeline outcome.
fn outcome_reply(outcome: Outcome, request_id: &str) -> Reply {
    let mut reply = Reply::json(
        ROUTE,
        outcome.label(),
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        outcome.response_json(request_id),
    );
    reply.retry_after =
        outcome.retry_after().map(|after| after.as_secs().clamp(1, super::config::MAX_RETRY_AFTER_SECS));
    if let Outcome::Retry { reason: RetryReason::SinkUnavailable { detail, .. }, .. } = outcome {
        reply.detail = Some(detail);
    }
    reply
}

/// Why a body could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    Read,
}

/// Reads the body into one buffer, stopping (without reading the rest) once it passes `limit`.
/// A single-chunk body is taken without copying; otherwise the buffer grows as bytes arrive
/// (a declared `Content-Length` is never trusted to size it).
async fn read_capped<S, B>(body: S, limit: u64) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Read)?;
        total += chunk.remaining() as u64;
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        let chunk = chunk.copy_to_bytes(chunk.remaining());
        if let Some(joined) = joined.as_mut() {
            joined.extend_from_slice(&chunk);
        } else if let Some(head) = first.take() {
            joined = Some(joined_buffer(&head, &chunk));
        } else {
            first = Some(chunk);
        }
    }
    Ok(match (joined, first) {
        (Some(joined), _) => joined.freeze(),
        (None, Some(first)) => first,
        (None, None) => Bytes::new(),
    })
}

/// The buffer a body of several pieces is gathered in, holding its first two: sized by what has
/// arrived (at least [`FIRST_BUFFER_BYTES`]), never by what the sender declared.
fn joined_buffer(head: &[u8], next: &[u8]) -> BytesMut {
    let mut buffer = BytesMut::with_capacity(FIRST_BUFFER_BYTES.max(head.len() + next.len()));
    buffer.extend_from_slice(head);
    buffer.extend_from_slice(next);
    buffer
}

/// JSON by declaration, or CXone's default form header (its REST action sends JSON under it),
/// or no content type at all. Anything else is refused with 415.
fn acceptable_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    let bytes = media_type.as_bytes();
    let structured_json = bytes.len() > b"application/+json".len()
        && bytes[..b"application/".len()].eq_ignore_ascii_case(b"application/")
        && bytes[bytes.len() - b"+json".len()..].eq_ignore_ascii_case(b"+json");
    structured_json
        || media_type.eq_ignore_ascii_case("application/json")
        || media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

fn kept_headers(headers: &HeaderMap, names: &[HeaderName]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}

fn key_label(index: usize) -> &'static str {
    const LABELS: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
    LABELS.get(index).copied().unwrap_or("8+")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tests::with;

    #[test]
    fn content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/cloudevents+json",
        ] {
            assert!(acceptable_content_type(&with("content-type", ok)), "{ok}");
        }
        for bad in ["text/plain", "multipart/form-data; boundary=x", "application/xml", "+json"] {
            assert!(!acceptable_content_type(&with("content-type", bad)), "{bad}");
        }
        assert!(acceptable_content_type(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn capped_reads() {
        let chunks = |parts: &[&'static [u8]]| {
            futures::stream::iter(
                parts.iter().map(|p| Ok::<_, warp::Error>(Bytes::from_static(p))).collect::<Vec<_>>(),
            )
        };
        assert_eq!(read_capped(chunks(&[b"abc", b"def"]), 6).await.unwrap(), Bytes::from_static(b"abcdef"));
        assert_eq!(read_capped(chunks(&[b"abc"]), 6).await.unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(read_capped(chunks(&[]), 6).await.unwrap(), Bytes::new());
        assert_eq!(read_capped(chunks(&[b"abc", b"defg"]), 6).await, Err(BodyError::TooLarge));
    }

    /// Regression: a body's buffer is sized by the bytes that arrived, not by a declared length
    /// (1,024 unsigned clients declaring 1 MiB each used to make the process reserve 1 GiB).
    #[test]
    fn buffers_are_sized_by_what_arrived() {
        let buffer = joined_buffer(b"a", b"b");
        assert_eq!(&buffer[..], b"ab");
        assert!(buffer.capacity() < 2 * FIRST_BUFFER_BYTES, "{}", buffer.capacity());
        let big = vec![b'x'; 3 * FIRST_BUFFER_BYTES];
        assert_eq!(joined_buffer(&big, b"y").len(), big.len() + 1);
    }
}
