//! Helpers of the unit tests.

use candle_core::Tensor;

/// `max |t|`.
fn largest(t: &Tensor) -> f32 {
    t.abs()
        .and_then(|t| t.max_all())
        .and_then(|t| t.to_scalar::<f32>())
        .expect("a finite f32 tensor")
}

/// `max |a − b|`: the largest error.
pub(crate) fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    largest(&(a - b).expect("tensors of one shape"))
}

/// `max |a − b| / max |b|`: the largest error relative to the reference's magnitude.
pub(crate) fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(a, b) / largest(b).max(1e-6)
}
