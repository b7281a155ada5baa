//! EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
//! Neural Networks", ICML 2019, <https://arxiv.org/abs/1905.11946>; Lite variants from the
//! TensorFlow TPU repository's `efficientnet/lite`): no squeeze-and-excitation, ReLU6,
//! fixed 32-channel stem and 1,280-channel head.
//!
//! Weight names follow the EfficientNet-PyTorch state dict (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv`, …, `_fc`). BatchNorm is folded into each convolution at load,
//! so inference is convolution + bias (+ ReLU6) throughout. Convolutions use TensorFlow
//! "SAME" padding, as the weights were trained with it.

use candle_core::{D, Tensor};
use robustify_ops::{Activation, Depthwise, conv2d_bias_act, same_padding};

use crate::Result;
use crate::weights::Weights;

/// One stage of MBConv blocks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageConfig {
    /// Blocks in the stage.
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Expansion ratio of the inverted bottleneck.
    pub expand: usize,
    /// Input channels of the first block.
    pub input: usize,
    /// Output channels.
    pub output: usize,
}

/// An EfficientNet-Lite architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The stages, in order.
    pub stages: Vec<StageConfig>,
    /// Stem output channels.
    pub stem: usize,
    /// Head channels before the classifier.
    pub head: usize,
    /// BatchNorm ε.
    pub bn_eps: f64,
}

impl Config {
    /// EfficientNet-Lite0 (width 1.0, depth 1.0, 224×224): 16 blocks, 4.65M parameters.
    pub fn lite0() -> Config {
        Config::lite(1.0, 1.0)
    }

    /// The Lite family member of `width` and `depth` multipliers (TensorFlow's
    /// `efficientnet_lite_builder`: Lite1 is (1.0, 1.1), Lite2 (1.1, 1.2)). Lite models fix
    /// the stem (32) and head (1,280) and the first and last stages' repeats; every other
    /// stage repeats ⌈depth·r⌉ times, and channel counts are width-scaled and rounded to
    /// multiples of 8 (never more than 10% down).
    pub fn lite(width: f64, depth: f64) -> Config {
        let filters = |c: usize| -> usize {
            let scaled = c as f64 * width;
            let mut rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
            if (rounded as f64) < 0.9 * scaled {
                rounded += 8;
            }
            rounded
        };
        // (repeats, kernel, stride, expand, input, output): EfficientNet-B0's stages.
        let base = [
            (1, 3, 1, 1, 32, 16),
            (2, 3, 2, 6, 16, 24),
            (2, 5, 2, 6, 24, 40),
            (3, 3, 2, 6, 40, 80),
            (3, 5, 1, 6, 80, 112),
            (4, 5, 2, 6, 112, 192),
            (1, 3, 1, 6, 192, 320),
        ];
        let last = base.len() - 1;
        let stages = base
            .iter()
            .enumerate()
            .map(
                |(i, &(repeats, kernel, stride, expand, input, output))| StageConfig {
                    repeats: if i == 0 || i == last {
                        repeats
                    } else {
                        (depth * repeats as f64).ceil() as usize
                    },
                    kernel,
                    stride,
                    expand,
                    input: if i == 0 { input } else { filters(input) },
                    output: filters(output),
                },
            )
            .collect();
        Config {
            stages,
            stem: 32,
            head: 1280,
            bn_eps: 1e-3,
        }
    }
}

/// A 1×1 convolution as a matrix product, with folded bias and optional ReLU6.
struct Pointwise {
    /// `[C_out, C_in, 1, 1]`.
    weight: Tensor,
    /// `[C_out]`.
    bias: Tensor,
    relu6: bool,
}

impl Pointwise {
    fn new(w: &Weights, conv: &str, bn: &str, eps: f64, relu6: bool) -> Result<Pointwise> {
        let (weight, bias) = w.fold_bn(&w.get(&format!("{conv}.weight"))?, bn, eps)?;
        Ok(Pointwise {
            weight,
            bias: bias.flatten_all()?,
            relu6,
        })
    }

    /// A 1×1 convolution, its bias and ReLU6 in one pass (robustify-ops).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let act = if self.relu6 {
            Activation::Relu6
        } else {
            Activation::None
        };
        Ok(conv2d_bias_act(x, &self.weight, &self.bias, 0, 1, act)?)
    }
}

