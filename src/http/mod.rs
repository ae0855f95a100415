//! The HTTP face: [`routes`] for the public listener (webhook, `/healthz`, status-only `/readyz`)
//! and [`admin_routes`] for the admin listener (`/metrics`, `/healthz`, `/readyz` with sink detail,
//! `/version`, `/schemas`).
//!
//! - [`config`]: `[server]` and `[signature]` settings.
//! - [`server`]: the listeners: accept loop, connection caps and timeouts, graceful stop.
//! - [`signature`]: HMAC verification over the raw body.
//! - `webhook`: the source's Authorization check -> body -> signature -> the source's and the
//!   pipeline's in-flight slots -> pipeline -> answer.
//! - `probes`: `/healthz`, `/readyz`, `/metrics`, `/version`, `/schemas`.
//! - `reply`: every answer as a small JSON body, and the one `recover`.
//!
//! Routing is one exact match on the path, each source's (see [`crate::sources`]): cheaper than a
//! chain of warp path filters, and it lets 404 and 405 answers carry the request id; every request gets an id (`X-Request-Id`, the
//! sender's when sane) and a trace context, and the webhook's log line names both.

pub mod config;
mod probes;
mod reply;
pub mod server;
pub mod signature;
mod webhook;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::Stream;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode};

use crate::config::Config;
use crate::contract::Schemas;
use crate::metrics as m;
use crate::pipeline::Pipeline;
use crate::sources::Sources;
use crate::trace::{TraceContext, TraceIdHex};
use reply::Reply;

pub use signature::{SignatureError, Verified, Verifier};

/// The request-id header, read from the request and set on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest sender-chosen request id kept (longer ones are replaced by a generated id).
const MAX_REQUEST_ID_LEN: usize = 64;

/// Everything a request needs, shared by all of them.
pub struct AppState {
    /// Contract + sinks + policy.
    pipeline: Pipeline,
    /// The schema sets in force (`GET /schemas`; reloaded by [`crate::contract::watch`]).
    schemas: Arc<Schemas>,
    /// The webhook sources by path (one, `default`, at `server.path` without `[[sources]]`), each
    /// with its credentials and its shares of the bounds.
    sources: Sources,
    /// `server.body_limit_bytes`.
    body_limit: u64,
    /// `server.body_read_timeout_ms`.
    body_read_timeout: Duration,
    /// One permit per body being read before its signature is checked (`server.max_unverified_bodies`).
    unverified: Semaphore,
    /// Renders `/metrics`; `None` answers 404 there.
    prometheus: Option<PrometheusHandle>,
    /// Set at shutdown: `/readyz` answers 503 so load balancers stop sending.
    draining: AtomicBool,
}

impl AppState {
    /// Builds the shared state from a validated config, loading its schema folders.
    pub fn new(
        config: &Config,
        pipeline: Pipeline,
        prometheus: Option<PrometheusHandle>,
    ) -> Result<AppState, String> {
        AppState::with_schemas(config, pipeline, prometheus, Arc::new(Schemas::load(config)?))
    }

    /// Builds the shared state from a validated config and its schema sets, already loaded.
    pub fn with_schemas(
        config: &Config,
        pipeline: Pipeline,
        prometheus: Option<PrometheusHandle>,
        schemas: Arc<Schemas>,
    ) -> Result<AppState, String> {
        let sources = Sources::new(config, &schemas)?;
        if !config.sources.is_empty() && !config.signature.secrets.is_empty() {
            tracing::warn!(
                "[signature] secrets (or CXONE_INGEST_WEBHOOK_SECRET) are not used: [[sources]] are configured, \
                 each with its own credentials"
            );
        }
        let server = &config.server;
        Ok(AppState {
            pipeline,
            schemas,
            sources,
            body_limit: server.body_limit_bytes,
            body_read_timeout: server.body_read_timeout(),
            unverified: Semaphore::new(server.max_unverified_bodies.clamp(1, Semaphore::MAX_PERMITS)),
            prometheus,
            draining: AtomicBool::new(false),
        })
    }

    /// The schema sets in force, for the reloader.
    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
    }

    /// The pipeline (to close its sinks at shutdown).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// From now on `/readyz` says 503 `shutting_down` (the listeners keep serving).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// Which listener a request came in on: it decides which endpoints exist and how much they say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// Reachable by CXone (through the load balancer): webhook, `/healthz`, status-only `/readyz`.
    Public,
    /// For operators and scrapers only: `/metrics`, `/healthz`, `/readyz` with each sink's state,
    /// `/version`, `/schemas`.
    Admin,
}

/// The public listener's surface as one warp filter (tests drive it with `warp::test::request()`):
/// the webhook, `/healthz` and `/readyz` (status only; load balancers probe the service port).
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response<Bytes>,), Error = Infallible> + Clone + Send + Sync + 'static {
    surface(state, Surface::Public)
}

