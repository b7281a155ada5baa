//! Against a real `redis-server` on loopback, started here (`.ci/run` installs it; without
//! it these tests say so and pass, except on CI where they fail).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use robustify_redis::Redis;
use robustify_redis::server::LocalServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_rate() {
    let Some(server) = LocalServer::start() else {
        return;
    };
    // Three replicas, each its own connection, 8 workers each, asking as fast as they can
    // for 2 s of a 25/s limit with a burst of 5.
    let admitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let redis = Redis::connect(&server.url, "rate-test").await.unwrap();
        let rate = redis.rate("vendor", 25.0, 5);
        for _ in 0..8 {
            let (rate, admitted) = (rate.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(2) {
                    rate.acquire().await.unwrap();
                    if started.elapsed() < Duration::from_secs(2) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = admitted.load(Ordering::Relaxed);
    // At most the burst plus 2 s at 25/s (55); at least 90% of it.
    assert!(
        n <= 55,
        "{n} admitted: the replicas together passed the limit"
    );
    assert!(
        n >= 45,
        "{n} admitted: under 90% of the limit while there was work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_holds_never_overshoot_and_a_dead_replicas_lapse() {
    let Some(server) = LocalServer::start() else {
        return;
    };
    let mut ledgers = Vec::new();
    for _ in 0..3 {
        let redis = Redis::connect(&server.url, "ledger-test").await.unwrap();
        ledgers.push(redis.ledger("wallet", Some(100), Duration::from_secs(30)));
    }
    // 100 requests of 7 units against 100 from three replicas: 14 fit.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let ledger = ledgers[i % 3].clone();
            tokio::spawn(async move { ledger.reserve(7).await.unwrap() })
        })
        .collect();
    let mut holds = Vec::new();
    for t in tasks {
        if let Some(h) = t.await.unwrap() {
            holds.push(h);
        }
    }
    assert_eq!(holds.len(), 14);
    assert_eq!(ledgers[0].held().await.unwrap(), 98);
    for h in &holds {
        // Billed at most what was held: 9 asked, 7 billed.
        assert_eq!(ledgers[1].settle(h, 9).await.unwrap(), 7);
    }
    assert_eq!(ledgers[2].spent().await.unwrap(), 98);
    assert!(ledgers[0].reserve(3).await.unwrap().is_none());
    assert!(ledgers[0].reserve(2).await.unwrap().is_some());

    // A replica that dies holding units: they count until its lease runs out, then not.
    let redis = Redis::connect(&server.url, "ledger-test").await.unwrap();
    let short = redis.ledger("lapse", Some(10), Duration::from_millis(300));
    let dead = short.reserve(10).await.unwrap().unwrap();
    assert!(short.reserve(1).await.unwrap().is_none());
    // A live replica renews: still held after the first lease.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(short.renew(&dead).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        short.reserve(1).await.unwrap().is_none(),
        "renewed: still held"
    );
    // Then it dies: nothing renews, and the hold lapses (what is held says so at once).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(short.held().await.unwrap(), 0);
    let after = short.reserve(10).await.unwrap();
    assert!(after.is_some(), "the dead replica's hold lapsed");
    assert!(!short.renew(&dead).await.unwrap());
    // Settling a lapsed hold still bills what the vendor billed.
    assert_eq!(short.settle(&dead, 4).await.unwrap(), 4);
    assert_eq!(short.spent().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_response_is_billed_with_its_answers_and_survives_a_lapse() {
    use robustify_providers::{AnswerBackend, Charge, DrawContext, LogEntry, ScoredLabel};
    let Some(server) = LocalServer::start() else {
        return;
    };
    let redis = Redis::connect(&server.url, "charge-test").await.unwrap();
    let wallet = redis.ledger("wallet", Some(100_000), Duration::from_millis(300));
    let vendor = redis.ledger("vendor", None, Duration::from_millis(300));
    let (w, v) = (
        wallet.reserve(60_000).await.unwrap().unwrap(),
        vendor.reserve(60_000).await.unwrap().unwrap(),
    );
    let store = redis
        .answers()
        .charging(vec![(wallet.clone(), w.clone()), (vendor.clone(), v)]);
    let context = DrawContext {
        image: "ab".repeat(32),
        provider: "google".into(),
        denoiser: "none".into(),
        sigma: 0.25,
        seed: 3,
        client: None,
    };
    let entry = |draw: u64| LogEntry {
        context: context.clone(),
        draw,
        labels: vec![ScoredLabel {
            label: "cat".into(),
            score: 0.9,
        }],
        status: 200,
        latency_ms: 1.0,
        cost_usd: 0.0015,
        attempts: 1,
        unix_ms: 0,
        reused: false,
    };
    // Two vendor responses of 16 answers at $0.0015: each billed from both holds as it
    // is stored, the holds shrinking by as much (spent + held stays what was reserved).
    for first in [0, 16] {
        let entries: Vec<LogEntry> = (first..first + 16).map(entry).collect();
        let charge = Charge {
            payer: "a".into(),
            provider: "google".into(),
            usd: 0.024,
            unix_ms: 0,
        };
        store.insert(&entries, Some(&charge)).await.unwrap();
    }
    assert_eq!(store.drawn(), 48_000);
    assert_eq!(wallet.spent().await.unwrap(), 48_000);
    assert_eq!(wallet.held().await.unwrap(), 12_000);
    assert_eq!(vendor.spent().await.unwrap(), 48_000);
    let found = store.lookup(&context, 30..34).await.unwrap();
    assert_eq!(found.iter().filter(|a| a.is_some()).count(), 2);
    // The replica dies: its hold lapses, what its responses billed stays billed.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(wallet.held().await.unwrap(), 0);
    assert_eq!(wallet.spent().await.unwrap(), 48_000);
    // A live request settles only what the responses did not bill (here: nothing more).
    assert_eq!(wallet.settle(&w, 0).await.unwrap(), 0);
    assert_eq!(wallet.spent().await.unwrap(), 48_000);
}
