//! # robustify-ops
//!
//! CPU building blocks that make robustify's candle models train at a useful speed on a
//! laptop. The first is [`conv2d`]: a convolution expressed as `im2col` + matrix product one
//! image and one cache-sized band at a time, whose backward pass is two matrix products and
//! a `col2im`, instead of candle's direct convolution and transposed convolution. The
//! gradients of 3×3 stride-1 convolutions with at least 16 channels in and out (most of
//! every denoiser and of the CIFAR-10 stand-in), and their forward pass from 16 or 32
//! channels (16 where image rows are as wide as their 4×4 tiles), go through Winograd
//! F(4×4, 3×3) instead: 36 small matrix products per chunk of 4×4 output tiles, 4× fewer
//! multiplications, used where it measured faster
//! ([`set_winograd`] turns it off for comparisons). It is a drop-in for
//! `Tensor::conv2d` with groups = 1 and dilation = 1, and autograd flows through it.
//!
//! Fused ops cut the passes over memory that candle's elementwise ops make: a convolution
//! with its bias and activation ([`conv2d_bias_act`], [`conv2d_act`]) and training-mode
//! BatchNorm with the activation after it ([`batch_norm_act`]), forward and backward.
//! [`Depthwise`] runs a depthwise convolution with TF "SAME" padding, folded bias and
//! ReLU6 in one pass (inference; EfficientNet-Lite0's), where candle's grouped `conv2d`
//! runs one small convolution per channel.
//!
//! The crate is compiled for any x86-64 CPU; its loops run through AVX-512 or AVX2 builds
//! of themselves when the CPU has them ([`simd()`]; `ROBUSTIFY_SIMD=avx2|baseline` caps
//! the choice), with the same results bit for bit.
//!
//! ```
//! use candle_core::{Device, Tensor};
//!
//! let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 7), &Device::Cpu)?;
//! let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &Device::Cpu)?;
//! let ours = robustify_ops::conv2d(&x, &w, 1, 1)?;
//! let stock = x.conv2d(&w, 1, 1, 1, 1)?;
//! let diff = (ours - stock)?.abs()?.max_all()?.to_scalar::<f32>()?;
//! assert!(diff < 1e-4);
//! # Ok::<(), candle_core::Error>(())
//! ```

mod batchnorm;
mod conv;
mod depthwise;
mod device;
mod matrix;
mod simd;
#[cfg(test)]
mod test_util;
mod winograd;

pub use batchnorm::batch_norm_act;
pub use conv::{Activation, candle_conv2d, conv2d, conv2d_act, conv2d_bias_act};
pub use depthwise::{Depthwise, same_padding};
pub use device::{DeviceError, device, parse_device, set_device};
pub use simd::{Simd, set_simd, simd};
pub use winograd::set_winograd;
