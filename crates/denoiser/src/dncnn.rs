//! DnCNN (Zhang, Zuo, Chen, Meng & Zhang, "Beyond a Gaussian Denoiser", IEEE TIP 2017), in
//! the form the Denoised Smoothing paper trains: bias-free 3×3 convs, conv + ReLU, then
//! `depth − 2` × (conv + BatchNorm + ReLU), then a conv to 3 channels that predicts the
//! noise; the output is `x − net(x)`. The last conv starts at zero, so an untrained DnCNN is
//! the identity. For inference the BatchNorms are folded into the convs
//! (`w' = w·γ/√(var+ε)`, `b' = β − mean·γ/√(var+ε)`).

use candle_core::Tensor;

use crate::arch::{Builder, Layer, LayerSpec};

/// A DnCNN, trainable (BatchNorm) or folded (conv + bias only).
pub struct Dncnn {
    layers: Vec<Layer>,
}

/// Name of the last conv's weight (initialised to zero).
pub fn last_weight(depth: usize) -> String {
    format!("layers.{}.conv.weight", depth - 1)
}

impl Dncnn {
    /// Weights `layers.i.conv.weight`, `layers.i.bn.*`.
    pub fn new(depth: usize, width: usize, b: &Builder) -> candle_core::Result<Dncnn> {
        let layers = (0..depth)
            .map(|i| {
                let last = i + 1 == depth;
                let spec = LayerSpec {
                    cin: if i == 0 { 3 } else { width },
                    cout: if last { 3 } else { width },
                    k: 3,
                    stride: 1,
                    bias: false,
                    bn: i > 0 && !last,
                    relu: !last,
                };
                b.layer(&format!("layers.{i}"), spec)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Dncnn { layers })
    }

    /// The denoised image `x − net(x)` (BatchNorm in training mode when `train`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward_t(&y, train)?;
        }
        x - y
    }
}
