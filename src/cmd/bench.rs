//! `robustify bench`: convolution speed, candle's own against robustify's, and PyTorch's
//! when it is installed — all in one run, so the ratios compare like with like.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor, Var};
use serde::Serialize;

use crate::render;
use crate::render::outln;

/// Arguments of `robustify bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Smaller batches: a quick look (best of 2–3 runs per case, like the full run).
    #[arg(long)]
    quick: bool,
    /// Skip the PyTorch baseline even when torch is importable.
    #[arg(long)]
    no_torch: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip stock candle's convolution (the slowest column: minutes of a full run).
    #[arg(long)]
    no_candle: bool,
    /// Run only the cases whose name contains this text (e.g. `dncnn17x64-32x32`,
    /// `forward`, `standin`).
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
}

#[derive(Serialize)]
struct Case {
    name: String,
    ours_img_s: f64,
    /// Ours without the Winograd path (every convolution as im2col + GEMM).
    im2col_img_s: Option<f64>,
    candle_img_s: Option<f64>,
    torch_img_s: Option<f64>,
    ratio_vs_candle: Option<f64>,
    ratio_vs_torch: Option<f64>,
    gflop_s: f64,
}

impl Case {
    /// A case timed for ours (and ours on im2col) only.
    fn ours(name: String, ips: f64, im2col: Option<f64>, gflop_per_image: f64) -> Case {
        Case {
            name,
            ours_img_s: ips,
            im2col_img_s: im2col,
            candle_img_s: None,
            torch_img_s: None,
            ratio_vs_candle: None,
            ratio_vs_torch: None,
            gflop_s: gflop_per_image * ips,
        }
    }
}

/// DnCNN's convolutions (17 layers, 3×3, 64 channels) with ReLU, without BatchNorm. Ours
/// fuses the ReLU into the convolution (forward and backward); candle's is its own op.
fn stack(x: &Tensor, ws: &[Var], ours: bool) -> candle_core::Result<Tensor> {
    use robustify_ops::Activation;
    let mut y = x.clone();
    for (i, w) in ws.iter().enumerate() {
        let relu = i + 1 < ws.len();
        y = if ours {
            let act = if relu {
                Activation::Relu
            } else {
                Activation::None
            };
            robustify_ops::conv2d_act(&y, w, 1, 1, act)?
        } else if relu {
            y.conv2d(w, 1, 1, 1, 1)?.relu()?
        } else {
            y.conv2d(w, 1, 1, 1, 1)?
        };
    }
    Ok(y)
}

