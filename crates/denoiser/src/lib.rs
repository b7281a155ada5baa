//! # robustify-denoiser
//!
//! The denoisers of denoised smoothing (Salman et al., NeurIPS 2020): a network `D` placed
//! in front of an off-the-shelf classifier `f`, so that `f(D(x + δ))` stays right under the
//! Gaussian noise δ that randomized smoothing adds.
//!
//! - [`Arch`]: DnCNN as in the paper ([`dncnn`]), and a fast U-Net for full-size photos
//!   ([`unet`]); both fully convolutional, for any image size.
//! - [`Denoiser`]: a trained model loaded from a folder (`card.json` +
//!   `model.safetensors`), BatchNorm folded, batching and tiling images of any size.
//! - [`registry`]: the shipped denoisers (`denoisers/` in the repository) and
//!   `--denoiser NAME|PATH`.
//! - [`train`]: MSE training with Adam on random crops, seeded and resumable.
//! - [`Denoised`]: the base classifier `f ∘ D` that certification uses.
//!
//! On the CPU the convolutions run on robustify-ops' im2col + GEMM path; build with the
//! `cuda` feature to run on an NVIDIA GPU.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use robustify_denoiser::{Arch, Net};
//!
//! // An untrained denoiser is the identity: its last convolution starts at zero.
//! let arch = Arch::parse("unet-8-16-x1")?;
//! let varmap = VarMap::new();
//! let net = Net::new(&arch, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! for name in Net::zero_init(&arch) {
//!     let v = &varmap.data().lock().unwrap()[&name];
//!     v.set(&v.as_tensor().zeros_like()?)?;
//! }
//! let x = Tensor::rand(0f32, 1.0, (1, 3, 13, 21), &Device::Cpu)?; // odd sizes are fine
//! let y = net.forward_t(&x, false)?;
//! assert_eq!(y.dims(), x.dims());
//! assert!((y - x)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod arch;
pub mod card;
mod classifier;
pub mod data;
mod denoiser;
pub mod dncnn;
mod error;
pub mod net;
pub mod registry;
pub mod train;
pub mod trained;
pub mod unet;

pub use arch::Arch;
pub use card::Card;
pub use classifier::Denoised;
pub use denoiser::{Denoiser, default_device};
pub use error::{Error, Result};
pub use net::Net;
