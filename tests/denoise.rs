//! Denoisers end to end: `train denoiser` → `denoisers list` → `denoise` → `certify
//! --denoiser`, and the errors a user meets on the way.

use std::path::Path;

use crate::util::{command, robustify, run, temp_dir};

/// 24 smooth 40×40 PNGs, enough for a few training steps.
fn toy_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..24u32 {
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            image::Rgb([
                (40 + x * 2 + k * 5) as u8,
                (200 - y * 3 - k * 2) as u8,
                (60 + (x + y) * 2 + k) as u8,
            ])
        });
        img.save(dir.join(format!("{k:02}.png"))).unwrap();
    }
}

#[test]
fn train_list_denoise_and_certify_with_a_trained_denoiser() {
    let dir = temp_dir("denoise-e2e");
    let data = dir.join("data");
    toy_folder(&data);
    let shipped = dir.join("shipped");
    let out = shipped.join("toy-dncnn");
    let train = |extra: &[&str]| {
        let mut cmd = command([
            "train",
            "denoiser",
            "--data",
            data.to_str().unwrap(),
            "--sigma",
            "0.25",
            "--arch",
            "dncnn-4-8",
            "--epochs",
            "3",
            "--crop",
            "16",
            "--batch-size",
            "8",
            "--hold-out",
            "6",
            "--test-crop",
            "32",
            "--out",
            out.to_str().unwrap(),
        ]);
        cmd.args(extra);
        run(cmd)
    };
    let done = train(&[]).ok();
    assert!(done.contains("test_psnr"), "{done}");
    // Training again into the same folder without --resume is refused.
    let again = train(&[]).fails();
    assert!(again.contains("--resume"), "{again}");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("card.json")).unwrap()).unwrap();
    assert_eq!(card["name"], "toy-dncnn");
    assert_eq!(card["sigma"], 0.25);
    assert_eq!(card["data"], "photo");
    assert_eq!(card["epochs_done"], 3);
    assert!(card["command"].as_str().unwrap().contains("train denoiser"));
    let (noisy, denoised) = (
        card["test_psnr_noisy"].as_f64().unwrap(),
        card["test_psnr"].as_f64().unwrap(),
    );
    assert!(denoised > noisy, "noisy {noisy} dB, denoised {denoised} dB");

    // Listed when it is among the shipped ones.
    let mut cmd = command(["denoisers", "list", "--json"]);
    cmd.env("ROBUSTIFY_DENOISERS", &shipped);
    let list = run(cmd).json();
    assert_eq!(list[0]["name"], "toy-dncnn");
    assert_eq!(list[0]["arch"], "dncnn-4-8");
    assert_eq!(list[0]["data"], "photo");

    // `denoise` writes both PNGs, by name or by path.
    let pngs = dir.join("pngs");
    let mut cmd = command([
        "denoise",
        data.join("03.png").to_str().unwrap(),
        "--sigma",
        "0.25",
        "--denoiser",
        "toy-dncnn",
        "--out",
        pngs.to_str().unwrap(),
    ]);
    cmd.env("ROBUSTIFY_DENOISERS", &shipped);
    let said = run(cmd).ok();
    assert!(said.contains("PSNR noisy"), "{said}");
    for f in ["noisy.png", "denoised.png"] {
        let img = image::open(pngs.join(f)).unwrap();
        assert_eq!((img.width(), img.height()), (40, 40));
    }

    // Certify through it (the CIFAR stand-in, in process): the header names it.
    let text = robustify([
        "certify",
        "tests/fixtures/cifar10/ship/0000.jpg",
        "--provider",
        "standin-cifar10-local",
        "--denoiser",
        out.to_str().unwrap(),
        "--sigma",
        "0.25",
        "--n0",
        "4",
        "--n",
        "16",
    ])
    .ok();
    assert!(text.contains("denoiser toy-dncnn"), "{text}");
}

#[test]
fn unknown_denoiser_and_missing_sigma_match_are_clear_errors() {
    let err = robustify([
        "certify",
        "examples/images/goldfish.jpg",
        "--denoiser",
        "no-such-denoiser",
        "--sigma",
        "0.25",
        "--n0",
        "2",
        "--n",
        "4",
    ])
    .fails();
    assert!(
        err.contains("unknown denoiser \"no-such-denoiser\""),
        "{err}"
    );
    // No shipped photo denoiser is trained for σ = 0.77: say so, and how to proceed.
    let err = robustify([
        "certify",
        "examples/images/goldfish.jpg",
        "--sigma",
        "0.77",
        "--n0",
        "2",
        "--n",
        "4",
    ])
    .fails();
    assert!(err.contains("--no-denoiser"), "{err}");
    // A folder without a card.
    let dir = temp_dir("denoise-bad");
    let err = robustify([
        "denoise",
        "examples/images/goldfish.jpg",
        "--sigma",
        "0.25",
        "--denoiser",
        dir.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .fails();
    assert!(err.contains("unknown denoiser"), "{err}");
}
