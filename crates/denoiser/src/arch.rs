//! Architectures: what a model card's `arch` names, and the layers both are built from.

use std::collections::HashMap;

use candle_core::{Module, Tensor};
use candle_nn::{BatchNorm, Init, VarBuilder};
use robustify_ops::Activation;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A denoiser architecture and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Arch {
    /// DnCNN (Zhang et al. 2017) as in the Denoised Smoothing paper: `depth` 3×3 convs of
    /// `width` channels, BatchNorm in the middle ones, output `x − net(x)`.
    Dncnn {
        /// Convolution layers (17 in the paper).
        depth: usize,
        /// Channels (64 in the paper).
        width: usize,
    },
    /// robustify's fast denoiser for full-size photos: pixel-unshuffle by 2, a U-Net over
    /// `widths.len()` scales (stride-2 convs down, 1×1 conv + pixel-shuffle up, additive
    /// skips), `convs` 3×3 convs per scale and side, output `x − net(x)`. No BatchNorm.
    Unet {
        /// Channels per scale, finest first.
        widths: Vec<usize>,
        /// 3×3 convs per scale in the encoder, and again in the decoder.
        convs: usize,
    },
}

impl Arch {
    /// `dncnn` (17×64, the paper's) or `unet` (widths 32/64/128, 2 convs), or the
    /// explicit forms `dncnn-D-W` and `unet-W1-W2-…-xC`.
    pub fn parse(name: &str) -> Result<Arch> {
        let bad = || Error::InvalidParameter {
            name: "arch",
            reason: format!(
                "{name:?}: expected dncnn, unet, dncnn-<depth>-<width> or unet-<w1>-<w2>-…-x<convs>"
            ),
        };
        let num = |s: &str| s.parse::<usize>().ok().filter(|v| *v > 0).ok_or_else(bad);
        match name {
            "dncnn" => {
                return Ok(Arch::Dncnn {
                    depth: 17,
                    width: 64,
                });
            }
            "unet" => {
                return Ok(Arch::Unet {
                    widths: vec![32, 64, 128],
                    convs: 2,
                });
            }
            _ => {}
        }
        let parts: Vec<&str> = name.split('-').collect();
        match parts.as_slice() {
            ["dncnn", d, w] if num(d)? >= 2 => Ok(Arch::Dncnn {
                depth: num(d)?,
                width: num(w)?,
            }),
            ["unet", rest @ .., c] if !rest.is_empty() => {
                let convs = num(c.strip_prefix('x').ok_or_else(bad)?)?;
                let widths = rest.iter().map(|w| num(w)).collect::<Result<Vec<_>>>()?;
                Ok(Arch::Unet { widths, convs })
            }
            _ => Err(bad()),
        }
    }

    /// The explicit name, which [`Arch::parse`] reads back.
    pub fn name(&self) -> String {
        match self {
            Arch::Dncnn { depth, width } => format!("dncnn-{depth}-{width}"),
            Arch::Unet { widths, convs } => {
                let w: Vec<String> = widths.iter().map(usize::to_string).collect();
                format!("unet-{}-x{convs}", w.join("-"))
            }
        }
    }

    /// Inputs are padded (edge-replicated) to a multiple of this, and the output cropped.
    pub fn size_multiple(&self) -> usize {
        match self {
            Arch::Dncnn { .. } => 1,
            Arch::Unet { widths, .. } => 1 << widths.len(),
        }
    }

