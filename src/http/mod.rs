//! The HTTP face: [`routes`] for the public listener (webhook, `/healthz`, status-only `/readyz`)
//! and [`admin_routes`] for the admin listener (`/metrics`, `/healthz`, `/readyz` with sink detail);
//! the capped raw body, signature check before anything else, request ids, and every error as a
//! small JSON body.
//!
//! Routing is one exact match on the path (cheaper than a chain of warp path filters, and it
//! lets 404 and 405 answers carry the request id); one `recover` turns whatever warp itself
//! might reject into the same JSON error shape.

pub mod server;
pub mod signature;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use warp::Filter;
use warp::http::header::{
    ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use warp::http::{HeaderMap, HeaderName, Method, Response, StatusCode};

use crate::config::Config;
use crate::metrics as m;
use crate::pipeline::{Delivery, Outcome, Pipeline, RetryReason};
use crate::sinks::Readiness;

pub use signature::{SignatureError, Verified, Verifier};

/// The request-id header, read from the request and set on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a request; longer ones are replaced by a generated id.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Everything a request needs, shared by all of them.
pub struct AppState {
    /// Contract + sinks + policy.
    pipeline: Pipeline,
    /// The configured signature scheme with its keys.
    verifier: Verifier,
    /// Where CXone posts (`server.path`).
    webhook_path: Box<str>,
    /// `server.body_limit_bytes`.
    body_limit: u64,
    /// Request headers kept with dead letters: a fixed allow-list (+ the signed-timestamp header).
    kept_headers: Box<[HeaderName]>,
    /// Renders `/metrics`; `None` answers 404 there.
    prometheus: Option<PrometheusHandle>,
    /// Set at shutdown: `/readyz` answers 503 so load balancers stop sending.
    draining: AtomicBool,
}

impl AppState {
    /// Builds the shared state from a validated config.
    pub fn new(
        config: &Config,
        pipeline: Pipeline,
        prometheus: Option<PrometheusHandle>,
    ) -> Result<AppState, String> {
        let verifier = Verifier::new(&config.signature)?;
        let mut kept_headers =
            vec![CONTENT_TYPE, USER_AGENT, CONTENT_LENGTH, HeaderName::from_static(REQUEST_ID_HEADER)];
        if let Some(timestamp) = verifier.timestamp_header() {
            kept_headers.push(timestamp.clone());
        }
        kept_headers.retain(|name| name != verifier.signature_header());
        Ok(AppState {
            pipeline,
            verifier,
            webhook_path: config.server.path.clone().into_boxed_str(),
            body_limit: config.server.body_limit_bytes,
            kept_headers: kept_headers.into_boxed_slice(),
            prometheus,
            draining: AtomicBool::new(false),
        })
    }

    /// The pipeline (to close its sinks at shutdown).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// From now on `/readyz` says 503 `shutting_down`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Which listener a request came in on: it decides which endpoints exist and how much they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// Reachable by CXone (through the load balancer): webhook, `/healthz`, status-only `/readyz`.
    Public,
    /// For operators and scrapers only: `/metrics`, `/healthz`, `/readyz` with each sink's state.
    Admin,
}

/// The public listener's surface as one warp filter (tests drive it with `warp::test::request()`):
/// the webhook, `/healthz` and `/readyz` (status only; load balancers probe the service port).
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static {
    surface(state, Surface::Public)
}

/// The admin listener's surface: `/metrics`, `/healthz`, and `/readyz` naming each sink's state.
pub fn admin_routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static {
    surface(state, Surface::Admin)
}

fn surface(
    state: Arc<AppState>,
    surface: Surface,
) -> impl Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::any()
        .map(move || state.clone())
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |state: Arc<AppState>,
                  method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap,
                  body| async move {
                handle(&state, surface, &method, path.as_str(), &headers, body).await
            },
        )
        .recover(recover)
        .unify()
}

/// One answer before it becomes a response: what the sender sees and what we log and count.
struct Answer {
    /// Route label for logs and metrics.
    route: &'static str,
    /// Outcome label for logs and metrics.
    outcome: &'static str,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    /// Seconds, on 503.
    retry_after: Option<u64>,
    /// On 405: the methods the path takes.
    allow: Option<&'static str>,
    /// Close the connection after answering (the rest of an oversized body is never read).
    close: bool,
    /// Why a write was not acknowledged (503 from a sink), for the request's log line only.
    detail: Option<String>,
}

impl Answer {
    fn json(route: &'static str, outcome: &'static str, status: StatusCode, body: Vec<u8>) -> Answer {
        Answer {
            route,
            outcome,
            status,
            content_type: "application/json",
            body: Bytes::from(body),
            retry_after: None,
            allow: None,
            close: false,
            detail: None,
        }
    }

