//! One file per vendor: request parsing, credentials, response and error shapes.
//!
//! The stand-in keeps its own wire types (it does not share them with the client
//! adapters), so each side is pinned to the vendors' documented formats, not to the other.

pub mod aws;
pub mod azure;
pub mod clarifai;
pub mod google;
pub mod huggingface;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A JSON response with a status code and extra headers.
pub(crate) fn json(
    status: StatusCode,
    body: Value,
    headers: &[(&'static str, String)],
) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    for (k, v) in headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(*k, v);
        }
    }
    resp
}

/// A header's value as text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token after `scheme ` in the Authorization header.
pub(crate) fn auth_token<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    header(headers, "authorization").and_then(|v| {
        let (s, token) = v.split_once(' ')?;
        s.eq_ignore_ascii_case(scheme).then_some(token)
    })
}

/// Decodes standard base64.
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("invalid base64: {e}"))
}

/// A short random-looking request id (deterministic per process is fine).
pub(crate) fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        n.wrapping_mul(0x9e37_79b9),
        n
    )
}
