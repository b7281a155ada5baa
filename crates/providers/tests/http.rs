//! Every adapter end to end against the stand-in on 127.0.0.1 in its vendor's format, and
//! the traffic layer against a stand-in that throttles, fails and times out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use robustify_providers::{
    Adapter, BudgetLimits, Credentials, Error, GenericSpec, HttpProvider, Ledger, Provider,
    ProviderClassifier, ProviderDef, Traffic,
};
use robustify_smoothing::{CertifyParams, DecodeLimits, Image, certify};
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::model::{BrightestChannel, Classifier};
use robustify_standin::server::{AppState, FaultConfig, Keys, ServerConfig, serve};
use serde_json::Value;

fn imagenet() -> Arc<ImageNetClassifier> {
    static MODEL: OnceLock<Arc<ImageNetClassifier>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(ImageNetClassifier::load_default().unwrap()))
        .clone()
}

struct Server {
    url: String,
    state: Arc<AppState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    fn stats(&self) -> Value {
        self.state.stats().snapshot()
    }
}

async fn start(model: Arc<dyn Classifier>, config: ServerConfig) -> Server {
    let state = AppState::new(model, &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state.clone(), async {
        let _ = rx.await;
    }));
    Server {
        url: format!("http://{addr}"),
        state,
        _stop: tx,
    }
}

fn keys() -> Keys {
    Keys {
        key: Some("test-key-123".into()),
        aws: Some(("AKIDTEST".into(), "test-secret-456".into())),
    }
}

fn creds(def: &ProviderDef) -> Credentials {
    Credentials::from_lookup(def, |var| match var {
        "AWS_ACCESS_KEY_ID" => Some("AKIDTEST".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("test-secret-456".into()),
        "AWS_SESSION_TOKEN" => None,
        _ => Some("test-key-123".into()),
    })
    .unwrap()
}

fn provider(def: &ProviderDef, endpoint: &str, budget: BudgetLimits) -> HttpProvider {
    HttpProvider::new(
        def,
        Some(endpoint),
        creds(def),
        Arc::new(Traffic::from_limits(&def.limits)),
        Arc::new(Ledger::new(def.pricing.clone(), budget)),
    )
    .unwrap()
}

fn goldfish() -> Image {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/images/goldfish.jpg"
    ))
    .unwrap();
    Image::decode(&bytes, &DecodeLimits::default()).unwrap()
}

