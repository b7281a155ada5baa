//! Winograd F(4×4, 3×3): a 3×3, stride-1 convolution with 4× fewer multiplications.
//!
//! Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). The
//! output is cut into 4×4 tiles; each reads a 6×6 input patch `d` (the tiles' patches
//! overlap by 2). With the kernel `g` (3×3) of output channel `o` and input channel `c`,
//!
//! ```text
//! Y[o, tile] = Aᵀ · ( Σ_c U[o, c] ⊙ V[c, tile] ) · A,   U = G g Gᵀ (6×6),   V = Bᵀ d B (6×6)
//! ```
//!
//! so for each of the 36 positions ξ of the 6×6 transform the sum over `c` is one matrix
//! product `M[ξ] = U[ξ] (O×C) × V[ξ] (C×tiles)`: 36·C·O multiplications for 16 outputs,
//! against 9·16·C·O for the direct convolution. The transforms use the interpolation
//! points 0, ±1, ±2, ∞ (the matrices in [`bt_row`], [`g6`] and [`at_row`]); in `f32` they lose
//! about one more digit than the direct sum: on random data the largest error is 2–7e-6
//! of the output's largest magnitude, against 4–7e-7 for im2col (both measured against
//! candle's conv2d; the tests hold both to 1e-4).
//!
//! The gradients go through the same transforms: the input gradient is a 3×3 stride-1
//! convolution itself (kernel turned by 180° and transposed), and the weight gradient is
//! `dU[ξ] = Σ_tiles Z[ξ] V[ξ]ᵀ` with `Z = A dY Aᵀ`, then `dW = Gᵀ dU G` — the chain rule
//! through `Y = Aᵀ (U ⊙ V) A`, exact for every tile (`dY` is zero past the output's edge).
//!
//! Work is cut into chunks of whole tile rows (of several images when they are small),
//! sized so that `V` and `M` of a chunk stay in the L2 cache but with at least 256 columns
//! for the products. Within a chunk the tile rows lie end to end and each image row is
//! dealt by phase (`x mod 4`) into the six columns of the tiles' patches, so that the
//! same transform position of consecutive tiles lies in consecutive floats: every
//! transform is a loop over one contiguous slice per chunk, which the compiler
//! vectorises, and writes `V` (reads `M`) in the order the products use it. Where this
//! pays is measured, not assumed: see [`Plan::worthwhile`].

