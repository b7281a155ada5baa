//! Hugging Face Inference API, image classification: `POST` the raw image to the model's
//! URL with `Authorization: Bearer TOKEN`; the answer is `[{label, score}]`. A model still
//! loading answers 503 with `estimated_time` (seconds), which is transient.
//!
//! The model's URL is `{endpoint}/hf-inference/models/{model}` on the inference router
//! (the form of the official clients' snippets; the older `api-inference` host answers
//! 410 Gone). An endpoint given with a path is taken as the model's URL as it is.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Failure, ImageResult, Wire, WireRequest, error_message, labels_from, ok_json};
use crate::Result;
use crate::credentials::Secret;

/// The model's URL: `endpoint` itself when it has a path (a dedicated Inference Endpoint,
/// or a model URL given in full), else `{endpoint}/hf-inference/models/{model}`.
pub fn model_url(endpoint: &str, model: Option<&str>) -> std::result::Result<String, String> {
    let path = reqwest::Url::parse(endpoint)
        .map(|u| u.path().trim_matches('/').to_owned())
        .unwrap_or_default();
    if !path.is_empty() {
        return Ok(endpoint.to_owned());
    }
    match model {
        Some(m) => Ok(format!(
            "{}/hf-inference/models/{}",
            endpoint.trim_end_matches('/'),
            m.trim_matches('/')
        )),
        None => Err(format!(
            "{endpoint:?} names no model: give the model's URL \
             ({endpoint}/hf-inference/models/OWNER/NAME) or `model` in the definition's [options]"
        )),
    }
}

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
    fn the_model_url_is_built_from_a_bare_endpoint() {
        let m = Some("google/vit-base-patch16-224");
        assert_eq!(
            model_url("https://router.huggingface.co", m).unwrap(),
            "https://router.huggingface.co/hf-inference/models/google/vit-base-patch16-224"
        );
        assert_eq!(
            model_url("http://127.0.0.1:8731/", m).unwrap(),
            "http://127.0.0.1:8731/hf-inference/models/google/vit-base-patch16-224"
        );
        // A URL with a path is the model's own (an Inference Endpoint).
        let own = "https://xyz.endpoints.huggingface.cloud/models/mine";
        assert_eq!(model_url(own, m).unwrap(), own);
        assert!(model_url("http://127.0.0.1:8731", None).is_err());
    }

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
