//! Convolution as `im2col` + GEMM, with `col2im` for the input gradient.
//!
//! For an input `[B, C, H, W]` and a kernel `[O, C, k, k]`, `im2col` lays out every
//! receptive field as a column of `cols: [C·k·k, B·H'·W']`; the output is then one GEMM for
//! the whole batch, `W[O, C·k·k] × cols`. Backward: `dW = dY × colsᵀ` and
//! `dX = col2im(Wᵀ × dY)`, all GEMMs but the scatter of `col2im`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Geometry shared by `im2col` and `col2im`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Geometry {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// For kernel offset `kx`, the output columns whose input column is in range, and the
    /// input column of the first.
    fn valid_x(&self, kx: usize, ow: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = p.saturating_sub(kx).div_ceil(s);
        let hi = (self.w + p).saturating_sub(kx).div_ceil(s).min(ow);
        (lo, hi.max(lo))
    }
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// `[B, C, H, W]` → `[C·k·k, B·H'·W']` (zero padding): row `(c, ky, kx)` holds, image
/// after image, the input values under that kernel tap. Backward is [`Col2Im`].
#[derive(Clone, Copy, Debug)]
pub struct Im2Col {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Im2Col {
    /// Square kernel `k`, `stride`, zero padding `pad` on every side.
    pub fn new(k: usize, stride: usize, pad: usize) -> Im2Col {
        Im2Col { k, stride, pad }
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(storage, layout, "im2col")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        let g = Geometry {
            c,
            h,
            w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        };
        if h + 2 * g.pad < g.k || w + 2 * g.pad < g.k {
            candle_core::bail!("im2col: kernel {} larger than padded input {h}x{w}", g.k);
        }
        let (oh, ow) = g.out();
        let rows = c * g.k * g.k;
        let n = oh * ow;
        let mut cols = vec![0f32; rows * b * n];
        // One task per row (c, ky, kx): B segments of H'·W', one per image.
        cols.par_chunks_mut(b * n).enumerate().for_each(|(r, row)| {
            let (ch, ky, kx) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
            let (lo, hi) = g.valid_x(kx, ow);
            for bi in 0..b {
                let plane = &x[(bi * c + ch) * h * w..(bi * c + ch + 1) * h * w];
                let seg = &mut row[bi * n..(bi + 1) * n];
                for oy in 0..oh {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= h as isize || lo >= hi {
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let dst = &mut seg[oy * ow..(oy + 1) * ow];
                    if g.stride == 1 {
                        let off = lo + kx - g.pad;
                        dst[lo..hi].copy_from_slice(&src[off..off + hi - lo]);
                    } else {
                        for ox in lo..hi {
                            dst[ox] = src[ox * g.stride + kx - g.pad];
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(cols), Shape::from((rows, b * n))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, c, h, w) = arg.dims4()?;
        let op = Col2Im {
            c,
            h,
            w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1(op)?))
    }
}

/// `[C·k·k, B·H'·W']` → `[B, C, H, W]`, summing overlapping contributions: the adjoint of
/// [`Im2Col`].
#[derive(Clone, Copy, Debug)]
pub struct Col2Im {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let cols = contiguous(storage, layout, "col2im")?;
        let g = Geometry {
            c: self.c,
            h: self.h,
            w: self.w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        };
        let (oh, ow) = g.out();
        let (rows, bn) = layout.shape().dims2()?;
        let n = oh * ow;
        if rows != g.c * g.k * g.k || n == 0 || bn % n != 0 {
            candle_core::bail!(
                "col2im: shape {:?} does not match the geometry",
                layout.shape()
            );
        }
        let b = bn / n;
        let mut x = vec![0f32; b * g.c * g.h * g.w];
        x.par_chunks_mut(g.h * g.w)
            .enumerate()
            .for_each(|(bc, plane)| {
                let (bi, ch) = (bc / g.c, bc % g.c);
                for ky in 0..g.k {
                    for kx in 0..g.k {
                        let r = (ch * g.k + ky) * g.k + kx;
                        let seg = &cols[r * bn + bi * n..r * bn + (bi + 1) * n];
                        let (lo, hi) = g.valid_x(kx, ow);
                        for oy in 0..oh {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            if iy < 0 || iy >= g.h as isize || lo >= hi {
                                continue;
                            }
                            let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                            let src = &seg[oy * ow..(oy + 1) * ow];
                            if g.stride == 1 {
                                let off = lo + kx - g.pad;
                                for (d, v) in dst[off..off + hi - lo].iter_mut().zip(&src[lo..hi]) {
                                    *d += v;
                                }
                            } else {
                                for ox in lo..hi {
                                    dst[ox * g.stride + kx - g.pad] += src[ox];
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(x), Shape::from((b, g.c, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Im2Col::new(
            self.k,
            self.stride,
            self.pad,
        ))?))
    }
}

/// 2-D convolution of `x: [B, C, H, W]` with `w: [O, C, k, k]` (square kernel, groups 1,
/// dilation 1): `im2col` + one GEMM per image. Differentiable in both arguments.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (o, ci, k, k2) = w.dims4()?;
    if ci != c || k != k2 {
        candle_core::bail!("conv2d: input has {c} channels, kernel is {:?}", w.shape());
    }
    let g = Geometry {
        c,
        h,
        w: wd,
        k,
        stride,
        pad: padding,
    };
    let (oh, ow) = g.out();
    if k == 1 && stride == 1 && padding == 0 {
        // A 1×1 convolution is already a matrix product.
        let y = w
            .reshape((o, c))?
            .broadcast_matmul(&x.reshape((b, c, h * wd))?)?;
        return y.reshape((b, o, h, wd));
    }
    // cols: [C·k·k, B·H'·W'], so the whole batch is one large GEMM.
    let cols = x.contiguous()?.apply_op1(Im2Col::new(k, stride, padding))?;
    let y = w.reshape((o, c * k * k))?.matmul(&cols)?;
    y.reshape((o, b, oh * ow))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((b, o, oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1e-6);
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        d / scale
    }

    const CASES: [(usize, usize, usize, usize, usize, usize, usize); 7] = [
        // (B, C, H, W, O, k, stride/pad encoded below)
        (2, 3, 9, 7, 4, 3, 11),
        (1, 4, 8, 8, 5, 3, 21),
        (2, 2, 7, 5, 3, 3, 20),
        (1, 3, 5, 5, 2, 1, 10),
        (2, 3, 6, 8, 4, 1, 20), // stock candle's backward needs H, W of one parity here
        (1, 2, 11, 6, 3, 5, 12),
        (1, 1, 3, 3, 2, 3, 10),
    ];

    #[test]
    fn forward_and_gradients_match_stock_candle() {
        let dev = Device::Cpu;
        for (b, c, h, w, o, k, sp) in CASES {
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
