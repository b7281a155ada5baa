//! The stand-in over real HTTP on 127.0.0.1: every vendor shape, credentials, bad input,
//! rate limiting and each fault mode, checked with a plain HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::server::{AppState, FaultConfig, Keys, ServerConfig, serve};
use robustify_standin::sigv4;
use serde_json::{Value, json};

fn model() -> Arc<ImageNetClassifier> {
    static MODEL: OnceLock<Arc<ImageNetClassifier>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(ImageNetClassifier::load_default().unwrap()))
        .clone()
}

fn goldfish() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/images/goldfish.jpg"
    ))
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct Server {
    url: String,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(config: ServerConfig) -> Server {
    let state = AppState::new(model(), &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = rx.await;
    }));
    Server {
        url: format!("http://{addr}"),
        addr,
        _stop: tx,
    }
}

/// HTTPS support in the workspace's reqwest needs a process-wide crypto provider.
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client() -> reqwest::Client {
    tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn stats(s: &Server) -> Value {
    client()
        .get(format!("{}/stats", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn azure(s: &Server, key: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = client()
        .post(format!(
            "{}/computervision/imageanalysis:analyze?api-version=2023-10-01&features=tags",
            s.url
        ))
        .header("content-type", "application/octet-stream")
        .body(body);
    if let Some(k) = key {
        req = req.header("Ocp-Apim-Subscription-Key", k);
    }
    req.send().await.unwrap()
}

async fn huggingface(s: &Server, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{}/models/google/vit-base-patch16-224", s.url))
        .bearer_auth("hf_test")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Signs a DetectLabels request as an AWS SDK would (SigV4, service `rekognition`).
fn aws_request(s: &Server, key_id: &str, secret: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let amz_date = "20261126T120000Z";
    let host = s.addr.to_string();
    let headers = vec![
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("host".to_string(), host.clone()),
        ("x-amz-date".to_string(), amz_date.to_string()),
        (
            "x-amz-target".to_string(),
            "RekognitionService.DetectLabels".to_string(),
        ),
    ];
    let signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    let auth = sigv4::Authorization {
        key_id: key_id.into(),
        date: "20261126".into(),
        region: "us-east-1".into(),
        service: "rekognition".into(),
        signed_headers: signed.clone(),
        signature: String::new(),
    };
    let canonical =
        sigv4::canonical_request("POST", "/", "", &headers, &signed, &sigv4::sha256_hex(body));
    let sig = sigv4::signature(secret, &auth, amz_date, &canonical);
    client()
        .post(format!("{}/", s.url))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-date", amz_date)
        .header("x-amz-target", "RekognitionService.DetectLabels")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={key_id}/20261126/us-east-1/rekognition/aws4_request, SignedHeaders={}, Signature={sig}",
                signed.join(";")
            ),
        )
        .body(body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_both_versions() {
    let s = start(ServerConfig::default()).await;
    let resp = azure(&s, Some("any-key"), goldfish()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["tagsResult"]["values"][0]["name"], "goldfish");
    assert_eq!(v["metadata"]["width"], 366);
    assert!(v["modelVersion"].is_string());
    let conf = v["tagsResult"]["values"][0]["confidence"].as_f64().unwrap();
    assert!(conf > 0.5 && conf <= 1.0);

    let v: Value = client()
        .post(format!("{}/vision/v3.2/tag", s.url))
        .header("Ocp-Apim-Subscription-Key", "k")
        .body(goldfish())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"][0]["name"], "goldfish");
    assert!(v["requestId"].is_string() && v["metadata"]["height"] == 256);

    let resp = azure(&s, None, goldfish()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "401");
    let resp = azure(&s, Some("k"), b"not an image".to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["innererror"]["code"], "InvalidImageFormat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_batches_with_per_image_errors() {
    let s = start(ServerConfig::default()).await;
    let feature = json!([{"type": "LABEL_DETECTION", "maxResults": 3}]);
    let body = json!({"requests": [
        {"image": {"content": b64(&goldfish())}, "features": feature},
        {"image": {"content": b64(b"garbage")}, "features": feature},
        {"image": {"content": b64(&goldfish())}, "features": [{"type": "LABEL_DETECTION"}]},
    ]});
    let resp = client()
        .post(format!("{}/v1/images:annotate?key=test", s.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    let r = v["responses"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["labelAnnotations"].as_array().unwrap().len(), 3);
    assert_eq!(r[0]["labelAnnotations"][0]["description"], "goldfish");
    assert!(r[0]["labelAnnotations"][0]["mid"].is_string());
    assert!(r[0]["labelAnnotations"][0]["topicality"].is_number());
    assert_eq!(r[1]["error"]["code"], 3);
    assert_eq!(r[2]["labelAnnotations"].as_array().unwrap().len(), 10);
    // Bearer tokens work too; 17 images are refused.
    let many = json!({"requests": vec![json!({"image": {"content": b64(&goldfish())}, "features": feature}); 17]});
    let resp = client()
        .post(format!("{}/v1/images:annotate", s.url))
        .bearer_auth("token")
        .json(&many)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    let resp = client()
        .post(format!("{}/v1/images:annotate", s.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(stats(&s).await["routes"]["google"]["images"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_verifies_sigv4() {
    let keys = Keys {
        key: None,
        aws: Some(("AKIDTEST".into(), "secret/KEY".into())),
    };
    let s = start(ServerConfig {
        keys,
        ..Default::default()
    })
    .await;
    let body = serde_json::to_vec(
        &json!({"Image": {"Bytes": b64(&goldfish())}, "MaxLabels": 5, "MinConfidence": 1.0}),
    )
    .unwrap();
    let resp = aws_request(&s, "AKIDTEST", "secret/KEY", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["Labels"][0]["Name"], "goldfish");
    let c = v["Labels"][0]["Confidence"].as_f64().unwrap();
    assert!(c > 50.0 && c <= 100.0, "{c}");
    assert!(v["LabelModelVersion"].is_string());
    // Default MinConfidence (55) drops the weak labels.
    let body55 = serde_json::to_vec(&json!({"Image": {"Bytes": b64(&goldfish())}})).unwrap();
    let v: Value = aws_request(&s, "AKIDTEST", "secret/KEY", &body55)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["Labels"].as_array().unwrap().len(), 1);

    let resp = aws_request(&s, "AKIDTEST", "wrong", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "InvalidSignatureException");
    // A body changed after signing fails too.
    let tampered = aws_request(&s, "AKIDTEST", "secret/KEY", &body)
        .body(body55.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::FORBIDDEN);
    let resp = client()
        .post(format!("{}/", s.url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "MissingAuthenticationTokenException");
    let bad = serde_json::to_vec(&json!({"Image": {"Bytes": b64(b"not an image")}})).unwrap();
    let resp = aws_request(&s, "AKIDTEST", "secret/KEY", &bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "InvalidImageFormatException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clarifai_reports_mixed_status() {
    let s = start(ServerConfig {
        keys: Keys {
            key: Some("pat".into()),
            aws: None,
        },
        ..Default::default()
    })
    .await;
    let url = format!(
        "{}/v2/users/clarifai/apps/main/models/general-image-recognition/outputs",
        s.url
    );
    let body = json!({"inputs": [
        {"data": {"image": {"base64": b64(&goldfish())}}},
        {"data": {"image": {"base64": b64(b"nope")}}},
    ]});
    let v: Value = client()
        .post(&url)
        .header("authorization", "Key pat")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"]["code"], 10010);
    assert_eq!(v["outputs"][0]["status"]["code"], 10000);
    assert_eq!(v["outputs"][0]["data"]["concepts"][0]["name"], "goldfish");
    assert_eq!(
        v["outputs"][0]["data"]["concepts"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(v["outputs"][1]["status"]["code"], 30300);
    let resp = client()
        .post(&url)
        .header("authorization", "Key wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"]["code"], 11008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_concurrent_requests_are_all_answered() {
    let s = Arc::new(start(ServerConfig::default()).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            huggingface(&s, goldfish())
                .await
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let v = t.await.unwrap();
        assert_eq!(v[0]["label"], "goldfish");
        assert_eq!(v.as_array().unwrap().len(), 5);
    }
    let st = stats(&s).await;
    assert_eq!(
        (st["requests"].as_u64(), st["images"].as_u64()),
        (Some(8), Some(8))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_the_vendor_way() {
    // One request per 5 s with a burst of 2: of 6 immediate requests, 2 pass and 4 get 429
    // (a margin of seconds, so a loaded CI machine cannot let a third one through).
    // Bodies are not images, so admitted requests return 400 at once; no model time.
    let s = start(ServerConfig {
        rate_limit: Some(0.2),
        burst: 2,
        ..Default::default()
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let resp = huggingface(&s, b"x".to_vec()).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(resp.headers()["retry-after"], "5");
        }
        codes.push(resp.status().as_u16());
    }
    assert_eq!(codes, vec![400, 400, 429, 429, 429, 429]);
    assert_eq!(stats(&s).await["throttled"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_mode_behaves_as_configured() {
    let faults = |f: FaultConfig| ServerConfig {
        faults: f,
        ..Default::default()
    };
    let s = start(faults(FaultConfig {
        fail_rate: 1.0,
        ..Default::default()
    }))
    .await;
    let resp = azure(&s, Some("k"), goldfish()).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        huggingface(&s, goldfish()).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let s = start(faults(FaultConfig {
        garbage_rate: 1.0,
        ..Default::default()
    }))
    .await;
    let resp = azure(&s, Some("k"), goldfish()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).is_err());

    let s = start(faults(FaultConfig {
        throttle_rate: 1.0,
        ..Default::default()
    }))
    .await;
    let body = serde_json::to_vec(&json!({"Image": {"Bytes": b64(&goldfish())}})).unwrap();
    let v: Value = aws_request(&s, "AKID", "x", &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["__type"], "ProvisionedThroughputExceededException");
    let v: Value = client()
        .post(format!("{}/v2/models/m/outputs", s.url))
        .header("authorization", "Key k")
        .json(&json!({"inputs": [{"data": {"image": {"base64": b64(&goldfish())}}}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"]["code"], 11005);

    let s = start(faults(FaultConfig {
        timeout_rate: 1.0,
        ..Default::default()
    }))
    .await;
    tls();
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/models/x", s.url))
        .bearer_auth("t")
        .body(goldfish())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    let s = start(faults(FaultConfig {
        latency_ms: 150,
        ..Default::default()
    }))
    .await;
    let t = Instant::now();
    assert_eq!(
        huggingface(&s, b"x".to_vec()).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    let st = stats(&s).await;
    assert_eq!(st["rejected"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_reproducible_from_the_seed() {
    let cfg = || ServerConfig {
        faults: FaultConfig {
            fail_rate: 0.5,
            seed: 42,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let s = start(cfg()).await;
        let mut codes = Vec::new();
        for _ in 0..24 {
            codes.push(huggingface(&s, b"x".to_vec()).await.status().as_u16());
        }
        runs.push(codes);
    }
    assert_eq!(runs[0], runs[1]);
    let fails = runs[0].iter().filter(|c| **c == 503).count();
    assert!((4..=20).contains(&fails), "{fails} of 24");
}