use crate::conv::Activation;
use crate::matrix::{Mat, matmul};
use crate::simd;
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the Winograd path on (the default) or off for the whole process, so that a
/// benchmark can time both paths in one run; results agree to rounding either way.
pub fn set_winograd(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// `out[q] = f(a[q], b[q], c[q], d[q])`: a loop without bounds checks, which the compiler
/// vectorises.
#[inline(always)]
fn map4(out: &mut [f32], [a, b, c, d]: [&[f32]; 4], f: impl Fn(f32, f32, f32, f32) -> f32) {
    for ((((o, &a), &b), &c), &d) in out.iter_mut().zip(a).zip(b).zip(c).zip(d) {
        *o = f(a, b, c, d);
    }
}

/// Row `r` of `Bᵀ` applied to six slices: `out[q] = Σ_i Bᵀ[r][i]·d[i][q]`.
#[inline(always)]
fn bt_row(r: usize, [d0, d1, d2, d3, d4, d5]: [&[f32]; 6], out: &mut [f32]) {
    match r {
        0 => map4(out, [d0, d2, d4, d4], |a, c, e, _| 4.0 * a - 5.0 * c + e),
        1 => map4(out, [d1, d2, d3, d4], |b, c, d, e| -4.0 * (b + c) + d + e),
        2 => map4(out, [d1, d2, d3, d4], |b, c, d, e| 4.0 * (b - c) - d + e),
        3 => map4(out, [d1, d2, d3, d4], |b, c, d, e| 2.0 * (d - b) - c + e),
        4 => map4(out, [d1, d2, d3, d4], |b, c, d, e| 2.0 * (b - d) - c + e),
        _ => map4(out, [d1, d3, d5, d5], |b, d, f, _| 4.0 * b - 5.0 * d + f),
    }
}

/// Row `r` of `Aᵀ` applied to six slices: `out[q] = Σ_i Aᵀ[r][i]·m[i][q]`.
#[inline(always)]
fn at_row(r: usize, [m0, m1, m2, m3, m4, m5]: [&[f32]; 6], out: &mut [f32]) {
    match r {
        0 => {
            map4(out, [m0, m1, m2, m3], |a, b, c, d| a + (b + c) + d);
            for (o, &e) in out.iter_mut().zip(m4) {
                *o += e;
            }
        }
        1 => map4(out, [m1, m2, m3, m4], |b, c, d, e| (b - c) + 2.0 * (d - e)),
        2 => map4(out, [m1, m2, m3, m4], |b, c, d, e| (b + c) + 4.0 * (d + e)),
        _ => {
            map4(out, [m1, m2, m3, m4], |b, c, d, e| (b - c) + 8.0 * (d - e));
            for (o, &f) in out.iter_mut().zip(m5) {
                *o += f;
            }
        }
    }
}

/// Deals `row`, shifted right by `pad`, into its first `K` of four phases: `dst[k][q] =
/// row[4·q + k − pad]` wherever both exist; the other places are left as they are. The
/// whole groups of four a phase at a time, the ends one by one.
#[inline(always)]
fn spread<const K: usize>(row: &[f32], pad: usize, mut dst: [&mut [f32]; K]) {
    let put = |dst: &mut [&mut [f32]; K], j: usize| {
        let t = j + pad;
        if let Some(d) = dst.get_mut(t % 4).and_then(|d| d.get_mut(t / 4)) {
            *d = row[j];
        }
    };
    // Row elements before the first whole group (row index j lands at place j + pad).
    let head = ((4 - pad % 4) % 4).min(row.len());
    for j in 0..head {
        put(&mut dst, j);
    }
    let q0 = (head + pad) / 4;
    let body = row[head..].chunks_exact(4);
    let len = dst.iter().map(|d| d.len()).min().unwrap_or(0);
    let whole = body.len().min(len.saturating_sub(q0));
    for (k, d) in dst.iter_mut().enumerate() {
        for (x, g) in d[q0..q0 + whole].iter_mut().zip(body.clone()) {
            *x = g[k];
        }
    }
    for j in head + 4 * whole..row.len() {
        put(&mut dst, j);
    }
}

/// `[f(0), f(1), f(2), f(3)]`, spelled out. `array::map` and `array::from_fn` run a loop
/// in `core` that the compiler left as a call at each use in these loops (the profile of
/// a 32×32 layer's forward showed them at 8%).
#[inline(always)]
fn four<T>(mut f: impl FnMut(usize) -> T) -> [T; 4] {
    [f(0), f(1), f(2), f(3)]
}

/// `[f(0), …, f(5)]`, spelled out (see [`four`]).
#[inline(always)]
fn six<T>(mut f: impl FnMut(usize) -> T) -> [T; 6] {
    [f(0), f(1), f(2), f(3), f(4), f(5)]
}

/// The slices `buf[k·stride + at..][..len]`, `k` = 0, 1, … in turn, one per call of the
/// returned closure.
#[inline(always)]
fn strided<'a>(
    buf: &'a mut [f32],
    stride: usize,
    at: usize,
    len: usize,
) -> impl FnMut(usize) -> &'a mut [f32] {
    let mut rows = buf.chunks_mut(stride);
    move |_| match rows.next() {
        Some(row) => &mut row[at..at + len],
        None => panic!("strided: past the end of the buffer"),
    }
}

/// [`spread`] for rows exactly as wide as their tiles (`4·tw` columns, padding 0 or 1),
/// all rows of a chunk (`comb`, end to end) in one pass: `e[j·n + row·tw + tx] =
/// comb[row·4·tw + 4·tx + j − pad]`, zero where that column is outside its row. Columns
/// `pad..pad + 4` are the phases of the whole slice; the others are the same phases one
/// tile back or on, with the tiles at the rows' ends mended.
#[inline(always)]
fn deal_rows(comb: &[f32], pad: usize, tw: usize, e: &mut [f32]) {
    let n = comb.len() / 4;
    debug_assert!(pad <= 1 && e.len() == 6 * n);
    spread(comb, 0, four(strided(&mut e[pad * n..], n, 0, n)));
    for j in 0..pad {
        e.copy_within((j + 4) * n..(j + 5) * n - 1, j * n + 1);
    }
    for j in pad + 4..6 {
        e.copy_within((j - 4) * n + 1..(j - 3) * n, j * n);
    }
    for row in 0..n / tw.max(1) {
        for j in 0..pad {
            e[j * n + row * tw] = 0.0;
        }
        for j in pad + 4..6 {
            e[j * n + row * tw + tw - 1] = 0.0;
        }
    }
}

