//! The bad-input catalogue: hostile or broken requests, each with its defined answer (exact status
//! and JSON `status`/`reason`/`error`), the sink calls it may cause (exactly one, or none), and a
//! valid request answered 200 right after it (the server stays healthy).
//!
//! Bodies and most headers go through `http::routes` (no socket); what only exists on the wire
//! (repeated and oversized headers, slow and dropped bodies, half-sent and trickled headers) uses
//! a real listener.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cxone_ingest::config::Config;
use cxone_ingest::contract::Reason;
use cxone_ingest::http::{self, AppState, signature};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warp::http::Response;

use crate::support::{FakeSink, app_state, closed_within, poll_until, status_of, test_config, whole_answer};

const PATH: &str = "/webhooks/cxone-data-actions";
const SECRET: &str = "bad-input-secret-0123456789abcdef";
/// The default body cap (`server.body_limit_bytes`).
const CAP: usize = 1024 * 1024;
const VALID: &str = r#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{"channel":"voice","duration_seconds":"120","agent_id":"a-7","customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5"}}}"#;

// --- set-up ---

fn config() -> Config {
    test_config(SECRET)
}

fn state_with(config: &Config) -> (Arc<AppState>, Arc<FakeSink>) {
    let sink = FakeSink::ok();
    (app_state(config, sink.clone(), sink.clone()), sink)
}

fn sign(body: &[u8]) -> String {
    signature::sign(&config().signature, 0, body, None).unwrap()
}

fn signed(body: &[u8]) -> warp::test::RequestBuilder {
    warp::test::request()
        .method("POST")
        .path(PATH)
        .header("content-type", "application/json")
        .header("x-cxone-signature", sign(body))
        .body(body)
}

fn json(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body())
        .unwrap_or_else(|err| panic!("answer is not JSON ({err}): {:?}", response.body()))
}

/// A valid delivery with its own correlation id.
fn valid_body(correlation_id: &str) -> String {
    VALID.replace("\"c-1\"", &format!("{correlation_id:?}"))
}

/// `VALID` with `agent_id` padded so the whole body is exactly `size` bytes.
fn body_of_size(size: usize) -> Vec<u8> {
    let head = VALID.replacen("\"a-7\"", "\"a-7", 1);
    let (before, after) = head.split_at(head.find("\"a-7").unwrap() + 4);
    let padding = size - before.len() - after.len() - 1;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(before.as_bytes());
    body.extend(std::iter::repeat_n(b'x', padding));
    body.push(b'"');
    body.extend_from_slice(after.as_bytes());
    assert_eq!(body.len(), size);
    body
}

fn utf16(bom: [u8; 2], text: &str, little_endian: bool) -> Vec<u8> {
    let mut bytes = bom.to_vec();
    for unit in text.encode_utf16() {
        bytes.extend(if little_endian { unit.to_le_bytes() } else { unit.to_be_bytes() });
    }
    bytes
}

/// Routes-level proof of health: a valid signed delivery is published, exactly one more event.
async fn assert_healthy<F>(routes: &F, sink: &FakeSink, case: &str)
where
    F: warp::Filter<Extract = (Response<Bytes>,), Error = std::convert::Infallible> + Clone + 'static,
{
    let before = sink.counts();
    let body = valid_body(&format!("healthy-after-{}", case.replace(' ', "-")));
    let response = signed(body.as_bytes()).reply(routes).await;
    assert_eq!(response.status(), 200, "after {case}: {:?}", response.body());
    assert_eq!(json(&response)["status"], "published", "after {case}");
    assert_eq!(sink.counts(), (before.0 + 1, before.1), "after {case}: exactly one publish");
}

// --- the body catalogue ---

/// What a signed body must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200 `published`, one Kafka write.
    Published,
    /// 200 `dead_lettered` with this reason, one dead letter holding the exact bytes.
    DeadLettered(Reason),
    /// This status with `{"status":"error","error":...}`, no sink call.
    Refused(u16, &'static str),
}

