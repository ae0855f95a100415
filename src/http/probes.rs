//! The operator's endpoints: `/healthz` (alive: every task that must live is running), `/readyz`
//! (each sink can take writes; status only on the public listener, with detail on the admin one)
//! `/metrics` (Prometheus text, admin listener only), `/version` (the build's version and git
//! commit, admin listener only) and `/schemas` (the schema sets in force, admin listener only).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use warp::http::StatusCode;

use super::AppState;
use super::reply::Reply;
use crate::sinks::Readiness;

/// Longest sink detail `/readyz` shows; SDK error chains run to several hundred characters.
const MAX_READINESS_DETAIL: usize = 160;

/// `/healthz`: 200 while every task the service needs is running; 503 naming the dead ones
/// otherwise, so the orchestrator restarts the process (a dead committer never comes back).
pub(super) fn liveness(state: &AppState) -> Reply {
    let dead = state.pipeline.dead_tasks();
    if dead.is_empty() {
        return Reply::json("healthz", "ok", StatusCode::OK, br#"{"status":"ok"}"#.to_vec());
    }
    let body = serde_json::json!({ "status": "unhealthy", "dead_tasks": dead });
    Reply::json("healthz", "unhealthy", StatusCode::SERVICE_UNAVAILABLE, body.to_string().into_bytes())
}

/// `/readyz`: the status alone on the public listener; each sink's state (why it is not ready,
/// shortened, e-mail addresses redacted) with `detail`, on the admin listener.
pub(super) fn readiness(state: &AppState, detail: bool) -> Reply {
    if state.draining.load(Ordering::Acquire) {
        let body = serde_json::json!({ "status": "shutting_down" });
        return Reply::json(
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
    let (status, label) =
        if all_ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not_ready") };
    let body = if detail {
        let notes: serde_json::Map<String, serde_json::Value> = state
            .pipeline
            .notes()
            .into_iter()
            .map(|(name, text)| (name.to_owned(), serde_json::Value::String(text)))
            .collect();
        serde_json::json!({ "status": label, "sinks": sinks, "notes": notes })
    } else {
        serde_json::json!({ "status": label })
    };
    Reply::json("readyz", label, status, body.to_string().into_bytes())
}

/// `/metrics`: the Prometheus text format, or 404 when metrics are off.
pub(super) fn metrics_page(state: &AppState, request_id: &str) -> Reply {
    match &state.prometheus {
        Some(handle) => Reply {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: Bytes::from(handle.render()),
            ..Reply::json("metrics", "ok", StatusCode::OK, Vec::new())
        },
        None => {
            Reply::error("metrics", StatusCode::NOT_FOUND, "not_found", "metrics are not enabled", request_id)
        }
    }
}

/// `/version`: the build this process runs ([`crate::build_info::json`]), the same as
/// `cxone-ingest --version` and the `cxone_ingest_build_info` gauge's labels.
pub(super) fn version() -> Reply {
    Reply::json("version", "ok", StatusCode::OK, crate::build_info::json().to_string().into_bytes())
}

/// `/schemas`: every schema set in force (its folder or `built-in`, the sources it judges, when it
/// was loaded, whether the latest reload failed) with each schema's events, `$id`, version, file,
/// sha256 and whether a generated type produces its events.
pub(super) fn schemas(state: &AppState) -> Reply {
    Reply::json("schemas", "ok", StatusCode::OK, state.schemas.describe().to_string().into_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
