//! Depthwise 2-D convolution with fused bias and ReLU6, as a candle custom op.
//!
//! candle's grouped `conv2d` runs one convolution per group, which for a depthwise layer
//! with 1,152 channels means 1,152 tiny convolutions and a concatenation. This op does the
//! whole layer in one pass over the input, with TensorFlow "SAME" padding (the padding the
//! EfficientNet weights were trained with: for stride 2 the extra row and column go at the
//! bottom and right).

use crate::conv::Activation;
use crate::matrix::{contiguous, zeroed};
use crate::simd;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Depthwise convolution weights with the bias already folded in from BatchNorm.
#[derive(Clone, Debug)]
pub struct Depthwise {
    channels: usize,
    kernel: usize,
    stride: usize,
    /// `[channels, kernel, kernel]` (shared: the op is cloned into every forward pass
    /// that keeps its graph for a backward pass).
    weight: Arc<[f32]>,
    /// `[channels]`.
    bias: Arc<[f32]>,
    relu6: bool,
    /// The weights as `[C, 1, k, k]` and `[1, C, 1, 1]` tensors on the last device
    /// [`Depthwise::forward_candle`] ran on (uploaded once, not at every call).
    on_device: Arc<Mutex<Option<(Device, Tensor, Tensor)>>>,
}

/// TF "SAME" padding: `(before, after)` for one spatial axis.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

