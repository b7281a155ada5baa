//! Azure AI Vision: Image Analysis 4.0 (`imageanalysis:analyze`, `features=tags`) and
//! Computer Vision v3.2 (`/vision/v3.2/tag`). One image per request, raw bytes, key in
//! `Ocp-Apim-Subscription-Key`; labels are `tagsResult.values` (4.0) or `tags` (3.2), each
//! `{name, confidence}`; errors `{"error": {"code", "message"}}`, 429 with `Retry-After`.

use reqwest::header::HeaderMap;

use super::{Failure, ImageResult, Wire, WireRequest, labels_from, ok_json};
use crate::Result;
use crate::credentials::Secret;

/// Which API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V4,
    V32,
}

/// The Azure adapter.
pub struct Azure {
    url: String,
    key: Secret,
    version: Version,
}

impl Azure {
    /// Image Analysis 4.0 at `endpoint` (the resource's base URL).
    pub fn v4(endpoint: String, key: Secret) -> Azure {
        Azure {
            url: format!(
                "{endpoint}/computervision/imageanalysis:analyze?api-version=2023-10-01&features=tags"
            ),
            key,
            version: Version::V4,
        }
    }

    /// Computer Vision v3.2 at `endpoint`.
    pub fn v32(endpoint: String, key: Secret) -> Azure {
        Azure {
            url: format!("{endpoint}/vision/v3.2/tag"),
            key,
            version: Version::V32,
        }
    }
}

impl Wire for Azure {
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest> {
        Ok(WireRequest {
            url: self.url.clone(),
            headers: vec![
                (
                    "Ocp-Apim-Subscription-Key".into(),
                    self.key.expose().to_owned(),
                ),
                ("Content-Type".into(), "application/octet-stream".into()),
            ],
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
        let v = ok_json(status, headers, body)?;
        let list = match self.version {
            Version::V4 => v.pointer("/tagsResult/values"),
            Version::V32 => v.get("tags"),
        };
        Ok(vec![labels_from(list, "name", "confidence")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tags_in_vendor_order() {
        let a = Azure::v4("https://x".into(), Secret::new("k"));
        let body = br#"{"modelVersion":"2023-10-01","metadata":{"width":32,"height":32},
            "tagsResult":{"values":[{"name":"cat","confidence":0.6},{"name":"animal","confidence":0.9}]}}"#;
        let out = a.parse(1, 200, &HeaderMap::new(), body).unwrap();
        let answer = out[0].as_ref().unwrap();
        assert_eq!(answer.top1(), "cat");
        assert_eq!(answer.labels.len(), 2);
        let req = a.request(&[vec![1, 2, 3]]).unwrap();
        assert!(req.url.ends_with("api-version=2023-10-01&features=tags"));
        assert_eq!(req.body, vec![1, 2, 3]);
        let v32 = Azure::v32("https://x".into(), Secret::new("k"));
        let out = v32
            .parse(1, 200, &HeaderMap::new(), br#"{"tags":[],"requestId":"r"}"#)
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap().top1(), "(none)");
        let err = v32
            .parse(
                1,
                401,
                &HeaderMap::new(),
                br#"{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}"#,
            )
            .unwrap_err();
        assert!(
            matches!(err, Failure::Fatal { status: Some(401), ref message } if message.contains("invalid subscription key"))
        );
    }
}
