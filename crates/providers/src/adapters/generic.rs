//! A JSON API described entirely by its definition's `[generic]` table: a URL template, an
//! optional auth header, a body template with the base64 image (or the raw image), and JSON
//! pointers to the label list, each label and its score. One image per request.
//!
//! ```toml
//! adapter = "generic"
//! endpoint = "https://vision.example.com"
//! auth_env = ["EXAMPLE_TOKEN"]
//!
//! [generic]
//! url = "{endpoint}/v1/classify"
//! auth_header = "Authorization"
//! auth_format = "Bearer {key}"
//! body = '{"image": {"data": "{image_base64}"}, "top_k": 5}'
//! labels_pointer = "/result/labels"
//! label_pointer = "/name"
//! score_pointer = "/probability"
//! ```

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Failure, ImageResult, Wire, WireRequest, base64, ok_json};
use crate::Result;
use crate::credentials::Secret;
use crate::definition::GenericSpec;
use crate::provider::{Answer, ScoredLabel};

/// The generic adapter.
pub struct Generic {
    url: String,
    spec: GenericSpec,
    key: Option<Secret>,
}

impl Generic {
    /// Fills the URL template with `endpoint`.
    pub fn new(endpoint: String, spec: GenericSpec, key: Option<Secret>) -> Generic {
        Generic {
            url: spec.url.replace("{endpoint}", &endpoint),
            spec,
            key,
        }
    }
}

impl Wire for Generic {
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest> {
        let image = images.first().cloned().unwrap_or_default();
        let mut headers = Vec::new();
        if let (Some(name), Some(key)) = (&self.spec.auth_header, &self.key) {
            headers.push((
                name.clone(),
                self.spec.auth_format.replace("{key}", key.expose()),
            ));
        }
        let body = match &self.spec.body {
            Some(template) => {
                headers.push(("Content-Type".into(), "application/json".into()));
                // Base64 needs no JSON escaping, so plain substitution keeps the JSON valid.
                template
                    .replace("{image_base64}", &base64(&image))
                    .into_bytes()
            }
            None => {
                headers.push(("Content-Type".into(), "image/png".into()));
                image
            }
        };
        Ok(WireRequest {
            url: self.url.clone(),
            headers,
            body,
        })
    }

    fn parse(
        &self,
        _n: usize,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<Vec<ImageResult>, Failure> {
        let v = ok_json(status, headers, body)?;
        let bad = |message: String| Failure::Transient {
            retry_after: None,
            message,
        };
        let list = v
            .pointer(&self.spec.labels_pointer)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("no label list at {:?}", self.spec.labels_pointer)))?;
        let mut labels = Vec::with_capacity(list.len());
        for item in list {
            let label = item
                .pointer(&self.spec.label_pointer)
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(format!(
                        "no label at {:?} in {item}",
                        self.spec.label_pointer
                    ))
                })?;
            let score = self
                .spec
                .score_pointer
                .as_deref()
                .and_then(|p| item.pointer(p))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            labels.push(ScoredLabel {
                label: label.to_owned(),
                score: score as f32,
            });
        }
        Ok(vec![Ok(Answer { labels })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GenericSpec {
        GenericSpec {
            url: "{endpoint}/v1/classify".into(),
            auth_header: Some("Authorization".into()),
            auth_format: "Bearer {key}".into(),
            body: Some(r#"{"image": {"data": "{image_base64}"}}"#.into()),
            labels_pointer: "/result/labels".into(),
            label_pointer: "/name".into(),
            score_pointer: Some("/p".into()),
        }
    }

    #[test]
    fn templates_and_pointers() {
        let g = Generic::new("https://e".into(), spec(), Some(Secret::new("tok")));
        let req = g.request(&[vec![0xff, 0]]).unwrap();
        assert_eq!(req.url, "https://e/v1/classify");
        assert!(
            req.headers
                .contains(&("Authorization".into(), "Bearer tok".into()))
        );
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["image"]["data"], "/wA=");
        let out = g
            .parse(
                1,
                200,
                &HeaderMap::new(),
                br#"{"result":{"labels":[{"name":"kite","p":0.7},{"name":"bird"}]}}"#,
            )
            .unwrap();
        let a = out[0].as_ref().unwrap();
        assert_eq!((a.top1(), a.labels[1].score), ("kite", 0.0));
        assert!(matches!(
            g.parse(1, 200, &HeaderMap::new(), br#"{"result":{}}"#),
            Err(Failure::Transient { .. })
        ));
    }
}
