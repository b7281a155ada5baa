//! ResNet-20 for CIFAR-10 (He, Zhang, Ren & Sun, "Deep Residual Learning for Image
//! Recognition", CVPR 2016, §4.2, <https://arxiv.org/abs/1512.03385>): a 16-channel stem,
//! three stages of basic blocks at 16, 32 and 64 channels (stride 2 between stages, 1×1
//! projection shortcuts where the shape changes), global average pooling and a linear
//! layer. Inputs are RGB in `[0, 1]`; the per-channel CIFAR-10 normalisation is the
//! network's first step, so callers never normalise.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{BatchNorm, Linear, VarBuilder};
use robustify_ops::{Activation, batch_norm_act};
use robustify_smoothing::Image;

use crate::model::{Classifier, Scored, ranked};
use crate::{Error, Result};

/// The ten classes, in the order of their folder names (sorted).
pub const CLASSES: [&str; 10] = [
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

/// CIFAR-10 training-set channel means and standard deviations.
const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// Widths and depth of a CIFAR ResNet.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Channels of the three stages.
    pub widths: [usize; 3],
    /// Basic blocks per stage (ResNet-6n+2 has n).
    pub blocks: usize,
    /// Output classes.
    pub classes: usize,
}

impl Config {
    /// ResNet-20: widths 16/32/64, 3 blocks per stage, 0.27M parameters.
    pub fn resnet20() -> Config {
        Config {
            widths: [16, 32, 64],
            blocks: 3,
            classes: 10,
        }
    }
}

/// A bias-free convolution on robustify-ops' im2col + GEMM path (about 2× faster to train
/// than candle's own on 2 cores; `robustify bench`).
struct Conv2d {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        robustify_ops::conv2d(x, &self.weight, self.padding, self.stride)
    }
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    vb: VarBuilder,
) -> candle_core::Result<Conv2d> {
    let weight = vb.get_with_hints(
        (cout, cin, k, k),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    Ok(Conv2d {
        weight,
        stride,
        padding: k / 2,
    })
}

fn bn(c: usize, vb: VarBuilder) -> candle_core::Result<BatchNorm> {
    candle_nn::batch_norm(
        c,
        candle_nn::BatchNormConfig {
            eps: 1e-5,
            ..Default::default()
        },
        vb,
    )
}

struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> candle_core::Result<Block> {
        let shortcut = if stride != 1 || cin != cout {
            Some((
                conv(cin, cout, 1, stride, vb.pp("shortcut.0"))?,
                bn(cout, vb.pp("shortcut.1"))?,
            ))
        } else {
            None
        };
        Ok(Block {
            conv1: conv(cin, cout, 3, stride, vb.pp("conv1"))?,
            bn1: bn(cout, vb.pp("bn1"))?,
            conv2: conv(cout, cout, 3, 1, vb.pp("conv2"))?,
            bn2: bn(cout, vb.pp("bn2"))?,
            shortcut,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let y = batch_norm_act(&self.bn1, &self.conv1.forward(x)?, train, Activation::Relu)?;
        let y = batch_norm_act(&self.bn2, &self.conv2.forward(&y)?, train, Activation::None)?;
        let s = match &self.shortcut {
            Some((c, b)) => batch_norm_act(b, &c.forward(x)?, train, Activation::None)?,
            None => x.clone(),
        };
        (y + s)?.relu()
    }
}

/// A CIFAR ResNet; weights named like torchvision-style CIFAR ResNets (`conv1`, `bn1`,
/// `layers.S.B.conv1`, …, `fc`).
pub struct CifarResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    fc: Linear,
    mean: Tensor,
    std: Tensor,
}

impl CifarResNet {
    /// Builds the network; with a `VarMap`-backed builder this creates trainable variables.
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<CifarResNet> {
        let dev = vb.device().clone();
        let mut blocks = Vec::new();
        let mut cin = cfg.widths[0];
        for (s, &w) in cfg.widths.iter().enumerate() {
            for b in 0..cfg.blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(
                    cin,
                    w,
                    stride,
                    vb.pp(format!("layers.{s}.{b}")),
                )?);
                cin = w;
            }
        }
        Ok(CifarResNet {
            conv1: conv(3, cfg.widths[0], 3, 1, vb.pp("conv1"))?,
            bn1: bn(cfg.widths[0], vb.pp("bn1"))?,
            blocks,
            fc: candle_nn::linear(cin, cfg.classes, vb.pp("fc"))?,
            mean: Tensor::from_slice(&MEAN, (1, 3, 1, 1), &dev)?,
            std: Tensor::from_slice(&STD, (1, 3, 1, 1), &dev)?,
        })
    }

    /// Logits for `[N, 3, H, W]` images in `[0, 1]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let stem = self.conv1.forward(&x)?;
        let mut y = batch_norm_act(&self.bn1, &stem, train, Activation::Relu)?;
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        let pooled = y.flatten_from(2)?.mean(2)?;
        self.fc.forward(&pooled)
    }
}