struct MbConv {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

impl MbConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = match &self.expand {
            Some(e) => e.forward(x)?,
            None => x.clone(),
        };
        y = self.depthwise.forward(&y.contiguous()?)?;
        y = self.project.forward(&y)?;
        if self.residual {
            y = (y + x)?;
        }
        Ok(y)
    }
}

/// EfficientNet-Lite for inference: NCHW input, normalised as [`crate::preprocess`] does;
/// logits out.
pub struct EfficientNetLite {
    stem_w: Tensor,
    stem_b: Tensor,
    blocks: Vec<MbConv>,
    head: Pointwise,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl EfficientNetLite {
    /// Builds the network from EfficientNet-PyTorch-named weights, folding BatchNorm.
    pub fn new(cfg: &Config, w: &Weights) -> Result<EfficientNetLite> {
        let eps = cfg.bn_eps;
        let (stem_w, stem_b) = w.fold_bn(&w.get("_conv_stem.weight")?, "_bn0", eps)?;
        let mut blocks = Vec::new();
        for stage in &cfg.stages {
            for r in 0..stage.repeats {
                let i = blocks.len();
                let p = format!("_blocks.{i}");
                let input = if r == 0 { stage.input } else { stage.output };
                let stride = if r == 0 { stage.stride } else { 1 };
                let expand = if stage.expand != 1 {
                    Some(Pointwise::new(
                        w,
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        eps,
                        true,
                    )?)
                } else {
                    None
                };
                let (dw, db) = w.fold_bn(
                    &w.get(&format!("{p}._depthwise_conv.weight"))?,
                    &format!("{p}._bn1"),
                    eps,
                )?;
                blocks.push(MbConv {
                    expand,
                    depthwise: Depthwise::new(&dw, &db, stride, true)?,
                    project: Pointwise::new(
                        w,
                        &format!("{p}._project_conv"),
                        &format!("{p}._bn2"),
                        eps,
                        false,
                    )?,
                    residual: stride == 1 && input == stage.output,
                });
            }
        }
        Ok(EfficientNetLite {
            stem_w,
            stem_b: stem_b.flatten_all()?,
            blocks,
            head: Pointwise::new(w, "_conv_head", "_bn1", eps, true)?,
            fc_w: w.get("_fc.weight")?.t()?.contiguous()?,
            fc_b: w.get("_fc.bias")?,
        })
    }

    /// Logits `[N, classes]` for an `[N, 3, H, W]` batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, wd) = x.dims4()?;
        let (pt, pb) = same_padding(h, 3, 2);
        let (pl, pr) = same_padding(wd, 3, 2);
        let x = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
        let mut y = conv2d_bias_act(&x, &self.stem_w, &self.stem_b, 0, 2, Activation::Relu6)?;
        for block in &self.blocks {
            y = block.forward(&y)?;
        }
        let y = self.head.forward(&y)?;
        let pooled = y.flatten_from(2)?.mean(D::Minus1)?;
        Ok(pooled.matmul(&self.fc_w)?.broadcast_add(&self.fc_b)?)
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    /// The channel counts and repeats of the shipped Lite1 and Lite2 weights (read from
    /// their files' tensor shapes), and Lite0's.
    #[test]
    fn the_family_scales_as_the_shipped_weights_are_shaped() {
        let shape = |c: Config| -> (Vec<usize>, Vec<usize>) {
            (
                c.stages.iter().map(|s| s.repeats).collect(),
                c.stages.iter().map(|s| s.output).collect(),
            )
        };
        assert_eq!(
            shape(Config::lite0()),
            (
                vec![1, 2, 2, 3, 3, 4, 1],
                vec![16, 24, 40, 80, 112, 192, 320]
            )
        );
        assert_eq!(
            shape(Config::lite(1.0, 1.1)),
            (
                vec![1, 3, 3, 4, 4, 5, 1],
                vec![16, 24, 40, 80, 112, 192, 320]
            )
        );
        assert_eq!(
            shape(Config::lite(1.1, 1.2)),
            (
                vec![1, 3, 3, 4, 4, 5, 1],
                vec![16, 24, 48, 88, 120, 208, 352]
            )
        );
        assert_eq!(Config::lite(1.1, 1.2).stages[0].input, 32);
    }
}
