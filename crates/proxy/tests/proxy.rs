//! The proxy over real HTTP, in front of a stand-in playing Google on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{VENDOR_KEY, identity_denoiser, listen, png};
use robustify_proxy::{Config, ProxyState, hash_key, serve};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_clients_budgets_rates_and_metrics() {
    let (vendor, vendor_url, _stop_vendor) = common::vendor(Default::default()).await;
    // A certification of 4 + 16 draws costs 20 × $0.0015 = $0.03, and holds 22 × $0.0015
    // (10% slack for billed timeouts): $0.30 buys 9 (the 10th cannot hold $0.033 beside
    // 9 × $0.03 spent).
    let config = Config::parse(
        &format!(
            r#"
operator_key_sha256 = "{}"
store = "memory"

[[providers]]
name = "google"
endpoint = "{vendor_url}"
denoisers = ["{}"]

[[clients]]
name = "a"
key_sha256 = "{}"
budget_usd = 0.30
max_concurrent_requests = 64

[[clients]]
name = "slow"
key_sha256 = "{}"
requests_per_minute = 1

[[clients]]
name = "free"
key_sha256 = "{}"
"#,
            hash_key("key-operator"),
            identity_denoiser().display(),
            hash_key("key-a"),
            hash_key("key-slow"),
            hash_key("key-free")
        ),
        Path::new("test.toml"),
    )
    .unwrap();
    // A missing vendor key is refused at start-up.
    assert!(ProxyState::new(&config, |_| None).is_err());
    let state = ProxyState::new(&config, |var| {
        (var == "GOOGLE_API_KEY").then(|| VENDOR_KEY.to_string())
    })
    .unwrap();
    let (l, url) = listen().await;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(l, state, async {
        let _ = rx.await;
    }));
    // HTTPS support in the workspace's reqwest needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let certify = format!("{url}/v1/certify?sigma=0.25&n0=4&n=16&seed=3");

    // 64 concurrent requests against a budget for 10.
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (http, certify) = (http.clone(), certify.clone());
            tokio::spawn(async move {
                let r = http
                    .post(&certify)
                    .bearer_auth("key-a")
                    .body(png())
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut spent = 0.0;
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                spent += v["cost_usd"].as_f64().unwrap();
                assert_eq!(v["label"], "green", "{v}");
                assert_eq!(v["n"], 16);
            }
            402 => {
                refused += 1;
                assert_eq!(v["error"]["code"], "budget_exhausted");
            }
            s => panic!("{s}: {v}"),
        }
    }
    assert_eq!((ok, refused), (9, 55));
    assert!(spent <= 0.30 + 1e-9, "{spent}");
    assert_eq!(vendor.stats().snapshot()["images"], 180);

    // No key, a wrong key: 401. The slow client's second request: 429.
    let r = http.post(&certify).body(png()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&certify)
        .bearer_auth("nope")
        .body(png())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let send = |key: &'static str| {
        http.post(&certify)
            .header("x-api-key", key)
            .body(png())
            .send()
    };
    assert_eq!(send("key-slow").await.unwrap().status(), 200);
    let r = send("key-slow").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());

    // Multipart with a JSON params part, and predict.
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(png()).file_name("x.png"),
        )
        .text("params", r#"{"sigma": 0.25, "n": 20, "alpha": 0.01}"#);
    let r = http
        .post(format!("{url}/v1/predict"))
        .bearer_auth("key-free")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["label"], "green", "{v}");
    // Sequential certification at a target radius stops early: every draw is green.
    let r = http
        .post(format!(
            "{url}/v1/certify?sigma=0.25&n0=4&n=1000&target_radius=0.1"
        ))
        .bearer_auth("key-free")
        .body(png())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["decision"], "certified", "{v}");
    assert!(v["n"].as_u64().unwrap() < 1000, "{v}");
    let sequential_images = 4 + v["n"].as_u64().unwrap();
    // Bad input: not an image, missing parameters.
    let r = http
        .post(&certify)
        .bearer_auth("key-free")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{url}/v1/certify?sigma=0.25"))
        .bearer_auth("key-free")
        .body(png())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The provider list is for clients; no key, no list.
    let r = http
        .get(format!("{url}/v1/providers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let providers: Value = http
        .get(format!("{url}/v1/providers"))
        .bearer_auth("key-free")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers[0]["name"], "google");
    assert_eq!(providers[0]["denoisers"][0]["name"], "identity-test");
    // The denoiser trained at the request's σ is the default; none for another σ unless
    // asked for, and `denoiser=none` turns it off.
    let mut denoisers = Vec::new();
    for (query, status) in [
        ("sigma=0.25&n=8", 200),
        ("sigma=0.5&n=8", 400),
        ("sigma=0.5&n=8&denoiser=none", 200),
        ("sigma=0.25&n=8&denoiser=nope", 400),
    ] {
        let r = http
            .post(format!("{url}/v1/predict?{query}"))
            .bearer_auth("key-free")
            .body(png())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
        let v: Value = r.json().await.unwrap();
        denoisers.push(v["denoiser"].clone());
        if status == 400 {
            assert_eq!(v["error"]["code"], "no_denoiser", "{v}");
        }
    }
    assert_eq!(denoisers[0], "identity-test");
    assert_eq!(denoisers[2], "none");
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    // /metrics names every client and its spend: the operator's key only.
    for key in [None, Some("key-a"), Some("wrong")] {
        let mut r = http.get(format!("{url}/metrics"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "operator_key_needed");
    }
    let metrics = http
        .get(format!("{url}/metrics"))
        .bearer_auth("key-operator")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let images = format!(
        "robustify_provider_images_total{{provider=\"google\"}} {}",
        220 + sequential_images + 16 // + the two denoiser predictions of 8
    );
    assert!(metrics.contains(&images), "{metrics}");
    assert!(
        metrics.contains("robustify_responses_total{route=\"certify\",status=\"402\"} 55"),
        "{metrics}"
    );
    assert!(
        metrics.contains("robustify_client_spend_usd_total{client=\"a\"} 0.27"),
        "{metrics}"
    );
    // Latency as a histogram: as many certify requests timed as answered, every one
    // under 300 s, and the buckets cumulative.
    let certify_count: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("robustify_responses_total{route=\"certify\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    let bucket = |le: &str| -> u64 {
        let key =
            format!("robustify_request_duration_seconds_bucket{{route=\"certify\",le=\"{le}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("{key}: {metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(bucket("+Inf"), certify_count, "{metrics}");
    assert_eq!(bucket("300"), certify_count, "{metrics}");
    assert!(bucket("0.005") <= bucket("1"), "{metrics}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
