//! robustify's fast denoiser for full-size photos: a small U-Net that does most of its work
//! at low resolution.
//!
//! ```text
//! x [3,H,W] ─ unshuffle 2 ─ conv 12→w0 ─ convs(w0) ─┬────────────────────── + ─ convs(w0) ─ conv w0→12 ─ shuffle 2 ─ noise
//!                                                   └ conv/2 ─ convs(w1) ─┬─ + ─ convs(w1) ─ 1×1, shuffle ┘
//!                                                                         └ conv/2 ─ convs(w2) ─ 1×1, shuffle ┘
//! output = x − noise
//! ```
//!
//! The 3×3 convs inside the scales (and the down-sampling ones) are conv + BatchNorm +
//! ReLU, folded to conv + bias + ReLU for inference, as in DnCNN; the first conv has a bias
//! and ReLU, the 1×1 up-projections a bias only, and the last conv starts at zero, so an
//! untrained U-Net is the identity. With widths 32/64/128 and 2 convs it costs about 1/20
//! of DnCNN's FLOPs per pixel.

use candle_core::Tensor;

use crate::arch::{Builder, Layer, LayerSpec, pixel_shuffle, pixel_unshuffle};

/// The U-Net.
pub struct Unet {
    head: Layer,
    enc: Vec<Vec<Layer>>,
    down: Vec<Layer>,
    up: Vec<Layer>,
    dec: Vec<Vec<Layer>>,
    tail: Layer,
}

/// Name of the last conv's weight (initialised to zero).
pub const LAST_WEIGHT: &str = "tail.conv.weight";

fn conv_bn_relu(cin: usize, cout: usize, stride: usize) -> LayerSpec {
    LayerSpec {
        cin,
        cout,
        k: 3,
        stride,
        bias: false,
        bn: true,
        relu: true,
    }
}

fn stack(n: usize, w: usize, prefix: &str, b: &Builder) -> candle_core::Result<Vec<Layer>> {
    (0..n)
        .map(|j| b.layer(&format!("{prefix}.{j}"), conv_bn_relu(w, w, 1)))
        .collect()
}

impl Unet {
    /// A U-Net over `widths.len()` scales with `convs` convs per scale and side.
    pub fn new(widths: &[usize], convs: usize, b: &Builder) -> candle_core::Result<Unet> {
        let levels = widths.len();
        let (mut enc, mut dec, mut down, mut up) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, &w) in widths.iter().enumerate() {
            enc.push(stack(convs, w, &format!("enc.{i}"), b)?);
            if i + 1 < levels {
                let next = widths[i + 1];
                down.push(b.layer(&format!("down.{i}"), conv_bn_relu(w, next, 2))?);
                let spec = LayerSpec {
                    cin: next,
                    cout: 4 * w,
                    k: 1,
                    stride: 1,
                    bias: true,
                    bn: false,
                    relu: false,
                };
                up.push(b.layer(&format!("up.{i}"), spec)?);
                dec.push(stack(convs, w, &format!("dec.{i}"), b)?);
            }
        }
        let head = LayerSpec {
            cin: 12,
            cout: widths[0],
            k: 3,
            stride: 1,
            bias: true,
            bn: false,
            relu: true,
        };
        let tail = LayerSpec {
            cin: widths[0],
            cout: 12,
            relu: false,
            ..head
        };
        Ok(Unet {
            head: b.layer("head", head)?,
            enc,
            down,
            up,
            dec,
            tail: b.layer("tail", tail)?,
        })
    }

    /// Scales below the input's (the unshuffle plus one per down-sampling): inputs must be
    /// multiples of `2^levels`.
    pub fn levels(&self) -> usize {
        self.enc.len()
    }

    /// The denoised image `x − net(x)`; `x`'s height and width must be multiples of
    /// `2^levels` (the [`crate::Denoiser`] pads for you).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut h = self.head.forward_t(&pixel_unshuffle(x, 2)?, train)?;
        let mut skips = Vec::new();
        for (i, convs) in self.enc.iter().enumerate() {
            for c in convs {
                h = c.forward_t(&h, train)?;
            }
            if let Some(d) = self.down.get(i) {
                skips.push(h.clone());
                h = d.forward_t(&h, train)?;
            }
        }
        for i in (0..self.up.len()).rev() {
            h = (pixel_shuffle(&self.up[i].forward_t(&h, train)?, 2)? + &skips[i])?;
            for c in &self.dec[i] {
                h = c.forward_t(&h, train)?;
            }
        }
        let noise = pixel_shuffle(&self.tail.forward_t(&h, train)?, 2)?;
        x - noise
    }
}
