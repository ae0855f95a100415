//! Integration tests: the HTTP surface and the response contract, driven through `http::routes`
//! (no socket) and, where the wire matters (chunked bodies, draining, connection limits and
//! timeouts, the admin listener), real listeners.
//! Sinks are in-test doubles implementing the sink traits: counting, failing, slow, gated.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cxone_ingest::config::Config;
use cxone_ingest::http::config::{Secret, SignatureEncoding, SignedPayload};
use cxone_ingest::http::{self, AppState, signature};
use cxone_ingest::shutdown::Drained;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use warp::http::Response;

use crate::support::{
    FakeSink, Mode, app_state, closed_within, poll_until, status_of, test_config, whole_answer,
};

const PATH: &str = "/webhooks/cxone-data-actions";
const SECRET: &str = "test-webhook-secret-of-32-bytes-or-more";
const VALID: &str = r#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-1","data":{"channel":"voice","duration_seconds":"120","agent_id":"a-7","customer_email":"Jane.Doe@Example.com","metadata":{"priority":"high","score":"4.5"}}}"#;
const INVALID: &str = r#"{"event":"interaction.completed","timestamp":"2026-11-28T10:00:00Z","correlation_id":"c-2","data":{"channel":"fax","duration_seconds":"120","agent_id":"a-7","customer_email":"jane@example.com"}}"#;

// --- set-up ---

fn config() -> Config {
    test_config(SECRET)
}

fn state_with(config: &Config, events: Arc<FakeSink>, dead_letters: Arc<FakeSink>) -> Arc<AppState> {
    app_state(config, events, dead_letters)
}

fn state(events: Arc<FakeSink>, dead_letters: Arc<FakeSink>) -> Arc<AppState> {
    app_state(&config(), events, dead_letters)
}

fn sign(config: &Config, key_index: usize, body: &[u8], timestamp: Option<i64>) -> String {
    signature::sign(&config.signature, key_index, body, timestamp).unwrap()
}

fn signed_post(body: &str) -> warp::test::RequestBuilder {
    warp::test::request()
        .method("POST")
        .path(PATH)
        .header("content-type", "application/json")
        .header("x-cxone-signature", sign(&config(), 0, body.as_bytes(), None))
        .body(body)
}

fn json(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body())
        .unwrap_or_else(|err| panic!("not JSON ({err}): {:?}", response.body()))
}

fn request_id(response: &Response<Bytes>) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("X-Request-Id on every response")
        .to_str()
        .unwrap()
        .to_owned()
}

fn assert_error(response: &Response<Bytes>, status: u16, error: &str) {
    assert_eq!(response.status().as_u16(), status, "{:?}", response.body());
    let body = json(response);
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"], error);
    assert_eq!(body["request_id"], request_id(response));
}

// --- the response contract ---

#[tokio::test]
async fn valid_payload_is_published_with_correlation_id() {
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state(events.clone(), dead.clone()));
    let response = signed_post(VALID).header("x-request-id", "req-valid-1").reply(&routes).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    assert_eq!(request_id(&response), "req-valid-1");
    let body = json(&response);
    assert_eq!(body["status"], "published");
    assert_eq!(body["request_id"], "req-valid-1");
    assert_eq!(body["correlation_id"], "c-1");
    assert_eq!(body["event"], "interaction.completed");
    assert_eq!((events.counts().0, dead.calls()), (1, 0));
}

#[tokio::test]
async fn invalid_payload_is_dead_lettered_with_errors_and_kept_headers() {
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state(events.clone(), dead.clone()));
    let response = signed_post(INVALID).header("user-agent", "cxone-test").reply(&routes).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let body = json(&response);
    assert_eq!(body["status"], "dead_lettered");
    assert_eq!(body["reason"], "schema_validation");
    assert_eq!(body["request_id"], request_id(&response));
    let errors = body["errors"].as_array().expect("errors list");
    assert!(errors.iter().any(|e| e["instance_path"] == "/data/channel"), "{errors:?}");
    assert_eq!((events.calls(), dead.counts().1), (0, 1));

    let kept = dead.last_headers();
    let names: Vec<&str> = kept.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.contains(&"user-agent") && names.contains(&"content-type"), "{names:?}");
    assert!(!names.iter().any(|name| name.contains("signature")), "the signature is never kept: {names:?}");
}