fn body_catalogue() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    use Reason::*;
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    let deep_in_envelope = VALID
        .replacen(
            "\"metadata\":",
            &format!("\"deep\":{}1{},\"metadata\":", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
            1,
        )
        .into_bytes();
    let number = |literal: &str| VALID.replacen("\"120\"", literal, 1).into_bytes();
    let agent = |raw: &[u8]| {
        let (before, after) = VALID.split_once("a-7").unwrap();
        [before.as_bytes(), raw, after.as_bytes()].concat()
    };
    let mut utf8_bom = b"\xEF\xBB\xBF".to_vec();
    utf8_bom.extend_from_slice(VALID.as_bytes());
    vec![
        ("empty body", Vec::new(), DeadLettered(MalformedJson)),
        ("whitespace only", b" \r\n\t ".to_vec(), DeadLettered(MalformedJson)),
        ("null", b"null".to_vec(), DeadLettered(UnknownEvent)),
        ("top-level array", format!("[{VALID}]").into_bytes(), DeadLettered(UnknownEvent)),
        ("top-level string", b"\"interaction.completed\"".to_vec(), DeadLettered(UnknownEvent)),
        ("10,000-deep arrays", deep_array, DeadLettered(MalformedJson)),
        ("10,000-deep objects inside a valid envelope", deep_in_envelope, DeadLettered(MalformedJson)),
        ("1 MiB body, exactly the cap", body_of_size(CAP), DeadLettered(SchemaValidation)),
        ("1 MiB + 1 byte, over the cap", body_of_size(CAP + 1), Refused(413, "payload_too_large")),
        ("invalid UTF-8 inside a string", agent(b"a-\xFF\xFE"), DeadLettered(MalformedJson)),
        ("overlong UTF-8 encoding of '/'", agent(b"a-\xC0\xAF"), DeadLettered(MalformedJson)),
        ("UTF-8 BOM before valid JSON", utf8_bom, DeadLettered(MalformedJson)),
        ("UTF-16LE with BOM", utf16([0xFF, 0xFE], VALID, true), DeadLettered(MalformedJson)),
        ("UTF-16BE with BOM", utf16([0xFE, 0xFF], VALID, false), DeadLettered(MalformedJson)),
        ("lone surrogate escape", agent(br"a-\ud800"), DeadLettered(MalformedJson)),
        (
            "duplicate keys, last wins",
            VALID.replacen("\"c-1\"", "\"c-first\",\"correlation_id\":\"c-last\"", 1).into_bytes(),
            Published,
        ),
        (
            "duplicate event key, last wins",
            VALID.replacen("{\"event\":", "{\"event\":\"nope\",\"event\":", 1).into_bytes(),
            Published,
        ),
        ("integer beyond i64", number("9223372036854775808"), DeadLettered(SchemaValidation)),
        ("integer beyond u64", number("18446744073709551616"), DeadLettered(SchemaValidation)),
        ("number beyond f64", number("1e400"), DeadLettered(MalformedJson)),
        ("negative number beyond f64", number("-1e400"), DeadLettered(MalformedJson)),
        ("numeric string beyond i64", number("\"9223372036854775808\""), DeadLettered(SchemaValidation)),
        ("NaN literal", number("NaN"), DeadLettered(MalformedJson)),
        ("Infinity literal", number("Infinity"), DeadLettered(MalformedJson)),
        ("-Infinity literal", number("-Infinity"), DeadLettered(MalformedJson)),
        ("\"NaN\" string", number("\"NaN\""), DeadLettered(SchemaValidation)),
        ("raw control character in a string", agent(b"a-\x01"), DeadLettered(MalformedJson)),
        ("raw NUL byte in a string", agent(b"a-\x00"), DeadLettered(MalformedJson)),
        ("raw newline in a string", agent(b"a-\n7"), DeadLettered(MalformedJson)),
        ("NUL byte after the JSON", [VALID.as_bytes(), b"\x00"].concat(), DeadLettered(MalformedJson)),
        ("two JSON documents", [VALID.as_bytes(), VALID.as_bytes()].concat(), DeadLettered(MalformedJson)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_body_gets_its_defined_answer_and_at_most_one_sink_write() {
    let (state, sink) = state_with(&config());
    let routes = http::routes(state);
    for (case, body, expect) in body_catalogue() {
        let before = sink.counts();
        let response = signed(&body).header("x-request-id", "bad-input-case").reply(&routes).await;
        let answer = json(&response);
        let after = sink.counts();
        match expect {
            Expect::Published => {
                assert_eq!(response.status(), 200, "{case}: {answer}");
                assert_eq!(answer["status"], "published", "{case}: {answer}");
                assert_eq!(after, (before.0 + 1, before.1), "{case}: exactly one publish");
            }
            Expect::DeadLettered(reason) => {
                assert_eq!(response.status(), 200, "{case}: {answer}");
                assert_eq!(answer["status"], "dead_lettered", "{case}: {answer}");
                assert_eq!(answer["reason"], reason.as_str(), "{case}: {answer}");
                assert!(!answer["errors"].as_array().unwrap().is_empty(), "{case}: errors explain it");
                assert_eq!(after, (before.0, before.1 + 1), "{case}: exactly one dead letter");
                let letter = sink.last_letter().unwrap();
                assert_eq!(
                    letter.raw_body.as_ref(),
                    &body[..],
                    "{case}: the dead letter keeps the exact bytes"
                );
                assert_eq!(letter.rejection.reason, reason, "{case}");
                assert!(!letter.headers.iter().any(|(name, _)| name.contains("signature")), "{case}");
            }
            Expect::Refused(status, error) => {
                assert_eq!(response.status(), status, "{case}: {answer}");
                assert_eq!(answer["status"], "error", "{case}: {answer}");
                assert_eq!(answer["error"], error, "{case}: {answer}");
                assert_eq!(after, before, "{case}: no sink call");
            }
        }
        assert_eq!(response.headers()["x-request-id"], "bad-input-case", "{case}");
        assert_healthy(&routes, &sink, case).await;
    }
}

#[tokio::test]
async fn duplicate_keys_take_the_last_value_everywhere() {
    let (state, sink) = state_with(&config());
    let routes = http::routes(state);
    let body = VALID.replacen("\"c-1\"", "\"c-first\",\"correlation_id\":\"c-last\"", 1);
    let response = signed(body.as_bytes()).reply(&routes).await;
    assert_eq!(json(&response)["correlation_id"], "c-last", "the answer names the key Kafka gets");
    assert_eq!(sink.counts(), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bad_body_gets_past_a_missing_or_forged_signature() {
    let (state, sink) = state_with(&config());
    let routes = http::routes(state);
    for (case, body, expect) in body_catalogue() {
        let unsigned = warp::test::request().method("POST").path(PATH).body(&body).reply(&routes).await;
        let forged = warp::test::request()
            .method("POST")
            .path(PATH)
            .header("x-cxone-signature", "0".repeat(64))
            .body(&body)
            .reply(&routes)
            .await;
        // Over the cap, the size is refused before the signature is looked at.
        let (status, error) = match expect {
            Expect::Refused(413, error) => (413, error),
            _ => (401, "unauthorized"),
        };
        for response in [unsigned, forged] {
            assert_eq!(response.status(), status, "{case}: {:?}", response.body());
            assert_eq!(json(&response)["error"], error, "{case}");
        }
    }
    assert_eq!(sink.counts(), (0, 0), "nothing unauthenticated reached a sink");
    assert_healthy(&routes, &sink, "unsigned catalogue").await;
}

#[tokio::test]
async fn oversized_or_odd_signature_headers_are_401() {
    let (state, sink) = state_with(&config());
    let routes = http::routes(state);
    let good = sign(VALID.as_bytes());
    let cases = [
        ("8 KiB signature", "a".repeat(8 * 1024)),
        ("good signature followed by junk", format!("{good}{}", "0".repeat(4096))),
        ("good signature, comma-joined twice", format!("{good}, {good}")),
        ("signature with an inner space", format!("{} {}", &good[..32], &good[32..])),
        ("non-ASCII signature", "é".repeat(32)),
    ];
    for (case, value) in cases {
        let response = warp::test::request()
            .method("POST")
            .path(PATH)
            .header("x-cxone-signature", value.as_str())
            .body(VALID)
            .reply(&routes)
            .await;
        assert_eq!(response.status(), 401, "{case}: {:?}", response.body());
        assert_eq!(json(&response)["error"], "unauthorized", "{case}");
    }
    // Surrounding whitespace is not part of the value (HTTP trims it), so this one passes.
    let padded =
        signed(VALID.as_bytes()).header("x-cxone-signature", format!("  {good}\t")).reply(&routes).await;
    assert_eq!(padded.status(), 200, "{:?}", padded.body());
    assert_eq!(sink.counts(), (1, 0));
    assert_healthy(&routes, &sink, "odd signature headers").await;
}

#[tokio::test]
async fn hostile_request_ids_are_replaced_not_echoed() {
    let (state, sink) = state_with(&config());
    let routes = http::routes(state);
    for hostile in ["../../etc/passwd", "a\tb", &"x".repeat(65), "id with spaces", "é"] {
        let response = signed(VALID.as_bytes()).header("x-request-id", hostile).reply(&routes).await;
        assert_eq!(response.status(), 200, "{hostile:?}");
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, hostile);
        assert_eq!(json(&response)["request_id"], id.as_str());
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    assert_eq!(sink.counts(), (5, 0));
}

// --- on a real listener ---

/// A server with `config` on free loopback ports.
async fn listen(config: &Config) -> (http::server::RunningServer, Arc<FakeSink>) {
    let (state, sink) = state_with(config);
    let mut server = config.server.clone();
    server.listen = "127.0.0.1:0".parse().unwrap();
    server.admin_listen = "127.0.0.1:0".parse().unwrap();
    let server = http::server::start(state, &server).await.unwrap();
    (server, sink)
}

/// A parsed HTTP/1.1 answer, and whether the server closed the connection after it.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: Vec<u8>,
    closed: bool,
}

impl RawAnswer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("not JSON ({err}): {self:?}"))
    }
}

/// Reads one answer (head + Content-Length body), then whether the server closes the connection
/// (EOF or reset within `close_wait`).
async fn read_answer(stream: &mut TcpStream, close_wait: Duration) -> RawAnswer {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut eof = false;
    let (head_end, length) = loop {
        if let Some(whole) = whole_answer(&buffer) {
            break whole;
        }
        assert!(!eof, "connection closed before a whole answer: {:?}", String::from_utf8_lossy(&buffer));
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!("no whole answer within 15 s: {:?}", String::from_utf8_lossy(&buffer)),
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = status_of(head.as_bytes()).unwrap_or(0);
    let body = buffer[head_end + 4..head_end + 4 + length].to_vec();
    let closed = buffer.len() > head_end + 4 + length
        || matches!(tokio::time::timeout(close_wait, stream.read(&mut chunk)).await, Ok(Ok(0)) | Ok(Err(_)));
    RawAnswer { status, head, body, closed }
}

/// `count` connections that each send a request head cut off inside a header line ending in `tail`.
async fn half_sent_heads(addr: std::net::SocketAddr, count: usize, tail: &str) -> Vec<TcpStream> {
    let mut stalled = Vec::new();
    for i in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("POST {PATH} HTTP/1.1\r\nHost: test\r\nX-Slow-{i}: {tail}").as_bytes())
            .await
            .unwrap();
        stalled.push(stream);
    }
    stalled
}

