//! What every stand-in model offers the server: a batch of images in, ranked labels out.

use robustify_smoothing::Image;

use crate::Result;

/// A label with its score (softmax probability), as a vendor returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Class index.
    pub index: usize,
    /// An identifier for the class (WordNet id for ImageNet, the name for CIFAR-10).
    pub id: String,
    /// Class name.
    pub label: String,
    /// Probability in `[0, 1]`.
    pub score: f32,
}

/// A classifier the stand-in can serve. Implementations accept images of any size (they
/// resize as their model needs), so that any batch can go through one forward pass.
pub trait Classifier: Send + Sync {
    /// Short name (`imagenet`, `cifar10`), used in responses' model-version fields.
    fn name(&self) -> &str;

    /// The `top_k` classes of each image, best first.
    fn classify(&self, images: &[Image], top_k: usize) -> Result<Vec<Vec<Scored>>>;
}