    fn error(
        route: &'static str,
        status: StatusCode,
        error: &'static str,
        message: &str,
        request_id: &str,
    ) -> Answer {
        Answer::json(route, error, status, error_json(request_id, error, message))
    }
}

/// The JSON error shape shared by every non-pipeline answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    request_id: &'a str,
    error: &'a str,
    message: &'a str,
}

fn error_json(request_id: &str, error: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody { status: "error", request_id, error, message })
        .unwrap_or_else(|_| br#"{"status":"error"}"#.to_vec())
}

async fn handle<S, B>(
    state: &AppState,
    surface: Surface,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: S,
) -> Response<Bytes>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let started = Instant::now();
    let request_id = request_id(headers);
    let answer = match (surface, path) {
        (Surface::Public, path) if path == &*state.webhook_path => {
            if method == Method::POST {
                webhook(state, headers, body, &request_id, started).await
            } else {
                method_not_allowed("webhook", "POST", &request_id)
            }
        }
        (_, "/healthz") => probe(method, "healthz", &request_id, || {
            Answer::json("healthz", "ok", StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
        }),
        (_, "/readyz") => {
            probe(method, "readyz", &request_id, || readiness(state, surface == Surface::Admin))
        }
        (Surface::Admin, "/metrics") => {
            probe(method, "metrics", &request_id, || metrics_page(state, &request_id))
        }
        _ => Answer::error("unknown", StatusCode::NOT_FOUND, "not_found", "no such endpoint", &request_id),
    };
    let elapsed = started.elapsed();
    m::record_request(answer.route, answer.outcome, elapsed);
    if answer.route == "webhook" {
        // One line per request; 5xx (nothing acknowledged, the sender must retry) at warn.
        if answer.status.is_server_error() {
            tracing::warn!(
                request_id = %request_id,
                status = answer.status.as_u16(),
                outcome = answer.outcome,
                latency_us = elapsed.as_micros() as u64,
                detail = answer.detail.as_deref().unwrap_or(""),
                "webhook"
            );
        } else {
            tracing::info!(
                request_id = %request_id,
                status = answer.status.as_u16(),
                outcome = answer.outcome,
                latency_us = elapsed.as_micros() as u64,
                "webhook"
            );
        }
    } else {
        tracing::debug!(
            request_id = %request_id,
            method = %method,
            route = answer.route,
            status = answer.status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
    }
    into_response(answer, &request_id)
}

fn probe(method: &Method, route: &'static str, request_id: &str, answer: impl FnOnce() -> Answer) -> Answer {
    if method == Method::GET || method == Method::HEAD {
        answer()
    } else {
        method_not_allowed(route, "GET, HEAD", request_id)
    }
}

fn method_not_allowed(route: &'static str, allow: &'static str, request_id: &str) -> Answer {
    let message = format!("use {allow}");
    let mut answer =
        Answer::error(route, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &message, request_id);
    answer.allow = Some(allow);
    answer
}

/// The webhook: capped body -> signature -> content type -> pipeline.
async fn webhook<S, B>(
    state: &AppState,
    headers: &HeaderMap,
    body: S,
    request_id: &str,
    started: Instant,
) -> Answer
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    const ROUTE: &str = "webhook";
    let received_at = chrono::Utc::now();
    let limits = state.pipeline.limits();
    let deadline = started + limits.deadline;

    // An in-flight slot before a byte of body is read: bounds the memory bodies can hold.
    let admission = match state.pipeline.admit() {
        Ok(admission) => admission,
        Err(_) => return outcome_answer(state.pipeline.overloaded(), request_id),
    };
    let declared_length =
        headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let read = read_capped(body, declared_length, state.body_limit);
    let raw = match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(BodyError::TooLarge)) => {
            let message = format!("the body is larger than {} bytes", state.body_limit);
            let mut answer = Answer::error(
                ROUTE,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &message,
                request_id,
            );
            answer.close = true;
            return answer;
        }
        Ok(Err(BodyError::Read)) => {
            return Answer::error(
                ROUTE,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body could not be read",
                request_id,
            );
        }
        Err(_) => {
            let mut answer = Answer::error(
                ROUTE,
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive before the deadline",
                request_id,
            );
            answer.close = true;
            return answer;
        }
    };

    match state.verifier.verify(headers, &raw, signature::now_unix()) {
        Ok(Verified { key_index }) => {
            metrics::counter!(m::SIGNATURES_VERIFIED, "key_index" => key_label(key_index)).increment(1);
        }
        Err(err) => {
            metrics::counter!(m::SIGNATURE_FAILURES, "reason" => err.as_str()).increment(1);
            // An ambiguous request is told why (it says nothing about the secret); every other
            // failure gets the same message, its reason only in metrics.
            let repeated = match err {
                SignatureError::Repeated => Some(state.verifier.signature_header()),
                SignatureError::TimestampRepeated => state.verifier.timestamp_header(),
                _ => None,
            };
            let message = match repeated {
                Some(header) => format!("the {header} header was sent more than once: send it exactly once"),
                None => "missing or invalid signature".to_owned(),
            };
            return Answer::error(ROUTE, StatusCode::UNAUTHORIZED, "unauthorized", &message, request_id);
        }
    }

    if !acceptable_content_type(headers) {
        return Answer::error(
            ROUTE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON body as application/json (application/x-www-form-urlencoded is accepted too)",
            request_id,
        );
    }

    let delivery = Delivery {
        request_id: request_id.to_owned(),
        received_at,
        started,
        body: raw,
        headers: kept_headers(headers, &state.kept_headers),
    };
    let outcome = state.pipeline.ingest(admission, delivery).await;
    outcome_answer(outcome, request_id)
}