fn request_head(extra_headers: &str, content_length: usize) -> String {
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {content_length}\r\n\r\n"
    )
}

/// Wire-level proof of health: a fresh client's valid delivery is published.
async fn assert_healthy_on(addr: std::net::SocketAddr, sink: &FakeSink, case: &str) {
    let before = sink.counts();
    let body = valid_body(&format!("wire-healthy-after-{}", case.replace(' ', "-")));
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{PATH}"))
        .header("content-type", "application/json")
        .header("x-cxone-signature", sign(body.as_bytes()))
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|err| panic!("after {case}: {err}"));
    assert_eq!(response.status(), 200, "after {case}");
    assert_eq!(sink.counts(), (before.0 + 1, before.1), "after {case}: exactly one publish");
}

async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything (431): a failed write is fine.
    let _ = stream.write_all(request).await;
    read_answer(&mut stream, Duration::from_secs(5)).await
}

#[tokio::test]
async fn repeated_signature_or_timestamp_headers_are_401_whatever_their_order() {
    let (server, sink) = listen(&config()).await;
    let addr = server.local_addr();
    let good = sign(VALID.as_bytes());
    let forged = "0".repeat(64);
    let request = |first: &str, second: &str| {
        let headers = format!("X-CXone-Signature: {first}\r\nX-CXone-Signature: {second}\r\n");
        [request_head(&headers, VALID.len()).as_bytes(), VALID.as_bytes()].concat()
    };
    // Which copy counts would be up to whoever reads the request: none does.
    for (case, first, second) in
        [("forged first", &forged, &good), ("good first", &good, &forged), ("good twice", &good, &good)]
    {
        let answer = exchange(addr, &request(first, second)).await;
        assert_eq!(answer.status, 401, "{case}: {answer:?}");
        let body = answer.json();
        assert_eq!(body["error"], "unauthorized", "{case}");
        assert_eq!(
            body["message"], "the x-cxone-signature header was sent more than once: send it exactly once",
            "{case}: the reason is clear"
        );
    }
    assert_eq!(sink.counts(), (0, 0), "no ambiguous request reached a sink");
    assert_healthy_on(addr, &sink, "repeated signature headers").await;
    server.shutdown(Duration::from_secs(5)).await;

    // With a signed timestamp, a repeated timestamp header is refused the same way.
    let mut timestamped = config();
    timestamped.signature.signed = cxone_ingest::http::config::SignedPayload::TimestampDotBody;
    let (server, sink) = listen(&timestamped).await;
    let now = signature::now_unix();
    let signed = signature::sign(&timestamped.signature, 0, VALID.as_bytes(), Some(now)).unwrap();
    let headers = |timestamps: &[i64]| {
        let mut headers = format!("X-CXone-Signature: {signed}\r\n");
        for timestamp in timestamps {
            headers.push_str(&format!("X-CXone-Timestamp: {timestamp}\r\n"));
        }
        [request_head(&headers, VALID.len()).as_bytes(), VALID.as_bytes()].concat()
    };
    let twice = exchange(server.local_addr(), &headers(&[now, now + 1])).await;
    assert_eq!(twice.status, 401, "{twice:?}");
    assert_eq!(
        twice.json()["message"],
        "the x-cxone-timestamp header was sent more than once: send it exactly once"
    );
    assert_eq!(sink.counts(), (0, 0));
    let once = exchange(server.local_addr(), &headers(&[now])).await;
    assert_eq!(once.status, 200, "{once:?}");
    assert_eq!(sink.counts(), (1, 0));
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_and_too_many_headers_are_431_before_the_handler() {
    let (server, sink) = listen(&config()).await;
    let addr = server.local_addr();
    let signature = format!("X-CXone-Signature: {}\r\n", sign(VALID.as_bytes()));

    // hyper's default read buffer for a request head is 8 KiB + 400 KiB.
    let huge = format!("{signature}X-Padding: {}\r\n", "p".repeat(500 * 1024));
    let answer =
        exchange(addr, &[request_head(&huge, VALID.len()).as_bytes(), VALID.as_bytes()].concat()).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(answer.closed, "the connection is closed after 431");

    // hyper's default header count limit is 100.
    let many: String = (0..120).map(|i| format!("X-Many-{i}: {i}\r\n")).collect();
    let answer = exchange(
        addr,
        &[request_head(&format!("{signature}{many}"), VALID.len()).as_bytes(), VALID.as_bytes()].concat(),
    )
    .await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(answer.closed);

    assert_eq!(sink.counts(), (0, 0));
    assert_healthy_on(addr, &sink, "oversized headers").await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn conflicting_body_framing_is_400_before_the_handler() {
    let (server, sink) = listen(&config()).await;
    let addr = server.local_addr();
    let signature = format!("X-CXone-Signature: {}\r\n", sign(VALID.as_bytes()));

    // Two different Content-Length values: a request-smuggling shape; hyper refuses it.
    let two_lengths = format!(
        "POST {PATH} HTTP/1.1\r\nHost: test\r\n{signature}Content-Length: {}\r\nContent-Length: 5\r\n\r\n{VALID}",
        VALID.len()
    );
    let answer = exchange(addr, two_lengths.as_bytes()).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.closed);

    // A Content-Length that is not a number.
    let not_a_number =
        format!("POST {PATH} HTTP/1.1\r\nHost: test\r\n{signature}Content-Length: 12abc\r\n\r\n{VALID}");
    let answer = exchange(addr, not_a_number.as_bytes()).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.closed);

    assert_eq!(sink.counts(), (0, 0));
    assert_healthy_on(addr, &sink, "conflicting framing").await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_bodies_get_408_at_the_deadline_and_the_server_keeps_serving() {
    let mut config = config();
    config.server.request_deadline_ms = 500;
    let (server, sink) = listen(&config).await;
    let addr = server.local_addr();
    let signature = format!("X-CXone-Signature: {}\r\n", sign(VALID.as_bytes()));

    // 50 senders declare the whole body, send 10 bytes of it and stall.
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request_head(&signature, VALID.len()).as_bytes()).await.unwrap();
        stream.write_all(&VALID.as_bytes()[..10]).await.unwrap();
        stalled.push(stream);
    }
    // Meanwhile a well-behaved sender is served.
    assert_healthy_on(addr, &sink, "slow-loris bodies in progress").await;

    for mut stream in stalled {
        let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(answer.status, 408, "{answer:?}");
        assert_eq!(answer.json()["error"], "request_timeout");
        assert!(answer.head.to_ascii_lowercase().contains("connection: close"), "{}", answer.head);
        assert!(answer.closed, "the stalled connection is closed after the answer");
    }
    assert_eq!(sink.counts(), (1, 0), "only the well-behaved delivery reached a sink");
    assert_healthy_on(addr, &sink, "slow-loris bodies").await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_do_not_stop_the_server_serving_others() {
    let (server, sink) = listen(&config()).await;
    let addr = server.local_addr();
    // 200 connections that never finish their request head (header slow-loris).
    let mut stalled = half_sent_heads(addr, 200, "").await;
    assert_healthy_on(addr, &sink, "half-sent headers in progress").await;
    // Finishing one of them within the header timeout (10 s by default) still works.
    let mut late = stalled.pop().unwrap();
    let body = valid_body("late-header");
    let rest = format!(
        "1\r\nContent-Type: application/json\r\nX-CXone-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        sign(body.as_bytes()),
        body.len()
    );
    late.write_all(rest.as_bytes()).await.unwrap();
    let answer = read_answer(&mut late, Duration::ZERO).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(sink.counts(), (2, 0));
    drop(stalled);
    assert_healthy_on(addr, &sink, "half-sent headers").await;
    // The dropped connections are gone, so shutdown drains at once.
    assert_eq!(server.shutdown(Duration::from_secs(5)).await, cxone_ingest::shutdown::Drained::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_slow_loris_connections_are_closed_at_the_header_timeout() {
    let mut config = config();
    config.server.header_read_timeout_ms = 300;
    let (server, sink) = listen(&config).await;
    let addr = server.local_addr();

    // Half a header line, then nothing; and connections that never send a byte.
    let mut stalled = half_sent_heads(addr, 20, "ha").await;
    for _ in 0..5 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    // A trickler: one byte of the head every 50 ms, which no per-read timeout would catch.
    let trickler = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("POST {PATH} HTTP/1.1\r\nHost: test\r\nX-Trickle: ").as_bytes())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut chunk = [0u8; 64];
        while tokio::time::Instant::now() < deadline {
            if stream.write_all(b"a").await.is_err() {
                return true;
            }
            match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                _ => {}
            }
        }
        false
    });
    assert_healthy_on(addr, &sink, "header slow-loris in progress").await;

    for (i, mut stream) in stalled.into_iter().enumerate() {
        assert!(
            closed_within(&mut stream, Duration::from_secs(10)).await,
            "stalled connection {i} still open"
        );
    }
    assert!(trickler.await.unwrap(), "the trickling connection was never closed");
    assert_eq!(sink.counts(), (1, 0), "only the well-behaved delivery reached a sink");
    assert_healthy_on(addr, &sink, "header slow-loris").await;
    assert_eq!(server.shutdown(Duration::from_secs(5)).await, cxone_ingest::shutdown::Drained::Complete);
}