#[tokio::test]
async fn malformed_json_is_dead_lettered() {
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state(events.clone(), dead.clone()));
    let response = signed_post("{\"event\": oops").reply(&routes).await;
    assert_eq!(response.status(), 200, "{:?}", response.body());
    let body = json(&response);
    assert_eq!(body["status"], "dead_lettered");
    assert_eq!(body["reason"], "malformed_json");
    assert!(body["errors"].is_array());
    assert_eq!((events.calls(), dead.counts().1), (0, 1));
}

#[tokio::test]
async fn cxone_form_content_type_is_accepted_other_types_are_415() {
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state(events.clone(), dead.clone()));
    let cfg = config();
    let form = warp::test::request()
        .method("POST")
        .path(PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-cxone-signature", sign(&cfg, 0, VALID.as_bytes(), None))
        .body(VALID)
        .reply(&routes)
        .await;
    assert_eq!(form.status(), 200, "{:?}", form.body());
    assert_eq!(json(&form)["status"], "published");

    let text = warp::test::request()
        .method("POST")
        .path(PATH)
        .header("content-type", "text/plain")
        .header("x-cxone-signature", sign(&cfg, 0, VALID.as_bytes(), None))
        .body(VALID)
        .reply(&routes)
        .await;
    assert_error(&text, 415, "unsupported_media_type");
    assert_eq!(events.calls() + dead.calls(), 1, "only the form request reached a sink");
}

#[tokio::test]
async fn sink_failure_or_full_queue_is_503_with_retry_after() {
    for (events, dead, body) in [
        (FakeSink::new(Mode::Fail), FakeSink::new(Mode::Ok), VALID),
        (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Fail), INVALID),
    ] {
        let routes = http::routes(state(events.clone(), dead.clone()));
        let response = signed_post(body).reply(&routes).await;
        assert_eq!(response.status(), 503, "{:?}", response.body());
        assert_eq!(response.headers()["retry-after"], "2");
        let answer = json(&response);
        assert_eq!(answer["status"], "retry");
        assert_eq!(answer["reason"], "sink_unavailable");
        assert_eq!(answer["request_id"], request_id(&response));
        assert_eq!(events.calls() + dead.calls(), 1);
    }

    let events = FakeSink::new(Mode::Full);
    let routes = http::routes(state(events.clone(), FakeSink::new(Mode::Ok)));
    let response = signed_post(VALID).reply(&routes).await;
    assert_eq!(response.status(), 503, "{:?}", response.body());
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(json(&response)["reason"], "overloaded");
}

#[tokio::test]
async fn deadline_is_503_even_when_the_sink_ignores_it() {
    let mut cfg = config();
    cfg.server.request_deadline_ms = 150;
    let events = FakeSink::new(Mode::Slow(Duration::from_secs(30)));
    let routes = http::routes(state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok)));
    let response = signed_post(VALID).reply(&routes).await;
    assert_eq!(response.status(), 503, "{:?}", response.body());
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(json(&response)["reason"], "deadline_exceeded");
    assert_eq!(events.counts().0, 1);
}

#[tokio::test]
async fn overload_is_503_at_once_and_the_held_request_still_completes() {
    let mut cfg = config();
    cfg.server.max_in_flight = 1;
    let gate = Arc::new(Semaphore::new(0));
    let events = FakeSink::new(Mode::Gated(gate.clone()));
    let routes = http::routes(state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok)));

    let held = tokio::spawn({
        let routes = routes.clone();
        async move { signed_post(VALID).reply(&routes).await }
    });
    let entered = poll_until(Duration::from_secs(10), || {
        let n = events.counts().0;
        async move { (n == 1).then_some(()) }
    })
    .await;
    assert!(entered.is_some(), "the first request never reached the sink");

    let refused = signed_post(VALID).reply(&routes).await;
    assert_eq!(refused.status(), 503, "{:?}", refused.body());
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(json(&refused)["reason"], "overloaded");
    assert_eq!(events.counts().0, 1, "the refused request touched no sink");

    // Unsigned requests never hold an in-flight slot: read under their own bound
    // (`max_unverified_bodies`), they are refused 401 whether or not the slots are busy.
    let unsigned = warp::test::request()
        .method("POST")
        .path("/webhooks/cxone-data-actions")
        .header("content-type", "application/json")
        .body(VALID)
        .reply(&routes)
        .await;
    assert_eq!(unsigned.status(), 401, "{:?}", unsigned.body());

    gate.add_permits(1);
    let first = held.await.unwrap();
    assert_eq!(first.status(), 200, "{:?}", first.body());
}