/// The CIFAR-10 stand-in: a trained [`CifarResNet`] on 32×32 inputs.
pub struct CifarClassifier {
    model: CifarResNet,
    device: Device,
}

/// The shipped weights, relative to the repository root.
pub const WEIGHTS: &str = "providers/standin/cifar10/model.safetensors";

impl CifarClassifier {
    /// Loads the shipped weights ([`WEIGHTS`]).
    pub fn load_default() -> Result<CifarClassifier> {
        CifarClassifier::load(&crate::imagenet::repo_root().join(WEIGHTS))
    }

    /// The classifier `name` names: `standin-cifar10` (the shipped weights), or another
    /// CIFAR-10 ResNet-20's weights — a `.safetensors` file, or the folder
    /// `robustify train classifier --out` wrote (a surrogate).
    pub fn load_named(name: &str) -> Result<CifarClassifier> {
        let path = Path::new(name);
        match name {
            "standin-cifar10" => CifarClassifier::load_default(),
            _ if name.ends_with(".safetensors") => CifarClassifier::load(path),
            _ if path.is_dir() => CifarClassifier::load(&path.join("model.safetensors")),
            _ => Err(Error::Weights {
                path: path.to_path_buf(),
                message: "expected standin-cifar10 or the weights of a CIFAR-10 ResNet-20 (a \
                          .safetensors file or its folder); the ImageNet stand-in runs forward \
                          only"
                    .into(),
            }),
        }
    }

    /// Loads ResNet-20 weights from `path`.
    pub fn load(path: &Path) -> Result<CifarClassifier> {
        if !path.exists() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: "file not found (train one with `robustify train classifier`)".into(),
            });
        }
        let device = robustify_ops::device();
        let tensors = candle_core::safetensors::load(path, &device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = CifarResNet::new(&Config::resnet20(), vb).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(CifarClassifier { model, device })
    }

    /// The network (frozen weights; differentiable with respect to its input).
    pub fn network(&self) -> &CifarResNet {
        &self.model
    }

    /// Logits for a `[N, 3, 32, 32]` batch in `[0, 1]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward_t(x, false)?)
    }
}

/// Resizes (bilinear) to 32×32 when needed and clips to `[0, 1]`, as a vendor would.
fn to_32(image: &Image) -> Vec<f32> {
    let (w, h) = (image.width(), image.height());
    let plane = (w * h) as usize;
    let src = image.data();
    if (w, h) == (32, 32) {
        return src.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    }
    let img = image::Rgb32FImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        image::Rgb([0, 1, 2].map(|c| src[c * plane + i].clamp(0.0, 1.0)))
    });
    let small = image::imageops::resize(&img, 32, 32, image::imageops::FilterType::Triangle);
    let mut out = vec![0f32; 3 * 1024];
    for (i, px) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * 1024 + i] = px.0[c];
        }
    }
    out
}

impl Classifier for CifarClassifier {
    fn name(&self) -> &str {
        "cifar10-resnet20"
    }

    fn classify(&self, images: &[Image], top_k: usize) -> Result<Vec<Vec<Scored>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let data: Vec<f32> = images.iter().flat_map(to_32).collect();
        let x = Tensor::from_vec(data, (images.len(), 3, 32, 32), &self.device)?;
        ranked(&self.logits(&x)?, top_k, |i| {
            (CLASSES[i].into(), CLASSES[i].into())
        })
    }
}
