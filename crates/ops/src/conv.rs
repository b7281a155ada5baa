//! Convolution as `im2col` + GEMM, one image (and one band of output rows) at a time.
//!
//! For an image `[C, H, W]` and a kernel `[O, C, k, k]`, `im2col` lays out every receptive
//! field of a band of output rows as a column of `cols: [C·k·k, band]`, and one GEMM
//! `W[O, C·k·k] × cols` writes the band's outputs straight into the `[O, H'·W']` output of
//! that image — already NCHW, nothing to transpose. Bands are sized so that `cols` stays in
//! the cache (~1 MB): a whole-batch `im2col` (what this module first did) streams hundreds
//! of megabytes through memory and costs as much as the GEMM itself. Images run in
//! parallel; a batch smaller than the thread pool lets the GEMM use the threads instead.
//!
//! Backward: the input gradient is `col2im(Wᵀ × dY)`, the weight gradient `Σ dY × colsᵀ`
//! (partial sums over fixed groups of images, added in order), both per image and band like
//! the forward.
//!
//! 3×3 stride-1 convolutions with enough channels take the Winograd path
//! ([`crate::winograd`]) where it measured faster: the input gradient (itself a 3×3
//! stride-1 convolution, with the kernel turned by 180° and transposed) and the weight
//! gradient from 16 channels in and out, the forward pass from 16 or 32 (see
//! [`Plan::worthwhile`]).

use crate::matrix::{Mat, contiguous, gemm_threads, matmul, zeroed};
use crate::simd;
use crate::winograd::{Kernel, Pass, Plan};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// Geometry of one image's convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

/// Floats of one `cols` band: about 1 MB, so that it is still in the cache when the GEMM
/// reads it.
const BAND_FLOATS: usize = 1 << 18;

