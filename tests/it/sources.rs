//! Several webhook sources in one process, against the real binary and stack: each source's own
//! credentials (bearer, Basic, JWT, NICE's signature preset), topic and dead-letter prefix; 401
//! with nothing stored and no credential echoed; a credential valid for one source refused by the
//! others; a flood to one source leaving the other answering; answers within 32 KiB whatever the
//! payload; credential files re-read when they change.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cxone_ingest::config::{Config, ConfigArgs};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::*;

const EAST_TOKEN: &str = "east-bearer-token-0123456789abcdef-0123";
const WEST_PAIR: &str = "studio-west:west-password-0123456789";
const JWT_KEY: &str = "jwt-hs256-shared-key-0123456789abcdef";
const NICE_SECRET: &str = "nice-webhook-secret-0123456789abcdef-xyz";
const NICE_TOKEN: &str = "nice-bearer-token-0123456789abcdef-0123";

/// Every credential above: none may appear in an answer or a log line.
const CREDENTIALS: [&str; 5] = [EAST_TOKEN, WEST_PAIR, JWT_KEY, NICE_SECRET, NICE_TOKEN];

/// One source's names: its topic and dead-letter prefix are unique per test run.
struct Names {
    topic: String,
    prefix: String,
}

fn names(name: &str) -> Names {
    Names { topic: unique(name), prefix: unique(name) }
}

fn basic(pair: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An HS256 token under [`JWT_KEY`] with these claims.
fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_KEY.as_bytes()),
    )
    .expect("encode jwt")
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/it/support/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// NICE's signature: `sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
fn nice_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts `body` to `path` with `headers`; the answer's status, body text and JSON.
async fn post(service: &Service, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String, Value) {
    let mut request = e2e_client().post(service.url(path)).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.body(body.to_owned()).send().await.expect("post");
    let status = response.status().as_u16();
    let text = response.text().await.expect("answer");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, json)
}

/// Asserts a 401 whose answer names no credential.
async fn assert_refused(service: &Service, what: &str, path: &str, headers: &[(&str, String)], body: &str) {
    let (status, text, json) = post(service, path, headers, body).await;
    assert_eq!(status, 401, "{what}: {text}");
    assert_eq!(json["error"], "unauthorized", "{what}: {text}");
    for credential in CREDENTIALS {
        assert!(!text.contains(credential), "{what}: the answer echoes a credential: {text}");
    }
}

/// Starts the service with `sources` (TOML) and waits until it is ready.
async fn start_with_sources(name: &str, sources: String, tweak: impl FnOnce(&mut ServiceOptions)) -> Service {
    let brokers = stack_kafka_brokers();
    let mut options = ServiceOptions::new(name, &brokers);
    // `kafka.topic` must exist too (every configured topic is checked before the service is ready).
    stack_create_topic(&brokers, &options.topic, 3).await;
    options.extra_toml = sources;
    tweak(&mut options);
    Service::start_ready(options).await
}

