//! Denoiser behaviour: BatchNorm folding, sizes, tiling, training and resume.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use robustify_denoiser::data::Photos;
use robustify_denoiser::train::{Hooks, Objective, TestSet, TrainConfig, train};
use robustify_denoiser::{Arch, Card, Denoiser, Net};
use robustify_smoothing::Image;

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A randomly initialised network whose BatchNorm statistics and last layer are far from
/// their defaults, saved with a card into `dir`.
fn random_model(arch: &Arch, dir: &Path) -> (VarMap, Net) {
    let varmap = VarMap::new();
    let net = Net::new(
        arch,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    robustify_train::optim::seeded_init(&varmap, 5, &[]).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let t = var.as_tensor();
        let scaled = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            Tensor::rand(0.5f32, 2.0, t.shape(), t.device()).unwrap()
        } else if name.ends_with("running_mean") || name.ends_with("bias") {
            Tensor::rand(-0.3f32, 0.3, t.shape(), t.device()).unwrap()
        } else {
            (t * 0.3).unwrap()
        };
        var.set(&scaled).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
    Card {
        name: "test".into(),
        arch: arch.clone(),
        sigma: 0.25,
        data: "photo".into(),
        psnr_floor: None,
        extra: Default::default(),
    }
    .write(&dir.join("card.json"))
    .unwrap();
    (varmap, net)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("robustify-denoiser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn folded_batchnorm_matches_the_trained_graph() {
    for name in ["dncnn-5-16", "unet-8-16-x2"] {
        let dir = tmp(&format!("fold-{name}"));
        let (_vm, net) = random_model(&Arch::parse(name).unwrap(), &dir);
        let x = Tensor::rand(0f32, 1.0, (2, 3, 16, 24), &Device::Cpu).unwrap();
        let reference = net.forward_t(&x, false).unwrap();
        let folded = Denoiser::load(&dir).unwrap().denoise_tensor(&x).unwrap();
        let scale = reference
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max_abs(&reference, &folded) / scale < 1e-4, "{name}");
        // And it is not the identity (the weights do something).
        assert!(max_abs(&folded, &x) > 1e-2, "{name}");
    }
}

#[test]
fn any_size_in_same_size_out() {
    let dir = tmp("sizes");
    let (_vm, net) = random_model(&Arch::parse("unet-8-16-x1").unwrap(), &dir);
    let den = Denoiser::load(&dir).unwrap();
    for (w, h) in [(1, 1), (7, 3), (32, 32), (33, 17), (224, 224)] {
        let img = Image::filled(w, h, 0.4).unwrap();
        let out = den.denoise(&[img.clone(), img]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].width(), out[0].height()), (w, h));
        assert_eq!(out[0], out[1]);
    }
    // Unpadded sizes give exactly the network's output.
    let x = Tensor::rand(0f32, 1.0, (1, 3, 16, 24), &Device::Cpu).unwrap();
    assert!(
        max_abs(
            &net.forward_t(&x, false).unwrap(),
            &den.denoise_tensor(&x).unwrap()
        ) < 1e-5
    );
}

