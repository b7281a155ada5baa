//! Hugging Face inference, image classification: raw bytes in, `[{label, score}]` out.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{auth_token, json as respond};
use crate::server::{AppState, AuthError, Route, Vendor, check_key, classify_one, gate};

/// Labels per image (the pipeline's default `top_k`).
const TOP_K: usize = 5;

pub(crate) struct HuggingFace;

impl Vendor for HuggingFace {
    const ROUTE: Route = Route::Huggingface;
    const MAX_IMAGE_BYTES: u64 = 10_000_000;
    fn unauthorized(_: AuthError) -> Response {
        respond(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Invalid credentials in Authorization header"}),
            &[],
        )
    }
    fn bad_request(message: &str) -> Response {
        respond(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("Could not read the image: {message}")}),
            &[],
        )
    }
    fn throttled(retry: u64, _injected: bool) -> Response {
        respond(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "Rate limit reached. You reached free usage limit (reset hourly)."}),
            &[("retry-after", retry.to_string())],
        )
    }
    fn server_error() -> Response {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "Model standin is currently loading", "estimated_time": 20.0}),
            &[],
        )
    }
}

/// `POST /models/{id}`
pub async fn classify_image(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Like Hugging Face's public endpoints, anonymous calls pass unless a key is required.
    let token = auth_token(&headers, "Bearer");
    let auth = match (token, &state.keys.key) {
        (None, None) => Ok(()),
        _ => check_key(&state.keys, token),
    };
    if let Err(resp) = gate::<HuggingFace>(&state, auth).await {
        return resp;
    }
    let (labels, _, _) = match classify_one::<HuggingFace>(&state, &body, TOP_K).await {
        Ok(out) => out,
        Err(resp) => return resp,
    };
    let out: Vec<_> = labels
        .iter()
        .map(|s| json!({"label": s.label, "score": s.score}))
        .collect();
    respond(StatusCode::OK, json!(out), &[])
}