/// The webhook's answer for a pipeline outcome.
fn outcome_answer(outcome: Outcome, request_id: &str) -> Answer {
    let mut answer = Answer::json(
        "webhook",
        outcome.label(),
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        outcome.response_json(request_id),
    );
    answer.retry_after = outcome.retry_after().map(|after| after.as_secs().max(1));
    if let Outcome::Retry { reason: RetryReason::SinkUnavailable { detail, .. }, .. } = outcome {
        answer.detail = Some(detail);
    }
    answer
}

/// Why a body could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    Read,
}

/// Reads the body into one buffer, stopping (without reading the rest) once it passes `limit`.
/// A single-chunk body is taken without copying.
async fn read_capped<S, B>(body: S, declared_length: Option<u64>, limit: u64) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if declared_length.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge);
    }
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
            let capacity = declared_length.unwrap_or(total).max(total).min(limit);
            let mut buffer = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(usize::MAX));
            buffer.extend_from_slice(&head);
            buffer.extend_from_slice(&chunk);
            joined = Some(buffer);
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

/// The request's own id when it is sane (1-64 of `[A-Za-z0-9._-]`), else a fresh UUIDv7.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(value) = headers.get(REQUEST_ID_HEADER) {
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if sane {
            if let Ok(id) = value.to_str() {
                return id.to_owned();
            }
        }
    }
    uuid::Uuid::now_v7().to_string()
}

fn key_label(index: usize) -> &'static str {
    const LABELS: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
    LABELS.get(index).copied().unwrap_or("8+")
}

/// Longest sink detail `/readyz` shows; SDK error chains run to several hundred characters.
const MAX_READINESS_DETAIL: usize = 160;