/// A request a source must refuse: the source's index, what is wrong, the request's headers.
type Refusal<'a> = (usize, &'a str, Vec<(&'a str, String)>);

/// Two sources, each with its own credential, topic and prefix: valid events land in the source's
/// own topic, dead letters under its own prefix with its name; each one's credential is refused
/// (401, nothing stored) on the other's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sources_each_publish_to_their_own_topic_and_prefix() {
    let brokers = stack_kafka_brokers();
    let (east, west) = (names("src-east"), names("src-west"));
    stack_create_topic(&brokers, &east.topic, 3).await;
    stack_create_topic(&brokers, &west.topic, 3).await;
    let sources = format!(
        r#"
[[sources]]
name = "bu-east"
path = "/webhooks/bu-east"
topic = "{}"
dead_letter_prefix = "{}"
[sources.bearer]
bearer_tokens = ["{EAST_TOKEN}"]

[[sources]]
name = "bu-west"
path = "/webhooks/bu-west"
topic = "{}"
dead_letter_prefix = "{}"
[sources.basic]
credentials = ["{WEST_PAIR}"]
"#,
        east.topic, east.prefix, west.topic, west.prefix
    );
    let service = start_with_sources("src-two", sources, |_| {}).await;
    let east_auth = [("authorization", format!("Bearer {EAST_TOKEN}"))];
    let west_auth = [("authorization", basic(WEST_PAIR))];

    // Each credential on the other's path, or none, or the old single-source path: refused.
    let foreign = e2e_valid_body(&unique("foreign"));
    assert_refused(&service, "east token on west", "/webhooks/bu-west", &east_auth, &foreign).await;
    assert_refused(&service, "west pair on east", "/webhooks/bu-east", &west_auth, &foreign).await;
    assert_refused(
        &service,
        "west pair as a bearer on east",
        "/webhooks/bu-east",
        &[("authorization", format!("Bearer {WEST_PAIR}"))],
        &foreign,
    )
    .await;
    assert_refused(&service, "nothing on east", "/webhooks/bu-east", &[], &foreign).await;
    let (status, _, _) =
        post(&service, E2E_WEBHOOK_PATH, &[("x-cxone-signature", e2e_sign(foreign.as_bytes()))], &foreign)
            .await;
    assert_eq!(status, 404, "with [[sources]] the single-source path is not served");
    assert!(e2e_s3_keys(&east.prefix).await.is_empty() && e2e_s3_keys(&west.prefix).await.is_empty());

    let (east_id, west_id) = (unique("east"), unique("west"));
    let (status, text, answer) =
        post(&service, "/webhooks/bu-east", &east_auth, &e2e_valid_body(&east_id)).await;
    assert_eq!((status, answer["topic"].as_str()), (200, Some(east.topic.as_str())), "{text}");
    let (status, text, answer) =
        post(&service, "/webhooks/bu-west", &west_auth, &e2e_valid_body(&west_id)).await;
    assert_eq!((status, answer["topic"].as_str()), (200, Some(west.topic.as_str())), "{text}");

    let (status, text, answer) =
        post(&service, "/webhooks/bu-east", &east_auth, &e2e_invalid_body("east-bad")).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("dead_lettered")), "{text}");
    let east_key = answer["key"].as_str().expect("key").to_owned();
    let (status, text, answer) =
        post(&service, "/webhooks/bu-west", &west_auth, &e2e_invalid_body("west-bad")).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("dead_lettered")), "{text}");
    let west_key = answer["key"].as_str().expect("key").to_owned();
    assert!(east_key.starts_with(&format!("{}/", east.prefix)), "{east_key}");
    assert!(west_key.starts_with(&format!("{}/", west.prefix)), "{west_key}");

    for (topic, id, prefix, source) in
        [(&east.topic, &east_id, &east.prefix, "bu-east"), (&west.topic, &west_id, &west.prefix, "bu-west")]
    {
        let records = oracle_committed_records(&brokers, topic, 3).await;
        let keys: Vec<_> = records.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
        assert_eq!(keys, std::slice::from_ref(id), "topic {topic} holds exactly its source's event");
        let letters = e2e_dead_letters(prefix).await;
        assert_eq!(letters.len(), 1, "one dead letter under {prefix}");
        assert_eq!(letters[0].record["source"], source);
    }
    let metrics = service.metrics().await;
    for source in ["bu-east", "bu-west"] {
        for outcome in ["published", "dead_lettered"] {
            let n = metric_sum(
                &metrics,
                "cxone_ingest_source_requests_total",
                &[("source", source), ("outcome", outcome)],
            );
            assert_eq!(n, 1.0, "{source} {outcome}");
        }
    }
    assert_eq!(metric_sum(&metrics, "cxone_ingest_auth_failures_total", &[("source", "bu-east")]), 3.0);
    assert_eq!(
        metric_sum(
            &metrics,
            "cxone_ingest_auth_failures_total",
            &[("source", "bu-west"), ("check", "basic")]
        ),
        1.0
    );
    let log = service.log_tail(10_000_000);
    for credential in CREDENTIALS {
        assert!(!log.contains(credential), "the log holds a credential");
    }
    assert!(
        log.contains(r#""source":"bu-west""#) && log.contains(r#""check":"basic""#),
        "log names source and check"
    );
}

