//! Denoised smoothing's base classifier: denoise each noisy copy, then ask the classifier.

use std::ops::Range;
use std::sync::Arc;

use robustify_smoothing::{BaseClassifier, Image};

use crate::Error;
use crate::denoiser::Denoiser;

/// `f(D(x + δ))`: a [`BaseClassifier`] that denoises every draw (on a blocking thread)
/// before passing it on. Without a denoiser it passes draws through unchanged.
#[derive(Clone)]
pub struct Denoised<C> {
    inner: C,
    denoiser: Option<Arc<Denoiser>>,
}

impl<C> Denoised<C> {
    /// `inner` behind `denoiser` (none: plain randomized smoothing).
    pub fn new(inner: C, denoiser: Option<Arc<Denoiser>>) -> Denoised<C> {
        Denoised { inner, denoiser }
    }

    /// The wrapped classifier.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C> BaseClassifier for Denoised<C>
where
    C: BaseClassifier + Clone + Send + Sync + 'static,
{
    type Error = Error;

    fn classify(
        &self,
        draws: Range<u64>,
        batch: &[Image],
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send {
        let this = self.clone();
        let batch = batch.to_vec();
        async move {
            let batch = match &this.denoiser {
                Some(d) => {
                    let d = d.clone();
                    tokio::task::spawn_blocking(move || d.denoise(&batch))
                        .await
                        .map_err(|e| Error::Model {
                            path: "denoiser".into(),
                            message: e.to_string(),
                        })??
                }
                None => batch,
            };
            this.inner
                .classify(draws, &batch)
                .await
                .map_err(|e| Error::Classifier(Box::new(e)))
        }
    }
}