impl Geometry {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Rows of `cols`: `C·k·k`.
    fn rows(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Output rows per band.
    fn band_rows(&self) -> usize {
        let (oh, ow) = self.out();
        (BAND_FLOATS / (self.rows() * ow).max(1)).clamp(1, oh)
    }

    /// The bands of output rows `y0..y1`, with their output count `(y1 − y0)·W'`.
    fn bands(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let ((oh, ow), band) = (self.out(), self.band_rows());
        (0..oh).step_by(band).map(move |y0| {
            let y1 = (y0 + band).min(oh);
            (y0, y1, (y1 - y0) * ow)
        })
    }

    /// Floats of the `cols` buffer of one band (none when `cols` is the image itself).
    fn cols_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.rows() * self.band_rows() * self.out().1
        }
    }

    /// The Winograd plan for `o` output channels, where it applies (3×3, stride 1) and
    /// pays in `pass`.
    fn winograd(&self, o: usize, pass: Pass) -> Option<Plan> {
        let plan = Plan {
            c: self.c,
            h: self.h,
            w: self.w,
            o,
            pad: self.pad,
        };
        (self.k == 3 && self.stride == 1 && plan.worthwhile(pass)).then_some(plan)
    }

    /// Whether `cols` is the image itself (1×1 kernel, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// For kernel offset `kx`, the output columns whose input column is in range, and the
    /// input column of the first.
    fn valid_x(&self, kx: usize, ow: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = p.saturating_sub(kx).div_ceil(s);
        let hi = (self.w + p).saturating_sub(kx).div_ceil(s).min(ow);
        (lo, hi.max(lo))
    }

    /// The input row under output row `oy` and kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        (iy < self.h).then_some(iy)
    }

    /// `cols[(c, ky, kx), (oy − y0)·W' + ox] = x[c, oy·s + ky − p, ox·s + kx − p]` (zero
    /// outside the image) for output rows `y0..y1` of one image `x: [C, H, W]`.
    fn im2col(&self, x: &[f32], y0: usize, y1: usize, cols: &mut [f32]) {
        let (_, ow) = self.out();
        let n = (y1 - y0) * ow;
        let plane = self.h * self.w;
        for (r, row) in cols[..self.rows() * n].chunks_mut(n).enumerate() {
            let (ch, ky, kx) = (r / (self.k * self.k), (r / self.k) % self.k, r % self.k);
            let (lo, hi) = self.valid_x(kx, ow);
            let src_plane = &x[ch * plane..(ch + 1) * plane];
            for (oy, dst) in (y0..y1).zip(row.chunks_mut(ow)) {
                let Some(iy) = self.input_row(oy, ky).filter(|_| lo < hi) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = &src_plane[iy * self.w..(iy + 1) * self.w];
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                if self.stride == 1 {
                    let off = lo + kx - self.pad;
                    dst[lo..hi].copy_from_slice(&src[off..off + hi - lo]);
                } else {
                    for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                        *d = src[ox * self.stride + kx - self.pad];
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geometry::im2col`]: adds `cols` (output rows `y0..y1`) into the
    /// image gradient `x: [C, H, W]`.
    fn col2im(&self, cols: &[f32], y0: usize, y1: usize, x: &mut [f32]) {
        let (_, ow) = self.out();
        let n = (y1 - y0) * ow;
        let plane = self.h * self.w;
        for (r, row) in cols[..self.rows() * n].chunks(n).enumerate() {
            let (ch, ky, kx) = (r / (self.k * self.k), (r / self.k) % self.k, r % self.k);
            let (lo, hi) = self.valid_x(kx, ow);
            let dst_plane = &mut x[ch * plane..(ch + 1) * plane];
            for (oy, src) in (y0..y1).zip(row.chunks(ow)) {
                let Some(iy) = self.input_row(oy, ky).filter(|_| lo < hi) else {
                    continue;
                };
                let dst = &mut dst_plane[iy * self.w..(iy + 1) * self.w];
                if self.stride == 1 {
                    let off = lo + kx - self.pad;
                    for (d, v) in dst[off..off + hi - lo].iter_mut().zip(&src[lo..hi]) {
                        *d += v;
                    }
                } else {
                    for (ox, v) in src.iter().enumerate().take(hi).skip(lo) {
                        dst[ox * self.stride + kx - self.pad] += v;
                    }
                }
            }
        }
    }
}

/// What follows a convolution in the fused inference path ([`conv2d_bias_act`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    None,
    /// `max(0, y)`.
    Relu,
    /// `min(max(0, y), 6)` (MobileNet, EfficientNet-Lite).
    Relu6,
}

impl Activation {
    /// The activation of a whole tensor, by candle's ops (any device, differentiable).
    pub fn apply_tensor(self, y: &Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(y.clone()),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        }
    }

    /// `dx = dy ⊙ act′` given the activation's output `y`: where `y` is on the flat part
    /// (0 for ReLU; 0 or 6 for ReLU6) the gradient stops.
    #[inline(always)]
    pub(crate) fn grad(self, dy: &[f32], y: &[f32], dx: &mut [f32]) {
        let pass = |v: f32| match self {
            Activation::None => true,
            Activation::Relu => v > 0.0,
            Activation::Relu6 => v > 0.0 && v < 6.0,
        };
        for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
            *d = if pass(v) { g } else { 0.0 };
        }
    }

    /// [`Activation::grad`] of whole tensors, in parallel pieces: a new `dx`.
    pub(crate) fn grads(self, dy: &[f32], y: &[f32]) -> Vec<f32> {
        const PIECE: usize = 1 << 16;
        let mut dx = zeroed(dy.len());
        dx.par_chunks_mut(PIECE)
            .zip(dy.par_chunks(PIECE).zip(y.par_chunks(PIECE)))
            .for_each(|(dx, (dy, y))| {
                simd::run(
                    #[inline(always)]
                    || self.grad(dy, y, dx),
                )
            });
        dx
    }

    /// Applies to the first `cols` of `rows` rows spaced `stride` apart.
    #[inline(always)]
    pub(crate) fn apply(self, y: &mut [f32], rows: usize, cols: usize, stride: usize) {
        // One loop per activation: a closure chosen by a `match` would be a function
        // pointer, called once per element.
        for row in y.chunks_mut(stride).take(rows) {
            let row = &mut row[..cols];
            match self {
                Activation::None => return,
                Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
                Activation::Relu6 => row.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
            }
        }
    }
}

/// The forward pass: per image and band, `im2col`, then `bias` (if any) and the GEMM
/// straight into the output, then `act` while the band is still in the cache.
fn forward(
    conv: &Conv,
    x: &[f32],
    xl: &Layout,
    wt: &[f32],
    wl: &Layout,
    bias: Option<&[f32]>,
    act: Activation,
) -> Result<(CpuStorage, Shape)> {
    let (b, c, h, w) = xl.shape().dims4()?;
    let o = wl.shape().dims4()?.0;
    let g = conv.geometry(c, h, w)?;
    let (oh, ow) = g.out();
    let n = oh * ow;
    if let Some(plan) = g.winograd(o, Pass::Forward) {
        let y = plan.run(x, b, &Kernel::cached(wt, o, c, false), bias, act);
        return Ok((CpuStorage::F32(y), Shape::from((b, o, oh, ow))));
    }
    let rows = g.rows();
    let par = gemm_threads(b);
    let wm = Mat {
        data: wt,
        rs: rows,
        cs: 1,
    };
    let mut y = zeroed(b * o * n);
    let per_image = |cols: &mut Vec<f32>, (img, out): (&[f32], &mut [f32])| {
        for (y0, y1, bn) in g.bands() {
            let src = if g.is_pointwise() {
                Mat {
                    data: &img[y0 * ow..],
                    rs: n,
                    cs: 1,
                }
            } else {
                g.im2col(img, y0, y1, cols);
                Mat {
                    data: cols,
                    rs: bn,
                    cs: 1,
                }
            };
            let dst = &mut out[y0 * ow..];
            if let Some(bias) = bias {
                for (row, &v) in dst.chunks_mut(n).zip(bias) {
                    row[..bn].fill(v);
                }
            }
            matmul((o, bn, rows), wm, src, dst, n, bias.is_some(), par);
            act.apply(dst, o, bn, n);
        }
    };
    each_image(
        par,
        (x, c * h * w),
        (&mut y, o * n),
        g.cols_len(),
        per_image,
    );
    Ok((CpuStorage::F32(y), Shape::from((b, o, oh, ow))))
}

/// Calls `f(cols, (input, output))` for each image's slices (`input` in chunks of `ins.1`,
/// `output` of `outs.1`) with a `cols` buffer of `cols_len` floats: images in parallel,
/// one buffer per thread, when each GEMM runs on one thread; else one after another.
fn each_image(
    par: Parallelism,
    ins: (&[f32], usize),
    outs: (&mut [f32], usize),
    cols_len: usize,
    f: impl Fn(&mut Vec<f32>, (&[f32], &mut [f32])) + Sync + Send,
) {
    let buffer = || vec![0f32; cols_len];
    if matches!(par, Parallelism::None) {
        ins.0
            .par_chunks(ins.1)
            .zip(outs.0.par_chunks_mut(outs.1))
            .for_each_init(buffer, f);
    } else {
        let mut cols = buffer();
        ins.0
            .chunks(ins.1)
            .zip(outs.0.chunks_mut(outs.1))
            .for_each(|item| f(&mut cols, item));
    }
}

/// `x: [B, C, H, W]` ⊛ `w: [O, C, k, k]` → `[B, O, H', W']`. Backward:
/// [`ConvInputGrad`] and [`ConvWeightGrad`].
#[derive(Clone, Copy, Debug)]
struct Conv {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn geometry(&self, c: usize, h: usize, w: usize) -> Result<Geometry> {
        let g = Geometry {
            c,
            h,
            w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        };
        if self.stride == 0 || h + 2 * g.pad < g.k || w + 2 * g.pad < g.k {
            candle_core::bail!(
                "conv2d: kernel {} (stride {}) does not fit the padded input {h}x{w}",
                g.k,
                g.stride
            );
        }
        Ok(g)
    }

    /// The input and kernel gradients for the output gradient `dy` (contiguous), each only
    /// where autograd can use it: a frozen classifier's kernels (plain tensors) need none,
    /// and neither does a network's input image.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, c, h, wd) = x.dims4()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(
                w,
                &ConvInputGrad {
                    g: self.geometry(c, h, wd)?,
                },
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(dy, &ConvWeightGrad { conv: *self })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// `dy: [B, O, H', W']`, `w: [O, C, k, k]` → `dx: [B, C, H, W]` = `col2im(Wᵀ × dy)`.
#[derive(Clone, Copy, Debug)]
struct ConvInputGrad {
    g: Geometry,
}

impl CustomOp2 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "robustify-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dy = contiguous(dys, dyl, "conv2d input grad")?;
        let wt = contiguous(ws, wl, "conv2d input grad")?;
        let g = self.g;
        let (b, o, oh, ow) = dyl.shape().dims4()?;
        let plane = g.c * g.h * g.w;
        // The input gradient of a 3×3, stride-1 convolution is one too: the kernel turned
        // by 180° and transposed, padding 2 − pad.
        let transposed = 2usize.checked_sub(g.pad).map(|pad| Geometry {
            c: o,
            h: oh,
            w: ow,
            pad,
            ..g
        });
        if let Some(plan) = transposed.and_then(|t| t.winograd(g.c, Pass::Backward)) {
            let dx = plan.run(
                dy,
                b,
                &Kernel::cached(wt, o, g.c, true),
                None,
                Activation::None,
            );
            return Ok((CpuStorage::F32(dx), Shape::from((b, g.c, g.h, g.w))));
        }
        let (n, rows) = (oh * ow, g.rows());
        let par = gemm_threads(b);
        // Wᵀ: element (r, o) of the [rows, O] matrix is w[o·rows + r].
        let wt_m = Mat {
            data: wt,
            rs: 1,
            cs: rows,
        };
        let mut dx = zeroed(b * plane);
        let per_image = |cols: &mut Vec<f32>, (dyi, dxi): (&[f32], &mut [f32])| {
            for (y0, y1, bn) in g.bands() {
                let src = Mat {
                    data: &dyi[y0 * ow..],
                    rs: n,
                    cs: 1,
                };
                if g.is_pointwise() {
                    // cols is dx itself: accumulate nothing, write the band's columns.
                    matmul((rows, bn, o), wt_m, src, &mut dxi[y0 * ow..], n, false, par);
                } else {
                    matmul((rows, bn, o), wt_m, src, cols, bn, false, par);
                    g.col2im(cols, y0, y1, dxi);
                }
            }
        };
        each_image(par, (dy, o * n), (&mut dx, plane), g.cols_len(), per_image);
        Ok((CpuStorage::F32(dx), Shape::from((b, g.c, g.h, g.w))))
    }
}

/// Weight-gradient partial sums per batch, at most (one per group of images).
const GROUPS: usize = 16;

/// `x: [B, C, H, W]`, `dy: [B, O, H', W']` → `dw: [O, C, k, k]` = `Σ_images dy × colsᵀ`.
#[derive(Clone, Copy, Debug)]
struct ConvWeightGrad {
    conv: Conv,
}

impl CustomOp2 for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "robustify-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(xs, xl, "conv2d weight grad")?;
        let dy = contiguous(dys, dyl, "conv2d weight grad")?;
        let (b, c, h, w) = xl.shape().dims4()?;
        let (_, o, oh, ow) = dyl.shape().dims4()?;
        let g = self.conv.geometry(c, h, w)?;
        if let Some(plan) = g.winograd(o, Pass::Backward) {
            let dw = plan.weight_grad(x, dy, b, GROUPS);
            return Ok((CpuStorage::F32(dw), Shape::from((o, c, 3, 3))));
        }
        let (n, rows) = (oh * ow, g.rows());
        let par = gemm_threads(b);
        let per_image = |(dw, cols): &mut (Vec<f32>, Vec<f32>), (xi, dyi): (&[f32], &[f32])| {
            for (y0, y1, bn) in g.bands() {
                // colsᵀ: element (p, r) of the [band, rows] matrix.
                let cols_t = if g.is_pointwise() {
                    Mat {
                        data: &xi[y0 * ow..],
                        rs: 1,
                        cs: n,
                    }
                } else {
                    g.im2col(xi, y0, y1, cols);
                    Mat {
                        data: cols,
                        rs: 1,
                        cs: bn,
                    }
                };
                let dy_band = Mat {
                    data: &dyi[y0 * ow..],
                    rs: n,
                    cs: 1,
                };
                matmul((o, rows, bn), dy_band, cols_t, dw, rows, true, par);
            }
        };
        let init = || (vec![0f32; o * rows], vec![0f32; g.cols_len()]);
        // Fixed groups of consecutive images, summed in order: the same batch gives the
        // same gradient bit for bit, whatever the threads did (training resumes exactly).
        let group = b.div_ceil(GROUPS);
        let partials: Vec<Vec<f32>> = x
            .par_chunks(group * c * h * w)
            .zip(dy.par_chunks(group * o * n))
            .map(|(xg, dyg)| {
                let mut acc = init();
                for item in xg.chunks(c * h * w).zip(dyg.chunks(o * n)) {
                    per_image(&mut acc, item);
                }
                acc.0
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut dw = parts.next().unwrap_or_else(|| vec![0f32; o * rows]);
        for p in parts {
            dw.iter_mut().zip(&p).for_each(|(a, v)| *a += v);
        }
        Ok((CpuStorage::F32(dw), Shape::from((o, c, g.k, g.k))))
    }
}

/// `dy ⊙ act′(y)` in one pass (`dy`, `y` of one shape): the gradient through a fused
/// activation, from its output.
#[derive(Clone, Copy, Debug)]
struct ActGrad {
    act: Activation,
}

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "robustify-activation-grad"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dy = contiguous(dys, dyl, "activation grad")?;
        let y = contiguous(ys, yl, "activation grad")?;
        if dy.len() != y.len() {
            candle_core::bail!("activation grad: {:?} vs {:?}", dyl.shape(), yl.shape());
        }
        Ok((CpuStorage::F32(self.act.grads(dy, y)), dyl.shape().clone()))
    }
}

/// The gradients of `act(conv(x, w) + bias)` from its output `y` and `dy`: the
/// convolution's, with `dy` stopped where the activation is flat; the bias's, `dy`
/// summed per channel.
fn fused_grads(
    conv: &Conv,
    act: Activation,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    dy: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Tensor)> {
    let dy = match act {
        Activation::None => dy.contiguous()?,
        _ => dy.contiguous()?.apply_op2_no_bwd(y, &ActGrad { act })?,
    };
    let (dx, dw) = conv.grads(x, w, &dy)?;
    Ok((dx, dw, dy))
}

/// The convolution as a candle op, with an activation fused in ([`Activation::None`] for
/// plain [`conv2d`]) and, as a three-argument op, a bias; differentiable.
#[derive(Clone, Copy, Debug)]
struct ConvAct {
    conv: Conv,
    act: Activation,
}

impl CustomOp2 for ConvAct {
    fn name(&self) -> &'static str {
        "robustify-conv2d-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(xs, xl, "conv2d")?;
        let wt = contiguous(ws, wl, "conv2d")?;
        forward(&self.conv, x, xl, wt, wl, None, self.act)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = fused_grads(&self.conv, self.act, x, w, y, dy)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for ConvAct {
    fn name(&self) -> &'static str {
        "robustify-conv2d-bias-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(xs, xl, "conv2d")?;
        let wt = contiguous(ws, wl, "conv2d")?;
        let bias = contiguous(bs, bl, "conv2d bias")?;
        if bias.len() != wl.shape().dims4()?.0 {
            candle_core::bail!("conv2d: {} biases for kernel {:?}", bias.len(), wl.shape());
        }
        forward(&self.conv, x, xl, wt, wl, Some(bias), self.act)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, dy) = fused_grads(&self.conv, self.act, x, w, y, dy)?;
        let db = if bias.track_op() {
            Some(dy.sum((0, 2, 3))?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `act(conv2d(x, w) + bias)` from candle's own ops, on any device: what this crate's
/// convolutions run off the CPU (our kernels are CPU code), differentiable by candle.
pub fn candle_conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    act: Activation,
) -> Result<Tensor> {
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    let y = match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    };
    act.apply_tensor(&y)
}

/// The convolution of `x` with `w` (square kernel, channels matching).
fn conv_of(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Conv> {
    let (_, c, _, _) = x.dims4()?;
    let (_, ci, k, k2) = w.dims4()?;
    if ci != c || k != k2 {
        candle_core::bail!("conv2d: input has {c} channels, kernel is {:?}", w.shape());
    }
    Ok(Conv {
        k,
        stride,
        pad: padding,
    })
}

/// `act(conv2d(x, w) + bias)` in one pass over the output, on the CPU, `bias: [O]`.
/// Differentiable: the backward pass stops the output gradient where the activation is
/// flat (one pass, from the output) and goes on as [`conv2d`]'s. Off the CPU, candle's
/// own convolution ([`candle_conv2d`]).
pub fn conv2d_bias_act(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    padding: usize,
    stride: usize,
    act: Activation,
) -> Result<Tensor> {
    let conv = conv_of(x, w, padding, stride)?;
    if !x.device().is_cpu() {
        return candle_conv2d(x, w, Some(bias), padding, stride, act);
    }
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &bias.contiguous()?, ConvAct { conv, act })
}

/// `act(conv2d(x, w))` in one pass over the output, on the CPU; differentiable like
/// [`conv2d_bias_act`], and candle's off the CPU.
pub fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    act: Activation,
) -> Result<Tensor> {
    let conv = conv_of(x, w, padding, stride)?;
    if !x.device().is_cpu() {
        return candle_conv2d(x, w, None, padding, stride, act);
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, ConvAct { conv, act })
}

/// 2-D convolution of `x: [B, C, H, W]` with `w: [O, C, k, k]` (square kernel, groups 1,
/// dilation 1, zero padding), on the CPU: a drop-in for candle's `Tensor::conv2d` with
/// the same result (to rounding), differentiable in both arguments.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    conv2d_act(x, w, padding, stride, Activation::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{max_abs, max_rel};
    use candle_core::{DType, Device, Var};

    const CASES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
        // (B, C, H, W, O, k, stride/pad encoded below)
        (2, 3, 9, 7, 4, 3, 11),
        (1, 4, 8, 8, 5, 3, 21),
        (2, 2, 7, 5, 3, 3, 20),
        (1, 3, 5, 5, 2, 1, 10),
        (2, 3, 6, 8, 4, 1, 20), // stock candle's backward needs H, W of one parity here
        (1, 2, 11, 6, 3, 5, 12),
        (1, 1, 3, 3, 2, 3, 10),
        // More images than weight-gradient groups (uneven last group), in parallel.
        (21, 3, 9, 7, 4, 3, 11),
        // Several cache bands per image (576 rows × 40 columns: 11 output rows a band).
        (2, 64, 40, 40, 8, 3, 11),
        (3, 64, 37, 41, 5, 3, 21),
        (1, 64, 45, 33, 6, 3, 11),
        // A 1×1 convolution read in bands straight from the image.
        (2, 1000, 20, 30, 4, 1, 10),
        // Winograd F(4×4, 3×3) in the gradients (from 16 channels) and in the forward pass
        // (from 16 channels where rows are as wide as their tiles, else from 32 and 6 tiles
        // a row): odd sizes (edge tiles cut off), padding 0/1/2, images grouped into
        // chunks (in parallel), several chunks in one image, one image alone.
        (2, 64, 13, 11, 64, 3, 10),
        (2, 32, 11, 9, 40, 3, 11),
        (1, 64, 9, 10, 72, 3, 12),
        (2, 16, 9, 7, 16, 3, 11),
        (3, 32, 13, 17, 24, 3, 10),
        (1, 20, 6, 5, 17, 3, 12),
        (9, 16, 8, 8, 16, 3, 11),
        (1, 64, 40, 33, 64, 3, 11),
        (4, 48, 23, 21, 16, 3, 11),
        // Padding wider than a tile's step (the patch columns past the next tile), and
        // padding 0, on the row-by-row deal.
        (1, 32, 5, 14, 32, 3, 15),
        (1, 32, 9, 26, 32, 3, 10),
        // Rows exactly as wide as their tiles (dealt a chunk at a time), padding 1 and 0,
        // one tile a row.
        (2, 32, 12, 16, 40, 3, 11),
        (3, 32, 9, 20, 32, 3, 10),
        (2, 32, 5, 4, 32, 3, 11),
    ];

    #[test]
    fn fused_bias_and_activation_match_the_separate_ops() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k, sp) in CASES {
            let (stride, pad) = (sp / 10, sp % 10);
            let x = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (o, c, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 3.0, o, &dev).unwrap();
            let plain = conv2d(&x, &wt, pad, stride)
                .unwrap()
                .broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            for (act, want) in [
                (Activation::None, plain.clone()),
                (Activation::Relu, plain.relu().unwrap()),
                (Activation::Relu6, plain.clamp(0f32, 6f32).unwrap()),
            ] {
                let fused = conv2d_bias_act(&x, &wt, &bias, pad, stride, act).unwrap();
                assert!(
                    max_rel(&fused, &want) < 1e-5,
                    "{act:?} {b} {c} {h} {w} {o} {k} s{stride} p{pad}"
                );
                // The path off the CPU: candle's convolution, bias and activation. Its
                // sums round differently from ours (Winograd): the error is measured
                // against the pre-activation's magnitude, which ReLU6's clamp at 6 hides.
                let candle = candle_conv2d(&x, &wt, Some(&bias), pad, stride, act).unwrap();
                let scale = max_abs(&plain, &plain.zeros_like().unwrap());
                let err = max_abs(&fused, &candle) / scale.max(1e-6);
                assert!(
                    err < 1e-4,
                    "candle's {act:?} {b} {c} {h} {w} {o} {k} s{stride} p{pad}: {err}"
                );
            }
        }
        let x = Tensor::zeros((1, 2, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let wt = Tensor::zeros((3, 2, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let short = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d_bias_act(&x, &wt, &short, 1, 1, Activation::Relu).is_err());
    }

    #[test]
    fn fused_gradients_match_the_separate_ops() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k, sp) in CASES {
            let (stride, pad) = (sp / 10, sp % 10);
            let x = Var::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let wt = Var::randn(0f32, 1.0, (o, c, k, k), &dev).unwrap();
            let bias = Var::randn(0f32, 3.0, o, &dev).unwrap();
            let plain = x
                .conv2d(&wt, pad, stride, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let unbiased = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
            for (act, want, want_unbiased) in [
                (Activation::None, plain.clone(), unbiased.clone()),
                (
                    Activation::Relu,
                    plain.relu().unwrap(),
                    unbiased.relu().unwrap(),
                ),
                (
                    Activation::Relu6,
                    plain.clamp(0f32, 6f32).unwrap(),
                    unbiased.clamp(0f32, 6f32).unwrap(),
                ),
            ] {
                let case = format!("{act:?} {b} {c} {h} {w} {o} {k} s{stride} p{pad}");
                let fused = conv2d_bias_act(&x, &wt, &bias, pad, stride, act).unwrap();
                let fused_unbiased = conv2d_act(&x, &wt, pad, stride, act).unwrap();
                // Measured against the convolution's scale: ReLU6 clips the output to 6 but
                // not the convolution's rounding error (Winograd: ~7e-6 of its largest value).
                let scale = unbiased.abs().unwrap().max_all().unwrap();
                let err = (&fused_unbiased - &want_unbiased)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all();
                let rel = (err.unwrap() / scale).unwrap().to_scalar::<f32>().unwrap();
                assert!(rel < 1e-4, "{case}: {rel}");
                // The reference gradient: candle's convolution (and bias) under the loss
                // Σ r·mask·(conv + bias), the mask where our output's activation passes.
                // (Candle's own ReLU would decide the rare outputs within rounding of 0 or
                // 6 by its own rounding: one flipped output moves dw by far more than 1e-4.)
                let r = Tensor::randn(0f32, 1.0, want.dims(), &dev).unwrap();
                let loss = |t: &Tensor, r: &Tensor| {
                    (t * r).unwrap().sum_all().unwrap().backward().unwrap()
                };
                let masked = |y: &Tensor| {
                    let pass = match act {
                        Activation::None => y.ones_like().unwrap(),
                        Activation::Relu => y.gt(0f32).unwrap().to_dtype(DType::F32).unwrap(),
                        Activation::Relu6 => (y.gt(0f32).unwrap().to_dtype(DType::F32).unwrap()
                            * y.lt(6f32).unwrap().to_dtype(DType::F32).unwrap())
                        .unwrap(),
                    };
                    (&r * pass).unwrap()
                };
                let (g_fused, g_want) = (loss(&fused, &r), loss(&plain, &masked(&fused)));
                for v in [&x, &wt, &bias] {
                    let (a, s) = (g_fused.get(v).unwrap(), g_want.get(v).unwrap());
                    assert!(max_rel(a, s) < 1e-4, "{case}: {}", max_rel(a, s));
                }
                let g_fused = loss(&fused_unbiased, &r);
                let g_want = loss(&unbiased, &masked(&fused_unbiased));
                for v in [&x, &wt] {
                    let (a, s) = (g_fused.get(v).unwrap(), g_want.get(v).unwrap());
                    assert!(max_rel(a, s) < 1e-4, "{case} unbiased: {}", max_rel(a, s));
                }
            }
        }
    }

    /// The AVX-512, AVX2 and baseline builds of the loops (`crate::simd`) give the same
    /// bits: the compiler vectorises them without reordering a single operation. The only
    /// test that changes the level (the others pass whichever level is in use).
    #[test]
    fn every_simd_level_gives_the_same_bits() {
        use crate::simd::{Simd, set_simd};
        let dev = Device::Cpu;
        let run = |&(b, c, h, w, o, k, sp): &(usize, usize, usize, usize, usize, usize, usize)| {
            let (stride, pad) = (sp / 10, sp % 10);
            let x = Var::from_tensor(
                &Tensor::arange(0u32, (b * c * h * w) as u32, &dev)
                    .unwrap()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .affine(0.37, 0.0)
                    .unwrap()
                    .sin()
                    .unwrap()
                    .reshape((b, c, h, w))
                    .unwrap(),
            )
            .unwrap();
            let wt = Var::from_tensor(
                &Tensor::arange(0u32, (o * c * k * k) as u32, &dev)
                    .unwrap()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .affine(0.61, 0.0)
                    .unwrap()
                    .cos()
                    .unwrap()
                    .reshape((o, c, k, k))
                    .unwrap(),
            )
            .unwrap();
            let y = conv2d(&x, &wt, pad, stride).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            [y, g.get(&x).unwrap().clone(), g.get(&wt).unwrap().clone()]
                .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        };
        // The depthwise convolution (stride 1 and 2) runs through the same builds.
        let depthwise = |stride: usize| {
            let (c, k) = (6, 5);
            let wave = |n: usize, f: f64| {
                Tensor::arange(0u32, n as u32, &dev)
                    .unwrap()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .affine(f, 0.0)
                    .unwrap()
                    .sin()
                    .unwrap()
            };
            let x = wave(2 * c * 14 * 13, 0.37).reshape((2, c, 14, 13)).unwrap();
            let wt = wave(c * k * k, 0.61).reshape((c, 1, k, k)).unwrap();
            let op = crate::Depthwise::new(&wt, &wave(c, 1.3), stride, true).unwrap();
            let y = op.forward(&x).unwrap();
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let want: Vec<_> = {
            set_simd(Simd::Baseline);
            CASES.iter().map(run).collect()
        };
        let want_depthwise = [1, 2].map(depthwise);
        for level in [Simd::Avx2, Simd::Avx512] {
            let used = set_simd(level);
            for (case, want) in CASES.iter().zip(&want) {
                assert!(
                    run(case) == *want,
                    "{used:?} differs from the baseline on {case:?}"
                );
            }
            assert!(
                [1, 2].map(depthwise) == want_depthwise,
                "{used:?} differs from the baseline on the depthwise convolution"
            );
        }
        set_simd(Simd::Avx512);
    }

    #[test]
    fn forward_and_gradients_match_stock_candle() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k, sp) in CASES {
            let (stride, pad) = (sp / 10, sp % 10);
            let x = Var::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let wt = Var::randn(0f32, 1.0, (o, c, k, k), &dev).unwrap();
            let ours = conv2d(&x, &wt, pad, stride).unwrap();
            let stock = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
            assert_eq!(
                ours.dims(),
                stock.dims(),
                "{b} {c} {h} {w} {o} {k} s{stride} p{pad}"
            );
            assert!(
                max_rel(&ours, &stock) < 1e-4,
                "forward {b} {c} {h} {w} {o} {k} s{stride} p{pad}"
            );
            // A loss that weights every output differently.
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let g_ours = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g_stock = (stock * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt] {
                let (a, s) = (g_ours.get(v).unwrap(), g_stock.get(v).unwrap());
                assert!(
                    max_rel(a, s) < 1e-4,
                    "gradient {b} {c} {h} {w} {o} {k} s{stride} p{pad}: {}",
                    max_rel(a, s)
                );
            }
        }
    }
}
