//! The `Provider` trait: a batch of images in, each image's labels in the vendor's order out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use robustify_smoothing::{BaseClassifier, Image, NO_LABEL};

use crate::Result;

/// One label as the vendor returned it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredLabel {
    /// The label text, exactly as returned.
    pub label: String,
    /// The vendor's score on its own scale.
    pub score: f32,
}

/// A vendor's answer for one image: its labels in the vendor's order (possibly empty).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// Labels in the order the vendor listed them.
    pub labels: Vec<ScoredLabel>,
}

impl Answer {
    /// The label a certificate counts: the first in the vendor's order (the rule of the
    /// Denoised Smoothing paper's API experiments), or [`NO_LABEL`] for an empty answer.
    pub fn top1(&self) -> &str {
        self.labels.first().map_or(NO_LABEL, |l| l.label.as_str())
    }
}

/// A boxed future, so that providers can be held as `Arc<dyn Provider>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A vision API (or local model) that labels images.
pub trait Provider: Send + Sync {
    /// The provider's name (`standin-local`, `google`, …).
    fn name(&self) -> &str;

    /// Labels each image of `images` (at most the vendor's images per request).
    fn classify<'a>(&'a self, images: &'a [Image]) -> BoxFuture<'a, Result<Vec<Answer>>>;
}

/// Adapts a provider to the smoothing crate's [`BaseClassifier`]: the top-1 label of each
/// answer, `(none)` for an empty one.
#[derive(Clone)]
pub struct ProviderClassifier {
    provider: Arc<dyn Provider>,
}

impl ProviderClassifier {
    /// Wraps `provider`.
    pub fn new(provider: Arc<dyn Provider>) -> ProviderClassifier {
        ProviderClassifier { provider }
    }
}

impl BaseClassifier for ProviderClassifier {
    type Error = crate::Error;

    fn classify(&self, batch: &[Image]) -> impl Future<Output = Result<Vec<String>>> + Send {
        let provider = self.provider.clone();
        let batch = batch.to_vec();
        async move {
            let answers = provider.classify(&batch).await?;
            Ok(answers.iter().map(|a| a.top1().to_owned()).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_label_in_vendor_order_or_none() {
        let a = Answer {
            labels: vec![
                ScoredLabel {
                    label: "pattern".into(),
                    score: 0.55,
                },
                ScoredLabel {
                    label: "window".into(),
                    score: 0.9,
                },
            ],
        };
        // Not the top score: the vendor's first label.
        assert_eq!(a.top1(), "pattern");
        assert_eq!(Answer::default().top1(), "(none)");
    }
}
