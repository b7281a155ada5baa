//! What survives a restart of the proxy with a store: every client's spend (so a spent
//! budget stays spent), its day's spend, and the answers it paid for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{VENDOR_KEY, listen, png, spend};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_loses_no_paid_answer_and_readyz_says_so() {
    let (vendor, vendor_url, _stop_vendor) = common::vendor(Default::default()).await;
    let dir = std::env::temp_dir().join(format!("robustify-locked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("proxy.sqlite");
    let config = Config::parse(
        &format!(
            r#"
store = "{}"
store_busy_timeout_s = 3

[[providers]]
name = "google"
endpoint = "{vendor_url}"
denoisers = []

[[clients]]
name = "a"
key_sha256 = "{}"
budget_usd = 1.0
"#,
            db.display(),
            hash_key("key-a"),
        ),
        Path::new("test.toml"),
    )
    .unwrap();
    let (url, stop) = start(&config).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http.get(format!("{url}{path}")).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(get("/readyz").await, 200);

    // Another process holds the write lock.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Three certifications at once: each pays for its selection draws (4), then waits on
    // the locked file for the busy timeout (3 s) — on both async workers at once.
    let started = std::time::Instant::now();
    let pending: Vec<_> = (7..10)
        .map(|seed| {
            let url = url.clone();
            tokio::spawn(async move { certify(&url, "key-a", seed).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    // Meanwhile the process still answers at once.
    let t = std::time::Instant::now();
    assert_eq!(get("/healthz").await, 200);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    for p in pending {
        let (status, v) = p.await.unwrap();
        // The selection draws were paid and kept in memory; the estimation draws were
        // not bought: 503, try again later.
        assert_eq!(status, 503, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot be written"),
            "{v}"
        );
    }
    // Each request bought its selection draws unless it began after another's answers were
    // already waiting (then it bought nothing): 4, 8 or 12 images.
    let images = vendor.stats().snapshot()["images"].as_u64().unwrap();
    assert!([4, 8, 12].contains(&images), "{images}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(get("/readyz").await, 503);
    let charged = spend(&url, "key-a").await["spent_usd"].as_f64().unwrap();
    assert!((charged - images as f64 * 0.0015).abs() < 1e-9, "{charged}");

    // The lock goes: ready again, and the waiting answers and their charge are written.
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    assert_eq!(get("/readyz").await, 200);
    drop(stop);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A restart remembers what was charged (it was forgotten before) and reuses the
    // answers: every paid selection draw is in the store.
    let (url, _stop) = start(&config).await;
    let after = spend(&url, "key-a").await["spent_usd"].as_f64().unwrap();
    assert!((after - charged).abs() < 1e-9, "{after} vs {charged}");
    let mut reused = 0;
    for seed in 7..10 {
        let (status, v) = certify(&url, "key-a", seed).await;
        assert_eq!(status, 200, "{v}");
        reused += v["reused"].as_u64().unwrap();
    }
    assert_eq!(reused, images, "every paid answer was kept");
}