/// `measure()` with the Winograd path off, then on: `(im2col, ours)`.
fn both(mut measure: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<(f64, f64)> {
    robustify_ops::set_winograd(false);
    let im2col = measure();
    robustify_ops::set_winograd(true);
    Ok((im2col?, measure()?))
}

/// Images per second of `f`: the best of `reps` runs after one warm-up (the best, not the
/// mean, so that a neighbour's burst on a shared machine does not count against us).
fn timed(
    reps: usize,
    images: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(images as f64 / best)
}

/// The shipped denoisers' architecture (`unet-32-x2`): inference (BatchNorm folded, as `--denoiser` runs it) and a
/// training step (MSE, backward), at the benchmark shapes.
fn denoiser_cases(
    shapes: &[(usize, usize, usize)],
    wanted: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Case>> {
    use candle_core::DType;
    use candle_nn::{VarBuilder, VarMap};
    use robustify_denoiser::{Arch, Net};
    let dev = Device::Cpu;
    let arch = Arch::parse("unet-32-x2")?;
    let varmap = VarMap::new();
    let train_net = Net::new(&arch, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let tensors = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let infer_net = Net::for_inference(&arch, tensors, &dev)?;
    let mut cases = Vec::new();
    for &(b, hw, reps) in shapes {
        let x = Tensor::rand(0f32, 1.0, (b, 3, hw, hw), &dev)?;
        let fwd = arch.flops_per_pixel() * (hw * hw) as f64;
        let name = |what: &str| format!("{} {hw}x{hw}-b{b} {what}", arch.name());
        for (what, flops) in [("forward", fwd), ("train step", 3.0 * fwd)] {
            if !wanted(&name(what)) {
                continue;
            }
            let (im2col, ips) = both(|| {
                timed(reps, b, || {
                    if what == "forward" {
                        infer_net.forward_t(&x, false)?;
                    } else {
                        let loss = (train_net.forward_t(&x, true)? - &x)?.sqr()?.mean_all()?;
                        loss.backward()?;
                    }
                    Ok(())
                })
            })?;
            cases.push(Case::ours(name(what), ips, Some(im2col), flops / 1e9));
        }
    }
    Ok(cases)
}

/// The PyTorch figures, keyed by case name, if `python3` has torch.
fn torch_baseline(quick: bool) -> Option<std::collections::HashMap<String, f64>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch.py");
    let out = std::process::Command::new("python3")
        .args([script, if quick { "1" } else { "0" }])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("PyTorch baseline skipped: `python3 -c 'import torch'` does not work here");
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!(
            "{} a debug build; measure with `cargo run --release -- bench`",
            crate::render::label("warning")
        );
    }
    let dev = Device::Cpu;
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    let shapes: &[(usize, usize, usize)] = if args.quick {
        &[(16, 32, 3), (1, 224, 2)]
    } else {
        &[(64, 32, 3), (4, 224, 2)]
    };
    let dncnn = |(b, hw): (usize, usize), what: &str| format!("dncnn17x64-{hw}x{hw}-b{b} {what}");
    let any_dncnn = shapes.iter().any(|&(b, hw, _)| {
        ["forward", "train step"]
            .iter()
            .any(|what| wanted(&dncnn((b, hw), what)))
    });
    let torch = if args.no_torch || !any_dncnn {
        None
    } else {
        torch_baseline(args.quick)
    };
    let chans: Vec<usize> = [3].into_iter().chain([64; 16]).chain([3]).collect();
    let ws: Vec<Var> = chans
        .windows(2)
        .map(|p| Var::randn(0f32, 0.05, (p[1], p[0], 3, 3), &dev))
        .collect::<candle_core::Result<_>>()?;
    let mut cases = Vec::new();
    for &(b, hw, reps) in shapes {
        // FLOPs per image, forward: 2·k²·Cin·Cout·H·W per layer; a training step ≈ 3×.
        let fwd: f64 = chans
            .windows(2)
            .map(|p| 2.0 * 9.0 * (p[0] * p[1] * hw * hw) as f64)
            .sum();
        let x = Tensor::randn(0f32, 1.0, (b, 3, hw, hw), &dev)?;
        for (what, flops) in [("forward", fwd), ("train step", 3.0 * fwd)] {
            let case = dncnn((b, hw), what);
            if !wanted(&case) {
                continue;
            }
            let speed = |ours| {
                timed(reps, b, || {
                    let y = stack(&x, &ws, ours)?;
                    if what == "train step" {
                        y.sqr()?.mean_all()?.backward()?;
                    }
                    Ok(())
                })
            };
            // Candle's conv2d, then ours without Winograd and ours.
            let candle = if args.no_candle {
                None
            } else {
                Some(speed(false)?)
            };
            let (im2col, ours) = both(|| speed(true))?;
            let torch_img_s = torch.as_ref().and_then(|t| t.get(&case).copied());
            cases.push(Case {
                ours_img_s: ours,
                im2col_img_s: Some(im2col),
                candle_img_s: candle,
                ratio_vs_candle: candle.map(|c| ours / c),
                ratio_vs_torch: torch_img_s.map(|t| ours / t),
                torch_img_s,
                gflop_s: flops * ours / 1e9,
                name: case,
            });
        }
    }
    // The shipped denoisers' architecture, folded for inference, and in training.
    cases.extend(denoiser_cases(shapes, &wanted)?);
    // The stand-ins' forward passes, as shipped.
    let b = if args.quick { 32 } else { 128 };
    let name = format!("standin cifar10 resnet20 32x32-b{b} forward");
    if wanted(&name) {
        let cifar = robustify_standin::cifar::CifarClassifier::load_default()
            .context("loading the CIFAR-10 stand-in")?;
        let x = Tensor::rand(0f32, 1.0, (b, 3, 32, 32), &dev)?;
        let (im2col, ips) = both(|| timed(3, b, || Ok(cifar.logits(&x).map(|_| ())?)))?;
        cases.push(Case::ours(name, ips, Some(im2col), 0.0815));
    }
    let name = format!("standin cifar10 resnet20 32x32-b{b} train step");
    if wanted(&name) {
        // The CIFAR-10 stand-in's training step (`robustify train classifier`): fresh
        // weights, cross-entropy, backward.
        use candle_nn::{VarBuilder, VarMap};
        use robustify_standin::cifar::{CifarResNet, Config};
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &dev);
        let net = CifarResNet::new(&Config::resnet20(), vb)?;
        let x = Tensor::rand(0f32, 1.0, (b, 3, 32, 32), &dev)?;
        let labels: Vec<u32> = (0..b as u32).map(|i| i % 10).collect();
        let y = Tensor::from_vec(labels, b, &dev)?;
        let (im2col, ips) = both(|| {
            timed(3, b, || {
                let loss = candle_nn::loss::cross_entropy(&net.forward_t(&x, true)?, &y)?;
                loss.backward()?;
                Ok(())
            })
        })?;
        cases.push(Case::ours(name, ips, Some(im2col), 3.0 * 0.0815));
    }
    let b = if args.quick { 2 } else { 8 };
    let name = format!("standin imagenet efficientnet-lite0 224x224-b{b} classify");
    if wanted(&name) {
        let imagenet = robustify_standin::imagenet::ImageNetClassifier::load_default()
            .context("loading the ImageNet stand-in")?;
        let images = vec![robustify_smoothing::Image::filled(224, 224, 0.5)?; b];
        use robustify_standin::model::Classifier;
        let ips = timed(3, b, || Ok(imagenet.classify(&images, 1).map(|_| ())?))?;
        cases.push(Case::ours(name, ips, None, 0.81));
    }
    if args.json {
        render::print_json(&serde_json::json!({ "cases": cases }))?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "case (images/s)",
        "ours",
        "im2col",
        "candle",
        "torch",
        "÷candle",
        "÷torch",
        "GFLOP/s"
    )?;
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for c in &cases {
        outln!(
            "{:<52} {:>9.1} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8.1}",
            c.name,
            c.ours_img_s,
            opt(c.im2col_img_s, 1),
            opt(c.candle_img_s, 1),
            opt(c.torch_img_s, 1),
            opt(c.ratio_vs_candle, 2),
            opt(c.ratio_vs_torch, 2),
            c.gflop_s
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