/// Each header-borne mode (bearer, Basic, JWT HS256 with issuer and audience, JWT RS256 and
/// ES256 with public keys) passes with its credential and is refused (401, nothing in Kafka or
/// S3, no credential in answers or logs) when the credential is missing, wrong, expired, for
/// another audience, or another source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_auth_mode_accepts_its_credential_and_refuses_every_other() {
    let brokers = stack_kafka_brokers();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write key");
        path.display().to_string()
    };
    let (token_file, pair_file, jwt_file) =
        (write("token", &format!("{EAST_TOKEN}\n")), write("pair", WEST_PAIR), write("jwt", JWT_KEY));
    let (rs_file, es_file) =
        (write("rs.pem", &fixture("rs256-public.pem")), write("es.pem", &fixture("es256-public.pem")));
    let modes = ["bearer", "basic", "jwt", "rs", "es"];
    let all: Vec<Names> = modes.iter().map(|mode| names(&format!("src-{mode}"))).collect();
    for names in &all {
        stack_create_topic(&brokers, &names.topic, 3).await;
    }
    let table = |index: usize, check: &str| {
        let names = &all[index];
        format!(
            "[[sources]]\nname = \"{0}\"\npath = \"/in/{0}\"\ntopic = \"{1}\"\ndead_letter_prefix = \"{2}\"\n{check}\n",
            modes[index], names.topic, names.prefix
        )
    };
    let sources = [
        table(0, &format!("[sources.bearer]\nbearer_token_files = [\"{token_file}\"]")),
        table(1, &format!("[sources.basic]\ncredential_files = [\"{pair_file}\"]")),
        table(2, &format!(
            "[sources.jwt]\nalgorithm = \"HS256\"\nkey_files = [\"{jwt_file}\"]\nissuer = \"cxone\"\naudience = \"cxone-ingest\""
        )),
        table(3, &format!("[sources.jwt]\nalgorithm = \"RS256\"\nkey_files = [\"{rs_file}\"]")),
        table(4, &format!("[sources.jwt]\nalgorithm = \"ES256\"\nkey_files = [\"{es_file}\"]\naudience = \"bu-es\"")),
    ]
    .concat();
    let service = start_with_sources("src-modes", sources, |_| {}).await;

    let exp = now_unix() + 600;
    let good_jwt = hs256(json!({"iss": "cxone", "aud": "cxone-ingest", "exp": exp}));
    let rs = |claims: Value| {
        let key = EncodingKey::from_rsa_pem(fixture("rs256-private.pem").as_bytes()).expect("rsa key");
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("rs256")
    };
    let es = |claims: Value| {
        let key = EncodingKey::from_ec_pem(fixture("es256-private.pem").as_bytes()).expect("ec key");
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).expect("es256")
    };
    let bearer = |token: &str| vec![("authorization", format!("Bearer {token}"))];
    let right = [
        bearer(EAST_TOKEN),
        vec![("authorization", basic(WEST_PAIR))],
        bearer(&good_jwt),
        bearer(&rs(json!({"exp": exp}))),
        bearer(&es(json!({"exp": exp, "aud": "bu-es"}))),
    ];
    let wrong_secret = "x".repeat(40);
    let refusals: Vec<Refusal> = vec![
        (0, "missing", vec![]),
        (0, "wrong token", bearer(&wrong_secret)),
        (0, "basic's pair", vec![("authorization", basic(WEST_PAIR))]),
        (0, "a jwt", bearer(&good_jwt)),
        (1, "missing", vec![]),
        (1, "wrong password", vec![("authorization", basic("studio-west:west-password-012345678X"))]),
        (1, "bearer's token", bearer(EAST_TOKEN)),
        (2, "missing", vec![]),
        (2, "bearer's token", bearer(EAST_TOKEN)),
        (
            2,
            "expired",
            bearer(&hs256(json!({"iss": "cxone", "aud": "cxone-ingest", "exp": now_unix() - 120}))),
        ),
        (
            2,
            "not yet valid",
            bearer(&hs256(
                json!({"iss": "cxone", "aud": "cxone-ingest", "exp": exp, "nbf": now_unix() + 300}),
            )),
        ),
        (2, "other audience", bearer(&hs256(json!({"iss": "cxone", "aud": "someone-else", "exp": exp})))),
        (2, "other issuer", bearer(&hs256(json!({"iss": "mallory", "aud": "cxone-ingest", "exp": exp})))),
        (2, "no exp", bearer(&hs256(json!({"iss": "cxone", "aud": "cxone-ingest"})))),
        (
            2,
            "wrong key",
            bearer(
                &jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &json!({"iss": "cxone", "aud": "cxone-ingest", "exp": exp}),
                    &EncodingKey::from_secret(wrong_secret.as_bytes()),
                )
                .expect("jwt"),
            ),
        ),
        (3, "an HS256 token", bearer(&good_jwt)),
        (3, "the ES256 token", right[4].clone()),
        (3, "expired", bearer(&rs(json!({"exp": now_unix() - 120})))),
        (4, "the RS256 token", right[3].clone()),
        (4, "other audience", bearer(&es(json!({"exp": exp, "aud": "bu-rs"})))),
        (4, "no audience", bearer(&es(json!({"exp": exp})))),
    ];
    let mut refused_ids = HashSet::new();
    for (index, what, headers) in &refusals {
        let id = unique("refused");
        refused_ids.insert(id.clone());
        let what = format!("{} {what}", modes[*index]);
        assert_refused(&service, &what, &format!("/in/{}", modes[*index]), headers, &e2e_valid_body(&id))
            .await;
    }
    // Refused before the body was parsed: not even an invalid body leaves a trace.
    assert_refused(&service, "invalid body", "/in/bearer", &[], &e2e_invalid_body("x")).await;
    for names in &all {
        assert!(e2e_s3_keys(&names.prefix).await.is_empty(), "a refused request stored a dead letter");
    }

    for (index, headers) in right.iter().enumerate() {
        let id = unique(modes[index]);
        let (status, text, _) =
            post(&service, &format!("/in/{}", modes[index]), headers, &e2e_valid_body(&id)).await;
        assert_eq!(status, 200, "{}: {text}", modes[index]);
        let records = oracle_committed_records(&brokers, &all[index].topic, 3).await;
        let keys: Vec<_> = records.iter().filter_map(|r| r.key.clone()).collect();
        assert_eq!(keys, [id], "{}: only the accepted event is in its topic", modes[index]);
        assert!(keys.iter().all(|key| !refused_ids.contains(key)));
    }
    let metrics = service.metrics().await;
    for (check, reason) in [
        ("jwt", "expired"),
        ("jwt", "audience"),
        ("jwt", "issuer"),
        ("jwt", "not_yet_valid"),
        ("jwt", "claims"),
        ("jwt", "algorithm"),
        ("jwt", "mismatch"),
        ("bearer", "mismatch"),
        ("basic", "missing"),
    ] {
        let n =
            metric_sum(&metrics, "cxone_ingest_auth_failures_total", &[("check", check), ("reason", reason)]);
        assert!(n >= 1.0, "no {check}/{reason} failure counted:\n{metrics}");
    }
    let log = service.log_tail(10_000_000);
    for secret in CREDENTIALS.iter().copied().chain([good_jwt.as_str(), wrong_secret.as_str()]) {
        assert!(!log.contains(secret), "the log holds a credential");
    }
    assert!(log.contains(r#""reason":"expired""#), "the log names the failed check's reason");
}

/// A NICE platform webhook (`preset = "nice-webhooks"` plus a bearer token): signed
/// `{timestamp}.{body}` with the `sha256=` prefix passes; a stale or future timestamp, a changed
/// body or a missing token is refused; the delivery id and event type are kept, and an event type
/// header that disagrees with the body dead-letters it with its own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nice_webhook_preset_passes_signed_requests_and_refuses_stale_or_changed_ones() {
    let brokers = stack_kafka_brokers();
    let nice = names("src-nice");
    stack_create_topic(&brokers, &nice.topic, 3).await;
    let sources = format!(
        r#"
[[sources]]
name = "nice"
path = "/webhooks/nice"
topic = "{}"
dead_letter_prefix = "{}"
[sources.signature]
preset = "nice-webhooks"
secrets = ["{NICE_SECRET}"]
[sources.bearer]
bearer_tokens = ["{NICE_TOKEN}"]
"#,
        nice.topic, nice.prefix
    );
    let service = start_with_sources("src-nice", sources, |_| {}).await;
    let request = |body: &str, timestamp: i64, event_type: &str, delivery: &str| {
        vec![
            ("x-nexus-signature-256", nice_signature(NICE_SECRET, timestamp, body)),
            ("x-nexus-timestamp", timestamp.to_string()),
            ("x-nexus-event-type", event_type.to_owned()),
            ("x-nexus-delivery-id", delivery.to_owned()),
            ("authorization", format!("Bearer {NICE_TOKEN}")),
        ]
    };
    let event = "interaction.completed";
    let now = now_unix();
    let body = e2e_valid_body(&unique("nice-stale"));
    // Clear of the 300 s window by more than a slow machine takes between signing and checking
    // (a request signed 301 s ahead and checked a second later is inside the window).
    let (old, ahead) = (now_unix() - 330, now_unix() + 330);
    assert_refused(&service, "330 s old", "/webhooks/nice", &request(&body, old, event, "d-0"), &body).await;
    assert_refused(&service, "330 s ahead", "/webhooks/nice", &request(&body, ahead, event, "d-0"), &body)
        .await;
    let mut changed = request(&body, now, event, "d-0");
    let other = body.replace("voice", "chat");
    assert_refused(&service, "body changed", "/webhooks/nice", &changed, &other).await;
    changed.retain(|(name, _)| *name != "authorization");
    assert_refused(&service, "no bearer", "/webhooks/nice", &changed, &body).await;
    let unprefixed: Vec<_> = request(&body, now, event, "d-0")
        .into_iter()
        .map(|(n, v)| (n, if n == "x-nexus-signature-256" { v.replacen("sha256=", "", 1) } else { v }))
        .collect();
    assert_refused(&service, "no sha256= prefix", "/webhooks/nice", &unprefixed, &body).await;

    let id = unique("nice");
    let body = e2e_valid_body(&id);
    let (status, text, answer) =
        post(&service, "/webhooks/nice", &request(&body, now_unix() - 200, event, "d-1"), &body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("published")), "{text}");

    let mismatched = e2e_valid_body(&unique("nice-mismatch"));
    let headers = request(&mismatched, now_unix(), "survey.completed", "d-2");
    let (status, text, answer) = post(&service, "/webhooks/nice", &headers, &mismatched).await;
    assert_eq!((status, answer["reason"].as_str()), (200, Some("event_type_mismatch")), "{text}");
    assert_eq!(answer["errors"][0]["instance_path"], "/event", "{text}");

    let records = oracle_committed_records(&brokers, &nice.topic, 3).await;
    assert_eq!(records.iter().filter_map(|r| r.key.clone()).collect::<Vec<_>>(), [id]);
    // The sender's delivery metadata travels with the event.
    let headers = &records[0].headers;
    assert_eq!(headers.get("source").map(String::as_str), Some("nice"), "{headers:?}");
    assert_eq!(headers.get("delivery_id").map(String::as_str), Some("d-1"), "{headers:?}");
    assert_eq!(headers.get("sender_event_type").map(String::as_str), Some(event), "{headers:?}");
    let letters = e2e_dead_letters(&nice.prefix).await;
    assert_eq!(letters.len(), 1, "only the mismatched delivery is a dead letter");
    let record = &letters[0].record;
    assert_eq!(record["reason"], "event_type_mismatch");
    assert_eq!(record["source"], "nice");
    assert_eq!(record["delivery"], json!({"id": "d-2", "event_type": "survey.completed"}));
    assert_eq!(record["headers"]["x-nexus-timestamp"].as_str().map(str::len), Some(10), "{record}");
    assert!(
        record["headers"].get("authorization").is_none()
            && record["headers"].get("x-nexus-signature-256").is_none()
    );
    let metrics = service.metrics().await;
    for reason in ["timestamp_stale", "timestamp_future", "mismatch", "malformed"] {
        let n = metric_sum(
            &metrics,
            "cxone_ingest_auth_failures_total",
            &[("source", "nice"), ("check", "signature"), ("reason", reason)],
        );
        assert_eq!(n, 1.0, "signature {reason}");
    }
}

