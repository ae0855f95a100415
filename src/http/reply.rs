//! What every route answers before it becomes a response: [`Reply`] (status, JSON body, the labels
//! logs and metrics use), the shared JSON error shape, and the one `recover` for warp rejections.

use std::convert::Infallible;

use bytes::Bytes;
use serde::Serialize;
use warp::http::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use warp::http::{HeaderName, Response, StatusCode};

use super::REQUEST_ID_HEADER;
use crate::metrics as m;

/// One answer before it becomes a response: what the sender sees and what we log and count.
pub(super) struct Reply {
    /// Route label for logs and metrics.
    pub route: &'static str,
    /// Outcome label for logs and metrics.
    pub outcome: &'static str,
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Seconds, on 503.
    pub retry_after: Option<u64>,
    /// On 405: the methods the path takes.
    pub allow: Option<&'static str>,
    /// Close the connection after answering (the rest of an oversized or slow body is never read).
    pub close: bool,
    /// Why a write was not acknowledged (503 from a sink), for the request's log line only.
    pub detail: Option<String>,
    /// On 401: which check failed and why, for the request's log line only.
    pub auth_failure: Option<crate::sources::Failure>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(route: &'static str, outcome: &'static str, status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            route,
            outcome,
            status,
            content_type: "application/json",
            body: Bytes::from(body),
            retry_after: None,
            allow: None,
            close: false,
            detail: None,
            auth_failure: None,
        }
    }

    /// The JSON error shape: `{"status":"error","request_id","error","message"}`; `error` is also
    /// the outcome label.
    pub fn error(
        route: &'static str,
        status: StatusCode,
        error: &'static str,
        message: &str,
        request_id: &str,
    ) -> Reply {
        Reply::json(route, error, status, error_json(request_id, error, message))
    }

    /// 405 naming the methods that work.
    pub fn method_not_allowed(route: &'static str, allow: &'static str, request_id: &str) -> Reply {
        let message = format!("use {allow}");
        let mut reply =
            Reply::error(route, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &message, request_id);
        reply.allow = Some(allow);
        reply
    }

    /// The HTTP response, with the request id header on every answer.
    pub fn into_response(self, request_id: &str) -> Response<Bytes> {
        let mut response = Response::new(self.body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
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

/// Whatever warp itself rejects (it should not: routing is done by hand) still gets the JSON shape.
pub(super) async fn recover(rejection: warp::Rejection) -> Result<Response<Bytes>, Infallible> {
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
    let reply = Reply::error("unknown", status, error, "request rejected", &request_id);
    Ok(reply.into_response(&request_id))
}
