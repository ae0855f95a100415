//! The service's security settings against real servers that require them, configured the way an
//! operator does (config file and environment): Kafka over TLS (tansu behind stunnel, the broker
//! verified against `ssl.ca.location`), Kafka SASL/SCRAM logins (tansu with `--authentication`),
//! and a `rediss://` dedupe store with a private CA and an ACL user. A wrong CA, user or
//! password must fail fast with a `/readyz` detail naming TLS or authentication, and no
//! password may show in `/readyz`, `/metrics` or the log.

use std::time::{Duration, Instant};

use crate::support::secure::{SaslKafka, TestPki, TlsKafka, TlsRedis};
use crate::support::*;

/// `[kafka.client]` lines for the config file, as an operator writes them.
fn kafka_client(settings: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    settings.iter().map(|(key, value)| ("kafka.client", format!("{key:?} = {value:?}"))).collect()
}

/// Polls the admin `/readyz` until `sink`'s detail satisfies `wanted` (a not-ready detail), up to
/// `timeout`; answers the status, the detail and how long it took. Panics with the log otherwise.
async fn wait_for_detail(
    service: &Service,
    sink: &str,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let last = std::sync::Mutex::new(None);
    let (last_seen, wanted) = (&last, &wanted);
    let found = poll_until(timeout, || async move {
        let (status, body) = service.readyz().await?;
        let detail = body["sinks"][sink].as_str().unwrap_or_default().to_owned();
        *last_seen.lock().expect("lock") = Some((status, body));
        wanted(&detail).then_some((status, detail))
    })
    .await;
    match found {
        Some((status, detail)) => (status, detail, started.elapsed()),
        None => panic!(
            "/readyz never showed the wanted {sink} detail within {timeout:?}; last: {:?}\n--- log ---\n{}",
            last.lock().expect("lock"),
            service.log_tail(6_000)
        ),
    }
}

/// Posts one signed valid event under a fresh correlation id.
async fn post_valid(service: &Service, correlation_id: &str) -> Posted {
    let body = e2e_valid_body(correlation_id);
    e2e_post(&e2e_client(), &service.webhook_url(), &body, &e2e_sign(body.as_bytes()), None)
        .await
        .expect("post")
}

/// Asserts `secret` shows nowhere the service answers or writes: `/readyz`, `/metrics`, its log.
async fn assert_never_shown(service: &Service, secret: &str) {
    let readyz = service.readyz().await.map(|(_, body)| body.to_string()).unwrap_or_default();
    assert!(!readyz.contains(secret), "/readyz shows the password: {readyz}");
    assert!(!service.metrics().await.contains(secret), "/metrics shows the password");
    let log = service.log_tail(u64::MAX);
    assert!(!log.is_empty(), "the service wrote no log");
    assert!(!log.contains(secret), "the log shows the password");
}

// --- Kafka over TLS ---------------------------------------------------------------------------

/// With `security.protocol = "SSL"` and `ssl.ca.location` = the CA that signed the broker's
/// certificate, the service creates its topic, publishes a signed event (200 published), and the
/// record reads back through the same TLS port.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_over_tls_publishes_when_the_broker_verifies_against_the_configured_ca() {
    let pki = TestPki::new();
    let kafka = TlsKafka::start(&pki);
    let ca = pki.ca().display().to_string();
    let tls = [("security.protocol", "SSL"), ("ssl.ca.location", ca.as_str())];
    let mut options = ServiceOptions::new("kafka-tls", &kafka.brokers());
    options.extra_config = kafka_client(&tls);
    options.extra_config.push(("kafka", "auto_create_topics = true".to_owned()));
    let service = Service::start_ready(options.clone()).await;

    let correlation_id = unique("corr-tls");
    let answer = post_valid(&service, &correlation_id).await;
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, service.log_tail(4_000));
    assert_eq!(answer.body["status"], "published", "{:?}", answer.body);

    let (brokers, topic) = (kafka.brokers(), options.topic.clone());
    let settings: Vec<(String, String)> = tls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let records = tokio::task::spawn_blocking(move || {
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        kafka_read_committed_with(&brokers, &settings, &topic, 3, 1, Duration::from_secs(30))
    })
    .await
    .expect("reader");
    assert_eq!(records.len(), 1, "one record over TLS: {records:?}");
    assert_eq!(records[0].request_id(), answer.request_id);
    assert_eq!(records[0].key.as_deref(), Some(correlation_id.as_str()));
}