    /// Multiply–adds ×2 per pixel of input (floating-point operations of one forward pass).
    pub fn flops_per_pixel(&self) -> f64 {
        let conv = |cin: usize, cout: usize, k: usize| (2 * cin * cout * k * k) as f64;
        match self {
            Arch::Dncnn { depth, width } => {
                conv(3, *width, 3)
                    + (depth - 2) as f64 * conv(*width, *width, 3)
                    + conv(*width, 3, 3)
            }
            Arch::Unet { widths, convs } => {
                let mut total = conv(12, widths[0], 3) / 4.0 + conv(widths[0], 12, 3) / 4.0;
                for (i, &w) in widths.iter().enumerate() {
                    let area = 4f64.powi(i as i32 + 1);
                    let sides = if i + 1 == widths.len() { 1.0 } else { 2.0 };
                    total += sides * *convs as f64 * conv(w, w, 3) / area;
                    if let Some(&next) = widths.get(i + 1) {
                        total += conv(w, next, 3) / (area * 4.0); // down
                        total += conv(next, 4 * w, 1) / (area * 4.0); // up
                    }
                }
                total
            }
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        let ok = match self {
            Arch::Dncnn { depth, width } => *depth >= 2 && *width > 0,
            Arch::Unet { widths, convs } => {
                !widths.is_empty()
                    && widths.len() <= 6
                    && widths.iter().all(|w| *w > 0)
                    && *convs > 0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidParameter {
                name: "arch",
                reason: format!("{self:?}"),
            })
        }
    }
}

/// A convolution with optional bias. On the CPU it runs on robustify-ops' im2col + GEMM
/// path (forward and backward); on a GPU, candle's own kernels.
#[derive(Clone, Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Our kernel on the CPU, candle's elsewhere (robustify_ops dispatches).
        let y = robustify_ops::conv2d(x, &self.weight, self.padding, self.stride)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// BatchNorm ε (candle's and PyTorch's default).
const BN_EPS: f64 = 1e-5;

/// A conv, optionally followed by BatchNorm and by ReLU: the unit both architectures are
/// made of. Built trainable by [`Builder::Train`], or folded (BatchNorm merged into the
/// conv's weight and bias) by [`Builder::Infer`].
pub struct Layer {
    conv: Conv,
    /// Built for inference ([`Builder::Infer`]): BatchNorm already merged into the conv.
    folded: bool,
    bn: Option<BatchNorm>,
    relu: bool,
}

impl Layer {
    /// conv → BatchNorm (training statistics when `train`) → ReLU.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let c = &self.conv;
        let act = if self.relu {
            Activation::Relu
        } else {
            Activation::None
        };
        // Folded for inference, or without BatchNorm: conv, bias and ReLU in one pass over
        // the output (and one back in training); off the CPU the ops use candle's own.
        if self.folded || self.bn.is_none() {
            return match &c.bias {
                Some(bias) => {
                    robustify_ops::conv2d_bias_act(x, &c.weight, bias, c.padding, c.stride, act)
                }
                None => robustify_ops::conv2d_act(x, &c.weight, c.padding, c.stride, act),
            };
        }
        let y = self.conv.forward(x)?;
        match &self.bn {
            // BatchNorm and ReLU fused in training (three passes each way, not dozens).
            Some(bn) => robustify_ops::batch_norm_act(bn, &y, train, act),
            None if self.relu => y.relu(),
            None => Ok(y),
        }
    }
}

/// What a layer is: sizes and which parts it has.
#[derive(Clone, Copy, Debug)]
pub struct LayerSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Square kernel side (padding `k / 2`).
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// A bias (layers with BatchNorm have none: the BatchNorm's shift replaces it).
    pub bias: bool,
    /// BatchNorm after the conv.
    pub bn: bool,
    /// ReLU at the end.
    pub relu: bool,
}