fn generic_def() -> ProviderDef {
    let mut def = ProviderDef::load("huggingface").unwrap();
    def.name = "generic-test".into();
    def.adapter = Adapter::Generic;
    def.generic = Some(GenericSpec {
        url: "{endpoint}/models/standin".into(),
        auth_header: Some("Authorization".into()),
        auth_format: "Bearer {key}".into(),
        body: None,
        labels_pointer: String::new(),
        label_pointer: "/label".into(),
        score_pointer: Some("/score".into()),
    });
    def
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adapter_labels_a_goldfish_in_its_vendors_format() {
    let server = start(
        imagenet(),
        ServerConfig {
            keys: keys(),
            ..ServerConfig::default()
        },
    )
    .await;
    let image = goldfish();
    let mut hf = ProviderDef::load("huggingface").unwrap();
    hf.endpoint = format!("{}/models/standin", server.url);
    let cases: Vec<(ProviderDef, String, &str)> = vec![
        (
            ProviderDef::load("azure").unwrap(),
            server.url.clone(),
            "goldfish",
        ),
        (
            {
                let mut d = ProviderDef::load("azure").unwrap();
                d.adapter = Adapter::AzureV32;
                d
            },
            server.url.clone(),
            "goldfish",
        ),
        (
            ProviderDef::load("google").unwrap(),
            server.url.clone(),
            "goldfish",
        ),
        (
            ProviderDef::load("aws").unwrap(),
            server.url.clone(),
            "goldfish",
        ),
        (
            ProviderDef::load("clarifai").unwrap(),
            server.url.clone(),
            "goldfish",
        ),
        (hf.clone(), hf.endpoint.clone(), "goldfish"),
        (generic_def(), server.url.clone(), "goldfish"),
    ];
    for (def, endpoint, expected) in cases {
        let p = provider(&def, &endpoint, BudgetLimits::default());
        // Three images where the vendor batches, one otherwise.
        let n = (def.limits.images_per_request as usize).min(3);
        let images = vec![image.clone(); n];
        let out = p.classify(&images).await;
        assert_eq!(out.len(), n, "{}", def.name);
        for r in out {
            let d = r.unwrap_or_else(|e| panic!("{} ({:?}): {e}", def.name, def.adapter));
            assert!(
                d.answer.top1().to_lowercase().contains(expected),
                "{} ({:?}): {:?}",
                def.name,
                def.adapter,
                d.answer
            );
            assert!(d.receipt.status == 200 && d.receipt.attempts == 1);
        }
    }
    let stats = server.stats();
    assert_eq!(stats["throttled"], 0);
    assert_eq!(stats["rejected"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_once_and_never_retried() {
    let server = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            keys: keys(),
            ..ServerConfig::default()
        },
    )
    .await;
    for name in ["azure", "google", "aws", "clarifai"] {
        let def = ProviderDef::load(name).unwrap();
        let wrong = Credentials::from_lookup(&def, |_| Some("WRONG-KEY-xyz".into())).unwrap();
        let p = HttpProvider::new(
            &def,
            Some(&server.url),
            wrong,
            Arc::new(Traffic::from_limits(&def.limits)),
            Arc::new(Ledger::new(def.pricing.clone(), BudgetLimits::default())),
        )
        .unwrap();
        let before = server.stats()["requests"].as_u64().unwrap();
        let out = p.classify(&[goldfish()]).await;
        let err = out.into_iter().next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    status: Some(400 | 401 | 403),
                    ..
                }
            ),
            "{name}: {err:?}"
        );
        assert!(!err.to_string().contains("WRONG-KEY-xyz"), "{err}");
        assert_eq!(
            server.stats()["requests"].as_u64().unwrap(),
            before + 1,
            "{name}"
        );
        assert_eq!(p.ledger().spent_units(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_images_are_refused_before_any_call() {
    let server = start(Arc::new(BrightestChannel), ServerConfig::default()).await;
    let mut def = ProviderDef::load("google").unwrap();
    def.limits.max_pixels = Some(100);
    let p = provider(&def, &server.url, BudgetLimits::default());
    let big = Image::filled(11, 10, 0.5).unwrap();
    let out = p.classify(&[big]).await;
    assert!(matches!(out[0], Err(Error::ImageRejected { .. })));
    assert_eq!(server.stats()["requests"], 0);
}

fn solid(r: f32, g: f32, b: f32) -> Image {
    let mut data = vec![r; 64];
    data.extend(vec![g; 64]);
    data.extend(vec![b; 64]);
    Image::new(8, 8, data).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_and_the_vendor_sees_no_request_over_its_limit() {
    // The stand-in allows 50/s (a little burst for network jitter); the client is set to
    // 50/s with no burst: 300 requests take at least 299/50 = 5.98 s and none is throttled.
    let server = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            rate_limit: Some(50.0),
            burst: 5,
            ..ServerConfig::default()
        },
    )
    .await;
    let mut def = ProviderDef::load("standin").unwrap();
    def.endpoint = format!("{}/models/standin", server.url);
    def.limits.requests_per_second = 50.0;
    def.limits.burst = 1;
    def.limits.max_concurrency = 16;
    let p = provider(&def, &def.endpoint.clone(), BudgetLimits::default());
    let images: Vec<Image> = (0..300)
        .map(|i| solid(i as f32 / 300.0, 0.5, 0.2))
        .collect();
    let start = Instant::now();
    let out = p.classify(&images).await;
    let elapsed = start.elapsed();
    assert!(out.iter().all(|r| r.is_ok()));
    assert!(elapsed >= Duration::from_millis(5900), "{elapsed:?}");
    let stats = server.stats();
    assert_eq!(stats["throttled"], 0, "{stats}");
    assert_eq!(stats["images"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_throttling_below_the_client_rate_still_answers_every_draw() {
    let server = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            rate_limit: Some(30.0),
            burst: 1,
            ..ServerConfig::default()
        },
    )
    .await;
    let mut def = ProviderDef::load("standin").unwrap();
    def.endpoint = format!("{}/models/standin", server.url);
    def.limits.requests_per_second = 50.0;
    def.limits.burst = 1;
    def.limits.max_concurrency = 8;
    def.limits.max_retries = 20;
    let p = provider(&def, &def.endpoint.clone(), BudgetLimits::default());
    let images: Vec<Image> = (0..120)
        .map(|i| solid(0.1, i as f32 / 120.0, 0.3))
        .collect();
    let out = p.classify(&images).await;
    for r in &out {
        assert!(r.is_ok(), "{:?}", r.as_ref().err().map(ToString::to_string));
    }
    let stats = server.stats();
    assert!(stats["throttled"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["images"], 120);
    assert_eq!(stats["repeated_images"], 0);
    assert!(p.traffic().stats().snapshot().throttled > 0);
}

async fn certify_on(server_url: &str, faults_timeout: f64) -> robustify_smoothing::Certificate {
    // Azure's format: one image a request, plain 500s (the Hugging Face route answers 5xx
    // with a 20 s "model loading" estimate, which the adapter honours).
    let mut def = ProviderDef::load("azure").unwrap();
    def.endpoint = server_url.to_owned();
    def.limits.timeout_s = faults_timeout;
    def.limits.max_retries = 20;
    def.limits.requests_per_second = 200.0;
    def.limits.burst = 20;
    let p: Arc<dyn Provider> = Arc::new(provider(
        &def,
        &def.endpoint.clone(),
        BudgetLimits::default(),
    ));
    let classifier = ProviderClassifier::new(p);
    let params = CertifyParams::new(0.5, 20, 200, 0.001)
        .unwrap()
        .with_batch_size(16)
        .unwrap();
    certify(&classifier, &solid(0.2, 0.45, 0.5), &params, 11)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_the_certificate_equals_a_fault_free_run() {
    let clean = start(Arc::new(BrightestChannel), ServerConfig::default()).await;
    let expected = certify_on(&clean.url, 5.0).await;
    let faulty = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            faults: FaultConfig {
                fail_rate: 0.10,
                timeout_rate: 0.05,
                garbage_rate: 0.05,
                seed: 3,
                ..FaultConfig::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let got = certify_on(&faulty.url, 0.5).await;
    assert_eq!(got, expected);
    // Blue and green are close under σ = 0.5: both labels occur, so the equality means
    // something.
    assert!(expected.counts.len() >= 2, "{:?}", expected.counts);
    let stats = faulty.stats();
    assert!(stats["faults"].as_u64().unwrap() >= 10, "{stats}");
    assert_eq!(stats["images"], 220);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overshoot_the_budget() {
    let server = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            faults: FaultConfig {
                latency_ms: 20,
                ..FaultConfig::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let mut def = ProviderDef::load("google").unwrap();
    def.limits.requests_per_second = 1000.0;
    def.limits.burst = 64;
    def.limits.max_concurrency = 64;
    // $1.50 per 1,000: $0.015 covers exactly 10 images.
    let p = Arc::new(provider(
        &def,
        &server.url,
        BudgetLimits {
            max_usd: Some(0.015),
            max_queries: None,
        },
    ));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.classify(&[solid(i as f32 / 64.0, 0.1, 0.1)]).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap().pop().unwrap() {
            Ok(_) => ok += 1,
            Err(Error::BudgetExhausted { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, refused), (10, 54));
    assert!(p.ledger().spent_usd() <= 0.015 + 1e-12);
    assert_eq!(server.stats()["images"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_that_always_asks_to_wait_ends_within_the_request_time() {
    // Hugging Face answering "model loading, estimated_time 20 s" to every request.
    let server = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            keys: keys(),
            faults: FaultConfig {
                fail_rate: 1.0,
                ..FaultConfig::default()
            },
            ..ServerConfig::default()
        },
    )
    .await;
    let mut def = ProviderDef::load("huggingface").unwrap();
    def.limits.timeout_s = 1.0;
    def.limits.max_request_s = Some(3.0);
    let p = provider(
        &def,
        &format!("{}/models/standin", server.url),
        BudgetLimits::default(),
    );
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(30), p.classify(&[solid(0.1, 0.8, 0.1)]))
        .await
        .expect("the retries went on past 30 s");
    let err = out.into_iter().next().unwrap().unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("would pass the 3 s allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_fails_at_once_and_names_the_address() {
    // A port that was just free: nothing listens there.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let def = ProviderDef::load("google").unwrap();
    let p = provider(&def, &format!("http://{addr}"), BudgetLimits::default());
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), p.classify(&[solid(0.1, 0.8, 0.1)]))
        .await
        .expect("a refused connection was retried for 20 s");
    let err = out.into_iter().next().unwrap().unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("connection refused") && err.contains(&addr.to_string()),
        "{err}"
    );
    // Nothing was billed.
    assert_eq!(p.ledger().spent_units(), 0);
}

#[test]
fn endpoints_that_are_not_http_urls_are_refused_at_start() {
    let def = ProviderDef::load("google").unwrap();
    for bad in [
        "not a url",
        "file:///etc/passwd",
        "ftp://example.com",
        "http://",
    ] {
        let err = HttpProvider::new(
            &def,
            Some(bad),
            creds(&def),
            Arc::new(Traffic::from_limits(&def.limits)),
            Arc::new(Ledger::new(def.pricing.clone(), BudgetLimits::default())),
        )
        .err()
        .unwrap_or_else(|| panic!("{bad} was accepted"))
        .to_string();
        assert!(err.contains(bad), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_requests_stay_under_its_10_mb_json_limit() {
    // Sixteen noisy copies of a 512×512 image: about 1 MB of base64 each, 16.8 MB in one
    // request, which Google (and its stand-in) refuses with 400.
    let server = start(
        Arc::new(BrightestChannel),
        ServerConfig {
            keys: keys(),
            ..ServerConfig::default()
        },
    )
    .await;
    let def = ProviderDef::load("google").unwrap();
    let p = provider(&def, &server.url, BudgetLimits::default());
    let clean = Image::filled(512, 512, 0.5).unwrap();
    let noise =
        robustify_smoothing::NoiseSampler::new(robustify_smoothing::Sigma::new(0.25).unwrap(), 1);
    let images = noise.draws(&clean, 0..16);
    let out = p.classify(&images).await;
    assert!(
        out.iter().all(Result::is_ok),
        "{:?}",
        out.iter().find(|r| r.is_err())
    );
    let stats = server.stats();
    assert_eq!(stats["routes"]["google"]["images"], 16, "{stats}");
    assert!(
        stats["routes"]["google"]["requests"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}
