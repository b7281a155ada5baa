//! Helpers of the unit tests.

use candle_core::Tensor;

/// `max |a − b| / max |b|`: the largest error relative to the reference's magnitude.
pub(crate) fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let largest = |t: &Tensor| {
        t.abs()
            .and_then(|t| t.max_all())
            .and_then(|t| t.to_scalar::<f32>())
            .expect("a finite f32 tensor")
    };
    let diff = (a - b).expect("tensors of one shape");
    largest(&diff) / largest(b).max(1e-6)
}
