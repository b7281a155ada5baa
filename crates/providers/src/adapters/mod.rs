//! Vendor wire formats: one file per vendor, each turning encoded images into one HTTP
//! request and the vendor's response into answers or a classified [`Failure`].
//!
//! Adapters do no I/O: [`crate::http::HttpProvider`] sends what they build, under the rate
//! limit, the budget and the retry policy, so each format is tested on its own bytes.

use std::time::Duration;

use base64::Engine;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::credentials::Credentials;
use crate::definition::{Adapter, ProviderDef};
use crate::provider::{Answer, ScoredLabel};
use crate::{Error, Result};

pub mod aws;
pub mod azure;
pub mod clarifai;
pub mod generic;
pub mod google;
pub mod huggingface;

/// One HTTP request, ready to send.
#[derive(Clone, Debug)]
pub struct WireRequest {
    /// Full URL (credentials never go in it).
    pub url: String,
    /// Headers, credentials included.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request (or one image of it) got no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The vendor asked us to slow down; `retry_after` when it said how long.
    Throttled {
        /// The vendor's wait, from `Retry-After` or its body.
        retry_after: Option<Duration>,
        /// The vendor's words.
        message: String,
    },
    /// Worth retrying: 5xx, timeouts, broken connections, malformed bodies.
    Transient {
        /// How long the vendor said to wait, if it did.
        retry_after: Option<Duration>,
        /// What happened.
        message: String,
    },
    /// Retrying cannot help: bad credentials, a rejected image, a wrong URL.
    Fatal {
        /// The HTTP status, if there was one.
        status: Option<u16>,
        /// The vendor's words.
        message: String,
    },
}

impl Failure {
    fn transient(message: impl Into<String>) -> Failure {
        Failure::Transient {
            retry_after: None,
            message: message.into(),
        }
    }

    fn fatal(status: u16, message: impl Into<String>) -> Failure {
        Failure::Fatal {
            status: Some(status),
            message: message.into(),
        }
    }

    /// The common meaning of an HTTP status: 429 throttles, 408 and 5xx are transient,
    /// other 4xx are fatal.
    pub fn from_status(status: u16, headers: &HeaderMap, message: String) -> Failure {
        match status {
            429 => Failure::Throttled {
                retry_after: retry_after(headers),
                message,
            },
            408 | 500..=599 => Failure::Transient {
                retry_after: retry_after(headers),
                message,
            },
            _ => Failure::fatal(status, message),
        }
    }
}

/// Per image of a request: its answer, or why it has none.
pub type ImageResult = std::result::Result<Answer, Failure>;

/// A vendor's request and response shapes.
pub trait Wire: Send + Sync {
    /// Builds the request for `images` (encoded PNGs, at most the vendor's per-request count).
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest>;

    /// Reads the response to a request of `n` images: per image an answer or a failure, or
    /// one failure for the whole request.
    fn parse(
        &self,
        n: usize,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<Vec<ImageResult>, Failure>;
}

/// The wire format of `def`, sending to `endpoint` with `creds`.
pub fn wire_for(def: &ProviderDef, endpoint: &str, creds: Credentials) -> Result<Box<dyn Wire>> {
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let key = |i: usize| {
        creds
            .get(i)
            .cloned()
            .ok_or_else(|| Error::MissingCredential {
                provider: def.name.clone(),
                var: def
                    .auth_env
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| "(none named in the definition)".into()),
            })
    };
    Ok(match def.adapter {
        Adapter::Azure => Box::new(azure::Azure::v4(endpoint, key(0)?)),
        Adapter::AzureV32 => Box::new(azure::Azure::v32(endpoint, key(0)?)),
        Adapter::Google => Box::new(google::Google::new(endpoint, key(0)?, &def.options)),
        Adapter::Aws => Box::new(aws::Aws::new(
            endpoint,
            key(0)?,
            key(1)?,
            creds.get(2).cloned(),
            &def.options,
        )),
        Adapter::Clarifai => Box::new(clarifai::Clarifai::new(endpoint, key(0)?, &def.options)),
        Adapter::Huggingface => Box::new(huggingface::HuggingFace::new(
            huggingface::model_url(&endpoint, def.options.model.as_deref()).map_err(|message| {
                Error::Definition {
                    path: format!("endpoint of {}", def.name).into(),
                    message,
                }
            })?,
            creds.get(0).cloned(),
        )),
        Adapter::Generic => {
            let spec = def.generic.clone().ok_or_else(|| Error::Definition {
                path: def.name.clone().into(),
                message: "adapter \"generic\" needs a [generic] table".into(),
            })?;
            Box::new(generic::Generic::new(endpoint, spec, creds.get(0).cloned()))
        }
        Adapter::StandinLocal => {
            return Err(Error::Provider {
                provider: def.name.clone(),
                message: "standin-local runs in-process and has no wire format".into(),
            });
        }
    })
}

/// `Retry-After` in seconds (the form vendors use for throttling).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Parses a JSON body; a malformed one is transient (vendors' proxies do send those).
pub(crate) fn json_body(body: &[u8]) -> std::result::Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::transient(format!("malformed response body ({e}): {}", snippet(body)))
    })
}

/// A 200 answer's JSON body, or the failure its status means (message from the body).
pub(crate) fn ok_json(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<Value, Failure> {
    if status != 200 {
        return Err(Failure::from_status(status, headers, error_message(body)));
    }
    json_body(body)
}

/// The start of a body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.replace(['\n', '\r'], " ")
}

/// Labels from a JSON list of objects, `name`/`score` fields named.
pub(crate) fn labels_from(
    list: Option<&Value>,
    name: &str,
    score: &str,
) -> std::result::Result<Answer, Failure> {
    let Some(list) = list else {
        return Ok(Answer::default());
    };
    let items = list
        .as_array()
        .ok_or_else(|| Failure::transient(format!("expected a list of labels, got {list}")))?;
    let mut labels = Vec::with_capacity(items.len());
    for item in items {
        let label = item
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::transient(format!("label without {name:?}: {item}")))?;
        let score = item.get(score).and_then(Value::as_f64).unwrap_or(0.0) as f32;
        labels.push(ScoredLabel {
            label: label.to_owned(),
            score,
        });
    }
    Ok(Answer { labels })
}

/// The message inside a vendor's error body (`error.message`, `message`, `error`).
pub(crate) fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v
            .pointer("/error/message")
            .or_else(|| v.pointer("/message"))
            .or_else(|| v.pointer("/Message"))
            .or_else(|| v.pointer("/status/description"))
            .or_else(|| v.get("error"))
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
            .unwrap_or_else(|| snippet(body)),
        Err(_) => snippet(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn status_classes() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(
            Failure::from_status(429, &h, "slow".into()),
            Failure::Throttled {
                retry_after: Some(Duration::from_secs(2)),
                message: "slow".into()
            }
        );
        assert!(matches!(
            Failure::from_status(503, &HeaderMap::new(), String::new()),
            Failure::Transient { .. }
        ));
        assert!(matches!(
            Failure::from_status(401, &h, String::new()),
            Failure::Fatal {
                status: Some(401),
                ..
            }
        ));
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015"));
        assert_eq!(retry_after(&h), None);
    }
}
