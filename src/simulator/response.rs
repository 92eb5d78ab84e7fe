//! The simulator's answers: Kapture's JSON bodies, 429s with `Retry-After`, a proxy's HTML
//! error page, and a connection dropped without an answer.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Marks a response whose connection must be closed without sending it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// A JSON body with the given status.
pub(super) fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("a JSON value always serializes");
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Kapture's failure body: `{"status":"failed","message":...}`.
pub(super) fn failed(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "status": "failed", "message": message }))
}

/// A 429 whose `Retry-After` rounds the wait up to whole seconds (at least one).
pub(super) fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = failed(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests, retry later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// The HTML error page a proxy in front of Kapture would give for a 5xx.
pub(super) fn html_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = format!(
        "<html><head><title>{code} {reason}</title></head><body><center><h1>{code} {reason}\
         </h1></center><hr><center>nginx</center></body></html>\n",
        code = status.as_u16()
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// A response the server closes the connection on instead of sending.
pub(super) fn drop_connection() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}
