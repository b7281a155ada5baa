//! Training-mode BatchNorm with the activation after it, fused: three passes over the
//! data forward (mean, variance, then normalise-scale-shift-activate) and three backward
//! (the activation's gradient, the sums, then the input gradient), where candle_nn's
//! `BatchNorm` in training makes about ten forward (a transposed copy, means, broadcasts)
//! and autograd twice that backward.
//!
//! For channel `c` over the `N = B·H·W` values of a batch: `μ`, `σ² = mean((x − μ)²)`,
//! `x̂ = (x − μ)/√(σ² + ε)`, `y = act(γ x̂ + β)`. Backward with `g = dy ⊙ act′(y)`:
//! `dβ = Σ g`, `dγ = Σ g x̂`, `dx = γ/√(σ² + ε) · (g − dβ/N − x̂ dγ/N)`. The running
//! statistics move as candle_nn's (and PyTorch's) do: `m ← (1 − p) m + p μ`,
//! `v ← (1 − p) v + p σ² N/(N − 1)`, `p` the momentum.

use crate::conv::Activation;
use crate::simd;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, Var};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// One channel's statistics of a batch: mean and `1/√(σ² + ε)`, and the biased variance.
#[derive(Clone, Debug, Default)]
struct Stats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    var: Vec<f32>,
}

/// Sum of `f(v)` over a slice in 16 lanes (vectorisable without reordering the lanes'
/// own sums), then the lanes in `f64`.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(usize) -> f32) -> f64 {
    let mut acc = [0f32; 16];
    let whole = xs.len() / 16 * 16;
    for base in (0..whole).step_by(16) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(base + l);
        }
    }
    let tail: f64 = (whole..xs.len()).map(|i| f64::from(f(i))).sum();
    acc.iter().map(|&a| f64::from(a)).sum::<f64>() + tail
}

/// `[B, C, H, W]` as the `B` planes of channel `c`.
fn planes(x: &[f32], c: usize, channels: usize, hw: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks_exact(channels * hw)
        .map(move |img| &img[c * hw..][..hw])
}

/// The forward op: `(x, γ, β) → y`, statistics kept for the backward pass and the running
/// averages.
#[derive(Clone, Debug)]
struct BnAct {
    eps: f64,
    act: Activation,
    stats: Arc<OnceLock<Stats>>,
}

impl CustomOp3 for BnAct {
    fn name(&self) -> &'static str {
        "robustify-batch-norm-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = crate::matrix::contiguous(xs, xl, "batch norm")?;
        let gamma = crate::matrix::contiguous(gs, gl, "batch norm weight")?;
        let beta = crate::matrix::contiguous(bs, bl, "batch norm bias")?;
        let (b, c, h, w) = xl.shape().dims4()?;
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!(
                "batch norm: {c} channels, {} weights, {} biases",
                gamma.len(),
                beta.len()
            );
        }
        let hw = h * w;
        let n = (b * hw) as f64;
        let per_channel: Vec<(f32, f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                simd::run(
                    #[inline(always)]
                    || {
                        let mean = planes(x, ch, c, hw)
                            .map(|p| lane_sum(p, |i| p[i]))
                            .sum::<f64>()
                            / n;
                        let m = mean as f32;
                        let var = planes(x, ch, c, hw)
                            .map(|p| lane_sum(p, |i| (p[i] - m) * (p[i] - m)))
                            .sum::<f64>()
                            / n;
                        (m, (1.0 / (var + self.eps).sqrt()) as f32, var as f32)
                    },
                )
            })
            .collect();
        let stats = Stats {
            mean: per_channel.iter().map(|s| s.0).collect(),
            inv_std: per_channel.iter().map(|s| s.1).collect(),
            var: per_channel.iter().map(|s| s.2).collect(),
        };
        let mut y = crate::matrix::zeroed(x.len());
        y.par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .for_each(|(i, (yp, xp))| {
                let ch = i % c;
                let scale = gamma[ch] * stats.inv_std[ch];
                let shift = beta[ch] - stats.mean[ch] * scale;
                simd::run(
                    #[inline(always)]
                    || {
                        for (o, &v) in yp.iter_mut().zip(xp) {
                            *o = v * scale + shift;
                        }
                        self.act.apply(yp, 1, hw, hw);
                    },
                )
            });
        // A second forward of the same op object would find the first's statistics: each
        // call builds its own (see `batch_norm_act`).
        let _ = self.stats.set(stats);
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.get() else {
            candle_core::bail!("batch norm: backward before forward");
        };
        let sums = Arc::new(OnceLock::new());
        let grad = BnActGrad {
            act: self.act,
            stats: stats.clone(),
            gamma: gamma.flatten_all()?.to_vec1::<f32>()?,
            sums: sums.clone(),
        };
        let dx = x.apply_op3_no_bwd(y, &dy.contiguous()?, &grad)?;
        let Some((dgamma, dbeta)) = sums.get() else {
            candle_core::bail!("batch norm: the gradient's sums are missing");
        };
        let dev = x.device();
        let shape = gamma.shape();
        Ok((
            Some(dx),
            Some(Tensor::from_vec(dgamma.clone(), shape, dev)?),
            Some(Tensor::from_vec(dbeta.clone(), shape, dev)?),
        ))
    }
}