// --- signatures ---

#[tokio::test]
async fn every_malformed_or_forged_signature_is_401_and_touches_nothing() {
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state(events.clone(), dead.clone()));
    let good = sign(&config(), 0, VALID.as_bytes(), None);
    let mut wrong_secret = config();
    wrong_secret.signature.secrets = vec![Secret::new("not-the-secret-0123456789abcdef0123")];
    let forged = sign(&wrong_secret, 0, VALID.as_bytes(), None);
    let mut base64 = config();
    base64.signature.encoding = SignatureEncoding::Base64;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("not hex", Some("g".repeat(64))),
        ("too short", Some(good[..62].to_owned())),
        ("too long", Some(format!("{good}ab"))),
        ("unexpected prefix", Some(format!("sha256={good}"))),
        ("base64 instead of hex", Some(sign(&base64, 0, VALID.as_bytes(), None))),
        ("wrong secret", Some(forged)),
        ("signature of another body", Some(sign(&config(), 0, b"{}", None))),
    ];
    for (case, header) in cases {
        let mut request =
            warp::test::request().method("POST").path(PATH).header("content-type", "application/json");
        if let Some(header) = header {
            request = request.header("x-cxone-signature", header);
        }
        let response = request.body(VALID).reply(&routes).await;
        assert_eq!(response.status(), 401, "{case}: {:?}", response.body());
        assert_error(&response, 401, "unauthorized");
    }
    assert_eq!(events.calls() + dead.calls(), 0, "no forged request reached a sink");
}

#[tokio::test]
async fn any_active_secret_passes_during_rotation() {
    let mut cfg = config();
    cfg.signature.secrets = vec![
        Secret::new("old-secret-0123456789abcdef0123456789"),
        Secret::new("new-secret-0123456789abcdef0123456789"),
    ];
    let events = FakeSink::new(Mode::Ok);
    let routes = http::routes(state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok)));
    for key_index in [0, 1] {
        let response = warp::test::request()
            .method("POST")
            .path(PATH)
            .header("x-cxone-signature", sign(&cfg, key_index, VALID.as_bytes(), None))
            .body(VALID)
            .reply(&routes)
            .await;
        assert_eq!(response.status(), 200, "key {key_index}: {:?}", response.body());
    }
    let retired = sign(&config(), 0, VALID.as_bytes(), None);
    let response = warp::test::request()
        .method("POST")
        .path(PATH)
        .header("x-cxone-signature", retired)
        .body(VALID)
        .reply(&routes)
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(events.counts().0, 2);
}