/// The admin listener's surface: `/metrics`, `/healthz`, `/readyz` naming each sink's state,
/// `/version` (the build: version, git commit, dirty tree) and `/schemas` (the schema sets in force).
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
        .recover(reply::recover)
        .unify()
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
    let (request_id, request_id_from_sender) = request_id(headers);
    let source = if surface == Surface::Public { state.sources.find(path) } else { None };
    let reply = match (surface, path, source) {
        (Surface::Public, _, Some(source)) => {
            let reply = if method == Method::POST {
                let trace = TraceContext::continue_or_start(
                    headers.get("traceparent").map(|v| v.as_bytes()),
                    headers.get("tracestate").map(|v| v.as_bytes()),
                );
                let trace_id = trace.trace_id_hex();
                let arrival = webhook::Arrival {
                    headers,
                    request_id: &request_id,
                    request_id_from_sender,
                    started,
                    trace,
                };
                let reply = webhook::webhook(state, source, arrival, body).await;
                log_webhook(&reply, source.name(), &request_id, trace_id, started.elapsed());
                reply
            } else {
                Reply::method_not_allowed("webhook", "POST", &request_id)
            };
            m::count(m::SOURCE_REQUESTS, &[("source", source.name()), ("outcome", reply.outcome)], 1);
            reply
        }
        (_, "/healthz", _) => probe(method, "healthz", &request_id, || probes::liveness(state)),
        (_, "/readyz", _) => {
            probe(method, "readyz", &request_id, || probes::readiness(state, surface == Surface::Admin))
        }
        (Surface::Admin, "/metrics", _) => {
            probe(method, "metrics", &request_id, || probes::metrics_page(state, &request_id))
        }
        (Surface::Admin, "/version", _) => probe(method, "version", &request_id, probes::version),
        (Surface::Admin, "/schemas", _) => probe(method, "schemas", &request_id, || probes::schemas(state)),
        _ => Reply::error("unknown", StatusCode::NOT_FOUND, "not_found", "no such endpoint", &request_id),
    };
    let elapsed = started.elapsed();
    m::record_request(reply.route, reply.outcome, elapsed);
    if reply.route != "webhook" {
        tracing::debug!(
            request_id = %request_id,
            method = %method,
            route = reply.route,
            status = reply.status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
    }
    reply.into_response(&request_id)
}

/// One line per webhook request, naming the request and its trace; 5xx (nothing acknowledged,
/// the sender must retry) at warn. The ids are fields of the line rather than of a span around the
/// request: a span per request cost ~7 µs of CPU (docs/performance.md), and the few other lines
/// about one delivery name its `request_id` themselves.
fn log_webhook(reply: &Reply, source: &str, request_id: &str, trace_id: TraceIdHex, elapsed: Duration) {
    let latency_us = elapsed.as_micros() as u64;
    let (status, outcome) = (reply.status.as_u16(), reply.outcome);
    if reply.status.is_server_error() {
        let detail = reply.detail.as_deref().unwrap_or("");
        tracing::warn!(request_id = %request_id, %trace_id, source, status, outcome, latency_us, detail, "webhook");
    } else if let Some(failure) = reply.auth_failure {
        // The check that failed and why, never what was sent.
        let (check, reason) = (failure.check, failure.reason);
        tracing::info!(request_id = %request_id, %trace_id, source, status, outcome, check, reason, latency_us, "webhook");
    } else {
        tracing::info!(request_id = %request_id, %trace_id, source, status, outcome, latency_us, "webhook");
    }
}

fn probe(method: &Method, route: &'static str, request_id: &str, reply: impl FnOnce() -> Reply) -> Reply {
    if method == Method::GET || method == Method::HEAD {
        reply()
    } else {
        Reply::method_not_allowed(route, "GET, HEAD", request_id)
    }
}

/// The request's own id when it is sane (1-64 of `[A-Za-z0-9._-]`, then `true`), else a fresh
/// UUIDv7 (`false`).
pub fn request_id(headers: &HeaderMap) -> (String, bool) {
    if let Some(value) = headers.get(REQUEST_ID_HEADER) {
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if sane {
            if let Ok(id) = value.to_str() {
                return (id.to_owned(), true);
            }
        }
    }
    (uuid::Uuid::now_v7().to_string(), false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header map holding one header (for the unit tests of this module and `webhook`).
    pub(crate) fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn request_ids_are_taken_when_sane() {
        assert_eq!(request_id(&with("x-request-id", "abc-123_X.y")), ("abc-123_X.y".to_owned(), true));
        for bad in ["", "has space", "semi;colon", &"a".repeat(65)] {
            let (id, from_sender) = request_id(&with("x-request-id", bad));
            assert_ne!(id, bad);
            assert!(!from_sender);
            assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        }
    }
}