impl Depthwise {
    /// `weight` is `[channels, 1, k, k]`, `bias` is `[channels]`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        relu6: bool,
    ) -> candle_core::Result<Self> {
        let (channels, one, kernel, k2) = weight.dims4()?;
        if stride == 0 {
            candle_core::bail!("depthwise: stride must be ≥ 1");
        }
        if one != 1 || kernel != k2 || kernel == 0 {
            candle_core::bail!(
                "depthwise weight must be [C, 1, k, k], got {:?}",
                weight.shape()
            );
        }
        Ok(Depthwise {
            channels,
            kernel,
            stride,
            weight: weight.flatten_all()?.to_vec1::<f32>()?.into(),
            bias: bias.to_vec1::<f32>()?.into(),
            relu6,
            on_device: Arc::default(),
        })
    }

    /// Applies the layer to an NCHW tensor: this crate's kernel on the CPU, candle's
    /// grouped convolution elsewhere ([`Depthwise::forward_candle`]). Differentiable in
    /// the input (the weights are frozen: a classifier a denoiser is tuned through), so a
    /// loss on the output reaches the image.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.device().is_cpu() {
            return self.forward_candle(x);
        }
        x.contiguous()?.apply_op1(self.clone())
    }

    /// The same layer from candle's own ops, on any device: "SAME" padding, a grouped
    /// convolution (one group per channel), the bias and ReLU6.
    pub fn forward_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!("depthwise: {} channels, input has {c}", self.channels);
        }
        let (k, s) = (self.kernel, self.stride);
        let (pt, pb) = same_padding(h, k, s);
        let (pl, pr) = same_padding(w, k, s);
        let x = x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?;
        let (weight, bias) = self.weights_on(x.device())?;
        let y = x.conv2d(&weight, 0, s, 1, c)?.broadcast_add(&bias)?;
        self.act().apply_tensor(&y)
    }

    /// The activation after the convolution: ReLU6 or none.
    fn act(&self) -> Activation {
        if self.relu6 {
            Activation::Relu6
        } else {
            Activation::None
        }
    }

    /// The weight and bias tensors on `device`, from the cache when it holds that device's.
    fn weights_on(&self, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        // A poisoned lock only means another thread panicked mid-upload: upload again.
        let mut slot = self.on_device.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((on, w, b)) = slot.as_ref()
            && on.same_device(device)
        {
            return Ok((w.clone(), b.clone()));
        }
        let (c, k) = (self.channels, self.kernel);
        let w = Tensor::from_slice(&self.weight, (c, 1, k, k), device)?;
        let b = Tensor::from_slice(&self.bias, (1, c, 1, 1), device)?;
        *slot = Some((device.clone(), w.clone(), b.clone()));
        Ok((w, b))
    }
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-same"
    }

    /// `dx`: the output gradient, stopped where ReLU6 was flat, spread back through every
    /// tap ([`InputGrad`], one pass: the mask is applied as the gradient is read).
    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let grad = InputGrad {
            layer: self.clone(),
            h,
            w,
        };
        Ok(Some(
            dy.contiguous()?.apply_op2_no_bwd(&y.contiguous()?, &grad)?,
        ))
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = contiguous(storage, layout, "depthwise")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.channels {
            candle_core::bail!("depthwise: {} channels, input has {c}", self.channels);
        }
        let (k, s) = (self.kernel, self.stride);
        let (pt, _) = same_padding(h, k, s);
        let (pl, _) = same_padding(w, k, s);
        let geometry = Plane { h, w, k, s, pt, pl };
        let (oh, ow) = geometry.out();
        let mut out = zeroed(b * c * oh * ow);
        // One task per plane (image, channel): planes are independent.
        out.par_chunks_exact_mut(oh * ow).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |buffers, (plane, out_plane)| {
                let ch = plane % c;
                let input = &data[plane * h * w..(plane + 1) * h * w];
                let wk = &self.weight[ch * k * k..(ch + 1) * k * k];
                let (bias, act) = (self.bias[ch], self.act());
                simd::run(
                    #[inline(always)]
                    || geometry.run(input, wk, bias, act, buffers, out_plane),
                );
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

/// The input gradient of a [`Depthwise`] layer with input `h × w`: applied to the output
/// gradient `g` and the layer's output `y` (for ReLU6's mask: `g` counts where `0 < y < 6`),
/// `dx[iy][ix] = Σ g[oy][ox] · w[ky][kx]` over the taps with `s·oy + ky = iy + pt` and
/// `s·ox + kx = ix + pl`.
struct InputGrad {
    layer: Depthwise,
    h: usize,
    w: usize,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-same-input-grad"
    }

    fn cpu_fwd(
        &self,
        g_storage: &CpuStorage,
        g_layout: &Layout,
        y_storage: &CpuStorage,
        y_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = contiguous(g_storage, g_layout, "depthwise gradient")?;
        let y = contiguous(y_storage, y_layout, "depthwise output")?;
        let (b, c, oh, ow) = g_layout.shape().dims4()?;
        let (h, w) = (self.h, self.w);
        let (k, s) = (self.layer.kernel, self.layer.stride);
        let (pt, _) = same_padding(h, k, s);
        let (pl, _) = same_padding(w, k, s);
        let geometry = Plane { h, w, k, s, pt, pl };
        if c != self.layer.channels
            || geometry.out() != (oh, ow)
            || y_layout.shape() != g_layout.shape()
        {
            candle_core::bail!(
                "depthwise gradient: {:?} (output {:?}) does not fit {} channels of {h}×{w}",
                g_layout.shape(),
                y_layout.shape(),
                self.layer.channels
            );
        }
        let act = self.layer.act();
        let mut dx = zeroed(b * c * h * w);
        dx.par_chunks_exact_mut(h * w).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |buffers, (plane, dx_plane)| {
                let ch = plane % c;
                let wk = &self.layer.weight[ch * k * k..(ch + 1) * k * k];
                let g_plane = &g[plane * oh * ow..(plane + 1) * oh * ow];
                let y_plane = &y[plane * oh * ow..(plane + 1) * oh * ow];
                simd::run(
                    #[inline(always)]
                    || geometry.spread(g_plane, y_plane, act, wk, buffers, dx_plane),
                );
            },
        );
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

/// One plane's geometry: input `h × w`, kernel `k`, stride `s`, padding before `pt`, `pl`.
#[derive(Clone, Copy)]
struct Plane {
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pt: usize,
    pl: usize,
}

impl Plane {
    /// Output rows and columns.
    fn out(&self) -> (usize, usize) {
        (self.h.div_ceil(self.s), self.w.div_ceil(self.s))
    }

    /// `dx = g ⊛ᵀ wk` for one plane, the transpose of [`Plane::run`]: each tap adds
    /// `w[ky][kx] · g[oy][ox]` to the input pixel it read, `(s·oy + ky − pt, s·ox + kx −
    /// pl)`. `g` counts only where `act` passes it at the layer's output `y` (for ReLU6:
    /// strictly between 0 and 6; [`Activation::grad`]).
    ///
    /// `g` is laid out `wp` wide (the extra columns zero), and each tap is one
    /// multiply-add over the whole plane into the phase plane it read from, at the offset
    /// it read at; the phase planes are then dealt back into `dx`. Contiguous loops for
    /// every stride, as in the forward pass; padding pixels collect junk that is never read.
    #[inline(always)]
    fn spread(
        &self,
        g: &[f32],
        y: &[f32],
        act: Activation,
        wk: &[f32],
        (phases, g_wide): &mut (Vec<f32>, Vec<f32>),
        dx: &mut [f32],
    ) {
        let Plane { w, k, s, .. } = *self;
        let (oh, ow) = self.out();
        let (_, wp) = self.phase_dims();
        let n = oh * wp;
        g_wide.clear();
        g_wide.resize(n, 0.0);
        for (oy, wide) in g_wide.chunks_exact_mut(wp).enumerate() {
            let row = oy * ow..(oy + 1) * ow;
            act.grad(&g[row.clone()], &y[row], &mut wide[..ow]);
        }
        let plane = self.phase_len();
        phases.clear();
        phases.resize(s * s * plane, 0.0);
        for ky in 0..k {
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let ph = &mut phases[((ky % s) * s + kx % s) * plane..][..plane];
                let to = &mut ph[(ky / s) * wp + kx / s..][..n];
                for (d, &v) in to.iter_mut().zip(g_wide.iter()) {
                    *d += wv * v;
                }
            }
        }
        for (iy, row) in dx.chunks_exact_mut(w).enumerate() {
            for px in 0..s {
                let Some((ix0, span)) = self.phase_row(iy, px) else {
                    continue;
                };
                for (d, &v) in row.iter_mut().skip(ix0).step_by(s).zip(&phases[span]) {
                    *d = v;
                }
            }
        }
    }

    /// Where input row `iy`'s columns `ix0, ix0 + s, …` (`ix0` the first with `ix + pl ≡
    /// px (mod s)`) lie in the phase planes of [`Plane::run`] and [`Plane::spread`]: the
    /// first column and the span of the phases' buffer holding them, in order (the span
    /// may run past the row's last such column). `None` for a row outside the planes.
    #[inline(always)]
    fn phase_row(&self, iy: usize, px: usize) -> Option<(usize, std::ops::Range<usize>)> {
        let Plane { s, pt, pl, .. } = *self;
        let (hp, wp) = self.phase_dims();
        let plane = self.phase_len();
        let y = iy + pt;
        let (py, r) = (y % s, y / s);
        if r >= hp {
            return None;
        }
        let ix0 = (px + s - pl % s) % s;
        let row = (py * s + px) * plane + r * wp;
        Some((ix0, row + ((ix0 + pl) / s).min(wp)..row + wp))
    }

    /// Floats of each phase plane in the phases' buffer: its rows and one spare, which the
    /// junk columns of the last row read (or write) a little into.
    fn phase_len(&self) -> usize {
        let (hp, wp) = self.phase_dims();
        (hp + 1) * wp
    }

    /// Rows and columns of each phase plane: the output's, plus the taps' reach `(k−1)/s`.
    fn phase_dims(&self) -> (usize, usize) {
        let (oh, ow) = self.out();
        let reach = (self.k - 1) / self.s;
        (oh + reach, ow + reach)
    }

    /// `out = act(bias + input ⊛ wk)` for one plane.
    ///
    /// The zero-padded input is dealt into `s × s` phase planes, `ph[py][px][r][c] =
    /// padded[s·r + py][s·c + px]`, each `hp × wp`. Output `(oy, ox)` of tap `(ky, kx)`
    /// then reads `ph[ky mod s][kx mod s][oy + ky/s][ox + kx/s]`: with the output rows
    /// `wp` wide too (the columns past `ow` are junk), every tap is one multiply-add over
    /// the whole plane at a fixed offset — long contiguous loops that vectorise, for 7×7
    /// planes as for 112×112, and no edge cases. The valid columns are copied out last.
    #[inline(always)]
    fn run(
        &self,
        input: &[f32],
        wk: &[f32],
        bias: f32,
        act: Activation,
        (phases, acc): &mut (Vec<f32>, Vec<f32>),
        out: &mut [f32],
    ) {
        let Plane { w, k, s, .. } = *self;
        let (oh, ow) = self.out();
        let (_, wp) = self.phase_dims();
        let plane = self.phase_len();
        phases.clear();
        phases.resize(s * s * plane, 0.0);
        for (iy, row) in input.chunks_exact(w).enumerate() {
            for px in 0..s {
                let Some((ix0, span)) = self.phase_row(iy, px) else {
                    continue;
                };
                for (d, &v) in phases[span].iter_mut().zip(row.iter().skip(ix0).step_by(s)) {
                    *d = v;
                }
            }
        }
        let n = oh * wp;
        acc.clear();
        acc.resize(n, bias);
        for ky in 0..k {
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let ph = &phases[((ky % s) * s + kx % s) * plane..][..plane];
                let from = &ph[(ky / s) * wp + kx / s..][..n];
                for (a, &v) in acc.iter_mut().zip(from) {
                    *a += wv * v;
                }
            }
        }
        for (orow, arow) in out.chunks_exact_mut(ow).zip(acc.chunks_exact(wp)) {
            orow.copy_from_slice(&arow[..ow]);
        }
        act.apply(out, oh, ow, ow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs;
    use candle_core::{Device, Tensor};

    /// Our kernel against candle's grouped conv2d on an explicitly padded input (the path
    /// the layer takes off the CPU).
    #[test]
    fn matches_candle_grouped_conv_on_odd_shapes() {
        let dev = Device::Cpu;
        for (c, h, w, k, s) in [
            (3, 7, 5, 3, 1),
            (4, 8, 8, 3, 2),
            (2, 9, 6, 5, 2),
            (5, 5, 11, 5, 1),
            (1, 1, 1, 3, 2),
            (6, 14, 13, 5, 2),
            (2, 16, 16, 3, 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
            let layer = Depthwise::new(&wt, &b, s, false).unwrap();
            let ours = layer.forward(&x).unwrap();
            let want = layer.forward_candle(&x).unwrap();
            // The second call takes the weights already on the device.
            let again = layer.clone().forward_candle(&x).unwrap();
            assert_eq!(max_abs(&want, &again), 0.0);
            assert_eq!(ours.dims(), want.dims(), "{c} {h} {w} {k} {s}");
            let diff = max_abs(&ours, &want);
            assert!(diff < 1e-4, "{c} {h} {w} {k} {s}: {diff}");
            let layer = Depthwise::new(&wt, &b, s, true).unwrap();
            let relu = layer.forward(&x).unwrap();
            let want = layer.forward_candle(&x).unwrap();
            assert!(want.min_all().unwrap().to_scalar::<f32>().unwrap() >= 0.0);
            assert!(want.max_all().unwrap().to_scalar::<f32>().unwrap() <= 6.0);
            assert!(max_abs(&relu, &want) < 1e-4);
        }
    }

    /// The input gradient against stock candle's autograd through the same layer written
    /// as a dense convolution (a block-diagonal kernel: channel c reads only channel c)
    /// on the explicitly padded input, then the bias and ReLU6 by candle's ops.
    #[test]
    fn input_gradient_matches_stock_candle_on_odd_shapes() {
        use candle_core::Var;
        let dev = Device::Cpu;
        for (b, c, h, w, k, s) in [
            (2, 3, 7, 5, 3, 1),
            (1, 4, 8, 8, 3, 2),
            (2, 2, 9, 6, 5, 2),
            (1, 5, 5, 11, 5, 1),
            (1, 1, 1, 1, 3, 2),
            (1, 6, 14, 13, 5, 2),
            (3, 2, 4, 3, 3, 2),
        ] {
            let wt = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, c, &dev).unwrap();
            // Inputs spread wide enough that ReLU6 is flat in places at both ends.
            let x = Var::randn(0f32, 2.0, (b, c, h, w), &dev).unwrap();
            for relu6 in [false, true] {
                let layer = Depthwise::new(&wt, &bias, s, relu6).unwrap();
                let ours = layer.forward(&x).unwrap();
                let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
                let g_ours = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();

                let eye = Tensor::eye(c, candle_core::DType::F32, &dev).unwrap();
                let dense = eye
                    .reshape((c, c, 1, 1))
                    .unwrap()
                    .broadcast_mul(&wt.reshape((1, c, k, k)).unwrap())
                    .unwrap();
                let (pt, pb) = same_padding(h, k, s);
                let (pl, pr) = same_padding(w, k, s);
                let padded = x
                    .pad_with_zeros(2, pt, pb)
                    .unwrap()
                    .pad_with_zeros(3, pl, pr)
                    .unwrap();
                let mut stock = padded
                    .conv2d(&dense, 0, s, 1, 1)
                    .unwrap()
                    .broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap())
                    .unwrap();
                if relu6 {
                    stock = stock.clamp(0f32, 6f32).unwrap();
                }
                assert!(max_abs(&ours, &stock) < 1e-4);
                let g_stock = (&stock * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let (a, e) = (g_ours.get(&x).unwrap(), g_stock.get(&x).unwrap());
                let diff = max_abs(a, e);
                assert!(
                    diff < 1e-4,
                    "{b} {c} {h} {w} k{k} s{s} relu6 {relu6}: {diff}"
                );
            }
        }
    }

    #[test]
    fn same_padding_puts_the_extra_pixel_after() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(224, 3, 1), (1, 1));
        assert_eq!(same_padding(112, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
    }
}
