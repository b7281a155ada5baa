//! AWS Rekognition `DetectLabels`: `POST /` with `X-Amz-Target:
//! RekognitionService.DetectLabels`, a JSON body `{"Image": {"Bytes": base64}, "MaxLabels"}`,
//! signed with SigV4 (the `aws-sigv4` crate) from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and, for temporary credentials, `AWS_SESSION_TOKEN`. Labels are
//! `Labels[{Name, Confidence}]`. Errors carry `__type`: throttling types
//! (`ThrottlingException`, `ProvisionedThroughputExceededException`,
//! `LimitExceededException`) come as 400 or 500 and are throttles, not client errors.

use std::time::SystemTime;

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{Failure, ImageResult, Wire, WireRequest, base64, json_body, labels_from};
use crate::credentials::Secret;
use crate::definition::Options;
use crate::{Error, Result};

const TARGET: &str = "RekognitionService.DetectLabels";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The AWS adapter.
pub struct Aws {
    url: String,
    region: String,
    access_key: Secret,
    secret_key: Secret,
    session_token: Option<Secret>,
    max_labels: u32,
}

/// The region in `rekognition.REGION.amazonaws.com`, if the host has that form.
fn region_of(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut parts = host.split('.');
    (parts.next()? == "rekognition").then_some(())?;
    let region = parts.next()?;
    (parts.next()? == "amazonaws").then(|| region.to_owned())
}

impl Aws {
    /// `endpoint` like `https://rekognition.us-east-1.amazonaws.com`.
    pub fn new(
        endpoint: String,
        access_key: Secret,
        secret_key: Secret,
        session_token: Option<Secret>,
        options: &Options,
    ) -> Aws {
        let region = options
            .region
            .clone()
            .or_else(|| region_of(&endpoint))
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        Aws {
            url: format!("{endpoint}/"),
            region,
            access_key,
            secret_key,
            session_token,
            max_labels: options.max_labels,
        }
    }

    /// Signs a request made at `time`.
    fn signed(&self, body: Vec<u8>, time: SystemTime) -> Result<WireRequest> {
        let fail = |message: String| Error::Provider {
            provider: "aws".into(),
            message,
        };
        let identity = AwsCredentials::new(
            self.access_key.expose(),
            self.secret_key.expose(),
            self.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "environment",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("rekognition")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| fail(format!("signing parameters: {e}")))?
            .into();
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| fail(format!("cannot sign request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| fail(format!("cannot sign request: {e}")))?
            .into_parts();
        let mut out: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        out.extend(
            instructions
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Ok(WireRequest {
            url: self.url.clone(),
            headers: out,
            body,
        })
    }
}

/// `__type` without its namespace (`com.amazonaws…#ThrottlingException` → `ThrottlingException`).
fn error_type(v: &Value) -> &str {
    let t = v
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or("UnknownError");
    t.rsplit('#').next().unwrap_or(t)
}

impl Wire for Aws {
    fn request(&self, images: &[Vec<u8>]) -> Result<WireRequest> {
        let image = images.first().map(|b| base64(b)).unwrap_or_default();
        let body = json!({"Image": {"Bytes": image}, "MaxLabels": self.max_labels})
            .to_string()
            .into_bytes();
        self.signed(body, SystemTime::now())
    }

    fn parse(
        &self,
        _n: usize,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> std::result::Result<Vec<ImageResult>, Failure> {
        let v = json_body(body)?;
        if status == 200 {
            // Rekognition's Confidence is a percentage; every other vendor scores 0–1.
            let mut answer = labels_from(v.get("Labels"), "Name", "Confidence")?;
            for l in &mut answer.labels {
                l.score /= 100.0;
            }
            return Ok(vec![Ok(answer)]);
        }
        let kind = error_type(&v);
        let message = format!(
            "{kind}: {}",
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or("")
        );
        Err(match kind {
            "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "LimitExceededException" => Failure::Throttled {
                retry_after: super::retry_after(headers),
                message,
            },
            _ => Failure::from_status(status, headers, message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(token: Option<&str>) -> Aws {
        Aws::new(
            "https://rekognition.eu-west-1.amazonaws.com".into(),
            Secret::new("AKIDEXAMPLE"),
            Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            token.map(Secret::new),
            &Options::default(),
        )
    }

    #[test]
    fn region_from_endpoint() {
        assert_eq!(aws(None).region, "eu-west-1");
        assert_eq!(region_of("http://127.0.0.1:9000"), None);
    }

    #[test]
    fn signature_verifies_with_the_standin_verifier() {
        use robustify_standin::sigv4;
        let a = aws(Some("SESSION"));
        let req = a.request(&[vec![7; 10]]).unwrap();
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("x-amz-security-token").as_deref(), Some("SESSION"));
        let auth = sigv4::parse_authorization(&header("authorization").unwrap()).unwrap();
        assert!(auth.signed_headers.iter().any(|h| h == "x-amz-target"));
        // Recompute with our own (independent) implementation, as the stand-in does.
        let mut pairs: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        pairs.push(("host".into(), "rekognition.eu-west-1.amazonaws.com".into()));
        let canonical = sigv4::canonical_request(
            "POST",
            "/",
            "",
            &pairs,
            &auth.signed_headers,
            &sigv4::sha256_hex(&req.body),
        );
        let expected = sigv4::signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &auth,
            &header("x-amz-date").unwrap(),
            &canonical,
        );
        assert_eq!(expected, auth.signature);
    }

    #[test]
    fn throttling_types_are_throttles_whatever_the_status() {
        let a = aws(None);
        for (status, t) in [
            (400, "ThrottlingException"),
            (
                400,
                "com.amazonaws.rekognition#ProvisionedThroughputExceededException",
            ),
            (500, "ThrottlingException"),
        ] {
            let body = format!(r#"{{"__type":"{t}","message":"Rate exceeded"}}"#);
            let err = a
                .parse(1, status, &HeaderMap::new(), body.as_bytes())
                .unwrap_err();
            assert!(matches!(err, Failure::Throttled { .. }), "{t}: {err:?}");
        }
        let err = a
            .parse(
                1,
                400,
                &HeaderMap::new(),
                br#"{"__type":"InvalidImageFormatException","message":"bad"}"#,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            Failure::Fatal {
                status: Some(400),
                ..
            }
        ));
        let ok = a
            .parse(
                1,
                200,
                &HeaderMap::new(),
                br#"{"Labels":[{"Name":"Dog","Confidence":99.1}],"LabelModelVersion":"3.0"}"#,
            )
            .unwrap();
        assert_eq!(ok[0].as_ref().unwrap().top1(), "Dog");
        // On the same 0–1 scale as the other vendors.
        let score = ok[0].as_ref().unwrap().labels[0].score;
        assert!((score - 0.991).abs() < 1e-6, "{score}");
    }
}
