//! The base classifier: whatever labels the noisy images.

use std::future::Future;
use std::ops::Range;

use crate::Image;

/// The label of an empty answer (a provider that returned no labels at all).
pub const NO_LABEL: &str = "(none)";

/// A base classifier `f`: a batch of (noisy, unclipped) images in, one label per image out,
/// in the same order.
///
/// `draws` names the draw index of each image of the batch (`draws.start` for the first):
/// draw `i` of a seed is the same noisy image every time, so a classifier may log answers
/// by draw and reuse them (crash recovery) without changing the result.
///
/// Implementations decide how to present an image to the model: a remote provider clips to
/// `[0, 1]` and quantises to 8 bits ([`Image::to_png`]); a local model may take the floats as
/// they are. That choice is part of `f`, and the certificate holds for the `f` used.
/// An empty answer must be reported as [`NO_LABEL`], never dropped.
pub trait BaseClassifier {
    /// What a failed call reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Labels a batch of draws `draws` (`draws.end - draws.start == batch.len()`). Must
    /// return exactly `batch.len()` labels or an error.
    fn classify(
        &self,
        draws: Range<u64>,
        batch: &[Image],
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;
}

impl<T: BaseClassifier + Sync> BaseClassifier for &T {
    type Error = T::Error;

    fn classify(
        &self,
        draws: Range<u64>,
        batch: &[Image],
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send {
        (**self).classify(draws, batch)
    }
}