/// The backward op: `(x, y, dy) → dx`, with `(dγ, dβ)` left in `sums`.
#[derive(Clone, Debug)]
struct BnActGrad {
    act: Activation,
    stats: Stats,
    gamma: Vec<f32>,
    sums: Arc<OnceLock<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp3 for BnActGrad {
    fn name(&self) -> &'static str {
        "robustify-batch-norm-act-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = crate::matrix::contiguous(xs, xl, "batch norm grad")?;
        let y = crate::matrix::contiguous(ys, yl, "batch norm grad")?;
        let dy = crate::matrix::contiguous(ds, dl, "batch norm grad")?;
        let (b, c, h, w) = xl.shape().dims4()?;
        if y.len() != x.len() || dy.len() != x.len() {
            candle_core::bail!(
                "batch norm grad: {:?} {:?} {:?}",
                xl.shape(),
                yl.shape(),
                dl.shape()
            );
        }
        let hw = h * w;
        let n = (b * hw) as f64;
        let Stats { mean, inv_std, .. } = &self.stats;
        // g = dy ⊙ act′(y), then per channel Σ g and Σ g·x̂.
        let mut g = self.act.grads(dy, y);
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, s) = (mean[ch], inv_std[ch]);
                simd::run(
                    #[inline(always)]
                    || {
                        let pairs = planes(&g, ch, c, hw).zip(planes(x, ch, c, hw));
                        let (mut sg, mut sgx) = (0f64, 0f64);
                        for (gp, xp) in pairs {
                            sg += lane_sum(gp, |i| gp[i]);
                            sgx += lane_sum(gp, |i| gp[i] * ((xp[i] - m) * s));
                        }
                        (sg as f32, sgx as f32)
                    },
                )
            })
            .collect();
        // dx = γ/√(σ² + ε) · (g − Σg/N − x̂ Σg·x̂/N), written over g.
        g.par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .for_each(|(i, (gp, xp))| {
                let ch = i % c;
                let (m, s) = (mean[ch], inv_std[ch]);
                let k = self.gamma[ch] * s;
                let (mg, mgx) = (
                    (f64::from(sums[ch].0) / n) as f32,
                    (f64::from(sums[ch].1) / n) as f32,
                );
                simd::run(
                    #[inline(always)]
                    || {
                        for (gv, &xv) in gp.iter_mut().zip(xp) {
                            *gv = k * (*gv - mg - (xv - m) * s * mgx);
                        }
                    },
                )
            });
        let _ = self.sums.set((
            sums.iter().map(|s| s.1).collect(),
            sums.iter().map(|s| s.0).collect(),
        ));
        Ok((CpuStorage::F32(g), xl.shape().clone()))
    }
}

