//! Azure AI Vision: Image Analysis 4.0 (`imageanalysis:analyze`, tags) and v3.2 (`/tag`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::model::Scored;

use super::{header, json as respond, request_id};
use crate::server::{
    AppState, AuthError, Route, Vendor, check_key, classify_one, gate, model_version,
};

/// Tags returned per image.
const TOP_K: usize = 10;

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    inner: Option<(&str, &str)>,
    headers: &[(&'static str, String)],
) -> Response {
    let mut err = json!({"code": code, "message": message});
    if let Some((c, m)) = inner {
        err["innererror"] = json!({"code": c, "message": m});
    }
    respond(status, json!({ "error": err }), headers)
}

macro_rules! azure_shapes {
    ($name:ident, $route:expr, $max:expr) => {
        pub(crate) struct $name;
        impl Vendor for $name {
            const ROUTE: Route = $route;
            const MAX_IMAGE_BYTES: u64 = $max;
            fn unauthorized(_: AuthError) -> Response {
                error(
                    StatusCode::UNAUTHORIZED,
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
                    None,
                    &[],
                )
            }
            fn bad_request(message: &str) -> Response {
                error(StatusCode::BAD_REQUEST, "InvalidRequest", "Image format is not valid.", Some(("InvalidImageFormat", message)), &[])
            }
            fn throttled(retry: u64, _injected: bool) -> Response {
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "429",
                    &format!("Rate limit is exceeded. Try again in {retry} seconds."),
                    None,
                    &[("retry-after", retry.to_string())],
                )
            }
            fn server_error() -> Response {
                error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "An unexpected error occurred.", None, &[])
            }
        }
    };
}

azure_shapes!(AzureV4, Route::Azure, 20_000_000);
azure_shapes!(AzureV32, Route::AzureV32, 4_000_000);

/// Tags as both API versions list them: `[{"name", "confidence"}]`.
fn tag_list(labels: &[Scored]) -> Vec<Value> {
    labels
        .iter()
        .map(|s| json!({"name": s.label, "confidence": s.score}))
        .collect()
}

fn key(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    header(headers, "ocp-apim-subscription-key")
        .map(str::to_owned)
        .or_else(|| query.get("subscription-key").cloned())
}

/// `POST /computervision/imageanalysis:analyze?api-version=2023-10-01&features=tags`
pub async fn analyze_v4(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = check_key(&state.keys, key(&headers, &query).as_deref());
    if let Err(resp) = gate::<AzureV4>(&state, auth).await {
        return resp;
    }
    if query.get("api-version").is_none_or(|v| v.is_empty()) {
        state
            .stats
            .record(Route::Azure, crate::server::stats::Event::Rejected);
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The api-version query parameter is missing.",
            Some(("InvalidApiVersion", "api-version is required")),
            &[],
        );
    }
    let features = query
        .get("features")
        .map(|f| f.to_ascii_lowercase())
        .unwrap_or_default();
    if !features.split(',').any(|f| f.trim() == "tags") {
        state
            .stats
            .record(Route::Azure, crate::server::stats::Event::Rejected);
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The stand-in supports features=tags only.",
            Some(("NotSupportedVisualFeature", "features must include tags")),
            &[],
        );
    }
    let (labels, w, h) = match classify_one::<AzureV4>(&state, &body, TOP_K).await {
        Ok(out) => out,
        Err(resp) => return resp,
    };
    respond(
        StatusCode::OK,
        json!({
            "modelVersion": model_version(&state),
            "metadata": {"width": w, "height": h},
            "tagsResult": {"values": tag_list(&labels)},
        }),
        &[],
    )
}

/// `POST /vision/v3.2/tag`
pub async fn tag_v32(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = check_key(&state.keys, key(&headers, &query).as_deref());
    if let Err(resp) = gate::<AzureV32>(&state, auth).await {
        return resp;
    }
    let (labels, w, h) = match classify_one::<AzureV32>(&state, &body, TOP_K).await {
        Ok(out) => out,
        Err(resp) => return resp,
    };
    respond(
        StatusCode::OK,
        json!({
            "tags": tag_list(&labels),
            "requestId": request_id(),
            "metadata": {"height": h, "width": w, "format": "Png"},
            "modelVersion": model_version(&state),
        }),
        &[],
    )
}
