//! Three proxy replicas behind one Redis act as one client of the vendor and one keeper of
//! each budget: the vendor's rate is never passed (it throttles whatever passes it), and
//! no budget is overshot by 100 concurrent clients spread over the replicas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::{VENDOR_KEY, listen, png};
use robustify_proxy::{Config, ProxyState, hash_key, serve};
use robustify_standin::model::BrightestChannel;
use robustify_standin::server::{AppState, Keys, ServerConfig};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_one_rate_and_one_budget() {
    let Some(redis) = robustify_redis::server::LocalServer::start() else {
        return;
    };
    // The vendor allows 20 requests a second (burst 2) and throttles the rest.
    let vendor = AppState::new(
        Arc::new(BrightestChannel),
        &ServerConfig {
            keys: Keys {
                key: Some(VENDOR_KEY.into()),
                aws: None,
            },
            rate_limit: Some(20.0),
            burst: 2,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let (l, vendor_url) = listen().await;
    tokio::spawn(robustify_standin::server::serve(l, vendor.clone(), async {
        std::future::pending::<()>().await
    }));
    // Each certification: 4 + 12 draws, one request each (16 images a request): 2
    // requests, $0.024; it holds 18 × $0.0015 = $0.027. $0.60 pays for at most 25.
    let config = Config::parse(
        &format!(
            r#"
store = "{}"
redis_prefix = "replicas-test"
hold_lease_s = 5

[[providers]]
name = "google"
endpoint = "{vendor_url}"
denoisers = []
requests_per_second = 20.0
# One at a time: the vendor's burst of 2 is then the slack for network jitter (a request
# admitted later may arrive first).
burst = 1

[[clients]]
name = "team"
key_sha256 = "{}"
budget_usd = 0.60

[[clients]]
name = "rich"
key_sha256 = "{}"
"#,
            redis.url,
            hash_key("key-team"),
            hash_key("key-rich"),
        ),
        Path::new("test.toml"),
    )
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut urls = Vec::new();
    for _ in 0..3 {
        let state = ProxyState::connect(&config, |var| {
            (var == "GOOGLE_API_KEY").then(|| VENDOR_KEY.to_string())
        })
        .await
        .unwrap();
        let (l, url) = listen().await;
        tokio::spawn(serve(l, state, std::future::pending::<()>()));
        urls.push(url);
    }

    // 100 clients at once, spread over the replicas, each its own image seed.
    let started = Instant::now();
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (http, url) = (http.clone(), urls[i % 3].clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!(
                        "{url}/v1/certify?sigma=0.25&n0=4&n=12&seed={i}&denoiser=none"
                    ))
                    .bearer_auth("key-team")
                    .body(png())
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let (mut ok, mut refused, mut spent) = (0, 0, 0.0);
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                spent += v["cost_usd"].as_f64().unwrap();
            }
            402 => refused += 1,
            s => panic!("{s}: {v}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = vendor.stats().snapshot();
    let requests = stats["requests"].as_u64().unwrap();
    eprintln!(
        "replicas: {ok} certified, {refused} refused, ${spent:.4} spent, {requests} vendor \
         requests in {seconds:.2} s ({:.1}/s against 20/s)",
        requests as f64 / seconds
    );
    // No overshoot: what the vendor billed is within the budget, and so is every answer.
    assert!(spent <= 0.60 + 1e-9, "{spent}");
    let billed = stats["images"].as_f64().unwrap() * 0.0015;
    assert!(billed <= 0.60 + 1e-9, "{billed}");
    assert!(ok >= 20, "the budget pays for 22 or more: {ok}");
    assert_eq!(ok + refused, 100);
    // The vendor never throttled: the three replicas together kept to its 20/s.
    assert_eq!(stats["throttled"], 0, "{stats}");
    // And they used it: the requests went at ≥ 90% of the rate while there was work
    // (2 per certification, after the burst).
    let busy = (requests as f64 - 2.0) / 20.0;
    assert!(
        seconds >= busy * 0.9,
        "faster than the limit: {requests} in {seconds:.2} s"
    );
    assert!(
        seconds <= busy / 0.9 + 1.0,
        "under 90% of the limit: {requests} in {seconds:.2} s"
    );

    // The shared wallet says the same from any replica.
    let v: Value = http
        .get(format!("{}/v1/spend", urls[2]))
        .bearer_auth("key-team")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        (v["spent_usd"].as_f64().unwrap() - spent).abs() < 1e-6,
        "{v}"
    );
    // Nothing is left held once every request is settled.
    assert!(
        v["remaining_usd"].as_f64().unwrap() >= 0.60 - spent - 1e-6,
        "{v}"
    );

    // Answers are shared: a certification one replica paid for is free on the others,
    // with the same answer (another client with room: the wallet still holds the worst
    // case first). The time of those is the proxy's overhead.
    let images_before = vendor.stats().snapshot()["images"].as_u64().unwrap();
    let mut overhead_ms = Vec::new();
    let mut first: Option<Value> = None;
    for round in 0..30 {
        let url = &urls[round % 3];
        let t = Instant::now();
        let r = http
            .post(format!(
                "{url}/v1/certify?sigma=0.25&n0=4&n=12&seed=777&denoiser=none"
            ))
            .bearer_auth("key-rich")
            .body(png())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if let Some(f) = &first {
            overhead_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(v["reused"], 16, "{v}");
            assert_eq!(v["cost_usd"], 0.0);
            assert_eq!((&v["label"], &v["radius"]), (&f["label"], &f["radius"]));
        }
        first.get_or_insert(v);
    }
    assert_eq!(
        vendor.stats().snapshot()["images"].as_u64().unwrap(),
        images_before + 16,
        "paid once, by the first replica"
    );
    overhead_ms.sort_by(f64::total_cmp);
    eprintln!(
        "replicas: a certification answered from the shared store (the proxy's overhead on \
         loopback, 16 draws, Redis included): p50 {:.1} ms, p99 {:.1} ms",
        overhead_ms[overhead_ms.len() / 2],
        overhead_ms[overhead_ms.len() * 99 / 100]
    );
}