/// candle_nn's `BatchNorm` in training mode followed by `act`, fused (CPU, `f32`, `x:
/// [B, C, H, W]`): the same output and gradients (to rounding), and the same update of
/// the running mean and variance. `bn` must be affine (candle_nn's default). Off the CPU,
/// in evaluation mode or for other shapes, it is `bn.forward_t` then `act` in candle's ops.
pub fn batch_norm_act(
    bn: &candle_nn::BatchNorm,
    x: &Tensor,
    train: bool,
    act: Activation,
) -> Result<Tensor> {
    use candle_core::ModuleT;
    let fused =
        train && x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() == 4;
    let Some((gamma, beta)) = bn.weight_and_bias().filter(|_| fused) else {
        let y = bn.forward_t(x, train)?;
        return match act {
            Activation::None => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        };
    };
    let stats = Arc::new(OnceLock::new());
    let op = BnAct {
        eps: bn.eps(),
        act,
        stats: stats.clone(),
    };
    let y = x.contiguous()?.apply_op3(gamma, beta, op)?;
    let Some(s) = stats.get() else {
        candle_core::bail!("batch norm: the forward left no statistics");
    };
    let (b, c, h, w) = x.dims4()?;
    let n = (b * h * w) as f64;
    let p = bn.momentum();
    let dev = x.device();
    let mean = Tensor::from_slice(&s.mean, c, dev)?;
    let var = Tensor::from_slice(&s.var, c, dev)?;
    let running_mean = Var::from_tensor(bn.running_mean())?;
    let running_var = Var::from_tensor(bn.running_var())?;
    running_mean.set(&((running_mean.as_tensor() * (1.0 - p))? + (mean * p)?)?)?;
    let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
    running_var.set(&((running_var.as_tensor() * (1.0 - p))? + (var * (p * unbiased))?)?)?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_rel;
    use candle_core::{DType, Device, ModuleT};
    use candle_nn::{VarBuilder, VarMap};

    /// Two BatchNorms with the same (non-trivial) weights, one for candle_nn's ops and one
    /// for the fused op.
    fn twin(c: usize) -> [(VarMap, candle_nn::BatchNorm); 2] {
        let dev = Device::Cpu;
        let gamma = Tensor::arange(0u32, c as u32, &dev)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let gamma = ((gamma * 0.3).unwrap().sin().unwrap() + 1.2).unwrap();
        let beta = (gamma.cos().unwrap() * 0.5).unwrap();
        [0, 1].map(|_| {
            let mut vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let bn = candle_nn::batch_norm(c, candle_nn::BatchNormConfig::default(), vb).unwrap();
            for (name, t) in [("weight", &gamma), ("bias", &beta)] {
                vm.set_one(name, t).unwrap();
            }
            (vm, bn)
        })
    }

    #[test]
    fn matches_candle_nn_forward_gradients_and_running_statistics() {
        let dev = Device::Cpu;
        for (b, c, h, w) in [(4, 3, 5, 7), (2, 16, 8, 8), (1, 5, 33, 2), (3, 8, 1, 1)] {
            let x = Var::randn(1.5f32, 2.0, (b, c, h, w), &dev).unwrap();
            let r = Tensor::randn(0f32, 1.0, (b, c, h, w), &dev).unwrap();
            let [(vm_ref, bn_ref), (vm, bn)] = twin(c);
            for act in [Activation::None, Activation::Relu, Activation::Relu6] {
                let case = format!("{act:?} {b}x{c}x{h}x{w}");
                let plain = bn_ref.forward_t(x.as_tensor(), true).unwrap();
                let want = match act {
                    Activation::None => plain,
                    Activation::Relu => plain.relu().unwrap(),
                    Activation::Relu6 => plain.clamp(0f32, 6f32).unwrap(),
                };
                let got = batch_norm_act(&bn, x.as_tensor(), true, act).unwrap();
                assert!(
                    max_rel(&got, &want) < 1e-5,
                    "{case} forward: {}",
                    max_rel(&got, &want)
                );
                let g_want = (&want * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g_got = (&got * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let (gw, gb) = (
                    bn.weight_and_bias().unwrap(),
                    bn_ref.weight_and_bias().unwrap(),
                );
                for (v, v_ref, what) in [
                    (x.as_tensor(), x.as_tensor(), "dx"),
                    (gw.0, gb.0, "dγ"),
                    (gw.1, gb.1, "dβ"),
                ] {
                    let (a, e) = (g_got.get(v).unwrap(), g_want.get(v_ref).unwrap());
                    assert!(max_rel(a, e) < 1e-4, "{case} {what}: {}", max_rel(a, e));
                }
                for (a, e) in [
                    (bn.running_mean(), bn_ref.running_mean()),
                    (bn.running_var(), bn_ref.running_var()),
                ] {
                    assert!(max_rel(a, e) < 1e-5, "{case} running statistics");
                }
            }
            drop((vm_ref, vm));
        }
    }
}
