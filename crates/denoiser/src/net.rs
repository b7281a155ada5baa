//! One type over both architectures: built trainable from a `VarBuilder`, or for inference
//! from saved tensors (BatchNorm folded).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::Result;
use crate::arch::{Arch, Builder};
use crate::dncnn::{self, Dncnn};
use crate::unet::{self, Unet};

/// A denoising network.
pub enum Net {
    /// [`Dncnn`].
    Dncnn(Dncnn),
    /// [`Unet`].
    Unet(Box<Unet>),
}

impl Net {
    /// A trainable network; with a `VarMap`-backed builder this creates its variables.
    pub fn new(arch: &Arch, vb: VarBuilder) -> Result<Net> {
        arch.check()?;
        Net::build(arch, &Builder::Train(vb))
    }

    fn build(arch: &Arch, b: &Builder) -> Result<Net> {
        Ok(match arch {
            Arch::Dncnn { depth, width } => Net::Dncnn(Dncnn::new(*depth, *width, b)?),
            Arch::Unet { widths, convs } => Net::Unet(Box::new(Unet::new(widths, *convs, b)?)),
        })
    }

    /// The inference form of saved weights (BatchNorm folded into the convs).
    pub fn for_inference(
        arch: &Arch,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Net> {
        arch.check()?;
        let tensors: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?.to_device(device)?)))
            .collect::<candle_core::Result<_>>()?;
        Net::build(arch, &Builder::Infer(&tensors))
    }

    /// Weights that start at zero (the last conv: an untrained denoiser is the identity).
    pub fn zero_init(arch: &Arch) -> Vec<String> {
        match arch {
            Arch::Dncnn { depth, .. } => vec![dncnn::last_weight(*depth)],
            Arch::Unet { .. } => vec![unet::LAST_WEIGHT.to_owned()],
        }
    }

    /// Denoises `[B, 3, H, W]` (any H, W ≥ 1): inputs are edge-padded to the
    /// architecture's size multiple and the output cropped back.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        Ok(match self {
            Net::Dncnn(n) => n.forward_t(x, train)?,
            Net::Unet(n) => {
                let m = 1usize << (n.levels());
                let (ph, pw) = (h.next_multiple_of(m) - h, w.next_multiple_of(m) - w);
                if ph == 0 && pw == 0 {
                    n.forward_t(x, train)?
                } else {
                    let padded = x.pad_with_same(2, 0, ph)?.pad_with_same(3, 0, pw)?;
                    n.forward_t(&padded, train)?
                        .narrow(2, 0, h)?
                        .narrow(3, 0, w)?
                }
            }
        })
    }
}