/// Builds layers from variables (training) or from saved tensors (inference, folded).
pub enum Builder<'a> {
    /// Trainable variables (a `VarMap`-backed builder creates them).
    Train(VarBuilder<'a>),
    /// Saved tensors by name; BatchNorms are folded.
    Infer(&'a HashMap<String, Tensor>),
}

impl Builder<'_> {
    /// The layer named `prefix` (`prefix.conv.weight`, `prefix.conv.bias`, `prefix.bn.*`).
    pub fn layer(&self, prefix: &str, s: LayerSpec) -> candle_core::Result<Layer> {
        match self {
            Builder::Train(vb) => {
                let vb = vb.pp(prefix);
                let weight = vb.get_with_hints(
                    (s.cout, s.cin, s.k, s.k),
                    "conv.weight",
                    candle_nn::init::DEFAULT_KAIMING_NORMAL,
                )?;
                let bias = if s.bias {
                    Some(vb.get_with_hints(s.cout, "conv.bias", Init::Const(0.0))?)
                } else {
                    None
                };
                let bn = if s.bn {
                    let cfg = candle_nn::BatchNormConfig {
                        eps: BN_EPS,
                        ..Default::default()
                    };
                    Some(candle_nn::batch_norm(s.cout, cfg, vb.pp("bn"))?)
                } else {
                    None
                };
                Ok(Layer {
                    conv: Conv {
                        weight,
                        bias,
                        stride: s.stride,
                        padding: s.k / 2,
                    },
                    bn,
                    relu: s.relu,
                    folded: false,
                })
            }
            Builder::Infer(tensors) => {
                let get = |name: String| {
                    let t = tensors
                        .get(&name)
                        .cloned()
                        .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
                    Ok::<_, candle_core::Error>(t)
                };
                let w = get(format!("{prefix}.conv.weight"))?;
                if w.dims() != [s.cout, s.cin, s.k, s.k] {
                    candle_core::bail!("{prefix}.conv.weight has shape {:?}", w.dims());
                }
                let b = if s.bias {
                    Some(get(format!("{prefix}.conv.bias"))?)
                } else {
                    None
                };
                let (weight, bias) = if s.bn {
                    let p = |n: &str| get(format!("{prefix}.bn.{n}"));
                    let scale = (p("weight")? / (p("running_var")? + BN_EPS)?.sqrt()?)?;
                    let weight = w.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
                    let mut shift = (p("bias")? - (p("running_mean")? * &scale)?)?;
                    if let Some(b) = b {
                        shift = (shift + (b * &scale)?)?;
                    }
                    (weight, Some(shift))
                } else {
                    (w, b)
                };
                Ok(Layer {
                    conv: Conv {
                        weight,
                        bias,
                        stride: s.stride,
                        padding: s.k / 2,
                    },
                    bn: None,
                    relu: s.relu,
                    folded: true,
                })
            }
        }
    }
}

/// `[B, C, H, W]` → `[B, C·r², H/r, W/r]` (H, W multiples of `r`).
pub fn pixel_unshuffle(x: &Tensor, r: usize) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h / r, r, w / r, r))?
        .permute((0, 1, 3, 5, 2, 4))?
        .contiguous()?
        .reshape((b, c * r * r, h / r, w / r))
}

/// `[B, C·r², H, W]` → `[B, C, H·r, W·r]`: the inverse of [`pixel_unshuffle`].
pub fn pixel_shuffle(x: &Tensor, r: usize) -> candle_core::Result<Tensor> {
    let (b, crr, h, w) = x.dims4()?;
    let c = crr / (r * r);
    x.reshape((b, c, r, r, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .contiguous()?
        .reshape((b, c, h * r, w * r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn names_round_trip() {
        for n in ["dncnn", "unet", "dncnn-5-16", "unet-8-16-x1"] {
            let a = Arch::parse(n).unwrap();
            assert_eq!(Arch::parse(&a.name()).unwrap(), a);
        }
        assert_eq!(Arch::parse("dncnn").unwrap().name(), "dncnn-17-64");
        assert!(Arch::parse("resnet").is_err());
        assert!(Arch::parse("unet-0-x2").is_err());
        assert!(Arch::parse("unet-8-16").is_err());
    }

    #[test]
    fn flops_of_the_paper_dncnn() {
        // 15 × 64·64·9·2 + 2 × 3·64·9·2 per pixel.
        let f = Arch::parse("dncnn").unwrap().flops_per_pixel();
        assert_eq!(f, 15.0 * 73_728.0 + 2.0 * 3456.0);
    }

    #[test]
    fn shuffle_inverts_unshuffle() {
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 6.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 4, 6))
            .unwrap();
        let y = pixel_unshuffle(&x, 2).unwrap();
        assert_eq!(y.dims(), &[2, 12, 2, 3]);
        // Channel c·4 + dy·2 + dx holds pixel (2y + dy, 2x + dx) of channel c.
        let v = y.to_vec3::<f32>().err(); // rank 4: just make sure indexing below is right
        assert!(v.is_some());
        let y4: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
            .map(|b| y.get(b).unwrap().to_vec3::<f32>().unwrap())
            .collect();
        let x4: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
            .map(|b| x.get(b).unwrap().to_vec3::<f32>().unwrap())
            .collect();
        assert_eq!(y4[1][2 * 4 + 3][1][2], x4[1][2][3][5]);
        let back = pixel_shuffle(&y, 2).unwrap();
        let d = (back - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    }
}
