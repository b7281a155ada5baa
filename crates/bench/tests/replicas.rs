//! Three proxy replicas behind one Redis act as one client of the vendor and one keeper of
//! each budget: the vendor's rate is never passed (it throttles whatever passes it) and is
//! used (≥ 90% in every second while there is work), no budget is overshot by 100
//! concurrent clients spread over the replicas, and an answer one replica paid for is free
//! on the others. Against a real `redis-server` started here (`.ci/run` installs it;
//! without it this test says so and passes, except on CI where it fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use robustify_bench::{ReplicaOptions, run_replicas};

#[test]
fn three_replicas_keep_one_rate_and_one_budget() {
    if robustify_redis::server::LocalServer::start().is_none() {
        return;
    }
    let options = ReplicaOptions {
        replicas: 3,
        clients: 100,
        vendor_rps: 20.0,
        // Each certification: 2 requests, $0.024; it holds 18 × $0.0015 = $0.027 while
        // it runs. $0.60 pays for at most 25.
        budget_usd: 0.60,
        cached_rounds: 30,
    };
    let f = run_replicas(&options).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&f).unwrap());
    // No overshoot: what the vendor billed is within the budget, and so is every answer.
    assert!(f.spent_usd <= 0.60 + 1e-9, "{f:?}");
    assert!(f.vendor_billed_usd <= 0.60 + 1e-9, "{f:?}");
    assert!((f.wallet_spent_usd - f.spent_usd).abs() < 1e-6, "{f:?}");
    assert!(f.certified >= 20, "the budget pays for 22 or more: {f:?}");
    assert_eq!(f.certified + f.refused, 100);
    // The vendor never throttled: the three replicas together kept to its 20/s …
    assert_eq!(f.vendor_throttled, 0, "{f:?}");
    assert!(f.max_rps_1s <= 22, "{f:?}");
    // … and used it while there was work: on average, and in every full second.
    assert!(f.mean_rps >= 18.0 && f.mean_rps <= 21.0, "{f:?}");
    if let Some(min) = f.min_rps_1s {
        assert!(min >= 18, "a second under 90% of the limit: {f:?}");
    }
    // Answers are shared: paid once, by the first replica asked.
    assert_eq!(f.cached_vendor_images, 0, "{f:?}");
}
