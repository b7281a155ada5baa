//! `robustify noise`: reproducible noisy copies, written as a provider would receive them.

use crate::util::{robustify, temp_dir};

#[test]
fn same_seed_same_files() {
    let dir = temp_dir("noise-seed");
    let src = dir.join("gray.png");
    // A 4x3 mid-gray PNG.
    let img = robustify_smoothing::Image::filled(4, 3, 0.5).unwrap();
    std::fs::write(&src, img.to_png().unwrap()).unwrap();
    let run = |seed: &str, out: &str| {
        robustify([
            "noise",
            src.to_str().unwrap(),
            "--sigma",
            "0.25",
            "--seed",
            seed,
            "--count",
            "2",
            "--out",
            dir.join(out).to_str().unwrap(),
        ])
        .ok()
    };
    run("5", "a");
    run("5", "b");
    run("6", "c");
    let read = |d: &str, f: &str| std::fs::read(dir.join(d).join(f)).unwrap();
    assert_eq!(read("a", "noisy-5-0.png"), read("b", "noisy-5-0.png"));
    assert_ne!(read("a", "noisy-5-0.png"), read("a", "noisy-5-1.png"));
    assert_ne!(read("a", "noisy-5-0.png"), read("c", "noisy-6-0.png"));
    let back = robustify_smoothing::Image::decode(
        &read("a", "noisy-5-1.png"),
        &robustify_smoothing::DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!((back.width(), back.height()), (4, 3));
    assert!(back.data().iter().all(|v| (0.0..=1.0).contains(v)));
}
