//! Clarifai model outputs: `POST /v2/{model path}/outputs` with `Authorization: Key PAT`,
//! up to 128 base64 inputs per request. `outputs[i].data.concepts[{name, value}]`; status
//! codes live in the body: 10000 ok, 10010 mixed success (per-output statuses), 11005
//! "making too many requests" and 11003 "hourly limit exceeded" (throttled, whatever the
//! HTTP status: the official clients retry both), 30xxx image errors. A code may come as
//! its number or, from JSON transcodings of the protobuf enum, as its name
//! (`"CONN_THROTTLED"`) or a numeric string.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{Failure, ImageResult, Wire, WireRequest, base64, json_body, labels_from};
use crate::Result;
use crate::credentials::Secret;
use crate::definition::Options;

/// Clarifai's general image-recognition model, used when the definition names none.
pub const DEFAULT_MODEL: &str = "users/clarifai/apps/main/models/general-image-recognition";

/// The Clarifai adapter.
pub struct Clarifai {
    url: String,
    pat: Secret,
}

impl Clarifai {
    /// `endpoint` is `https://api.clarifai.com`.
    pub fn new(endpoint: String, pat: Secret, options: &Options) -> Clarifai {
        let model = options.model.as_deref().unwrap_or(DEFAULT_MODEL);
        Clarifai {
            url: format!("{endpoint}/v2/{}/outputs", model.trim_matches('/')),
            pat,
        }
    }
}

/// Throttling codes: CONN_THROTTLED and CONN_EXCEED_HOURLY_LIMIT.
const THROTTLED: [i64; 2] = [11005, 11003];

/// The status code of `v`: a number, a numeric string, or one of the enum's names that
/// decide what robustify does (success, mixed, throttled); 0 when absent or unknown.
fn status_code(v: &Value) -> i64 {
    match v.pointer("/status/code") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(match s.as_str() {
            "SUCCESS" => 10000,
            "MIXED_STATUS" => 10010,
            "CONN_EXCEED_HOURLY_LIMIT" => 11003,
            "CONN_THROTTLED" => 11005,
            _ => 0,
        }),
        _ => 0,
    }
}

fn description(v: &Value) -> String {
    let d = v
        .pointer("/status/description")
        .and_then(Value::as_str)
        .unwrap_or("");
    match v.pointer("/status/details").and_then(Value::as_str) {
        Some(details) => format!("{d}: {details}"),
        None => d.to_owned(),
    }
}

impl Wire for Clarifai {
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest> {
        let inputs: Vec<Value> = images
            .iter()
            .map(|png| json!({"data": {"image": {"base64": base64(png)}}}))
            .collect();
        Ok(WireRequest {
            url: self.url.clone(),
            headers: vec![
                ("Authorization".into(), format!("Key {}", self.pat.expose())),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: json!({ "inputs": inputs }).to_string().into_bytes(),
        })
    }

    fn parse(
        &self,
        n: usize,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<Vec<ImageResult>, Failure> {
        let v = json_body(body)?;
        let code = status_code(&v);
        if THROTTLED.contains(&code) {
            return Err(Failure::Throttled {
                retry_after: super::retry_after(headers),
                message: description(&v),
            });
        }
        if status != 200 || !(code == 10000 || code == 10010) {
            let status = if status == 200 { 500 } else { status };
            return Err(Failure::from_status(status, headers, description(&v)));
        }
        let outputs =
            v.get("outputs")
                .and_then(Value::as_array)
                .ok_or_else(|| Failure::Transient {
                    retry_after: None,
                    message: "response without outputs".into(),
                })?;
        if outputs.len() != n {
            return Err(Failure::Transient {
                retry_after: None,
                message: format!("{} outputs for {n} inputs", outputs.len()),
            });
        }
        Ok(outputs
            .iter()
            .map(|o| match status_code(o) {
                10000 => labels_from(o.pointer("/data/concepts"), "name", "value"),
                c if THROTTLED.contains(&c) => Err(Failure::Throttled {
                    retry_after: None,
                    message: description(o),
                }),
                c if (30000..40000).contains(&c) => Err(Failure::Fatal {
                    status: None,
                    message: format!("image rejected ({c}): {}", description(o)),
                }),
                c => Err(Failure::Transient {
                    retry_after: None,
                    message: format!("output status {c}: {}", description(o)),
                }),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clarifai() -> Clarifai {
        Clarifai::new("https://c".into(), Secret::new("pat"), &Options::default())
    }

    #[test]
    fn codes_as_names_or_strings_and_the_hourly_limit() {
        let named = br#"{"status":{"code":"SUCCESS"},"outputs":[
            {"status":{"code":"10000"},"data":{"concepts":[{"name":"cat","value":0.8}]}}]}"#;
        let out = clarifai().parse(1, 200, &HeaderMap::new(), named).unwrap();
        assert_eq!(out[0].as_ref().unwrap().top1(), "cat");
        for body in [
            &br#"{"status":{"code":"CONN_THROTTLED","description":"Making too many requests"}}"#[..],
            br#"{"status":{"code":11003,"description":"Hourly limit exceeded"}}"#,
            br#"{"status":{"code":"CONN_EXCEED_HOURLY_LIMIT"}}"#,
        ] {
            assert!(matches!(
                clarifai().parse(1, 429, &HeaderMap::new(), body),
                Err(Failure::Throttled { .. })
            ));
        }
    }

    #[test]
    fn mixed_success_and_throttle_codes() {
        let body = br#"{"status":{"code":10010,"description":"Mixed Success"},"outputs":[
            {"status":{"code":10000},"data":{"concepts":[{"id":"a","name":"dog","value":0.9}]}},
            {"status":{"code":30300,"description":"Image decoding failed"},"data":{}}]}"#;
        let out = clarifai().parse(2, 200, &HeaderMap::new(), body).unwrap();
        assert_eq!(out[0].as_ref().unwrap().top1(), "dog");
        assert!(matches!(out[1], Err(Failure::Fatal { .. })));
        let throttled = br#"{"status":{"code":11005,"description":"Making too many requests"}}"#;
        for status in [200, 429] {
            assert!(matches!(
                clarifai().parse(1, status, &HeaderMap::new(), throttled),
                Err(Failure::Throttled { .. })
            ));
        }
        let denied = br#"{"status":{"code":11009,"description":"API key not found"}}"#;
        assert!(matches!(
            clarifai().parse(1, 401, &HeaderMap::new(), denied),
            Err(Failure::Fatal {
                status: Some(401),
                ..
            })
        ));
        let req = clarifai().request(&[vec![1], vec![2]]).unwrap();
        assert!(
            req.url
                .ends_with("/v2/users/clarifai/apps/main/models/general-image-recognition/outputs")
        );
    }
}
