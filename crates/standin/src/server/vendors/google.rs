//! Google Cloud Vision `images:annotate` with `LABEL_DETECTION`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{auth_token, base64_decode, json as respond};
use crate::server::{AppState, AuthError, Route, Vendor, check_key, classify, decode, gate};

/// Images per request, as Google allows.
const MAX_IMAGES: usize = 16;
/// Largest JSON request Google accepts ("JSON request object size: 10 MB"; base64 images
/// count toward it).
const MAX_REQUEST_BYTES: usize = 10 << 20;
/// Labels per image unless `maxResults` says otherwise.
const DEFAULT_MAX_RESULTS: usize = 10;

pub(crate) struct Google;

fn error(
    status: StatusCode,
    code: u16,
    label: &str,
    message: &str,
    headers: &[(&'static str, String)],
) -> Response {
    respond(
        status,
        json!({"error": {"code": code, "message": message, "status": label}}),
        headers,
    )
}

impl Vendor for Google {
    const ROUTE: Route = Route::Google;
    const MAX_IMAGE_BYTES: u64 = 20_000_000;
    fn unauthorized(err: AuthError) -> Response {
        match err {
            AuthError::Missing => error(
                StatusCode::FORBIDDEN,
                403,
                "PERMISSION_DENIED",
                "The request is missing a valid API key.",
                &[],
            ),
            AuthError::Invalid => error(
                StatusCode::BAD_REQUEST,
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                &[],
            ),
        }
    }
    fn bad_request(message: &str) -> Response {
        error(
            StatusCode::BAD_REQUEST,
            400,
            "INVALID_ARGUMENT",
            message,
            &[],
        )
    }
    fn throttled(retry: u64, _injected: bool) -> Response {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service 'vision.googleapis.com'.",
            &[("retry-after", retry.to_string())],
        )
    }
    fn server_error() -> Response {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            &[],
        )
    }
}

#[derive(Deserialize)]
struct Annotate {
    requests: Vec<ImageRequest>,
}

#[derive(Deserialize)]
struct ImageRequest {
    #[serde(default)]
    image: Option<ImageContent>,
    #[serde(default)]
    features: Vec<Feature>,
}

#[derive(Deserialize)]
struct ImageContent {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Feature {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "maxResults", default)]
    max_results: Option<usize>,
}

/// `POST /v1/images:annotate?key=KEY` (or header `x-goog-api-key: KEY`, or
/// `Authorization: Bearer TOKEN`)
pub async fn annotate(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = query
        .get("key")
        .map(String::as_str)
        .or_else(|| super::header(&headers, "x-goog-api-key"))
        .or_else(|| auth_token(&headers, "Bearer"));
    if let Err(resp) = gate::<Google>(&state, check_key(&state.keys, presented)).await {
        return resp;
    }
    if body.len() > MAX_REQUEST_BYTES {
        return crate::server::reject::<Google>(
            &state,
            &format!("Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes."),
        );
    }
    let req: Annotate = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return crate::server::reject::<Google>(
                &state,
                &format!("Invalid JSON payload received. {e}"),
            );
        }
    };
    if req.requests.len() > MAX_IMAGES {
        return crate::server::reject::<Google>(
            &state,
            &format!(
                "Too many images per request: {} (at most {MAX_IMAGES}).",
                req.requests.len()
            ),
        );
    }
    // Per image: Ok(Some(max_results)) to classify, Ok(None) for no label feature, Err.
    let mut slots: Vec<Result<Option<usize>, Value>> = Vec::new();
    let mut images = Vec::new();
    for r in &req.requests {
        let Some(feature) = r.features.iter().find(|f| f.kind == "LABEL_DETECTION") else {
            slots.push(Ok(None));
            continue;
        };
        let bytes = r
            .image
            .as_ref()
            .and_then(|i| i.content.as_deref())
            .ok_or_else(|| "No image content.".to_string())
            .and_then(base64_decode);
        match bytes.and_then(|b| decode::<Google>(&b)) {
            Ok(img) => {
                images.push(img);
                slots.push(Ok(Some(feature.max_results.unwrap_or(DEFAULT_MAX_RESULTS))));
            }
            Err(_) => slots.push(Err(json!({"code": 3, "message": "Bad image data."}))),
        }
    }
    let top_k = slots
        .iter()
        .filter_map(|s| s.as_ref().ok().copied().flatten())
        .max()
        .unwrap_or(1);
    let mut labels = match classify::<Google>(&state, images, top_k).await {
        Ok(l) => l.into_iter(),
        Err(resp) => return resp,
    };
    let responses: Vec<Value> = slots
        .into_iter()
        .map(|slot| match slot {
            Ok(Some(k)) => {
                let annotations: Vec<Value> = labels
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .take(k)
                    .map(|s| json!({"mid": format!("/wn/{}", s.id), "description": s.label, "score": s.score, "topicality": s.score}))
                    .collect();
                json!({"labelAnnotations": annotations})
            }
            Ok(None) => json!({}),
            Err(err) => json!({"error": err}),
        })
        .collect();
    respond(StatusCode::OK, json!({"responses": responses}), &[])
}