/// A flood of slow deliveries (bodies trickled in under a valid token) to one source takes only
/// that source's share of the unverified-body bound: the other source still answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_flood_to_one_source_leaves_the_other_answering() {
    let brokers = stack_kafka_brokers();
    let (flooded, calm) = (names("src-flooded"), names("src-calm"));
    stack_create_topic(&brokers, &flooded.topic, 3).await;
    stack_create_topic(&brokers, &calm.topic, 3).await;
    let sources = format!(
        r#"
[[sources]]
name = "flooded"
path = "/webhooks/flooded"
topic = "{}"
dead_letter_prefix = "{}"
[sources.bearer]
bearer_tokens = ["{EAST_TOKEN}"]

[[sources]]
name = "calm"
path = "/webhooks/calm"
topic = "{}"
dead_letter_prefix = "{}"
[sources.bearer]
bearer_tokens = ["{NICE_TOKEN}"]
"#,
        flooded.topic, flooded.prefix, calm.topic, calm.prefix
    );
    let service = start_with_sources("src-flood", sources, |options| {
        options.extra_config.push(("server", "max_unverified_bodies = 8".to_owned()));
        options.max_in_flight = 8;
        options.extra_config.push(("server", "body_read_timeout_ms = 8000".to_owned()));
    })
    .await;

    // Twice the whole bound of slow bodies to the flooded source, each holding its slot.
    let mut slow = Vec::new();
    for _ in 0..16 {
        let mut stream = tokio::net::TcpStream::connect(service.addr).await.expect("connect");
        let head = format!(
            "POST /webhooks/flooded HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {EAST_TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"event\":"
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        slow.push(stream);
    }
    // The flooded source's own share is taken: its next delivery is told to retry.
    let flooded_answer = poll_until(Duration::from_secs(5), || async {
        let body = e2e_valid_body(&unique("flooded"));
        let (status, _, _) =
            post(&service, "/webhooks/flooded", &[("authorization", format!("Bearer {EAST_TOKEN}"))], &body)
                .await;
        (status == 503).then_some(status)
    })
    .await;
    assert_eq!(flooded_answer, Some(503), "the flood never filled the flooded source's share");

    let started = Instant::now();
    let body = e2e_valid_body(&unique("calm"));
    let (status, text, _) =
        post(&service, "/webhooks/calm", &[("authorization", format!("Bearer {NICE_TOKEN}"))], &body).await;
    let took = started.elapsed();
    println!("calm source answered {status} in {took:?} while the other held its whole share");
    assert_eq!(status, 200, "the calm source was starved: {text}");
    assert!(took < Duration::from_secs(5), "the calm source answered after {took:?}");
    drop(slow);
}

