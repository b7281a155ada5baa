//! The benchmark cases.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

use crate::Result;
use crate::timing::{both, timed};

/// Which cases, at which sizes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Smaller batches: a quick look.
    pub quick: bool,
    /// Also time stock candle's convolution (the slowest column).
    pub candle: bool,
    /// Only the cases whose name contains this text.
    pub only: Option<String>,
}

impl Options {
    fn wanted(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
    }

    /// `(batch, side, repetitions)` of the convolution and denoiser cases.
    fn shapes(&self) -> &'static [(usize, usize, usize)] {
        if self.quick {
            &[(16, 32, 3), (1, 224, 2)]
        } else {
            &[(64, 32, 3), (4, 224, 2)]
        }
    }
}

/// One timed case.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    /// What was timed.
    pub name: String,
    /// Images per second through our kernels.
    pub ours_img_s: f64,
    /// Ours without the Winograd path (every convolution as im2col + GEMM).
    pub im2col_img_s: Option<f64>,
    /// Stock candle's convolution.
    pub candle_img_s: Option<f64>,
    /// PyTorch on the same machine, same shapes.
    pub torch_img_s: Option<f64>,
    /// Ours ÷ candle's.
    pub ratio_vs_candle: Option<f64>,
    /// Ours ÷ PyTorch's.
    pub ratio_vs_torch: Option<f64>,
    /// Arithmetic rate of ours.
    pub gflop_s: f64,
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

    /// Joins PyTorch's figure for this case, when `torch` has one.
    pub fn with_torch(mut self, torch: &HashMap<String, f64>) -> Case {
        self.torch_img_s = torch.get(&self.name).copied();
        self.ratio_vs_torch = self.torch_img_s.map(|t| self.ours_img_s / t);
        self
    }
}

/// The DnCNN cases `options` selects (the ones PyTorch's script also times).
pub fn dncnn_case_names(options: &Options) -> Vec<String> {
    options
        .shapes()
        .iter()
        .flat_map(|&(b, hw, _)| ["forward", "train step"].map(|w| dncnn((b, hw), w)))
        .filter(|n| options.wanted(n))
        .collect()
}

/// The names of the cases `options` selects that PyTorch also times
/// (`scripts/bench_torch.py`): DnCNN's, and the Lite0 input-gradient step.
pub fn torch_case_names(options: &Options) -> Vec<String> {
    let mut names = dncnn_case_names(options);
    let lite = lite_input_grad(options);
    if options.wanted(&lite) {
        names.push(lite);
    }
    names
}

/// The Lite0 input-gradient case's name (batch 2 quick, 8 full).
fn lite_input_grad(options: &Options) -> String {
    let b = if options.quick { 2 } else { 8 };
    format!("standin imagenet efficientnet-lite0 224x224-b{b} input-grad step")
}

fn dncnn((b, hw): (usize, usize), what: &str) -> String {
    format!("dncnn17x64-{hw}x{hw}-b{b} {what}")
}

/// Every case `options` selects, in order: DnCNN's convolutions, the shipped denoisers'
/// architecture, the stand-ins.
pub fn run(options: &Options) -> Result<Vec<Case>> {
    let mut cases = dncnn_cases(options)?;
    cases.extend(denoiser_cases(options)?);
    cases.extend(standin_cases(options)?);
    Ok(cases)
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

fn dncnn_cases(options: &Options) -> Result<Vec<Case>> {
    let dev = Device::Cpu;
    let chans: Vec<usize> = [3].into_iter().chain([64; 16]).chain([3]).collect();
    let ws: Vec<Var> = chans
        .windows(2)
        .map(|p| Var::randn(0f32, 0.05, (p[1], p[0], 3, 3), &dev))
        .collect::<candle_core::Result<_>>()?;
    let mut cases = Vec::new();
    for &(b, hw, reps) in options.shapes() {
        // FLOPs per image, forward: 2·k²·Cin·Cout·H·W per layer; a training step ≈ 3×.
        let fwd: f64 = chans
            .windows(2)
            .map(|p| 2.0 * 9.0 * (p[0] * p[1] * hw * hw) as f64)
            .sum();
        let x = Tensor::randn(0f32, 1.0, (b, 3, hw, hw), &dev)?;
        for (what, flops) in [("forward", fwd), ("train step", 3.0 * fwd)] {
            let name = dncnn((b, hw), what);
            if !options.wanted(&name) {
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
            let candle = if options.candle {
                Some(speed(false)?)
            } else {
                None
            };
            let (im2col, ours) = both(|| speed(true))?;
            let mut case = Case::ours(name, ours, Some(im2col), flops / 1e9);
            case.candle_img_s = candle;
            case.ratio_vs_candle = candle.map(|c| ours / c);
            cases.push(case);
        }
    }
    Ok(cases)
}

/// The shipped denoisers' architecture (`unet-32-x2`): inference (BatchNorm folded, as
/// `--denoiser` runs it) and a training step (MSE, backward), at the benchmark shapes, on
/// the process's device (`--device`: a GPU's queue is drained inside each timing).
fn denoiser_cases(options: &Options) -> Result<Vec<Case>> {
    use robustify_denoiser::{Arch, Net};
    let dev = robustify_ops::device();
    let arch = Arch::parse("unet-32-x2")?;
    let varmap = VarMap::new();
    let train_net = Net::new(&arch, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let tensors = varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let infer_net = Net::for_inference(&arch, tensors, &dev)?;
    let mut cases = Vec::new();
    for &(b, hw, reps) in options.shapes() {
        let x = Tensor::rand(0f32, 1.0, (b, 3, hw, hw), &dev)?;
        let fwd = arch.flops_per_pixel() * (hw * hw) as f64;
        let on = if dev.is_cpu() { "" } else { " cuda" };
        let name = |what: &str| format!("{} {hw}x{hw}-b{b} {what}{on}", arch.name());
        for (what, flops) in [("forward", fwd), ("train step", 3.0 * fwd)] {
            if !options.wanted(&name(what)) {
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
                    dev.synchronize()?;
                    Ok(())
                })
            })?;
            cases.push(Case::ours(name(what), ips, Some(im2col), flops / 1e9));
        }
    }
    Ok(cases)
}