/// `cxone_ingest_requests_total{route="webhook",outcome}` as rendered by `/metrics`.
fn webhook_outcomes(outcome: &str) -> u64 {
    let text = cxone_ingest::metrics::install().render();
    text.lines()
        .filter(|line| {
            line.starts_with("cxone_ingest_requests_total{")
                && line.contains("route=\"webhook\"")
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_body_stores_nothing_and_the_server_keeps_serving() {
    let (server, sink) = listen(&config()).await;
    let addr = server.local_addr();
    let signature = format!("X-CXone-Signature: {}\r\n", sign(VALID.as_bytes()));

    // Half-close: the sender stops writing after 40 bytes but still listens. It hears 400.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request_head(&signature, VALID.len()).as_bytes()).await.unwrap();
    stream.write_all(&VALID.as_bytes()[..40]).await.unwrap();
    stream.shutdown().await.unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.json()["error"], "bad_request");

    // Full drop: nobody is left to answer; the server counts a bad_request and moves on.
    let before = webhook_outcomes("bad_request");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request_head(&signature, VALID.len()).as_bytes()).await.unwrap();
    stream.write_all(&VALID.as_bytes()[..40]).await.unwrap();
    drop(stream);
    let counted = poll_until(Duration::from_secs(10), || async {
        (webhook_outcomes("bad_request") > before).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the dropped request was never finished by the server");

    assert_eq!(sink.counts(), (0, 0), "a truncated body reaches no sink");
    assert_healthy_on(addr, &sink, "dropped connections").await;
    assert_eq!(server.shutdown(Duration::from_secs(5)).await, cxone_ingest::shutdown::Drained::Complete);
}
