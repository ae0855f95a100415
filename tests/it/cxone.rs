//! CXone OAuth token manager and `cxone token` against a local token endpoint that counts, delays and fails on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxone_ingest::cxone::{ClientSecret, CxoneConfig, CxoneError, TokenManager};
use warp::Filter;

use crate::support::poll_until;

const SECRET: &str = "s3cr3t-client-secret/+=";

/// What the fake endpoint answers to one request.
struct Reply {
    delay: Duration,
    status: u16,
    body: String,
}

impl Reply {
    /// A 200 token answer; the token is `token-{n}` so tests can tell refreshes apart.
    fn token(n: usize, expires_in: u64) -> Reply {
        let body = serde_json::json!({
            "access_token": format!("token-{n}"),
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "data-actions:read data-actions:write event-streaming:read",
        });
        Reply { delay: Duration::ZERO, status: 200, body: body.to_string() }
    }

    fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply { delay: Duration::ZERO, status, body: body.into() }
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A token endpoint on 127.0.0.1:0 whose answers a test scripts by request number (1-based).
struct TokenServer {
    url: String,
    requests: Arc<AtomicUsize>,
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl TokenServer {
    async fn start<S>(script: S) -> TokenServer
    where
        S: Fn(usize, &HashMap<String, String>) -> Reply + Send + Sync + 'static,
    {
        let requests = Arc::new(AtomicUsize::new(0));
        let forms = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let route = {
            let (requests, forms) = (requests.clone(), forms.clone());
            warp::post().and(warp::path!("oauth2" / "token")).and(warp::body::form()).then(
                move |form: HashMap<String, String>| {
                    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                    let reply = script(n, &form);
                    forms.lock().unwrap().push(form);
                    async move {
                        tokio::time::sleep(reply.delay).await;
                        let status = warp::http::StatusCode::from_u16(reply.status).unwrap();
                        warp::reply::with_header(
                            warp::reply::with_status(reply.body, status),
                            "content-type",
                            "application/json",
                        )
                    }
                },
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        TokenServer { url: format!("http://{addr}/oauth2/token"), requests, forms }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn config(&self) -> CxoneConfig {
        CxoneConfig {
            token_url: Some(self.url.clone()),
            client_id: "test-client".to_owned(),
            client_secret: Some(ClientSecret::new(SECRET)),
            retry_backoff_ms: 10,
            ..CxoneConfig::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_callers_make_one_token_request() {
    // The answer is slow so that all callers arrive while the one request is in flight.
    let server = TokenServer::start(|n, _| Reply::token(n, 3600).after(Duration::from_millis(500))).await;
    let manager = Arc::new(TokenManager::new(&server.config()).unwrap());

    let callers: Vec<_> = (0..100)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.token().await })
        })
        .collect();
    let tokens = futures::future::join_all(callers).await;

    assert_eq!(server.requests(), 1, "100 concurrent callers must share one token request");
    for token in tokens {
        assert_eq!(token.unwrap().unwrap().secret(), "token-1");
    }
    let forms = server.forms.lock().unwrap();
    assert_eq!(forms[0]["grant_type"], "client_credentials");
    assert_eq!(forms[0]["client_id"], "test-client");
    assert_eq!(forms[0]["client_secret"], SECRET);
    assert_eq!(forms[0]["scope"], "data-actions:read data-actions:write event-streaming:read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_cached_then_refreshed_before_it_expires() {
    // 6 s tokens with the default 300 s buffer: the buffer is clamped to half the lifetime, refresh after ~3 s.
    let server = TokenServer::start(|n, _| Reply::token(n, 6)).await;
    let manager = TokenManager::new(&server.config()).unwrap();

    let first = manager.token().await.unwrap();
    assert_eq!(first.secret(), "token-1");
    assert_eq!(manager.token().await.unwrap().secret(), "token-1", "a fresh token comes from the cache");
    assert_eq!(server.requests(), 1);

    let second = poll_until(Duration::from_secs(20), || async {
        let token = manager.token().await.unwrap();
        (token.secret() != first.secret()).then_some(token)
    })
    .await
    .expect("the token was never refreshed");
    assert_eq!(second.secret(), "token-2");
    assert!(first.valid_for() > Duration::ZERO, "the refresh must happen while the old token is still valid");
    assert!(second.expires_at() > first.expires_at());
    assert_eq!(server.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_give_a_clear_error_with_cxone_text_and_no_secret() {
    // The endpoint echoes the secret it received, raw and form-encoded, to prove errors scrub it.
    let server = TokenServer::start(|_, form| {
        let echoed = &form["client_secret"];
        Reply::status(
            401,
            format!(
                r#"{{"error":"invalid_client","error_description":"Client authentication failed ({echoed} / {})"}}"#,
                "s3cr3t-client-secret%2F%2B%3D"
            ),
        )
        .after(Duration::from_millis(500))
    })
    .await;
    let manager = Arc::new(TokenManager::new(&server.config()).unwrap());

    let callers: Vec<_> = (0..20)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.token().await })
        })
        .collect();
    let results = futures::future::join_all(callers).await;

    assert_eq!(server.requests(), 1, "4xx is not retried, and waiting callers share the one failure");
    for result in results {
        let err = result.unwrap().unwrap_err();
        assert!(matches!(err, CxoneError::Rejected { status: 401, .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("401"), "{message}");
        assert!(message.contains("invalid_client"), "{message}");
        assert!(message.contains("Client authentication failed"), "{message}");
        assert!(message.contains(&server.url), "{message}");
        assert!(!message.contains("s3cr3t"), "secret leaked: {message}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "secret leaked in Debug");
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_a_token_comes() {
    let server = TokenServer::start(|n, _| match n {
        1 => Reply::status(500, "upstream down"),
        2 => Reply::status(503, "still down"),
        n => Reply::token(n, 3600),
    })
    .await;
    let manager = TokenManager::new(&server.config()).unwrap();

    let token = manager.token().await.unwrap();
    assert_eq!(token.secret(), "token-3");
    assert_eq!(server.requests(), 3);
}

#[test]
fn token_requests_are_counted_by_outcome() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // A local recorder is per thread, so the whole exchange runs on this thread.
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let server = TokenServer::start(|n, _| match n {
                1 => Reply::status(500, "upstream down"),
                n => Reply::token(n, 3600),
            })
            .await;
            TokenManager::new(&server.config()).unwrap().token().await.unwrap();
        });
    });
    let rendered = handle.render();
    assert!(
        rendered.contains(r#"cxone_ingest_cxone_token_requests_total{outcome="server_error"} 1"#),
        "{rendered}"
    );
    assert!(rendered.contains(r#"cxone_ingest_cxone_token_requests_total{outcome="ok"} 1"#), "{rendered}");
    assert!(rendered.contains("cxone_ingest_cxone_token_request_duration_seconds"), "{rendered}");
}

#[tokio::test]
async fn retry_budget_exhausted_reports_attempts_and_the_last_answer() {
    let server = TokenServer::start(|n, _| Reply::status(502, format!("bad gateway #{n}"))).await;
    let manager = TokenManager::new(&CxoneConfig { max_retries: 2, ..server.config() }).unwrap();

    let err = manager.token().await.unwrap_err();
    assert_eq!(server.requests(), 3);
    assert!(
        matches!(&err, CxoneError::GaveUp { attempts: 3, last } if matches!(**last, CxoneError::ServerError { status: 502, .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad gateway #3"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_slow_endpoint_times_out_and_the_retry_gets_the_token() {
    let server = TokenServer::start(|n, _| match n {
        1 => Reply::token(n, 3600).after(Duration::from_secs(60)),
        n => Reply::token(n, 3600),
    })
    .await;
    let manager =
        TokenManager::new(&CxoneConfig { timeout_secs: 1, max_retries: 1, ..server.config() }).unwrap();

    let token = manager.token().await.unwrap();
    assert_eq!(token.secret(), "token-2");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_slow_endpoint_without_retries_is_a_timeout_error() {
    let server = TokenServer::start(|n, _| Reply::token(n, 3600).after(Duration::from_secs(60))).await;
    let manager =
        TokenManager::new(&CxoneConfig { timeout_secs: 1, max_retries: 0, ..server.config() }).unwrap();

    let err = manager.token().await.unwrap_err();
    assert!(matches!(err, CxoneError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_network_error_after_retries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = CxoneConfig {
        token_url: Some(format!("http://127.0.0.1:{port}/oauth2/token")),
        client_id: "test-client".to_owned(),
        client_secret: Some(ClientSecret::new(SECRET)),
        max_retries: 1,
        retry_backoff_ms: 10,
        ..CxoneConfig::default()
    };
    let err = TokenManager::new(&config).unwrap().token().await.unwrap_err();
    assert!(
        matches!(&err, CxoneError::GaveUp { attempts: 2, last } if matches!(**last, CxoneError::Network { .. })),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cr3t"));
}

#[tokio::test]
async fn a_success_without_a_token_is_an_invalid_response() {
    let server = TokenServer::start(|_, _| Reply::status(200, "<html>login page</html>")).await;
    let err = TokenManager::new(&server.config()).unwrap().token().await.unwrap_err();
    assert!(matches!(err, CxoneError::InvalidResponse { status: 200, .. }), "{err:?}");
    assert!(err.to_string().contains("login page"), "{err}");
    assert_eq!(server.requests(), 1);
}

#[test]
fn missing_settings_are_reported_by_name() {
    let err = TokenManager::new(&CxoneConfig::default()).err().unwrap().to_string();
    assert!(err.contains("CXONE_INGEST_CXONE_ORG"), "{err}");
    let no_secret =
        CxoneConfig { org: "acme".to_owned(), client_id: "id".to_owned(), ..CxoneConfig::default() };
    let err = TokenManager::new(&no_secret).err().unwrap().to_string();
    assert!(err.contains("CXONE_INGEST_CXONE_CLIENT_SECRET"), "{err}");
}

/// Runs the real binary with a clean `CXONE_INGEST_*` environment plus `env`.
async fn cxone_ingest(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cxone-ingest"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CXONE_INGEST_")) {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().copied()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output()).await.unwrap().unwrap()
}

#[tokio::test]
async fn cli_token_prints_the_expiry_and_never_the_token_or_secret() {
    let server = TokenServer::start(|_, _| {
        Reply::status(
            200,
            r#"{"access_token":"eyJ-the-actual-token","token_type":"Bearer","expires_in":7200}"#,
        )
    })
    .await;

    let output = cxone_ingest(
        &["cxone", "token", "--token-url", &server.url, "--client-id", "cli-client"],
        &[("CXONE_INGEST_CXONE_CLIENT_SECRET", SECRET)],
    )
    .await;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("expires_at: "), "{stdout}");
    assert!(stdout.contains("valid_for_secs: "), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("eyJ-the-actual-token"), "token printed: {text}");
        assert!(!text.contains("s3cr3t"), "secret printed: {text}");
    }
    assert_eq!(server.requests(), 1);
    let forms = server.forms.lock().unwrap();
    assert_eq!(forms[0]["client_id"], "cli-client");
    assert_eq!(forms[0]["client_secret"], SECRET);
}

#[tokio::test]
async fn cli_token_reports_a_rejection_with_cxone_text_and_exit_1() {
    let server = TokenServer::start(|_, _| {
        Reply::status(401, r#"{"error":"invalid_client","error_description":"bad creds"}"#)
    })
    .await;

    let output = cxone_ingest(
        &["cxone", "token", "--client-id", "cli-client"],
        &[("CXONE_INGEST_CXONE_TOKEN_URL", &server.url), ("CXONE_INGEST_CXONE_CLIENT_SECRET", SECRET)],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401") && stderr.contains("invalid_client"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("s3cr3t"));
}

#[tokio::test]
async fn cli_token_without_an_org_names_the_setting_and_exits_2() {
    let output = cxone_ingest(&["cxone", "token", "--client-id", "cli-client"], &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CXONE_INGEST_CXONE_ORG"), "{stderr}");
}