/// The inverse of [`spread`] without a shift, plus `bias`: `dst[4·t + k] = src[k][t] +
/// bias` for all of `dst` (each `src[k]` reaches at least `dst.len() / 4` rounded up).
#[inline(always)]
fn interleave4(dst: &mut [f32], src: [&[f32]; 4], bias: f32) {
    let whole = dst.len() / 4;
    let [s0, s1, s2, s3] = src;
    let groups = dst.chunks_exact_mut(4).zip(s0).zip(s1).zip(s2).zip(s3);
    for ((((g, &a), &b), &c), &d) in groups {
        g[0] = a + bias;
        g[1] = b + bias;
        g[2] = c + bias;
        g[3] = d + bias;
    }
    for (k, x) in dst[4 * whole..].iter_mut().enumerate() {
        *x = src[k][whole] + bias;
    }
}

/// `G` applied to three kernel taps: six values.
fn g6(g: [f64; 3]) -> [f64; 6] {
    let [g0, g1, g2] = g;
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

/// Row `r` of `A` (6×4) applied to four slices: `out[q] = Σ_i A[r][i]·t[i][q]`.
#[inline(always)]
fn a_row(r: usize, [t0, t1, t2, t3]: [&[f32]; 4], out: &mut [f32]) {
    match r {
        0 => out.copy_from_slice(&t0[..out.len()]),
        1 => map4(out, [t0, t1, t2, t3], |a, b, c, d| (a + c) + (b + d)),
        2 => map4(out, [t0, t1, t2, t3], |a, b, c, d| (a + c) - (b + d)),
        3 => map4(out, [t0, t1, t2, t3], |a, b, c, d| {
            a + 2.0 * b + 4.0 * c + 8.0 * d
        }),
        4 => map4(out, [t0, t1, t2, t3], |a, b, c, d| {
            a - 2.0 * b + 4.0 * c - 8.0 * d
        }),
        _ => out.copy_from_slice(&t3[..out.len()]),
    }
}

/// `Gᵀ` applied to six values: three kernel taps (the adjoint of [`g6`]).
fn gt6(u: [f64; 6]) -> [f64; 3] {
    let [u0, u1, u2, u3, u4, u5] = u;
    [
        u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0,
        (u2 - u1) / 6.0 + (u3 - u4) / 12.0,
        -(u1 + u2) / 6.0 + (u3 + u4) / 6.0 + u5,
    ]
}

/// The transformed kernel `U`: 36 matrices `[O, C]`, one per transform position.
pub(crate) struct Kernel {
    u: Vec<f32>,
    o: usize,
    c: usize,
}

impl Kernel {
    /// `U[ξ][o][c] = (G w[o, c] Gᵀ)[ξ]` for `w: [O, C, 3, 3]`.
    pub(crate) fn new(w: &[f32], o: usize, c: usize) -> Kernel {
        Kernel::build(o, c, |oc, ic, ky, kx| w[((oc * c + ic) * 3 + ky) * 3 + kx])
    }

    /// The kernel of the input gradient: `w'[c, o] = w[o, c]` turned by 180°, for
    /// `w: [O, C, 3, 3]`; `w'` maps O channels to C.
    pub(crate) fn flipped(w: &[f32], o: usize, c: usize) -> Kernel {
        Kernel::build(c, o, |ic, oc, ky, kx| {
            w[((oc * c + ic) * 3 + 2 - ky) * 3 + 2 - kx]
        })
    }

    fn build(o: usize, c: usize, tap: impl Fn(usize, usize, usize, usize) -> f32) -> Kernel {
        let mut u = vec![0f32; 36 * o * c];
        for oc in 0..o {
            for ic in 0..c {
                let t = |ky, kx| f64::from(tap(oc, ic, ky, kx));
                // G g (6×3), then (G g) Gᵀ (6×6).
                let cols: [[f64; 6]; 3] = [0, 1, 2].map(|kx| g6([t(0, kx), t(1, kx), t(2, kx)]));
                for i in 0..6 {
                    let row = g6([cols[0][i], cols[1][i], cols[2][i]]);
                    for (j, v) in row.into_iter().enumerate() {
                        u[((i * 6 + j) * o + oc) * c + ic] = v as f32;
                    }
                }
            }
        }
        Kernel { u, o, c }
    }
}

/// Transformed kernels of the weights convolved lately, found again by their content:
/// frozen weights (a denoiser or classifier at inference, a classifier the stability
/// objective goes through) give the same `U` on every call, and computing it was ~5% of
/// an evaluation. A hit compares the whole weight tensor, so a stale kernel is never used;
/// the cache holds at most [`CACHE_BYTES`], least recently used out first.
struct KernelCache {
    entries: std::sync::Mutex<std::collections::VecDeque<CachedKernel>>,
}

struct CachedKernel {
    flipped: bool,
    o: usize,
    c: usize,
    w: Vec<f32>,
    kernel: std::sync::Arc<Kernel>,
}

impl CachedKernel {
    fn bytes(&self) -> usize {
        4 * (self.w.len() + self.kernel.u.len())
    }
}

/// Most bytes the kernel cache keeps (weights and their transforms).
const CACHE_BYTES: usize = 64 << 20;

static CACHE: KernelCache = KernelCache {
    entries: std::sync::Mutex::new(std::collections::VecDeque::new()),
};

impl Kernel {
    /// [`Kernel::new`] (or, `flipped`, [`Kernel::flipped`]) of `w`, from the cache when
    /// the same weights were transformed lately.
    pub(crate) fn cached(w: &[f32], o: usize, c: usize, flipped: bool) -> std::sync::Arc<Kernel> {
        let hit = {
            let mut entries = CACHE.entries.lock().unwrap_or_else(|e| e.into_inner());
            let at = entries
                .iter()
                .position(|e| e.flipped == flipped && e.o == o && e.c == c && e.w == w);
            at.and_then(|i| entries.remove(i)).map(|e| {
                let k = e.kernel.clone();
                entries.push_front(e);
                k
            })
        };
        if let Some(k) = hit {
            return k;
        }
        let kernel = std::sync::Arc::new(if flipped {
            Kernel::flipped(w, o, c)
        } else {
            Kernel::new(w, o, c)
        });
        let entry = CachedKernel {
            flipped,
            o,
            c,
            w: w.to_vec(),
            kernel: kernel.clone(),
        };
        if entry.bytes() <= CACHE_BYTES / 4 {
            let mut entries = CACHE.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.push_front(entry);
            let mut total: usize = entries.iter().map(CachedKernel::bytes).sum();
            while total > CACHE_BYTES {
                match entries.pop_back() {
                    Some(e) => total -= e.bytes(),
                    None => break,
                }
            }
        }
        kernel
    }
}

/// One batch's tiling: `x: [B, C, H, W]` → `[B, O, H', W']` with `H' = H + 2·pad − 2`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) pad: usize,
}

