//! What survives a restart of the proxy with a store: every client's spend (so a spent
//! budget stays spent), its day's spend, and the answers it paid for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{VENDOR_KEY, listen, png};
use robustify_proxy::{Config, ProxyState, hash_key, serve};
use serde_json::Value;

/// A proxy for `config` on loopback; stops when the sender is dropped.
async fn start(config: &Config) -> (String, tokio::sync::oneshot::Sender<()>) {
    let state = ProxyState::new(config, |var| {
        (var == "GOOGLE_API_KEY").then(|| VENDOR_KEY.to_string())
    })
    .unwrap();
    let (l, url) = listen().await;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(l, state, async {
        let _ = rx.await;
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    (url, stop)
}

async fn certify(url: &str, key: &str, seed: u64) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{url}/v1/certify?sigma=0.25&n0=4&n=16&seed={seed}&denoiser=none"
        ))
        .bearer_auth(key)
        .body(png())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn spend(url: &str, key: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/spend"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_stays_spent_after_a_restart() {
    let (vendor, vendor_url, _stop_vendor) = common::vendor(Default::default()).await;
    let dir = std::env::temp_dir().join(format!("robustify-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // One certification: 20 draws, $0.03; it holds 22 × $0.0015 = $0.033 first.
    let config = Config::parse(
        &format!(
            r#"
store = "{}"
operator_key_sha256 = "{}"

[[providers]]
name = "google"
endpoint = "{vendor_url}"
denoisers = []

[[clients]]
name = "a"
key_sha256 = "{}"
budget_usd = 0.10

[[clients]]
name = "d"
key_sha256 = "{}"
budget_usd_per_day = 0.05
"#,
            dir.join("proxy.sqlite").display(),
            hash_key("key-op"),
            hash_key("key-a"),
            hash_key("key-d"),
        ),
        Path::new("test.toml"),
    )
    .unwrap();

    let (url, stop) = start(&config).await;
    for seed in 0..3 {
        let (status, v) = certify(&url, "key-a", seed).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = certify(&url, "key-a", 3).await;
    assert_eq!(status, 402, "$0.01 left cannot hold $0.033: {v}");
    assert_eq!(certify(&url, "key-d", 0).await.0, 200);
    assert_eq!(certify(&url, "key-d", 1).await.0, 402, "the day's $0.05");
    let before = spend(&url, "key-a").await;
    assert!(
        (before["spent_usd"].as_f64().unwrap() - 0.09).abs() < 1e-9,
        "{before}"
    );
    drop(stop);

    // The restart: the same spend, the same refusals (a fresh $0.10 before the store).
    let (url, _stop) = start(&config).await;
    let after = spend(&url, "key-a").await;
    assert!(
        (after["spent_usd"].as_f64().unwrap() - 0.09).abs() < 1e-9,
        "{after}"
    );
    assert!(
        (after["remaining_usd"].as_f64().unwrap() - 0.01).abs() < 1e-9,
        "{after}"
    );
    assert_eq!(after["persistent"], true);
    assert!((after["by_provider"][0]["spent_usd"].as_f64().unwrap() - 0.09).abs() < 1e-9);
    assert_eq!(certify(&url, "key-a", 4).await.0, 402);
    let d = spend(&url, "key-d").await;
    let day = &d["wallets"][1];
    assert_eq!(day["period"], "day", "{d}");
    assert!(
        (day["spent_usd"].as_f64().unwrap() - 0.03).abs() < 1e-9,
        "{d}"
    );
    assert_eq!(
        certify(&url, "key-d", 2).await.0,
        402,
        "still today's budget"
    );

    // What each client spent is what the vendor billed: 4 certifications of 20 draws.
    assert_eq!(vendor.stats().snapshot()["images"], 80);
    // The operator sees every client; a client sees only itself.
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/spend"))
        .bearer_auth("key-op")
        .send()
        .await
        .unwrap();
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["clients"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(spend(&url, "key-d").await["client"], "d");
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/spend"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
