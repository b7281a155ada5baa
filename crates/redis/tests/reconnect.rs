//! Redis restarts: the replicas' connection comes back by itself, and no command waits for
//! an answer that will never come.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use robustify_redis::Redis;
use robustify_redis::server::LocalServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_reconnected_and_no_command_hangs() {
    let Some(mut server) = LocalServer::start() else {
        return;
    };
    let redis = Redis::connect(&server.url, "reconnect-test").await.unwrap();
    redis.ping().await.unwrap();
    let ledger = redis.ledger("wallet", Some(1_000), Duration::from_secs(10));

    // Killed: every command fails, none hangs.
    server.kill();
    let t = Instant::now();
    assert!(redis.ping().await.is_err());
    assert!(ledger.reserve(10).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    // Back (empty, on the same port): the same handle works again within seconds.
    server.restart();
    let t = Instant::now();
    while redis.ping().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "not reconnected after {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hold = ledger.reserve(10).await.unwrap();
    assert!(hold.is_some(), "the ledger works again after the restart");
}