#[test]
fn large_images_are_tiled_without_seams_for_dncnn() {
    // DnCNN-5 sees 5 pixels around each output: the 32-pixel tile margins cover it, so
    // tiling changes nothing.
    let dir = tmp("tiles");
    let (_vm, _net) = random_model(&Arch::parse("dncnn-5-8").unwrap(), &dir);
    let den = Denoiser::load(&dir).unwrap();
    let (w, h) = (601u32, 517u32);
    let data: Vec<f32> = (0..3 * w as u64 * h as u64)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let img = Image::new(w, h, data.clone()).unwrap();
    let tiled = den.denoise(&[img]).unwrap().remove(0);
    let x = Tensor::from_vec(data, (1, 3, h as usize, w as usize), &Device::Cpu).unwrap();
    let whole = den
        .denoise_tensor(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let diff = tiled
        .data()
        .iter()
        .zip(&whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{diff}");
}

/// 24 random smooth 40×40 images (gradients), so a denoiser has something to learn.
fn toy_photos() -> Photos {
    let dir = tmp("photos");
    std::fs::create_dir_all(&dir).unwrap();
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
    Photos::load(&dir, 256, |_, _| {}).unwrap()
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        arch: Arch::parse("dncnn-4-16").unwrap(),
        sigma: 0.25,
        epochs,
        batch_size: 8,
        crop: 16,
        crops_per_image: 2,
        lr: 3e-3,
        seed: 11,
        objective: Objective::Mse,
        init: None,
    }
}

fn run(
    data: &Photos,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    stop_at: Option<u64>,
) -> Vec<f32> {
    let mut losses = Vec::new();
    train(
        data,
        None,
        cfg,
        out,
        resume,
        Duration::from_secs(3600),
        Hooks {
            on_batch: &mut |r| losses.push(r.loss),
            on_epoch: &mut |_| {},
            should_stop: &mut |p| stop_at.is_some_and(|s| p.step >= s),
            guides: Vec::new(),
        },
    )
    .unwrap();
    losses
}

#[test]
fn training_lowers_the_loss_and_beats_the_noisy_input() {
    let data = toy_photos();
    let out = tmp("train");
    let cfg = config(10);
    let losses = run(&data, &cfg, &out, false, None);
    assert_eq!(losses.len(), 10 * 6);
    let first: f32 = losses[..6].iter().sum::<f32>() / 6.0;
    let last: f32 = losses[losses.len() - 6..].iter().sum::<f32>() / 6.0;
    // σ² = 0.0625 is the loss of the identity the network starts as.
    assert!(first > 0.04, "{first}");
    assert!(last < 0.6 * first, "first {first}, last {last}");
    let test = TestSet::center_crops(&data, 32, 0.25, 99).unwrap();
    Card {
        name: "toy".into(),
        arch: cfg.arch.clone(),
        sigma: 0.25,
        data: "photo".into(),
        psnr_floor: None,
        extra: Default::default(),
    }
    .write(&out.join("card.json"))
    .unwrap();
    let den = Denoiser::load(&out).unwrap();
    let (noisy, denoised) = test.psnr(8, |x| den.denoise_tensor(x)).unwrap();
    assert!(
        denoised > noisy + 3.0,
        "noisy {noisy} dB, denoised {denoised} dB"
    );
}

#[test]
fn stop_and_resume_gives_the_same_weights_as_one_run() {
    let data = toy_photos();
    let cfg = config(2);
    let whole = tmp("whole");
    let losses_whole = run(&data, &cfg, &whole, false, None);
    let parts = tmp("parts");
    // Stop mid-epoch (step 4 of 6), then resume to the end.
    let mut losses_parts = run(&data, &cfg, &parts, false, Some(4));
    assert_eq!(losses_parts.len(), 4);
    // Resuming without --resume is refused.
    assert!(train_quietly(&data, &cfg, &parts).is_err());
    losses_parts.extend(run(&data, &cfg, &parts, true, None));
    assert_eq!(losses_whole, losses_parts);
    let a = candle_core::safetensors::load(whole.join("model.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(parts.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        assert_eq!(max_abs(t, &b[k]), 0.0, "{k}");
    }
}

/// A fixed linear classifier over 16×16 crops: four classes, random weights. Noise moves
/// its logits by N(0, σ²‖w‖²), so noisy crops are often labelled otherwise than clean ones.
fn linear_classifier() -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let w: Vec<f32> = (0..4 * 3 * 16 * 16)
        .map(|_| rng.random_range(-1.0f32..1.0) / 16.0)
        .collect();
    Tensor::from_vec(w, (3 * 16 * 16, 4), &Device::Cpu).unwrap()
}

#[test]
fn the_stability_objective_fine_tunes_an_mse_denoiser_towards_the_classifier() {
    let data = toy_photos();
    let mse_cfg = config(6);
    let mse_dir = tmp("stab-init");
    run(&data, &mse_cfg, &mse_dir, false, None);
    let w = linear_classifier();
    let guide = |x: &Tensor| x.flatten_from(1)?.matmul(&w);
    let test = TestSet::center_crops(&data, 16, 0.25, 3).unwrap();
    let cfg = TrainConfig {
        epochs: 8,
        lr: 1e-3,
        objective: Objective::Stab {
            classifier: "linear".into(),
            mse_weight: 0.0,
        },
        init: Some(mse_dir.join("model.safetensors")),
        ..config(8)
    };
    let out = tmp("stab");
    let (mut mse, mut stab, mut agreement) = (Vec::new(), Vec::new(), Vec::new());
    train(
        &data,
        Some(&test),
        &cfg,
        &out,
        false,
        Duration::from_secs(3600),
        Hooks {
            on_batch: &mut |r| {
                mse.push(r.loss);
                stab.push(r.stab.unwrap());
            },
            on_epoch: &mut |e| agreement.push(e["test_agreement"].as_f64().unwrap()),
            should_stop: &mut |_| false,
            guides: vec![&guide],
        },
    )
    .unwrap();
    // It starts from the MSE denoiser, not from the identity (whose MSE is σ² = 0.0625).
    assert!(mse[0] < 0.03, "{}", mse[0]);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (first, last) = (mean(&stab[..6]), mean(&stab[stab.len() - 6..]));
    eprintln!("stability term {first} → {last}, test agreement {agreement:?}");
    assert!(last < 0.7 * first, "stability term {first} → {last}");
    assert!(
        agreement.last() >= agreement.first(),
        "test agreement {agreement:?}"
    );

    // Without the classifier the objective cannot run; a checkpoint from elsewhere cannot
    // start a model of another shape.
    assert!(train_quietly(&data, &cfg, &tmp("stab-no-guide")).is_err());
    let other = TrainConfig {
        arch: Arch::parse("dncnn-3-8").unwrap(),
        objective: Objective::Mse,
        ..cfg.clone()
    };
    assert!(train_quietly(&data, &other, &tmp("stab-bad-init")).is_err());
}

/// Trains without hooks or a classifier.
fn train_quietly(
    data: &Photos,
    cfg: &TrainConfig,
    out: &Path,
) -> robustify_denoiser::Result<robustify_train::checkpoint::Progress> {
    train(
        data,
        None,
        cfg,
        out,
        false,
        Duration::from_secs(1),
        Hooks {
            on_batch: &mut |_| {},
            on_epoch: &mut |_| {},
            should_stop: &mut |_| false,
            guides: Vec::new(),
        },
    )
}

#[test]
fn an_mse_config_serialises_as_before_the_stability_objective() {
    // Checkpoints compare their saved config with the run's: an MSE run must write exactly
    // the keys it wrote before `objective` and `init` existed, so old checkpoints resume.
    let v = serde_json::to_value(config(3)).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "arch",
            "batch_size",
            "crop",
            "crops_per_image",
            "epochs",
            "lr",
            "seed",
            "sigma"
        ]
    );
    let back: TrainConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back, config(3));
}
