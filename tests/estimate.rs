//! `robustify estimate` figures for a fixed provider file.

use crate::util::{fixture, robustify};

fn estimate(extra: &[&str]) -> serde_json::Value {
    let def = fixture("tiered.toml");
    let mut args = vec![
        "estimate",
        "--provider",
        def.to_str().unwrap(),
        "--images",
        "50",
        "--n0",
        "10",
        "--n",
        "250",
        "--json",
    ];
    args.extend_from_slice(extra);
    robustify(&args).json()
}

#[test]
fn figures_for_a_tiered_provider() {
    // 50 × (10 + 250) = 13,000 queries: 10,000 at $2.00/1,000 + 3,000 at $1.00 = $23.00.
    // Requests: 50 × (⌈10/4⌉ + ⌈250/4⌉) = 50 × 66 = 3,300 at 10/s = 330 s.
    // Max radius: 0.25·Φ⁻¹(0.001^(1/250)); scipy: 0.25*norm.ppf(0.001**(1/250)).
    let v = estimate(&[]);
    assert_eq!(v["queries"], 13_000);
    assert_eq!(v["requests"], 3_300);
    assert!((v["cost_usd"].as_f64().unwrap() - 23.0).abs() < 1e-9);
    assert!((v["min_seconds"].as_f64().unwrap() - 330.0).abs() < 1e-9);
    // The time counts those same 3,300 requests: 3,300 × 0.3 s over the concurrency, or
    // the rate's 330 s, whichever is slower.
    let concurrency: f64 = 8.0; // the definition leaves the default
    let want = (3_300.0 * 0.3 / concurrency).max(330.0);
    assert!((v["seconds"].as_f64().unwrap() - want).abs() < 1e-9, "{v}");
    assert!((v["max_radius"].as_f64().unwrap() - 0.480699243168489).abs() < 1e-12);
    assert!(v.get("n_for_target_radius").is_none());
}

#[test]
fn free_tier_clean_queries_and_target_radius() {
    // Free tier: units 500..10,000 at $2.00 + 3,050 at $1.00 with 50 clean queries.
    let v = estimate(&["--free-tier", "--clean-query", "--target-radius", "0.5"]);
    assert_eq!(v["queries"], 13_050);
    assert_eq!(v["clean_queries"], 50);
    assert!((v["cost_usd"].as_f64().unwrap() - (19.0 + 3.05)).abs() < 1e-9);
    // α^{1/301} ≥ Φ(2) > α^{1/300}: 301 agreeing draws reach R = 0.5 at σ = 0.25.
    assert_eq!(v["n_for_target_radius"], 301);
}

#[test]
fn builtin_google_and_a_hopeless_n() {
    let v = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "100",
        "--n0",
        "20",
        "--n",
        "100",
        "--json",
    ])
    .json();
    assert_eq!(v["queries"], 12_000);
    assert_eq!(v["cost_usd"], 18.0);
    assert_eq!(v["requests"], 900);
    // Nine agreeing draws cannot certify at α = 0.001: max_radius is null.
    let v = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "1",
        "--n0",
        "1",
        "--n",
        "9",
        "--json",
    ])
    .json();
    assert!(v["max_radius"].is_null());
    let text = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "100",
        "--n0",
        "20",
        "--n",
        "100",
    ])
    .ok();
    assert!(text.contains("$18.00") && text.contains("12,000"), "{text}");
}

#[test]
fn sequential_forecast_from_assumed_p_a_and_from_a_log() {
    let v = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "100",
        "--n0",
        "20",
        "--n",
        "10000",
        "--mode",
        "sequential",
        "--target-radius",
        "0.25",
        "--p-a",
        "0.5,0.999",
        "--json",
    ])
    .json();
    assert_eq!(v["fixed_queries_per_image"], 10_020);
    let rows = v["forecasts"].as_array().unwrap();
    // p_A = 0.5 is refuted fast; 0.999 certifies fast; both far below 10,020 queries.
    assert_eq!(rows[0]["not_certifiable"], 1.0);
    assert_eq!(rows[1]["certified"], 1.0);
    for r in rows {
        let q = r["mean_queries_per_image"].as_f64().unwrap();
        assert!(q < 150.0, "{r}");
        let cost = r["cost_usd"].as_f64().unwrap();
        assert!((cost - (q * 100.0).ceil() * 0.0015).abs() < 1e-9, "{r}");
    }
    let v = robustify([
        "estimate",
        "--provider",
        "google",
        "--images",
        "100",
        "--n0",
        "20",
        "--n",
        "100",
        "--mode",
        "sequential",
        "--target-radius",
        "0.2",
        "--batch-size",
        "1",
        "--from-log",
        "examples/logs/azure_mse_0.25.jsonl.gz",
        "--json",
    ])
    .json();
    // The same 44.37 mean queries as `replay --mode sequential` on this log.
    let q = v["forecasts"][0]["mean_queries_per_image"]
        .as_f64()
        .unwrap();
    assert!((q - 44.37).abs() < 0.005, "{q}");
}
