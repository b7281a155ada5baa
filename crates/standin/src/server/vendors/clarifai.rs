//! Clarifai model outputs (`/v2/users/{u}/apps/{a}/models/{m}/outputs`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{auth_token, base64_decode, json as respond, request_id};
use crate::server::{AppState, AuthError, Route, Vendor, check_key, classify, decode, gate};

/// Inputs per request, as Clarifai allows.
const MAX_INPUTS: usize = 128;
/// Concepts per output (Clarifai's default).
const TOP_K: usize = 20;

pub(crate) struct Clarifai;

fn status(code: u32, description: &str) -> Value {
    json!({"code": code, "description": description, "req_id": request_id()})
}

impl Vendor for Clarifai {
    const ROUTE: Route = Route::Clarifai;
    const MAX_IMAGE_BYTES: u64 = 20_000_000;
    fn unauthorized(err: AuthError) -> Response {
        let s = match err {
            AuthError::Missing => status(11009, "API key not found"),
            AuthError::Invalid => {
                status(11008, "Invalid API key or Invalid API key/application pair")
            }
        };
        respond(StatusCode::UNAUTHORIZED, json!({"status": s}), &[])
    }
    fn bad_request(message: &str) -> Response {
        let mut s = status(11102, "Invalid request");
        s["details"] = json!(message);
        respond(StatusCode::BAD_REQUEST, json!({"status": s}), &[])
    }
    fn throttled(retry: u64, _injected: bool) -> Response {
        respond(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": status(11005, "Making too many requests")}),
            &[("retry-after", retry.to_string())],
        )
    }
    fn server_error() -> Response {
        respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": status(10020, "Failure")}),
            &[],
        )
    }
}

#[derive(Deserialize)]
struct Outputs {
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    data: Option<InputData>,
}

#[derive(Deserialize)]
struct InputData {
    #[serde(default)]
    image: Option<InputImage>,
}

#[derive(Deserialize)]
struct InputImage {
    #[serde(default)]
    base64: Option<String>,
}

/// `POST /v2/users/{user}/apps/{app}/models/{model}/outputs`
pub async fn outputs(
    State(state): State<Arc<AppState>>,
    Path((_user, _app, model)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(state, model, headers, body).await
}

/// `POST /v2/models/{model}/outputs` (app-scoped key form)
pub async fn outputs_short(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(state, model, headers, body).await
}

async fn run(state: Arc<AppState>, model: String, headers: HeaderMap, body: Bytes) -> Response {
    let auth = check_key(&state.keys, auth_token(&headers, "Key"));
    if let Err(resp) = gate::<Clarifai>(&state, auth).await {
        return resp;
    }
    let req: Outputs = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return crate::server::reject::<Clarifai>(&state, &format!("malformed request: {e}"));
        }
    };
    if req.inputs.is_empty() || req.inputs.len() > MAX_INPUTS {
        return crate::server::reject::<Clarifai>(
            &state,
            &format!("between 1 and {MAX_INPUTS} inputs per request"),
        );
    }
    let mut decoded = Vec::new();
    let mut images = Vec::new();
    for input in &req.inputs {
        let b64 = input
            .data
            .as_ref()
            .and_then(|d| d.image.as_ref())
            .and_then(|i| i.base64.as_deref());
        match b64
            .ok_or_else(|| "no image".to_string())
            .and_then(base64_decode)
            .and_then(|b| decode::<Clarifai>(&b))
        {
            Ok(img) => {
                images.push(img);
                decoded.push(true);
            }
            Err(_) => decoded.push(false),
        }
    }
    let good = images.len();
    let mut labels = match classify::<Clarifai>(&state, images, TOP_K).await {
        Ok(l) => l.into_iter(),
        Err(resp) => return resp,
    };
    let outputs: Vec<Value> = decoded
        .iter()
        .map(|ok| {
            if *ok {
                let concepts: Vec<Value> = labels
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| json!({"id": s.id, "name": s.label, "value": s.score, "app_id": "main"}))
                    .collect();
                json!({"id": request_id(), "status": status(10000, "Ok"), "model": {"id": model}, "data": {"concepts": concepts}})
            } else {
                json!({"id": request_id(), "status": status(30300, "Image decoding failed"), "model": {"id": model}, "data": {}})
            }
        })
        .collect();
    let (code, top) = match (good, decoded.len()) {
        (0, _) => (StatusCode::BAD_REQUEST, status(10020, "Failure")),
        (g, n) if g < n => (StatusCode::OK, status(10010, "Mixed Success")),
        _ => (StatusCode::OK, status(10000, "Ok")),
    };
    respond(code, json!({"status": top, "outputs": outputs}), &[])
}