/// Trusting a CA that did not sign the broker's certificate, the service never becomes ready:
/// within a few seconds `/readyz` says 503 and names the failed TLS certificate verification
/// (not just a timeout), and a valid post is answered 503 (retry), never acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_over_tls_with_another_ca_fails_fast_naming_the_certificate_verification() {
    let pki = TestPki::new();
    let kafka = TlsKafka::start(&pki);
    let other_ca = pki.other_ca().display().to_string();
    let mut options = ServiceOptions::new("kafka-tls-wrong-ca", &kafka.brokers());
    options.extra_config =
        kafka_client(&[("security.protocol", "SSL"), ("ssl.ca.location", other_ca.as_str())]);
    options.extra_config.push(("kafka", "auto_create_topics = true".to_owned()));
    let service = Service::start(options);

    let (status, detail, took) = wait_for_detail(&service, "kafka", Duration::from_secs(30), |detail| {
        detail.contains("certificate verify failed")
    })
    .await;
    assert_eq!(status, 503, "{detail}");
    // librdkafka words it "SSL handshake failed: …" or "… (after N ms in state SSL_HANDSHAKE)".
    assert!(
        detail.contains("TLS")
            && (detail.contains("SSL handshake failed") || detail.contains("SSL_HANDSHAKE")),
        "{detail}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?} to say why: {detail}");
    eprintln!("wrong CA: /readyz named it after {took:?}: {detail}");

    let answer = post_valid(&service, &unique("corr-tls-wrong-ca")).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(answer.retry_after.is_some(), "a 503 tells the sender when to retry");
}

// --- Kafka SASL (SCRAM-SHA-512) ---------------------------------------------------------------

const SASL_USER: &str = "cxone-ingest";
const SASL_PASSWORD: &str = "scram-Pa55-9f3c1e7d";

