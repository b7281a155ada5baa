//! Timing: the best of a few runs, with and without the Winograd path.

use std::time::Instant;

use crate::Result;

/// Images per second of `f`: the best of `reps` runs after one warm-up (the best, not the
/// mean, so that a neighbour's burst on a shared machine does not count against us).
pub fn timed(reps: usize, images: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(images as f64 / best)
}

/// `measure()` with the Winograd path off, then on: `(im2col, ours)`.
pub fn both(mut measure: impl FnMut() -> Result<f64>) -> Result<(f64, f64)> {
    robustify_ops::set_winograd(false);
    let im2col = measure();
    robustify_ops::set_winograd(true);
    Ok((im2col?, measure()?))
}
