//! The `cuda` build on a GPU: the denoiser's output and a certificate agree with the CPU's
//! (`.ci/run` type-checks this build with `cargo check --features cuda`; where a GPU is,
//! `scripts/gpu-check.sh` builds and runs it). Without a GPU each test says so and passes.
//!
//! How they are compared: the denoised pixels within 1e-3 (candle's CUDA convolutions sum
//! in another order than our CPU kernels: differences of ~1e-5 are expected); the
//! certificate exactly (label, counts, radius) for a fixed seed — a draw's label could only
//! flip where the stand-in's two best logits are within that difference, and the test
//! prints the counts of both so such a flip would be seen, not hidden.

use std::path::Path;

use candle_core::Device;
use robustify_denoiser::Denoiser;
use robustify_smoothing::{DecodeLimits, Image};

use crate::util::robustify;

fn gpu() -> Option<Device> {
    match robustify_ops::parse_device("cuda") {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn the_photo_denoiser_agrees_on_cpu_and_gpu() {
    let Some(device) = gpu() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("denoisers/photo-unet-0.25");
    let cpu = Denoiser::load_on(&dir, &Device::Cpu).unwrap();
    let gpu = Denoiser::load_on(&dir, &device).unwrap();
    let bytes = std::fs::read(root.join("examples/images/goldfish.jpg")).unwrap();
    let image = Image::decode(&bytes, &DecodeLimits::default()).unwrap();
    let a = cpu.denoise(std::slice::from_ref(&image)).unwrap();
    let b = gpu.denoise(std::slice::from_ref(&image)).unwrap();
    let diff = a[0]
        .data()
        .iter()
        .zip(b[0].data())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("denoiser CPU vs GPU: max |Δ| = {diff:e}");
    assert!(diff < 1e-3, "{diff}");
}

#[test]
fn a_certificate_is_the_same_on_cpu_and_gpu() {
    if gpu().is_none() {
        return;
    }
    let on = |device: &str| {
        robustify([
            "--device",
            device,
            "certify",
            "--denoiser",
            "photo-unet-0.25",
            "examples/images/goldfish.jpg",
            "--provider",
            "standin-local",
            "--sigma",
            "0.25",
            "--n0",
            "8",
            "--n",
            "64",
            "--seed",
            "7",
            "--fresh",
            "--json",
        ])
        .json()
    };
    let (cpu, gpu) = (on("cpu"), on("cuda"));
    eprintln!(
        "CPU: {} {}\nGPU: {} {}",
        cpu["label"], cpu["counts"], gpu["label"], gpu["counts"]
    );
    for field in ["label", "counts", "radius", "n0", "n", "seed"] {
        assert_eq!(cpu[field], gpu[field], "{field}");
    }
}
