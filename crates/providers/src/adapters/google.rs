//! Google Cloud Vision `images:annotate` with `LABEL_DETECTION`: up to 16 images per
//! request as base64 JSON; the key goes in the `x-goog-api-key` header (never in the URL,
//! where it would leak into error messages and proxy logs). `responses[i]` holds
//! `labelAnnotations` (`{mid, description, score, topicality}`; absent when Google found
//! nothing) or a per-image `error` with a gRPC code, inside an HTTP 200.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{Failure, ImageResult, Wire, WireRequest, base64, labels_from, ok_json};
use crate::Result;
use crate::credentials::Secret;
use crate::definition::Options;

/// The Google adapter.
pub struct Google {
    url: String,
    key: Secret,
    max_results: u32,
}

impl Google {
    /// `endpoint` is the API's base URL (`https://vision.googleapis.com`).
    pub fn new(endpoint: String, key: Secret, options: &Options) -> Google {
        Google {
            url: format!("{endpoint}/v1/images:annotate"),
            key,
            max_results: options.max_labels,
        }
    }
}

/// A per-image error's gRPC code: 8 (RESOURCE_EXHAUSTED) throttles; 4, 10, 13, 14 are
/// transient; the rest (3 INVALID_ARGUMENT, 7 PERMISSION_DENIED, …) are fatal.
fn image_failure(err: &Value) -> Failure {
    let code = err.get("code").and_then(Value::as_i64).unwrap_or(2);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_owned();
    match code {
        8 => Failure::Throttled {
            retry_after: None,
            message,
        },
        4 | 10 | 13 | 14 => Failure::Transient {
            retry_after: None,
            message,
        },
        _ => Failure::Fatal {
            status: None,
            message: format!("image rejected (code {code}): {message}"),
        },
    }
}

impl Wire for Google {
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest> {
        let requests: Vec<Value> = images
            .iter()
            .map(|png| {
                json!({
                    "image": {"content": base64(png)},
                    "features": [{"type": "LABEL_DETECTION", "maxResults": self.max_results}],
                })
            })
            .collect();
        Ok(WireRequest {
            url: self.url.clone(),
            headers: vec![
                ("x-goog-api-key".into(), self.key.expose().to_owned()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: json!({ "requests": requests }).to_string().into_bytes(),
        })
    }

    fn parse(
        &self,
        n: usize,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<Vec<ImageResult>, Failure> {
        let v = ok_json(status, headers, body)?;
        let responses = v
            .get("responses")
            .and_then(Value::as_array)
            .ok_or_else(|| Failure::Transient {
                retry_after: None,
                message: "response without \"responses\"".into(),
            })?;
        if responses.len() != n {
            return Err(Failure::Transient {
                retry_after: None,
                message: format!("{} responses for {n} images", responses.len()),
            });
        }
        Ok(responses
            .iter()
            .map(|r| match r.get("error") {
                Some(err) => Err(image_failure(err)),
                None => labels_from(r.get("labelAnnotations"), "description", "score"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn google() -> Google {
        Google::new("https://g".into(), Secret::new("k"), &Options::default())
    }

    #[test]
    fn first_label_is_google_order_not_top_score() {
        // Google orders by topicality; the first label need not have the top score. The
        // label counted is the first (the Denoised Smoothing paper's rule).
        let body = br#"{"responses":[
            {"labelAnnotations":[{"mid":"/m/1","description":"Pattern","score":0.71,"topicality":0.9},
                                 {"mid":"/m/2","description":"Window","score":0.93,"topicality":0.5}]},
            {},
            {"error":{"code":3,"message":"Bad image data."}},
            {"error":{"code":14,"message":"try again"}}]}"#;
        let out = google().parse(4, 200, &HeaderMap::new(), body).unwrap();
        assert_eq!(out[0].as_ref().unwrap().top1(), "Pattern");
        assert_eq!(out[1].as_ref().unwrap().top1(), "(none)");
        assert!(matches!(out[2], Err(Failure::Fatal { .. })));
        assert!(matches!(out[3], Err(Failure::Transient { .. })));
        // A count mismatch is the vendor's fault, and retried.
        assert!(matches!(
            google().parse(3, 200, &HeaderMap::new(), body),
            Err(Failure::Transient { .. })
        ));
    }

    #[test]
    fn request_carries_every_image_and_no_key_in_url() {
        let req = google().request(&[vec![1], vec![2], vec![3]]).unwrap();
        assert!(!req.url.contains("key="));
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["requests"].as_array().unwrap().len(), 3);
        assert_eq!(v["requests"][1]["image"]["content"], "Ag==");
        assert_eq!(v["requests"][0]["features"][0]["maxResults"], 10);
    }
}
