//! `robustify certify` end to end with the in-process ImageNet stand-in.

use crate::util::{robustify, temp_dir};

fn certify_json(seed: &str) -> serde_json::Value {
    robustify([
        "certify",
        "--no-denoiser",
        "examples/images/goldfish.jpg",
        "--provider",
        "standin-local",
        "--sigma",
        "0.12",
        "--n0",
        "4",
        "--n",
        "24",
        "--seed",
        seed,
        "--batch-size",
        "8",
        "--json",
    ])
    .json()
}

#[test]
fn certificate_fields_and_reproducibility() {
    let a = certify_json("7");
    assert_eq!(a["queries"], 28);
    assert_eq!(a["n0"], 4);
    assert_eq!(a["n"], 24);
    assert_eq!(a["seed"], 7);
    assert_eq!(a["cost_usd"], 0.0);
    let total: u64 = a["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 24);
    // At σ = 0.12 the stand-in still sees a goldfish in every draw: 24 agreeing draws
    // certify σ·Φ⁻¹(0.001^(1/24)) = 0.12·Φ⁻¹(0.7499) = 0.0809.
    assert_eq!(a["label"], "goldfish");
    assert!((a["radius"].as_f64().unwrap() - 0.0809).abs() < 1e-3, "{a}");
    // Same seed, same draws, same certificate.
    assert_eq!(certify_json("7"), a);
}

#[test]
fn missing_keys_and_bad_images_fail_clearly() {
    let err = robustify([
        "certify",
        "--no-denoiser",
        "examples/images/goldfish.jpg",
        "--provider",
        "google",
        "--sigma",
        "0.25",
        "--n0",
        "1",
        "--n",
        "10",
    ])
    .fails();
    assert!(err.contains("GOOGLE_API_KEY"), "{err}");
    let dir = temp_dir("certify-bad");
    let bad = dir.join("empty.png");
    std::fs::write(&bad, b"").unwrap();
    let err = robustify([
        "certify",
        "--no-denoiser",
        bad.to_str().unwrap(),
        "--sigma",
        "0.25",
        "--n0",
        "1",
        "--n",
        "10",
    ])
    .fails();
    assert!(
        err.contains("empty.png") && err.contains("0 bytes"),
        "{err}"
    );
    let err = robustify([
        "certify",
        "--no-denoiser",
        "examples/images/goldfish.jpg",
        "--sigma",
        "0",
        "--n0",
        "1",
        "--n",
        "10",
    ])
    .fails();
    assert!(err.contains("sigma"), "{err}");
}

#[test]
fn sequential_mode_stops_once_the_target_radius_is_decided() {
    let v = robustify([
        "certify",
        "--no-denoiser",
        "examples/images/goldfish.jpg",
        "--mode",
        "sequential",
        "--sigma",
        "0.12",
        "--n0",
        "4",
        "--target-radius",
        "0.05",
        "--max-draws",
        "200",
        "--batch-size",
        "8",
        "--json",
    ])
    .json();
    // Every draw agrees: the KT wealth at p* = Φ(0.05/0.12) = 0.6615 after n agreeing
    // draws is B(n + ½, ½)/π / p*^n: 4.65 in logs at n = 16, 7.75 at n = 24, past
    // ln(1/α) = 6.91 — so it stops after 3 batches of 8, not 200 draws.
    assert_eq!(v["mode"], "sequential");
    assert_eq!(v["decision"], "certified");
    assert_eq!(v["label"], "goldfish");
    assert_eq!(v["n"], 24, "{v}");
    assert_eq!(v["queries"], 28);
    assert!(v["radius"].as_f64().unwrap() >= 0.05);
}

#[test]
fn the_cifar10_stand_in_runs_in_process() {
    let v = robustify([
        "certify",
        "--no-denoiser",
        "tests/fixtures/cifar10/ship/0000.jpg",
        "--provider",
        "standin-cifar10-local",
        "--sigma",
        "0.12",
        "--n0",
        "4",
        "--n",
        "20",
        "--json",
    ])
    .json();
    assert_eq!(v["queries"], 24);
    let classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    for label in v["counts"].as_object().unwrap().keys() {
        assert!(classes.contains(&label.as_str()), "{label}");
    }
}
