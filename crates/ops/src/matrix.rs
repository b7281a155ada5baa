//! The matrix plumbing every kernel shares: GEMM behind bounds checks, a batch's zeroed
//! output written by all threads, contiguous `f32` views of candle's storage, and how
//! many threads one image's GEMM gets.

use candle_core::{CpuStorage, Layout, Result};
use gemm::Parallelism;
use rayon::prelude::*;

/// A matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// `len` zeros for a batch's output, written by all threads: one thread's memset of a
/// 16 MB output (64 images, 64 channels, 32×32) was 4% of a Winograd layer's forward.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut v = Vec::new();
    rayon::iter::repeat_n(0f32, len)
        .with_min_len(1 << 16)
        .collect_into_vec(&mut v);
    v
}

/// `c[i·c_rs + j] = (c[i·c_rs + j] if accumulate) + Σ_p a(i, p)·b(p, j)` for `i < m`,
/// `j < n`: `gemm`'s AVX-512/AVX2/scalar kernels (chosen at run time) behind bounds checks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    a: Mat,
    b: Mat,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    parallelism: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        k == 0 || last(m, a.rs, k, a.cs) < a.data.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        k == 0 || last(k, b.rs, n, b.cs) < b.data.len(),
        "matmul: rhs out of bounds"
    );
    assert!(last(m, c_rs, n, 1) < c.len(), "matmul: dst out of bounds");
    assert!(c_rs >= n, "matmul: dst rows overlap");
    #[allow(unsafe_code)]
    // SAFETY: the asserts above keep every element gemm reads (lhs, rhs) or writes (dst)
    // inside its slice; dst rows do not overlap, and `c` is borrowed mutably, so it is
    // aliased by neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The `f32` data of a contiguous tensor; an error naming `op` otherwise.
pub(crate) fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// GEMM threads for a batch of `b` images: the pool's when there are fewer images than
/// threads (images then run one after another), else one per image.
pub(crate) fn gemm_threads(b: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if b < threads {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}