/// Which pass a convolution is for ([`Plan::worthwhile`] differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The convolution itself.
    Forward,
    /// Its input and weight gradients.
    Backward,
}

/// Floats of `V` and `M` together in one chunk: about 1 MB, the L2 cache of one core.
const CHUNK_FLOATS: usize = 1 << 18;

/// Fewest columns (tiles) of the 36 products of a chunk. Small products cost the GEMM's
/// per-call overhead; 256 over 128 measured (`winograd_ab`, idle, twice): b64 64ch 32×32
/// forward 30.6–34.2 → 26.9–27.1 ms, backward 89.8–95.9 → 85.6–86.1 ms (three images a
/// chunk instead of one: 4.6 MB of `V` and `M`, past the L2 but in the L3); the other
/// shapes the same within noise. Larger lost again (twice, 32×32 forward): 384 columns
/// 28.3–30.0 ms, 512 30.4–31.1, against 26.9–27.1.
const MIN_COLUMNS: usize = 256;

impl Plan {
    /// Whether the transforms pay for themselves in `pass`: enough channels on both sides
    /// that the 36 matrix products, not the transforms, are the work. Thresholds from
    /// `examples/winograd_ab.rs` (both paths alternating in one process, idle 2-core
    /// AVX-512 machine): the backward pass (input and weight gradients together) ran
    /// 1.13–1.54× faster than im2col from 16 channels. The forward pass, first measured
    /// losing below 64 channels, won from 32 once the transforms ran on AVX-512 and
    /// chunks held 256 columns (32 channels at 112×112 batch 8 13.0 vs 20.2–20.3 ms,
    /// 64×64 batch 16 10.2–10.3 vs 13.4–13.5). Since rows as wide as their tiles are dealt
    /// a chunk at a time ([`deal_rows`]) it wins from 16 channels there (2026-11-27,
    /// twice, Winograd forced on: 16 channels at 32×32 batch 128 6.5–6.7 vs 9.2–10.0 ms,
    /// 56×56 batch 16 2.8–2.9 vs 3.7, 112×112 batch 8 5.1–5.2 vs 6.9–7.0). Other widths
    /// keep 32 channels, and need 6 tiles a row: narrower, the row-by-row deal costs more
    /// than it saves (17×17 batch 64: 32 channels 5.4–5.5 vs 4.5–4.6 ms, 64 channels
    /// 12.5–13.6 vs 11.9–12.1; 21×21 ties, 25×25 and 30×30 win).
    pub(crate) fn worthwhile(&self, pass: Pass) -> bool {
        let least = match pass {
            Pass::Forward if self.whole_rows() => 16,
            Pass::Forward if self.tiles().1 < 6 => return false,
            Pass::Forward => 32,
            Pass::Backward => 16,
        };
        ENABLED.load(Ordering::Relaxed) && self.c >= least && self.o >= least
    }