/// The stand-ins as shipped: the CIFAR-10 ResNet-20 forward and training step, the
/// ImageNet EfficientNet-Lite0's classification.
fn standin_cases(options: &Options) -> Result<Vec<Case>> {
    use robustify_standin::cifar::{CifarClassifier, CifarResNet, Config};
    let dev = Device::Cpu;
    let mut cases = Vec::new();
    let b = if options.quick { 32 } else { 128 };
    let name = format!("standin cifar10 resnet20 32x32-b{b} forward");
    if options.wanted(&name) {
        let cifar = CifarClassifier::load_default()?;
        let x = Tensor::rand(0f32, 1.0, (b, 3, 32, 32), &dev)?;
        let (im2col, ips) = both(|| timed(3, b, || Ok(cifar.logits(&x).map(|_| ())?)))?;
        cases.push(Case::ours(name, ips, Some(im2col), 0.0815));
    }
    let name = format!("standin cifar10 resnet20 32x32-b{b} train step");
    if options.wanted(&name) {
        // `robustify train classifier`'s step: fresh weights, cross-entropy, backward.
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
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
    let b = if options.quick { 2 } else { 8 };
    let name = format!("standin imagenet efficientnet-lite0 224x224-b{b} classify");
    if options.wanted(&name) {
        use robustify_standin::model::Classifier;
        let imagenet = robustify_standin::imagenet::ImageNetClassifier::load_default()?;
        let images = vec![robustify_smoothing::Image::filled(224, 224, 0.5)?; b];
        let ips = timed(3, b, || Ok(imagenet.classify(&images, 1).map(|_| ())?))?;
        cases.push(Case::ours(name, ips, None, 0.81));
    }
    // What tuning a photo denoiser through the stand-in costs per image: logits, a
    // cross-entropy, and its gradient down to the pixels (the weights frozen).
    let name = lite_input_grad(options);
    if options.wanted(&name) {
        let imagenet = robustify_standin::imagenet::ImageNetClassifier::load_default()?;
        let x = candle_core::Var::rand(0f32, 1.0, (b, 3, 224, 224), &dev)?;
        let labels: Vec<u32> = (0..b as u32).collect();
        let y = Tensor::from_vec(labels, b, &dev)?;
        let ips = timed(3, b, || {
            let loss = candle_nn::loss::cross_entropy(&imagenet.logits(&x)?, &y)?;
            let grads = loss.backward()?;
            grads.get(&x).map(|_| ()).ok_or_else(|| {
                crate::Error::Candle(candle_core::Error::Msg("no input gradient".into()))
            })
        })?;
        cases.push(Case::ours(name, ips, None, 2.0 * 0.81));
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_selects_cases_by_name() {
        let options = Options {
            quick: true,
            candle: false,
            only: Some("resnet20 32x32-b32 forward".into()),
        };
        assert!(dncnn_case_names(&options).is_empty());
        let cases = run(&options).unwrap();
        assert_eq!(cases.len(), 1, "{cases:?}");
        assert!(cases[0].ours_img_s > 0.0 && cases[0].gflop_s > 0.0);
        let torch: HashMap<String, f64> = [(cases[0].name.clone(), cases[0].ours_img_s / 2.0)]
            .into_iter()
            .collect();
        let joined = cases[0].clone().with_torch(&torch);
        assert!((joined.ratio_vs_torch.unwrap() - 2.0).abs() < 1e-9);
        let all = Options {
            quick: true,
            ..Options::default()
        };
        assert_eq!(dncnn_case_names(&all).len(), 4);
    }
}