#[tokio::test]
async fn timestamped_scheme_refuses_stale_and_future_timestamps() {
    let mut cfg = config();
    cfg.signature.header = "X-Signature".into();
    cfg.signature.encoding = SignatureEncoding::Base64;
    cfg.signature.prefix = "sha256=".into();
    cfg.signature.signed = SignedPayload::TimestampDotBody;
    cfg.signature.timestamp_tolerance_secs = 300;
    let events = FakeSink::new(Mode::Ok);
    let routes = http::routes(state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok)));
    let now = signature::now_unix();
    let post = |timestamp: i64| {
        warp::test::request()
            .method("POST")
            .path(PATH)
            .header("x-signature", sign(&cfg, 0, VALID.as_bytes(), Some(timestamp)))
            .header("x-cxone-timestamp", timestamp.to_string())
            .body(VALID)
    };
    assert_eq!(post(now).reply(&routes).await.status(), 200);
    assert_eq!(post(now - 3600).reply(&routes).await.status(), 401, "stale");
    assert_eq!(post(now + 3600).reply(&routes).await.status(), 401, "future");
    assert_eq!(events.counts().0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_forged_requests_are_401_and_reach_no_sink() {
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state(events.clone(), dead.clone()));
    let forged = "0".repeat(64);
    let tasks: Vec<_> = (0..10_000)
        .map(|i| {
            let routes = routes.clone();
            let forged = forged.clone();
            tokio::spawn(async move {
                let body = VALID.replace("c-1", &format!("c-{i}"));
                warp::test::request()
                    .method("POST")
                    .path(PATH)
                    .header("x-cxone-signature", forged)
                    .body(body)
                    .reply(&routes)
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut unauthorized = 0;
    for task in tasks {
        if task.await.unwrap() == 401 {
            unauthorized += 1;
        }
    }
    assert_eq!(unauthorized, 10_000);
    assert_eq!(events.calls() + dead.calls(), 0, "zero calls into either sink");
}

// --- body cap, methods, paths ---

#[tokio::test]
async fn declared_body_over_the_cap_is_413_before_the_signature() {
    let mut cfg = config();
    cfg.server.body_limit_bytes = 1024;
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let routes = http::routes(state_with(&cfg, events.clone(), dead.clone()));
    let big = "x".repeat(1025);
    let response = warp::test::request()
        .method("POST")
        .path(PATH)
        .header("x-cxone-signature", sign(&cfg, 0, big.as_bytes(), None))
        .body(&big)
        .reply(&routes)
        .await;
    assert_error(&response, 413, "payload_too_large");
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(events.calls() + dead.calls(), 0);
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_is_404_both_json() {
    let routes = http::routes(state(FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok)));
    let get = warp::test::request().method("GET").path(PATH).reply(&routes).await;
    assert_error(&get, 405, "method_not_allowed");
    assert_eq!(get.headers()["allow"], "POST");
    let post_health = warp::test::request().method("POST").path("/healthz").reply(&routes).await;
    assert_error(&post_health, 405, "method_not_allowed");
    let unknown = warp::test::request().method("POST").path("/webhooks/other").reply(&routes).await;
    assert_error(&unknown, 404, "not_found");
    let with_id =
        warp::test::request().path("/nope").header("x-request-id", "trace.me-1").reply(&routes).await;
    assert_eq!(request_id(&with_id), "trace.me-1");
    let insane = warp::test::request().path("/nope").header("x-request-id", "a b").reply(&routes).await;
    assert_ne!(request_id(&insane), "a b");
}

// --- operations ---

#[tokio::test]
async fn public_routes_have_health_and_status_only_readiness_admin_routes_have_metrics_and_detail() {
    let state = state(FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let (public, admin) = (http::routes(state.clone()), http::admin_routes(state));
    assert_eq!(warp::test::request().path("/healthz").reply(&public).await.status(), 200);
    assert_eq!(warp::test::request().path("/healthz").reply(&admin).await.status(), 200);
    let ready = warp::test::request().path("/readyz").reply(&public).await;
    assert_eq!(ready.status(), 200, "{:?}", ready.body());
    assert_eq!(
        json(&ready),
        serde_json::json!({"status": "ready"}),
        "the public /readyz is the status alone"
    );
    let ready = warp::test::request().path("/readyz").reply(&admin).await;
    assert_eq!(json(&ready)["sinks"]["kafka"], "ready");

    let _ = warp::test::request().method("POST").path(PATH).body("{}").reply(&public).await;
    let metrics = warp::test::request().path("/metrics").reply(&admin).await;
    assert_eq!(metrics.status(), 200);
    let text = String::from_utf8(metrics.body().to_vec()).unwrap();
    for name in [
        "cxone_ingest_requests_total",
        "cxone_ingest_request_duration_seconds_bucket",
        "cxone_ingest_signature_failures_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // Metrics are not on the public listener, and the webhook is not on the admin one.
    assert_error(&warp::test::request().path("/metrics").reply(&public).await, 404, "not_found");
    let signed_on_admin = signed_post(VALID).reply(&admin).await;
    assert_error(&signed_on_admin, 404, "not_found");

    let why = "bucket unreachable: dispatch failure: io error: dispatch failure: ops@example.com";
    let state = state_with(&config(), FakeSink::new(Mode::Ok), FakeSink::not_ready(why));
    let (public, admin) = (http::routes(state.clone()), http::admin_routes(state.clone()));
    let not_ready = warp::test::request().path("/readyz").reply(&public).await;
    assert_eq!(not_ready.status(), 503);
    assert_eq!(json(&not_ready), serde_json::json!({"status": "not_ready"}), "no internal error text");
    let detailed = warp::test::request().path("/readyz").reply(&admin).await;
    assert_eq!(detailed.status(), 503);
    let body = json(&detailed);
    assert_eq!(body["sinks"]["kafka"], "ready");
    assert_eq!(
        body["sinks"]["dead_letter"], "not ready: bucket unreachable: dispatch failure: io error: <email>",
        "repeated segments dropped, e-mail redacted"
    );
    state.start_draining();
    let draining = [
        warp::test::request().path("/readyz").reply(&public).await,
        warp::test::request().path("/readyz").reply(&admin).await,
    ];
    for draining in draining {
        assert_eq!(draining.status(), 503);
        assert_eq!(json(&draining)["status"], "shutting_down");
    }
}

// --- on a real listener ---

/// Sends raw bytes and returns the status line of the answer.
async fn raw_exchange(addr: std::net::SocketAddr, head: &str, chunks: &[Vec<u8>]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        // The server may stop reading (413) while we still write: that is the point.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn chunked_body_over_the_cap_is_413_without_reading_the_rest() {
    let mut cfg = config();
    cfg.server.body_limit_bytes = 64 * 1024;
    let (events, dead) = (FakeSink::new(Mode::Ok), FakeSink::new(Mode::Ok));
    let state = state_with(&cfg, events.clone(), dead.clone());
    let server = http::server::start(state, &cfg.server).await.unwrap();
    let addr = server.local_addr();

    // Chunked, no Content-Length: 80 KiB sent, and the final chunk never comes.
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\
         X-CXone-Signature: {}\r\n\r\n",
        "0".repeat(64)
    );
    let chunk = |size: usize| {
        let mut chunk = format!("{size:x}\r\n").into_bytes();
        chunk.extend(std::iter::repeat_n(b'x', size));
        chunk.extend_from_slice(b"\r\n");
        chunk
    };
    let status = raw_exchange(addr, &head, &[chunk(40 * 1024), chunk(40 * 1024)]).await;
    assert!(status.contains(" 413 "), "{status:?}");

    // A declared length over the cap is refused before a single body byte is sent.
    let head = format!("POST {PATH} HTTP/1.1\r\nHost: test\r\nContent-Length: 104857600\r\n\r\n");
    let status = raw_exchange(addr, &head, &[]).await;
    assert!(status.contains(" 413 "), "{status:?}");

    assert_eq!(events.calls() + dead.calls(), 0);
    assert_eq!(server.shutdown(Duration::from_secs(5)).await, Drained::Complete);
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request_and_refuses_new_connections() {
    let gate = Arc::new(Semaphore::new(0));
    let events = FakeSink::new(Mode::Gated(gate.clone()));
    let state = state(events.clone(), FakeSink::new(Mode::Ok));
    let server = http::server::start(state, &config().server).await.unwrap();
    let addr = server.local_addr();
    let url = format!("http://{addr}{PATH}");

    let client = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-cxone-signature", sign(&config(), 0, VALID.as_bytes(), None))
                .body(VALID)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    let entered = poll_until(Duration::from_secs(10), || {
        let n = events.counts().0;
        async move { (n == 1).then_some(()) }
    })
    .await;
    assert!(entered.is_some(), "the request never reached the sink");

    let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(20)));
    let refused = poll_until(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "the listener still accepts after shutdown began");

    gate.add_permits(1);
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"published\""), "{body}");
    assert_eq!(shutdown.await.unwrap(), Drained::Complete);
}

// --- connection limits, timeouts and the admin listener (real listeners) ---

/// A signed keep-alive POST of a valid event under `correlation_id`, as raw bytes.
fn raw_signed_post(correlation_id: &str) -> Vec<u8> {
    let body = VALID.replace("\"c-1\"", &format!("{correlation_id:?}"));
    let signature = sign(&config(), 0, body.as_bytes(), None);
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         X-CXone-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one answer (head + `Content-Length` body) and returns its status; `None` when the
/// connection closes first.
async fn read_status(stream: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((head_end, _)) = whole_answer(&buffer) {
            return status_of(&buffer[..head_end]);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One signed request on `stream`, answered in time.
async fn exchange_on(stream: &mut tokio::net::TcpStream, correlation_id: &str) -> Option<u16> {
    stream.write_all(&raw_signed_post(correlation_id)).await.ok()?;
    tokio::time::timeout(Duration::from_secs(10), read_status(stream)).await.ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let mut cfg = config();
    cfg.server.max_connections = 2;
    let events = FakeSink::new(Mode::Ok);
    let server = http::server::start(state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok)), &cfg.server)
        .await
        .unwrap();
    let addr = server.local_addr();

    // Two keep-alive connections, each served once and then held open.
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange_on(&mut first, "cap-1").await, Some(200));
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange_on(&mut second, "cap-2").await, Some(200));

    // A third connects (the kernel's backlog completes the handshake) but is not taken while
    // the other two are open: its request waits unanswered.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(&raw_signed_post("cap-3")).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), read_status(&mut third)).await;
    assert!(early.is_err(), "a connection over the cap was served: {early:?}");
    assert_eq!(events.counts().0, 2);

    // One closes: the waiting connection is taken and its request answered.
    drop(first);
    let late = tokio::time::timeout(Duration::from_secs(10), read_status(&mut third)).await;
    assert_eq!(late.ok().flatten(), Some(200), "the waiting connection was never served");
    assert_eq!(events.counts().0, 3);
    assert_eq!(exchange_on(&mut second, "cap-2-again").await, Some(200), "keep-alive still works");
    assert_eq!(server.shutdown(Duration::from_secs(10)).await, Drained::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_the_header_timeout_and_closes_at_the_keep_alive_timeout() {
    // The header timeout is short, the keep-alive timeout long: an idle connection is not cut
    // by the header timeout (the load balancer reuses it).
    let mut cfg = config();
    cfg.server.header_read_timeout_ms = 200;
    cfg.server.keep_alive_timeout_ms = 60_000;
    let events = FakeSink::new(Mode::Ok);
    let state = state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok));
    let server = http::server::start(state, &cfg.server).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    assert_eq!(exchange_on(&mut stream, "idle-1").await, Some(200));
    // Idle for five header timeouts, watching: the server must not close it meanwhile.
    assert!(!closed_within(&mut stream, Duration::from_secs(1)).await, "closed by the header timeout");
    assert_eq!(exchange_on(&mut stream, "idle-2").await, Some(200), "the idle connection was closed");
    assert_eq!(server.shutdown(Duration::from_secs(10)).await, Drained::Complete);

    // A short keep-alive timeout closes the idle connection after its answer.
    let mut cfg = config();
    cfg.server.keep_alive_timeout_ms = 300;
    let state = state_with(&cfg, events.clone(), FakeSink::new(Mode::Ok));
    let server = http::server::start(state, &cfg.server).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    assert_eq!(exchange_on(&mut stream, "idle-3").await, Some(200));
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await, "idle connection never closed");
    assert_eq!(events.counts().0, 3);
    assert_eq!(server.shutdown(Duration::from_secs(10)).await, Drained::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    // With the default 75 s keep-alive timeout, only the shutdown can close this connection
    // within the drain limit.
    let events = FakeSink::new(Mode::Ok);
    let server =
        http::server::start(state(events.clone(), FakeSink::new(Mode::Ok)), &config().server).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    assert_eq!(exchange_on(&mut idle, "idle-at-shutdown").await, Some(200));
    assert_eq!(server.shutdown(Duration::from_secs(20)).await, Drained::Complete);
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "the idle connection is still open");
}

#[tokio::test]
async fn the_admin_listener_serves_metrics_and_detail_the_public_one_does_not() {
    let state = state(FakeSink::new(Mode::Ok), FakeSink::not_ready("bucket unreachable"));
    let server = http::server::start(state, &config().server).await.unwrap();
    let (public, admin) = (server.local_addr(), server.admin_addr());
    assert_ne!(public.port(), admin.port());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |addr: std::net::SocketAddr, path: &'static str| {
        let client = client.clone();
        async move {
            let response = client.get(format!("http://{addr}{path}")).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let (status, page) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(page.contains("cxone_ingest_open_connections"), "{page}");
    assert_eq!(get(public, "/metrics").await.0, 404);

    let (status, body) = get(public, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, r#"{"status":"not_ready"}"#));
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("bucket unreachable"), "{body}");
    assert_eq!(get(public, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(server.shutdown(Duration::from_secs(10)).await, Drained::Complete);
}
