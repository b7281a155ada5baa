//! What every stand-in model offers the server: a batch of images in, ranked labels out.

use candle_core::Tensor;
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

/// Softmax over `logits: [N, classes]`, then each row's `top_k` classes, best first;
/// `name(i)` gives class `i`'s `(id, label)`.
pub fn ranked(
    logits: &Tensor,
    top_k: usize,
    name: impl Fn(usize) -> (String, String),
) -> Result<Vec<Vec<Scored>>> {
    let probs = candle_nn::ops::softmax(logits, 1)?;
    let rows: Vec<Vec<f32>> = probs.to_vec2()?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            idx.into_iter()
                .take(top_k)
                .map(|i| {
                    let (id, label) = name(i);
                    Scored {
                        index: i,
                        id,
                        label,
                        score: row[i],
                    }
                })
                .collect()
        })
        .collect())
}

/// A cheap, deterministic model for traffic and protocol tests, where the network (not the
/// model) is under test: the label is the image's brightest colour channel (`red`, `green`,
/// `blue`), scored by the channel's mean.
pub struct BrightestChannel;

impl Classifier for BrightestChannel {
    fn name(&self) -> &str {
        "brightest-channel"
    }

    fn classify(&self, images: &[Image], top_k: usize) -> Result<Vec<Vec<Scored>>> {
        const NAMES: [&str; 3] = ["red", "green", "blue"];
        Ok(images
            .iter()
            .map(|im| {
                let plane = (im.width() as usize * im.height() as usize).max(1);
                let mut means: Vec<(usize, f32)> = (0..3)
                    .map(|c| {
                        let s: f32 = im.data()[c * plane..(c + 1) * plane].iter().sum();
                        (c, s / plane as f32)
                    })
                    .collect();
                means.sort_by(|a, b| b.1.total_cmp(&a.1));
                means
                    .into_iter()
                    .take(top_k)
                    .map(|(c, m)| Scored {
                        index: c,
                        id: NAMES[c].into(),
                        label: NAMES[c].into(),
                        score: m,
                    })
                    .collect()
            })
            .collect())
    }
}