    fn out(&self) -> (usize, usize) {
        (self.h + 2 * self.pad - 2, self.w + 2 * self.pad - 2)
    }

    /// Tile rows and columns of one image.
    fn tiles(&self) -> (usize, usize) {
        let (oh, ow) = self.out();
        (oh.div_ceil(4), ow.div_ceil(4))
    }

    /// Tile rows of a group of images `xs` (all of each image's rows, end to end).
    fn group_rows(&self, xs: &[f32]) -> usize {
        xs.len() / (self.c * self.h * self.w) * self.tiles().0
    }

    /// Whether image rows are exactly as wide as their tiles (`w = 4·tw`), so that a
    /// chunk's rows are dealt into patch columns in one pass ([`deal_rows`]).
    fn whole_rows(&self) -> bool {
        self.w == 4 * self.tiles().1
    }

    /// Columns of a chunk's `V` and `M` (and of the transforms' buffers): its tiles, at
    /// most `chunk_rows` rows of `tw`.
    fn cap(&self) -> usize {
        self.chunk_rows() * self.tiles().1
    }

    /// Tile rows per chunk.
    fn chunk_rows(&self) -> usize {
        // Wide channels would leave the products too few columns to run well: at least
        // MIN_COLUMNS, cache or not.
        let tiles = (CHUNK_FLOATS / (36 * (self.c + self.o))).max(MIN_COLUMNS);
        (tiles / self.tiles().1).max(1)
    }

    /// The chunks `(r0, r1)` of a group's `rows` tile rows.
    fn chunks(&self, rows: usize) -> impl Iterator<Item = (usize, usize)> {
        let step = self.chunk_rows();
        (0..rows)
            .step_by(step)
            .map(move |r0| (r0, (r0 + step).min(rows)))
    }

    /// The convolution of `x` (`b` images) with `k`, plus `bias`, then `act`.
    pub(crate) fn run(
        &self,
        x: &[f32],
        b: usize,
        k: &Kernel,
        bias: Option<&[f32]>,
        act: Activation,
    ) -> Vec<f32> {
        debug_assert_eq!((k.o, k.c), (self.o, self.c));
        let (oh, ow) = self.out();
        let th = self.tiles().0;
        let (in_len, out_len) = (self.c * self.h * self.w, self.o * oh * ow);
        let mut y = crate::matrix::zeroed(b * out_len);
        let threads = rayon::current_num_threads();
        // Small images share a chunk; leave at least one group per thread.
        let group = (self.chunk_rows() / th).clamp(1, b.div_ceil(threads).max(1));
        let groups = b.div_ceil(group);
        if groups >= threads {
            x.par_chunks(group * in_len)
                .zip(y.par_chunks_mut(group * out_len))
                .for_each(|(xs, ys)| {
                    let par = Parallelism::None;
                    #[rustfmt::skip]
                    Scratch::with(self, #[inline(always)] |s| self.group_run(xs, ys, k, bias, act, s, par));
                });
        } else {
            let par = Parallelism::Rayon(threads);
            let items = x.chunks(group * in_len).zip(y.chunks_mut(group * out_len));
            #[rustfmt::skip]
            Scratch::with(self, #[inline(always)] |s| {
                for (xs, ys) in items {
                    self.group_run(xs, ys, k, bias, act, s, par);
                }
            });
        }
        y
    }

