//! Hugging Face Inference API, image classification: `POST` the raw image to the model's
//! URL with `Authorization: Bearer TOKEN`; the answer is `[{label, score}]`. A model still
//! loading answers 503 with `estimated_time` (seconds), which is transient.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Failure, ImageResult, Wire, WireRequest, error_message, labels_from, ok_json};
use crate::Result;
use crate::credentials::Secret;

/// The Hugging Face adapter (also the stand-in's HTTP format).
pub struct HuggingFace {
    url: String,
    token: Option<Secret>,
}

impl HuggingFace {
    /// `endpoint` is the model's full URL; `token` may be absent for open endpoints.
    pub fn new(endpoint: String, token: Option<Secret>) -> HuggingFace {
        HuggingFace {
            url: endpoint,
            token,
        }
    }
}

impl Wire for HuggingFace {
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest> {
        let mut headers = vec![("Content-Type".to_owned(), "image/png".to_owned())];
        if let Some(token) = &self.token {
            headers.push(("Authorization".into(), format!("Bearer {}", token.expose())));
        }
        Ok(WireRequest {
            url: self.url.clone(),
            headers,
            body: images.first().cloned().unwrap_or_default(),
        })
    }

    fn parse(
        &self,
        _n: usize,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<Vec<ImageResult>, Failure> {
        if status == 503 {
            let wait = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("estimated_time").and_then(Value::as_f64))
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(600.0)));
            return Err(Failure::Transient {
                retry_after: wait.or_else(|| super::retry_after(headers)),
                message: error_message(body),
            });
        }
        let v = ok_json(status, headers, body)?;
        Ok(vec![labels_from(Some(&v), "label", "score")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_model_is_transient_with_its_estimate() {
        let hf = HuggingFace::new("https://h/models/m".into(), None);
        let err = hf
            .parse(
                1,
                503,
                &HeaderMap::new(),
                br#"{"error":"Model m is currently loading","estimated_time":20.0}"#,
            )
            .unwrap_err();
        assert_eq!(
            err,
            Failure::Transient {
                retry_after: Some(Duration::from_secs(20)),
                message: "Model m is currently loading".into()
            }
        );
        let ok = hf
            .parse(
                1,
                200,
                &HeaderMap::new(),
                br#"[{"label":"tabby, tabby cat","score":0.8},{"label":"tiger cat","score":0.1}]"#,
            )
            .unwrap();
        assert_eq!(ok[0].as_ref().unwrap().top1(), "tabby, tabby cat");
        assert!(hf.request(&[vec![0]]).unwrap().headers.len() == 1);
    }
}