/// The SASL settings an operator puts in `[kafka.client]` (credentials apart).
const SASL: [(&str, &str); 2] =
    [("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "SCRAM-SHA-512")];

/// How the credentials reach the service.
enum Credentials<'a> {
    /// `CXONE_INGEST_KAFKA_SASL_USERNAME` / `_PASSWORD` (the chart's Secret).
    Env(&'a str, &'a str),
    /// `[kafka.client] "sasl.username"` / `"sasl.password"` in the config file.
    File(&'a str, &'a str),
}

fn sasl_service(name: &str, kafka: &SaslKafka, credentials: Credentials<'_>) -> Service {
    let mut options = ServiceOptions::new(name, &kafka.brokers());
    options.extra_config = kafka_client(&SASL);
    options.extra_config.push(("kafka", "auto_create_topics = true".to_owned()));
    match credentials {
        Credentials::Env(user, password) => {
            options.extra_env.push(("CXONE_INGEST_KAFKA_SASL_USERNAME", user.to_owned()));
            options.extra_env.push(("CXONE_INGEST_KAFKA_SASL_PASSWORD", password.to_owned()));
        }
        Credentials::File(user, password) => {
            options
                .extra_config
                .extend(kafka_client(&[("sasl.username", user), ("sasl.password", password)]));
        }
    }
    Service::start(options)
}

/// Whether a readiness detail is about the login.
fn names_authentication(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("authentication") || lower.contains("sasl")
}

/// The right user and password get past the login: the producer's `init_transactions` and the
/// topic's creation go through the SASL connection, so the service becomes ready. What this
/// broker lacks is the transaction's end: a post is answered 503 (retry, nothing acknowledged)
/// because the commit never completes, and no authentication error shows anywhere.
async fn right_credentials_get_past_authentication(service: Service) {
    service.wait_ready(Duration::from_secs(40)).await;
    let answer = post_valid(&service, &unique("corr-sasl")).await;
    assert_eq!(answer.status, 503, "this broker cannot commit: {:?}", answer.body);
    let log = service.log_tail(u64::MAX);
    assert!(log.contains("commit not answered"), "the transaction's commit is what failed:\n{log}");
    let failed_login = log.to_ascii_lowercase().contains("authentication");
    assert!(!failed_login, "the login should have worked:\n{log}");
    assert_never_shown(&service, SASL_PASSWORD).await;
}

/// A wrong user or password fails fast, `/readyz` naming authentication; the password (right or
/// wrong) shows nowhere.
async fn wrong_credentials_fail_fast_naming_authentication(service: Service, password: &str) {
    let (status, detail, took) =
        wait_for_detail(&service, "kafka", Duration::from_secs(30), names_authentication).await;
    assert_eq!(status, 503, "{detail}");
    assert!(detail.to_ascii_lowercase().contains("authentication"), "{detail}");
    assert!(took < Duration::from_secs(15), "took {took:?} to say why: {detail}");
    eprintln!("wrong SASL credentials: /readyz named it after {took:?}: {detail}");
    let answer = post_valid(&service, &unique("corr-sasl-wrong")).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_never_shown(&service, password).await;
    assert_never_shown(&service, SASL_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_sasl_credentials_from_the_environment_authenticate() {
    let kafka = SaslKafka::start(SASL_USER, SASL_PASSWORD);
    let service = sasl_service("kafka-sasl-env", &kafka, Credentials::Env(SASL_USER, SASL_PASSWORD));
    right_credentials_get_past_authentication(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_sasl_credentials_from_the_config_file_authenticate() {
    let kafka = SaslKafka::start(SASL_USER, SASL_PASSWORD);
    let service = sasl_service("kafka-sasl-file", &kafka, Credentials::File(SASL_USER, SASL_PASSWORD));
    right_credentials_get_past_authentication(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_sasl_with_a_wrong_password_fails_fast_naming_authentication_never_the_password() {
    let kafka = SaslKafka::start(SASL_USER, SASL_PASSWORD);
    let wrong = "not-the-Pa55word-41d2";
    let service = sasl_service("kafka-sasl-wrong-pw", &kafka, Credentials::Env(SASL_USER, wrong));
    wrong_credentials_fail_fast_naming_authentication(service, wrong).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_sasl_with_a_wrong_user_fails_fast_naming_authentication_never_the_password() {
    let kafka = SaslKafka::start(SASL_USER, SASL_PASSWORD);
    let service =
        sasl_service("kafka-sasl-wrong-user", &kafka, Credentials::File("someone-else", SASL_PASSWORD));
    wrong_credentials_fail_fast_naming_authentication(service, SASL_PASSWORD).await;
}

// --- rediss:// dedupe store with a private CA and an ACL user ----------------------------------

const REDIS_USER: &str = "cxone-dedupe";
const REDIS_PASSWORD: &str = "acl-Pa55-5b8e2a90";

/// Options of a service on the stack's Kafka whose dedupe store is `redis` (env
/// `CXONE_INGEST_DEDUPE_STORE`, as the chart passes it) trusting `ca` (`dedupe.ca_file`).
fn rediss_options(name: &str, redis: &TlsRedis, password: &str, ca: &std::path::Path) -> ServiceOptions {
    let mut options = ServiceOptions::new(name, &stack_kafka_brokers());
    options.dedupe_store = redis.url(REDIS_USER, password);
    options.extra_config.push(("dedupe", format!("ca_file = {:?}", ca.display().to_string())));
    options.extra_config.push(("kafka", "auto_create_topics = true".to_owned()));
    options
}

fn rediss_service(name: &str, redis: &TlsRedis, password: &str, ca: &std::path::Path) -> Service {
    Service::start(rediss_options(name, redis, password, ca))
}

/// `dedupe.store = "rediss://user:password@…"` with `dedupe.ca_file` = the private CA: two
/// replicas become ready; one publishes, and the other answers the sender's repeat of that
/// delivery with `duplicate_of` the first (the claim went through the TLS store, not a cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rediss_store_with_a_private_ca_and_an_acl_user_dedupes_a_repeat_across_replicas() {
    let pki = TestPki::new();
    let redis = TlsRedis::start(&pki, REDIS_USER, REDIS_PASSWORD);
    let options = rediss_options("dedupe-rediss", &redis, REDIS_PASSWORD, &pki.ca());
    let first_replica = Service::start(options.clone());
    let second_replica = Service::start(options);
    first_replica.wait_ready(Duration::from_secs(60)).await;
    second_replica.wait_ready(Duration::from_secs(60)).await;

    let correlation_id = unique("corr-rediss");
    let first = post_valid(&first_replica, &correlation_id).await;
    assert_eq!(first.status, 200, "{:?}\n{}", first.body, first_replica.log_tail(4_000));
    assert_eq!(first.body["status"], "published", "{:?}", first.body);
    assert!(first.body.get("duplicate_of").is_none(), "{:?}", first.body);
    let repeat = post_valid(&second_replica, &correlation_id).await;
    assert_eq!(repeat.status, 200, "{:?}", repeat.body);
    assert_eq!(repeat.body["duplicate_of"], first.request_id.as_str(), "{:?}", repeat.body);
    assert_eq!(repeat.body["offset"], first.body["offset"], "answered from the original commit");
    for replica in [&first_replica, &second_replica] {
        assert_never_shown(replica, REDIS_PASSWORD).await;
    }
}

/// Trusting another CA, the store is never reached: `/readyz` names the dedupe store and TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rediss_store_with_another_ca_is_not_ready_naming_tls() {
    let pki = TestPki::new();
    let redis = TlsRedis::start(&pki, REDIS_USER, REDIS_PASSWORD);
    let service = rediss_service("dedupe-rediss-wrong-ca", &redis, REDIS_PASSWORD, &pki.other_ca());
    let (status, detail, took) =
        wait_for_detail(&service, "dedupe_store", Duration::from_secs(20), |d| d.contains("TLS")).await;
    assert_eq!(status, 503, "{detail}");
    assert!(detail.contains("dedupe store") && detail.contains("certificate"), "{detail}");
    eprintln!("rediss with another CA: /readyz named it after {took:?}: {detail}");
    assert_never_shown(&service, REDIS_PASSWORD).await;
}

/// A wrong ACL password: `/readyz` names the dedupe store and authentication, never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rediss_store_with_a_wrong_acl_password_names_authentication_never_the_password() {
    let pki = TestPki::new();
    let redis = TlsRedis::start(&pki, REDIS_USER, REDIS_PASSWORD);
    let wrong = "wrong-acl-Pa55-77aa";
    let service = rediss_service("dedupe-rediss-wrong-pw", &redis, wrong, &pki.ca());
    let (status, detail, took) = wait_for_detail(&service, "dedupe_store", Duration::from_secs(20), |d| {
        d.to_ascii_lowercase().contains("authentication")
    })
    .await;
    assert_eq!(status, 503, "{detail}");
    assert!(detail.contains("dedupe store"), "{detail}");
    eprintln!("rediss with a wrong ACL password: /readyz named it after {took:?}: {detail}");
    let answer = post_valid(&service, &unique("corr-rediss-wrong-pw")).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_never_shown(&service, wrong).await;
    assert_never_shown(&service, REDIS_PASSWORD).await;
}