    /// The chunks of one group of images (`xs`, their outputs `ys`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn group_run(
        &self,
        xs: &[f32],
        ys: &mut [f32],
        k: &Kernel,
        bias: Option<&[f32]>,
        act: Activation,
        scratch: &mut Scratch,
        par: Parallelism,
    ) {
        for rows in self.chunks(self.group_rows(xs)) {
            self.chunk_run(xs, ys, rows, k, bias, act, scratch, par);
        }
    }

    /// Tile rows `r0..r1` of a group (`xs` its images, `ys` their outputs; row `r` is tile
    /// row `r mod th` of image `r / th`): transform in, 36 products, transform out.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn chunk_run(
        &self,
        xs: &[f32],
        ys: &mut [f32],
        (r0, r1): (usize, usize),
        k: &Kernel,
        bias: Option<&[f32]>,
        act: Activation,
        scratch: &mut Scratch,
        par: Parallelism,
    ) {
        let (c, o) = (self.c, self.o);
        let (th, tw) = self.tiles();
        let cap = self.cap();
        let n = (r1 - r0) * tw;
        self.transform_input(xs, (r0, r1), scratch);
        let Scratch { v, m, s, .. } = scratch;
        for xi in 0..36 {
            let u = slab(&k.u, xi, o, c, false);
            let vx = slab(v, xi, c, cap, false);
            matmul(
                (o, n, c),
                u,
                vx,
                &mut m[xi * o * cap..(xi + 1) * o * cap],
                cap,
                false,
                par,
            );
        }
        let (oh, ow) = self.out();
        for oc in 0..o {
            let mx = |yi: usize, xj: usize| &m[((yi * 6 + xj) * o + oc) * cap..][..n];
            // s[(row·6 + ξx)·n + column] = (Aᵀ M)[row][ξx], then behind it
            // out[q·n + column] = (Aᵀ M A)[row][q], one output row at a time.
            for xj in 0..6 {
                let col = six(|yi| mx(yi, xj));
                for rr in 0..4 {
                    at_row(rr, col, &mut s[(rr * 6 + xj) * n..][..n]);
                }
            }
            let bias = bias.map_or(0.0, |b| b[oc]);
            for rr in 0..4 {
                let (sr, rest) = s.split_at_mut(24 * n);
                let out = &mut rest[..4 * n];
                let row = six(|xj| &sr[(rr * 6 + xj) * n..][..n]);
                for q in 0..4 {
                    at_row(q, row, &mut out[q * n..][..n]);
                }
                for r in r0..r1 {
                    let (img, ty) = (r / th, r % th);
                    if 4 * ty + rr >= oh {
                        continue;
                    }
                    let plane = &mut ys[(img * o + oc) * oh * ow..][..oh * ow];
                    let dst = &mut plane[(4 * ty + rr) * ow..][..ow];
                    let at = (r - r0) * tw;
                    let cols = four(|q| &out[q * n + at..][..tw]);
                    interleave4(dst, cols, bias);
                    act.apply(dst, 1, ow, ow);
                }
            }
        }
    }

    /// `V` of tile rows `r0..r1` of a group (`xs` its images) into `scratch.v`:
    /// `v[(ξ·C + c)·cap + column]`, `ξ = 6·ξy + ξx`.
    #[inline(always)]
    fn transform_input(&self, xs: &[f32], (r0, r1): (usize, usize), scratch: &mut Scratch) {
        let c = self.c;
        let (th, tw) = self.tiles();
        let (h, w, pad) = (self.h, self.w, self.pad);
        let cap = self.cap();
        let rows = r1 - r0;
        let n = rows * tw;
        let Scratch { v, bd, comb, .. } = scratch;
        // bd[(ξy·6 + j)·n + (r − r0)·tw + tx] = (Bᵀ d)[ξy][j] of tile tx of tile row r: column
        // j of its patch, image column 4·tx + j − pad. Which places each channel writes
        // depends on the geometry alone: those it leaves (outside the image) stay zero from
        // this one fill.
        bd[..36 * n].fill(0.0);
        let (zero, comb) = comb.split_at_mut(w);
        zero.fill(0.0);
        for ch in 0..c {
            // comb[(ξy·rows + r − r0)·w + ix] = (Bᵀ d)[ξy] of tile row r, image column ix: the
            // patch rows combined along whole image rows.
            for r in r0..r1 {
                let (img, ty) = (r / th, r % th);
                let plane = &xs[(img * c + ch) * h * w..][..h * w];
                // The patch rows 4·ty + i − pad, i = 0..6 (zero outside the image).
                let d = six(|i| {
                    let iy = (4 * ty + i).checked_sub(pad).filter(|&iy| iy < h);
                    iy.map_or(&*zero, |iy| &plane[iy * w..][..w])
                });
                for yi in 0..6 {
                    bt_row(yi, d, &mut comb[(yi * rows + r - r0) * w..][..w]);
                }
            }
            // Each combined row dealt into the six patch columns of its tiles.
            for yi in 0..6 {
                let comb = &comb[yi * rows * w..][..rows * w];
                let bd = &mut bd[yi * 6 * n..][..6 * n];
                if self.whole_rows() {
                    deal_rows(comb, pad, tw, bd);
                    continue;
                }
                for (row, line) in comb.chunks_exact(w).enumerate() {
                    // Columns 0–3 are the row's phases, 4–5 those of the row one tile on.
                    let [e0, e1, e2, e3, e4, e5] = six(strided(bd, n, row * tw, tw));
                    spread(line, pad, [e0, e1, e2, e3]);
                    match pad.checked_sub(4) {
                        Some(shift) => spread(line, shift, [e4, e5]),
                        None => {
                            if let Some(next) = line.get(4 - pad..) {
                                spread(next, 0, [e4, e5]);
                            }
                        }
                    }
                }
            }
            // (Bᵀ d) B: combine the patch columns.
            for yi in 0..6 {
                let d = six(|j| &bd[(yi * 6 + j) * n..][..n]);
                for xi in 0..6 {
                    let at = ((yi * 6 + xi) * c + ch) * cap;
                    bt_row(xi, d, &mut v[at..at + n]);
                }
            }
        }
    }

    /// `Z = A dY Aᵀ` (6×6 per tile and output channel; `dY`'s 4×4 tile, zero past the
    /// output's edge) of tile rows `r0..r1` of a group (`dys` its output gradients) into
    /// `scratch.m`, laid out like `M`.
    #[inline(always)]
    fn transform_output_grad(&self, dys: &[f32], (r0, r1): (usize, usize), scratch: &mut Scratch) {
        let o = self.o;
        let (th, tw) = self.tiles();
        let (oh, ow) = self.out();
        let cap = self.cap();
        let n = (r1 - r0) * tw;
        let Scratch { m, phases, bd, .. } = scratch;
        // As in `transform_input`: the places left unwritten (past the output's edge) are
        // the same for every channel, and stay zero.
        phases[..16 * n].fill(0.0);
        for oc in 0..o {
            // phases[(r·4 + q)·n + (row − r0)·tw + tx] = dY[4·ty + r, 4·tx + q].
            for row in r0..r1 {
                let (img, ty) = (row / th, row % th);
                let plane = &dys[(img * o + oc) * oh * ow..][..oh * ow];
                for r in 0..4.min(oh - 4 * ty) {
                    let line = &plane[(4 * ty + r) * ow..][..ow];
                    let at = (row - r0) * tw;
                    spread(line, 0, four(strided(&mut phases[r * 4 * n..], n, at, tw)));
                }
            }
            // A dY: combine the rows, phase by phase (bd[(ξy·4 + q)·n + column]).
            for yi in 0..6 {
                for q in 0..4 {
                    let t = four(|r| &phases[(r * 4 + q) * n..][..n]);
                    a_row(yi, t, &mut bd[(yi * 4 + q) * n..][..n]);
                }
            }
            // (A dY) Aᵀ: combine the phases.
            for yi in 0..6 {
                let t = four(|q| &bd[(yi * 4 + q) * n..][..n]);
                for xi in 0..6 {
                    let at = ((yi * 6 + xi) * o + oc) * cap;
                    a_row(xi, t, &mut m[at..at + n]);
                }
            }
        }
    }

    /// `dU` (`[36][O][C]`) of one group of images: `xs` their inputs, `dys` their
    /// output gradients.
    #[inline(always)]
    fn weight_grad_group(&self, xs: &[f32], dys: &[f32], scratch: &mut Scratch) -> Vec<f32> {
        let (c, o) = (self.c, self.o);
        let cap = self.cap();
        let mut du = vec![0f32; 36 * o * c];
        for (r0, r1) in self.chunks(self.group_rows(xs)) {
            let n = (r1 - r0) * self.tiles().1;
            self.transform_input(xs, (r0, r1), scratch);
            self.transform_output_grad(dys, (r0, r1), scratch);
            for xi in 0..36 {
                let z = slab(&scratch.m, xi, o, cap, false);
                let vt = slab(&scratch.v, xi, c, cap, true);
                let dst = &mut du[xi * o * c..(xi + 1) * o * c];
                matmul((o, c, n), z, vt, dst, c, true, Parallelism::None);
            }
        }
        du
    }

    /// The kernel gradient `dW: [O, C, 3, 3]` of this convolution for inputs `x` and
    /// output gradients `dy` (`b` images): `dU[ξ] = Σ_tiles Z[ξ] V[ξ]ᵀ` (36 products a
    /// chunk), then `dW = Gᵀ dU G`. Partial sums over fixed groups of images, added in
    /// order, as in the im2col path: the same batch gives the same gradient bit for bit.
    pub(crate) fn weight_grad(&self, x: &[f32], dy: &[f32], b: usize, groups: usize) -> Vec<f32> {
        let (c, o) = (self.c, self.o);
        let (oh, ow) = self.out();
        let (in_len, out_len) = (c * self.h * self.w, o * oh * ow);
        let group = b.div_ceil(groups).max(1);
        let partials: Vec<Vec<f32>> = x
            .par_chunks(group * in_len)
            .zip(dy.par_chunks(group * out_len))
            .map(|(xs, dys)| {
                Scratch::with(
                    self,
                    #[inline(always)]
                    |scratch| self.weight_grad_group(xs, dys, scratch),
                )
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut du = parts.next().unwrap_or_else(|| vec![0f32; 36 * o * c]);
        for p in parts {
            du.iter_mut().zip(&p).for_each(|(a, v)| *a += v);
        }
        let mut dw = vec![0f32; o * c * 9];
        for oc in 0..o {
            for ic in 0..c {
                let at = |i: usize, j: usize| f64::from(du[((i * 6 + j) * o + oc) * c + ic]);
                // Gᵀ dU (3×6), then (Gᵀ dU) G (3×3).
                let rows: [[f64; 3]; 6] =
                    [0, 1, 2, 3, 4, 5].map(|j| gt6([0, 1, 2, 3, 4, 5].map(|i| at(i, j))));
                for ky in 0..3 {
                    let out = gt6([0, 1, 2, 3, 4, 5].map(|j| rows[j][ky]));
                    for (kx, v) in out.into_iter().enumerate() {
                        dw[((oc * c + ic) * 3 + ky) * 3 + kx] = v as f32;
                    }
                }
            }
        }
        dw
    }
}

/// Matrix `xi` of `buf` laid out `[36][rows][cols]`, or its transpose.
fn slab(buf: &[f32], xi: usize, rows: usize, cols: usize, transposed: bool) -> Mat<'_> {
    let data = &buf[xi * rows * cols..(xi + 1) * rows * cols];
    let (rs, cs) = if transposed { (1, cols) } else { (cols, 1) };
    Mat { data, rs, cs }
}