/// `/readyz`: the status alone on the public listener; each sink's state (why it is not ready,
/// shortened, e-mail addresses redacted) with `detail`, on the admin listener.
fn readiness(state: &AppState, detail: bool) -> Answer {
    if state.draining.load(Ordering::Acquire) {
        let body = serde_json::json!({ "status": "shutting_down" });
        return Answer::json(
            "readyz",
            "shutting_down",
            StatusCode::SERVICE_UNAVAILABLE,
            body.to_string().into_bytes(),
        );
    }
    let mut all_ready = true;
    let mut sinks = serde_json::Map::new();
    for (name, readiness) in state.pipeline.readiness() {
        let text = match readiness {
            Readiness::Ready => "ready".to_owned(),
            Readiness::NotReady(why) => {
                all_ready = false;
                if !detail {
                    continue;
                }
                format!("not ready: {}", crate::telemetry::redact_emails(&concise_detail(&why)))
            }
        };
        sinks.insert(name.to_owned(), serde_json::Value::String(text));
    }
    let (status, outcome, label) = if all_ready {
        (StatusCode::OK, "ready", "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "not_ready")
    };
    let body = if detail {
        serde_json::json!({ "status": label, "sinks": sinks })
    } else {
        serde_json::json!({ "status": label })
    };
    Answer::json("readyz", outcome, status, body.to_string().into_bytes())
}

/// A sink's not-ready reason, short enough to read at a glance: the `Debug` dump the AWS SDK's
/// `DisplayErrorContext` appends (` (DispatchFailure(DispatchFailure { source: ... }))`) is
/// dropped, error-chain segments (`a: b: c`) that repeat an earlier one are dropped, and the rest
/// is cut at [`MAX_READINESS_DETAIL`] characters.
fn concise_detail(why: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in without_debug_dump(why).split(": ").map(str::trim) {
        if !segment.is_empty() && !kept.contains(&segment) {
            kept.push(segment);
        }
    }
    let joined = kept.join(": ");
    match joined.char_indices().nth(MAX_READINESS_DETAIL) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// `text` up to a ` (Name(` or ` (Name {` that starts a Rust `Debug` dump, if any.
fn without_debug_dump(text: &str) -> &str {
    for (at, _) in text.match_indices(" (") {
        let rest = &text[at + 2..];
        let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        let starts_upper = rest.bytes().next().is_some_and(|b| b.is_ascii_uppercase());
        let after = &rest[name_len..];
        if starts_upper && (after.starts_with('(') || after.starts_with(" {")) {
            return &text[..at];
        }
    }
    text
}

fn metrics_page(state: &AppState, request_id: &str) -> Answer {
    match &state.prometheus {
        Some(handle) => Answer {
            route: "metrics",
            outcome: "ok",
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: Bytes::from(handle.render()),
            retry_after: None,
            allow: None,
            close: false,
            detail: None,
        },
        None => Answer::error(
            "metrics",
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are not enabled",
            request_id,
        ),
    }
}

fn into_response(answer: Answer, request_id: &str) -> Response<Bytes> {
    let mut response = Response::new(answer.body);
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
    }
    if let Some(seconds) = answer.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(allow) = answer.allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    if answer.close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whatever warp itself rejects (it should not: routing is done above) still gets the JSON shape.
async fn recover(rejection: warp::Rejection) -> Result<Response<Bytes>, Infallible> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let (status, error) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not_found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    } else {
        tracing::error!(request_id = %request_id, rejection = ?rejection, "unexpected rejection");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    };
    m::record_request("unknown", error, std::time::Duration::ZERO);
    let answer = Answer::error("unknown", status, error, "request rejected", &request_id);
    Ok(into_response(answer, &request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn request_ids_are_taken_when_sane() {
        assert_eq!(request_id(&with("x-request-id", "abc-123_X.y")), "abc-123_X.y");
        for bad in ["", "has space", "semi;colon", &"a".repeat(65)] {
            let id = request_id(&with("x-request-id", bad));
            assert_ne!(id, bad);
            assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        }
    }

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

    #[test]
    fn readiness_detail_is_deduplicated_and_cut() {
        // As the dead-letter sink reports an unreachable endpoint (DisplayErrorContext), 552 bytes.
        let sdk = "bucket b: dispatch failure: io error: client error (Connect): tcp connect error: \
                   Connection refused (os error 111) (DispatchFailure(DispatchFailure { source: \
                   ConnectorError { kind: Io, source: hyper_util::client::legacy::Error(Connect, \
                   ConnectError(\"tcp connect error\", 127.0.0.1:1, Os { code: 111, kind: ConnectionRefused, \
                   message: \"Connection refused\" })), connection: Unknown } }))";
        assert_eq!(
            concise_detail(sdk),
            "bucket b: dispatch failure: io error: client error (Connect): tcp connect error: \
             Connection refused (os error 111)"
        );
        let repeated = "dispatch failure: io error: tcp connect error: io error: tcp connect error";
        assert_eq!(concise_detail(repeated), "dispatch failure: io error: tcp connect error");
        let long = format!("bucket b: {}", "é".repeat(300));
        let short = concise_detail(&long);
        assert_eq!(short.chars().count(), MAX_READINESS_DETAIL + 1);
        assert!(short.ends_with('…'));
        assert_eq!(
            concise_detail("connecting to Kafka at 127.0.0.1:1"),
            "connecting to Kafka at 127.0.0.1:1"
        );
    }

    #[tokio::test]
    async fn capped_reads() {
        let chunks = |parts: &[&'static [u8]]| {
            futures::stream::iter(
                parts.iter().map(|p| Ok::<_, warp::Error>(Bytes::from_static(p))).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            read_capped(chunks(&[b"abc", b"def"]), None, 6).await.unwrap(),
            Bytes::from_static(b"abcdef")
        );
        assert_eq!(read_capped(chunks(&[b"abc"]), Some(3), 6).await.unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(read_capped(chunks(&[]), None, 6).await.unwrap(), Bytes::new());
        assert_eq!(read_capped(chunks(&[b"abc", b"defg"]), None, 6).await, Err(BodyError::TooLarge));
        assert_eq!(read_capped(chunks(&[b"a"]), Some(7), 6).await, Err(BodyError::TooLarge));
    }
}
