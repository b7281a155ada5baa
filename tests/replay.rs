//! `robustify replay` on a hand-checked fixture and on the paper's logs.

use crate::util::{fixture, robustify, shared_data};

// tests/fixtures/replay_small.jsonl, σ = 0.5, n0 = 3, n = 20, α = 0.01:
//   image 10: 20/20 "cat" (clean cat)   → cat,   R = 0.5·Φ⁻¹(0.01^(1/20)) = 0.410766
//   image 11: 19/20 "dog" (clean dog)   → dog,   R = 0.5·Φ⁻¹(Beta⁻¹(0.01; 19, 2)) = 0.278461
//   image 12: 20/20 "plane" (clean bird) → plane, R = 0.410766, wrong
//   image 13: selection picks "dog" (2 of 3), estimation has no dog → abstain
//   line 6 (no index → 4): 12/20 "frog" → p̲ = 0.3234 < 1/2 → abstain
// from scipy.stats import beta, norm
// [0.5 * norm.ppf(beta.ppf(0.01, k, 20 - k + 1)) for k in (20, 19)]
//   → [0.41076580144154606, 0.2784609902830615]
// Certified accuracy (of 5): r ≤ 0.278 → 2/5; 0.278 < r ≤ 0.41 → 1/5; beyond → 0.
const ARGS: [&str; 8] = [
    "--sigma", "0.5", "--n0", "3", "--n", "20", "--alpha", "0.01",
];

#[test]
fn fixture_table_matches_hand_computation() {
    let log = fixture("replay_small.jsonl");
    let mut args = vec!["replay".to_string(), log.display().to_string()];
    args.extend(ARGS.iter().map(|s| s.to_string()));
    args.extend(["--radii", "0,0.25,0.3,0.41,0.42", "--json"].map(String::from));
    let v = robustify(&args).json();
    let acc: Vec<f64> = v["table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["certified_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(acc, vec![0.4, 0.4, 0.2, 0.2, 0.0]);
    assert_eq!(v["table"][1]["radius"], 0.25);
    assert_eq!(v["abstained"], 2);
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);
    // Each image is a certificate of the one schema, named by its index in the log.
    let idx: Vec<&str> = images
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert_eq!(idx, ["10", "11", "12", "13", "4"]);
    assert!(
        images
            .iter()
            .all(|i| i["schema"] == 1 && i["mode"] == "fixed")
    );
    assert_eq!(images[0]["label"], "cat");
    assert!((images[0]["radius"].as_f64().unwrap() - 0.41076580144154606).abs() < 1e-9);
    assert!((images[1]["radius"].as_f64().unwrap() - 0.2784609902830615).abs() < 1e-9);
    assert_eq!(images[2]["label"], "plane");
    assert_eq!(images[2]["correct"], false);
    assert!(images[3]["label"].is_null() && images[4]["label"].is_null());
    assert_eq!(images[3]["radius"], 0.0);
    // The JSON is exactly one object with these keys.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["abstained", "images", "table"]);
}

#[test]
fn fixture_table_for_people() {
    let log = fixture("replay_small.jsonl");
    let mut args = vec!["replay".to_string(), log.display().to_string()];
    args.extend(ARGS.iter().map(|s| s.to_string()));
    let out = robustify(&args).ok();
    assert!(out.contains("5 images"), "{out}");
    assert!(out.contains("  0.25               0.400"), "{out}");
    assert!(out.contains("  0.30               0.200"), "{out}");
    assert!(out.contains("  0.45               0.000"), "{out}");
    assert!(out.contains("abstained: 2 of 5 images"), "{out}");
}

#[test]
fn committed_example_log_reproduces_the_paper() {
    // examples/logs/azure_mse_0.25.jsonl.gz: the paper reports 22% at r = 0 for Azure with
    // the MSE denoiser, σ = 0.25, N0 = 20, N = 100.
    let v = robustify([
        "replay",
        "examples/logs/azure_mse_0.25.jsonl.gz",
        "--sigma",
        "0.25",
        "--n0",
        "20",
        "--n",
        "100",
        "--json",
    ])
    .json();
    assert_eq!(v["table"][0]["certified_accuracy"], 0.22);
    assert_eq!(v["images"].as_array().unwrap().len(), 100);
}

#[test]
fn shared_api_logs_read_as_they_are() {
    let Some(dir) = shared_data("api-logs") else {
        return;
    };
    // The original file (with scores and top5) gives the same result as the reduced copy.
    let run = |path: &str| {
        robustify([
            "replay", path, "--sigma", "0.25", "--n0", "20", "--n", "100", "--json",
        ])
        .json()
    };
    let full = dir.join("azure/imagenet_denoiser_mse/0.25.jsonl.gz");
    let a = run(full.to_str().unwrap());
    let b = run("examples/logs/azure_mse_0.25.jsonl.gz");
    assert_eq!(a, b);
    // The 1k run: 100 selection + 1,000 estimation draws certify larger radii.
    let k = dir.join("azure/imagenet_denoiser_mse/0.25_1k.jsonl.gz");
    let v = robustify([
        "replay",
        k.to_str().unwrap(),
        "--sigma",
        "0.25",
        "--n0",
        "100",
        "--n",
        "1000",
        "--json",
    ])
    .json();
    let at =
        |v: &serde_json::Value, i: usize| v["table"][i]["certified_accuracy"].as_f64().unwrap();
    assert!(
        at(&v, 0) > 0.0 && at(&v, 8) > at(&a, 8),
        "{} vs {}",
        at(&v, 8),
        at(&a, 8)
    );
    // Every run of the corpus reads.
    let mut runs = 0;
    for api in ["aws", "azure", "clarifai", "google"] {
        for entry in std::fs::read_dir(dir.join(api)).unwrap() {
            let file = entry.unwrap().path().join("0.12.jsonl.gz");
            if file.exists() {
                run(file.to_str().unwrap());
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 32);
}

#[test]
fn sequential_replay_spends_fewer_queries_than_fixed_n() {
    let v = robustify([
        "replay",
        "examples/logs/azure_mse_0.25.jsonl.gz",
        "--sigma",
        "0.25",
        "--n0",
        "20",
        "--n",
        "100",
        "--mode",
        "sequential",
        "--target-radius",
        "0.2",
        "--json",
    ])
    .json();
    // Measured: 44.37 mean queries of 120 (49.6 before the selection stopped early); 18
    // certified at R = 0.2 against fixed-n's 26;
    // 8 of 100 decisions differ (anytime validity costs some power at n = 100).
    assert_eq!(v["fixed_queries"], 120);
    let mean = v["mean_queries"].as_f64().unwrap();
    assert!((mean - 44.37).abs() < 0.005, "{mean}");
    assert_eq!(v["certified_fixed"], 26);
    assert_eq!(v["certified_sequential"], 18);
    assert_eq!(v["decisions_differ"], 8);
    // The per-image list has the same name in both modes.
    assert_eq!(v["images"].as_array().unwrap().len(), 100);
    assert_eq!(v["image_count"], 100);
    // Both lists hold certificates of the one schema; they agree with the counts.
    let certified = |list: &str, status: &str| {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                assert_eq!(c["schema"], 1);
                c["status"] == status && c["radius"].as_f64().unwrap() >= 0.2
            })
            .count()
    };
    assert_eq!(certified("images", "certified"), 18);
    assert_eq!(certified("fixed", "certified"), 26);
    assert!(v["images"][0]["sequence"].is_string() && v["fixed"][0]["sequence"].is_null());
}