/// Every answer stays within 32 KiB whatever the payload (issue: 1.6 MB answers for 800 KB
/// bodies of long unexpected keys); the dead letter keeps every error in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_stay_within_32_kib_whatever_the_payload() {
    let brokers = stack_kafka_brokers();
    let options = ServiceOptions::new("src-answers", &brokers);
    stack_create_topic(&brokers, &options.topic, 3).await;
    let prefix = options.s3_prefix.clone();
    let service = Service::start_ready(options).await;
    let with_keys = |count: usize, key: &dyn Fn(usize) -> String| {
        let mut body = json!({
            "event": "interaction.completed",
            "timestamp": "2026-11-28T10:00:00Z",
            "correlation_id": unique("big"),
            "data": {"channel": "voice", "duration_seconds": 1, "agent_id": "a"}
        });
        for n in 0..count {
            body["data"][key(n)] = json!(n);
        }
        body.to_string()
    };
    let bodies = [
        ("100 keys of 8,000 characters", with_keys(100, &|n| format!("{n:04}{}", "k".repeat(7_996)))),
        ("150 keys of 1,500 characters", with_keys(150, &|n| format!("{n:04}{}", "k".repeat(1_496)))),
        (
            "100 keys of 1,400 control characters (6 bytes each in JSON)",
            with_keys(100, &|n| format!("{n:04}{}", "\u{1}".repeat(1_396))),
        ),
        (
            "a 900 KB correlation id",
            json!({"event": "interaction.completed", "timestamp": "2026-11-28T10:00:00Z",
            "correlation_id": "c".repeat(900_000), "data": {"channel": "fax"}})
            .to_string(),
        ),
        ("a 900 KB event name", json!({"event": "e".repeat(900_000)}).to_string()),
        ("900 KB of \"not JSON", format!("\"{}", "\u{1}".repeat(900_000))),
    ];
    let mut largest = 0;
    for (what, body) in &bodies {
        assert!(body.len() <= 1 << 20, "{what}: {} bytes is over the body limit", body.len());
        let posted = e2e_post(&e2e_client(), &service.webhook_url(), body, &e2e_sign(body.as_bytes()), None)
            .await
            .expect("post");
        let size = serde_json::to_vec(&posted.body).expect("json").len();
        println!("{what}: {} byte body -> {} {} byte answer", body.len(), posted.status, size);
        assert_eq!(posted.status, 200, "{what}: {}", posted.body);
        assert_ne!(posted.body, Value::Null, "{what}: the answer is not JSON");
        largest = largest.max(size);
    }
    println!("largest answer: {largest} bytes (bound 32768)");
    assert!(largest <= 32 * 1024, "an answer of {largest} bytes");
    let letters = e2e_dead_letters(&prefix).await;
    let detail = letters.iter().map(|l| l.record["errors"].to_string().len()).max().unwrap_or(0);
    println!("largest dead-letter errors list: {detail} bytes");
    assert!(detail > 100 * 1024, "the dead letter keeps every error in full ({detail} bytes)");
    let metrics = service.metrics().await;
    assert!(
        metric_sum(&metrics, "cxone_ingest_answers_truncated_total", &[]) >= 3.0,
        "truncations are counted"
    );
}

