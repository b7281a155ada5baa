//! AWS Rekognition `DetectLabels`, with SigV4 verification.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{base64_decode, header, json as respond};
use crate::server::{AppState, AuthError, Keys, Route, Vendor, classify, decode, gate, reject};
use crate::sigv4;

const TARGET: &str = "RekognitionService.DetectLabels";

pub(crate) struct Aws;

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    respond(status, json!({"__type": kind, "message": message}), &[])
}

impl Vendor for Aws {
    const ROUTE: Route = Route::Aws;
    const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
    fn unauthorized(err: AuthError) -> Response {
        match err {
            AuthError::Missing => error(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            AuthError::Invalid => error(
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ),
        }
    }
    fn bad_request(message: &str) -> Response {
        if message.contains("too large") {
            error(
                StatusCode::BAD_REQUEST,
                "ImageTooLargeException",
                "Image size is too large.",
            )
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "InvalidImageFormatException",
                "Request has invalid image format",
            )
        }
    }
    fn throttled(_retry: u64, injected: bool) -> Response {
        if injected {
            error(
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "Provisioned Rate exceeded",
            )
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded",
            )
        }
    }
    fn server_error() -> Response {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error",
        )
    }
}

/// Verifies the request's SigV4 signature against the configured key pair.
fn verify(keys: &Keys, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Result<(), AuthError> {
    let auth = header(headers, "authorization")
        .and_then(sigv4::parse_authorization)
        .ok_or(AuthError::Missing)?;
    let amz_date = header(headers, "x-amz-date").ok_or(AuthError::Invalid)?;
    if auth.key_id.is_empty()
        || auth.service != "rekognition"
        || !auth.signed_headers.iter().any(|h| h == "host")
    {
        return Err(AuthError::Invalid);
    }
    let body_hash = sigv4::sha256_hex(body);
    if let Some(claimed) = header(headers, "x-amz-content-sha256")
        && claimed != "UNSIGNED-PAYLOAD"
        && claimed != body_hash
    {
        return Err(AuthError::Invalid);
    }
    let Some((id, secret)) = &keys.aws else {
        return Ok(());
    };
    if &auth.key_id != id {
        return Err(AuthError::Invalid);
    }
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let canonical = sigv4::canonical_request(
        "POST",
        uri.path(),
        uri.query().unwrap_or(""),
        &pairs,
        &auth.signed_headers,
        &body_hash,
    );
    let expected = sigv4::signature(secret, &auth, amz_date, &canonical);
    if sigv4::signatures_match(&expected, &auth.signature) {
        Ok(())
    } else {
        Err(AuthError::Invalid)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DetectLabels {
    image: Option<ImageField>,
    max_labels: Option<usize>,
    min_confidence: Option<f32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageField {
    bytes: Option<String>,
}

/// `POST /` with `X-Amz-Target: RekognitionService.DetectLabels`
pub async fn detect_labels(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = verify(&state.keys, &headers, &uri, &body);
    if let Err(resp) = gate::<Aws>(&state, auth).await {
        return resp;
    }
    if header(&headers, "x-amz-target") != Some(TARGET) {
        state
            .stats
            .record(Route::Aws, crate::server::stats::Event::Rejected);
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "The stand-in serves DetectLabels only",
        );
    }
    let req: DetectLabels = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            state
                .stats
                .record(Route::Aws, crate::server::stats::Event::Rejected);
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
            );
        }
    };
    let Some(b64) = req.image.and_then(|i| i.bytes) else {
        state
            .stats
            .record(Route::Aws, crate::server::stats::Event::Rejected);
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "Request has invalid parameters",
        );
    };
    let image = match base64_decode(&b64).and_then(|b| decode::<Aws>(&b)) {
        Ok(img) => img,
        Err(msg) => return reject::<Aws>(&state, &msg),
    };
    let max = req.max_labels.unwrap_or(1000).max(1);
    // AWS's default MinConfidence is 55 (percent).
    let min = req.min_confidence.unwrap_or(55.0);
    let labels = match classify::<Aws>(&state, vec![image], max.min(50)).await {
        Ok(mut l) => l.pop().unwrap_or_default(),
        Err(resp) => return resp,
    };
    let labels: Vec<_> = labels
        .into_iter()
        .map(|s| (s.label, 100.0 * s.score))
        .filter(|(_, c)| *c >= min)
        .take(max)
        .map(|(name, c)| json!({"Name": name, "Confidence": c, "Instances": [], "Parents": [], "Aliases": [], "Categories": []}))
        .collect();
    respond(
        StatusCode::OK,
        json!({"Labels": labels, "LabelModelVersion": "3.0"}),
        &[],
    )
}