/// One thread's buffers: `V` and `M` of a chunk (`[36][C or O][columns]`); a zero image
/// row and the chunk's `Bᵀ d` along image rows; the chunk's `Bᵀ d` (or `A dY`) of one
/// channel, and the phases of its `dY`; `Aᵀ M` of one output channel with an output row
/// of `Aᵀ M A` behind it.
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    comb: Vec<f32>,
    phases: Vec<f32>,
    bd: Vec<f32>,
    s: Vec<f32>,
}

thread_local! {
    /// Each thread's buffers, kept between calls: fresh megabytes for every convolution
    /// cost page faults and zeroing (a tenth of a training profile).
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::empty()) };
}

impl Scratch {
    const fn empty() -> Scratch {
        Scratch {
            v: Vec::new(),
            m: Vec::new(),
            comb: Vec::new(),
            phases: Vec::new(),
            bd: Vec::new(),
            s: Vec::new(),
        }
    }

    /// Runs `f` with this thread's buffers, grown to `plan`'s sizes. Their contents are
    /// whatever the last use left: every reader writes what it reads first (`bd`,
    /// `phases` and the zero row are zeroed per chunk).
    fn with<R>(plan: &Plan, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let cap = plan.cap();
        let grow = |s: &mut Scratch| {
            for (buf, len) in [
                (&mut s.v, 36 * plan.c * cap),
                (&mut s.m, 36 * plan.o * cap),
                (&mut s.comb, (6 * plan.chunk_rows() + 1) * plan.w),
                (&mut s.phases, 16 * cap),
                (&mut s.bd, 36 * cap),
                (&mut s.s, 28 * cap),
            ] {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
            }
        };
        // Everything `f` does is inlined into this call, so that `simd::run` compiles it for
        // the widest vectors the CPU has.
        SCRATCH.with(|cell| {
            // Re-entered on this thread (a rayon job stolen while a product waits): buffers
            // of its own.
            let mut kept = cell.try_borrow_mut();
            let mut own = Scratch::empty();
            let s = match kept.as_deref_mut() {
                Ok(s) => s,
                Err(_) => &mut own,
            };
            grow(s);
            simd::run(
                #[inline(always)]
                || f(s),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Kernel;
    use std::sync::Arc;

    #[test]
    fn cached_kernels_are_exact_and_follow_the_weights() {
        let w: Vec<f32> = (0..2 * 3 * 9).map(|i| (i as f32 * 0.37).sin()).collect();
        let a = Kernel::cached(&w, 2, 3, false);
        assert_eq!(a.u, Kernel::new(&w, 2, 3).u);
        // The same weights again: the same transform, not computed again.
        let b = Kernel::cached(&w, 2, 3, false);
        assert!(Arc::ptr_eq(&a, &b));
        // The flipped kernel of the same weights is another entry.
        let f = Kernel::cached(&w, 2, 3, true);
        assert_eq!(f.u, Kernel::flipped(&w, 2, 3).u);
        // One weight changed (a training step): a new transform, never the stale one.
        let mut w2 = w.clone();
        w2[17] += 1e-6;
        let d = Kernel::cached(&w2, 2, 3, false);
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(d.u, Kernel::new(&w2, 2, 3).u);
    }
}