/// A rotated token file takes effect without a restart; a file that cannot be used (too short)
/// keeps the previous token and counts a failed reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credential_files_are_reloaded_and_a_bad_file_keeps_the_old_ones() {
    let brokers = stack_kafka_brokers();
    let rotating = names("src-rotate");
    stack_create_topic(&brokers, &rotating.topic, 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    let (old, new) = ("old-rotating-token-0123456789abcdef-00", "new-rotating-token-0123456789abcdef-11");
    // As Kubernetes updates a mounted Secret: the new content appears whole (a rename), never half-written.
    let replace = |text: &str| {
        let next = dir.path().join("token.next");
        std::fs::write(&next, text).expect("write");
        std::fs::rename(&next, &token_file).expect("rename");
    };
    replace(old);
    let sources = format!(
        "[[sources]]\nname = \"rotating\"\npath = \"/in/rotating\"\ntopic = \"{}\"\ndead_letter_prefix = \"{}\"\n\
         [sources.bearer]\nbearer_token_files = [\"{}\"]\n",
        rotating.topic,
        rotating.prefix,
        token_file.display()
    );
    let service = start_with_sources("src-rotate", sources, |options| {
        options.extra_config.push(("server", "credential_reload_ms = 200".to_owned()));
    })
    .await;
    let status_with = |token: &'static str| {
        let service = &service;
        async move {
            let body = e2e_valid_body(&unique("rotate"));
            post(service, "/in/rotating", &[("authorization", format!("Bearer {token}"))], &body).await.0
        }
    };
    assert_eq!(status_with(old).await, 200);
    assert_eq!(status_with(new).await, 401);

    replace(&format!("{new}\n"));
    let rotated =
        poll_until(Duration::from_secs(10), || async { (status_with(new).await == 200).then_some(()) }).await;
    assert!(rotated.is_some(), "the new token was never accepted:\n{}", service.log_tail(4_000));
    assert_eq!(status_with(old).await, 401, "the old token is refused once rotated out");

    replace("short");
    let counted = poll_until(Duration::from_secs(10), || async {
        let metrics = service.metrics().await;
        (metric_sum(&metrics, "cxone_ingest_credential_reload_failures_total", &[("source", "rotating")])
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(counted.is_some(), "the failed reload was not counted");
    assert_eq!(status_with(new).await, 200, "a bad file must keep the previous token");
    let metrics = service.metrics().await;
    assert_eq!(metric_sum(&metrics, "cxone_ingest_credential_reloads_total", &[("source", "rotating")]), 1.0);
    let log = service.log_tail(1_000_000);
    assert!(!log.contains(new) && !log.contains(old) && !log.contains("\"short\""), "the log holds a token");
}

/// Configurations the service refuses to start with: two sources sharing a credential, sharing a
/// path or a name, a bad name, a source without authentication, two Authorization checks at once.
/// No message holds a credential.
#[test]
fn unusable_sources_are_refused_at_start_without_echoing_credentials() {
    let load = |sources: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let text = format!("[kafka]\nbrokers = \"127.0.0.1:1\"\n[dead_letter]\nbucket = \"b\"\n{sources}");
        std::fs::write(&path, text).expect("write");
        let args = ConfigArgs::with_file(path);
        Config::load(&args, |_| None).map(|_| ()).map_err(|err| err.to_string())
    };
    let source = |name: &str, path: &str, check: &str| {
        format!("[[sources]]\nname = \"{name}\"\npath = \"{path}\"\n{check}\n")
    };
    let bearer = |token: &str| format!("[sources.bearer]\nbearer_tokens = [\"{token}\"]");
    let fine = [source("a", "/a", &bearer(EAST_TOKEN)), source("b", "/b", &bearer(NICE_TOKEN))].concat();
    assert_eq!(load(&fine), Ok(()));

    let cases = [
        (
            "shared token",
            [source("a", "/a", &bearer(EAST_TOKEN)), source("b", "/b", &bearer(EAST_TOKEN))].concat(),
            "sources[1] (b) and source \"a\" share a credential",
        ),
        (
            "token reused as a secret",
            [
                source("a", "/a", &bearer(EAST_TOKEN)),
                source("b", "/b", &format!("[sources.signature]\nsecrets = [\"{EAST_TOKEN}\"]")),
            ]
            .concat(),
            "share a credential",
        ),
        (
            "shared path",
            [source("a", "/same", &bearer(EAST_TOKEN)), source("b", "/same", &bearer(NICE_TOKEN))].concat(),
            "sources[1].path = \"/same\" is also the path of source \"a\"",
        ),
        (
            "shared name",
            [source("a", "/a", &bearer(EAST_TOKEN)), source("a", "/b", &bearer(NICE_TOKEN))].concat(),
            "sources[1].name = \"a\" is used by another source",
        ),
        (
            "bad name",
            source("BU East", "/a", &bearer(EAST_TOKEN)),
            "sources[0].name = \"BU East\" is not a source name",
        ),
        ("no check", source("a", "/a", ""), "has no authentication"),
        (
            "two header checks",
            source(
                "a",
                "/a",
                &format!("{}\n[sources.basic]\ncredentials = [\"{WEST_PAIR}\"]", bearer(EAST_TOKEN)),
            ),
            "more than one of bearer, basic and jwt",
        ),
        (
            "short token",
            source("a", "/a", &bearer("tiny-token")),
            "sources[0].bearer.bearer_tokens[0] is shorter than 32 bytes",
        ),
        (
            "missing file",
            source("a", "/a", "[sources.bearer]\nbearer_token_files = [\"/nonexistent/token\"]"),
            "sources[0].bearer.bearer_token_files[0]: cannot read /nonexistent/token",
        ),
        (
            "preset with its own header",
            source(
                "a",
                "/a",
                &format!(
                    "[sources.signature]\npreset = \"nice-webhooks\"\nheader = \"X-Other\"\nsecrets = [\"{NICE_SECRET}\"]"
                ),
            ),
            "sources[0].signature.preset = \"nice-webhooks\" sets header",
        ),
        ("built-in path", source("a", "/metrics", &bearer(EAST_TOKEN)), "clashes with a built-in endpoint"),
    ];
    for (what, sources, expected) in cases {
        let message = load(&sources).expect_err(what);
        assert!(message.contains(expected), "{what}: {message}");
        for credential in CREDENTIALS.iter().chain(&["tiny-token"]) {
            assert!(!message.contains(credential), "{what}: the message echoes a credential: {message}");
        }
    }
}

/// config/example.toml's commented multi-source example, uncommented, is a valid `[[sources]]` list.
#[test]
fn the_commented_sources_example_parses() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
        .expect("example");
    let start = example.find("# [[sources]]").expect("a commented [[sources]] example");
    let uncommented: String = example[start..]
        .lines()
        .filter_map(|line| line.strip_prefix("# ").or_else(|| (line == "#").then_some("")))
        .map(|line| format!("{line}\n"))
        .collect();
    let config = Config::from_toml(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bu-east", "nice-webhooks", "custom-client"]);
    assert!(
        config
            .sources
            .iter()
            .all(|s| s.signature.is_some() || s.bearer.is_some() || s.basic.is_some() || s.jwt.is_some())
    );
}

/// A flood of deliveries held in the sink (Kafka not answering) to one source takes only that
/// source's share of `max_in_flight`: the other source's deliveries are still admitted at once.
#[tokio::test]
async fn deliveries_held_by_a_slow_sink_take_only_their_sources_share_of_in_flight() {
    let mut config = Config::from_toml(&format!(
        "[server]\nmax_in_flight = 4\n\
         [[sources]]\nname = \"held\"\npath = \"/in/held\"\n[sources.bearer]\nbearer_tokens = [\"{EAST_TOKEN}\"]\n\
         [[sources]]\nname = \"free\"\npath = \"/in/free\"\n[sources.bearer]\nbearer_tokens = [\"{NICE_TOKEN}\"]\n"
    ))
    .expect("config");
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.server.admin_listen = "127.0.0.1:0".parse().expect("addr");
    // Valid events wait at the gate (a Kafka that does not answer); dead letters are stored at once.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let events = FakeSink::new(Mode::Gated(gate.clone()));
    let routes = cxone_ingest::http::routes(app_state(&config, events.clone(), FakeSink::new(Mode::Ok)));
    let post = |path: &'static str, token: &'static str, body: String| {
        warp::test::request()
            .method("POST")
            .path(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body)
    };

    // Four deliveries to the held source, the whole bound: two take its share (4 / 2 sources) and
    // wait in the sink, the other two are told to retry at once.
    let (mut held, mut refused) = (Vec::new(), 0);
    for _ in 0..4 {
        let before = events.counts().0;
        let request = post("/in/held", EAST_TOKEN, e2e_valid_body(&unique("held")));
        let task = {
            let routes = routes.clone();
            tokio::spawn(async move { request.reply(&routes).await })
        };
        let entered = poll_until(Duration::from_secs(10), || {
            let (n, done) = (events.counts().0, task.is_finished());
            async move { if n > before { Some(true) } else { done.then_some(false) } }
        })
        .await
        .expect("the delivery neither reached the sink nor was answered");
        if entered {
            held.push(task);
        } else {
            let answer = task.await.expect("refused request");
            assert_eq!(answer.status(), 503, "{:?}", answer.body());
            refused += 1;
        }
    }
    assert_eq!((held.len(), refused), (2, 2), "the held source took more than its share");

    // The other source still has its own slots: its delivery is checked and answered.
    let started = Instant::now();
    let free = post("/in/free", NICE_TOKEN, e2e_invalid_body(&unique("free"))).reply(&routes).await;
    assert_eq!(free.status(), 200, "the free source was starved: {:?}", free.body());
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());

    gate.add_permits(2);
    for request in held {
        assert_eq!(request.await.expect("held request").status(), 200);
    }
}
