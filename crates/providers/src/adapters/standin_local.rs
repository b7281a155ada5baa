//! `standin-local`: the stand-in ImageNet model in this process, no HTTP.

use std::sync::Arc;

use robustify_smoothing::Image;
use robustify_standin::model::Classifier;

use crate::provider::{Answer, BoxFuture, Provider, ScoredLabel};
use crate::{Error, Result};

/// Labels per answer, like the stand-in's Azure route.
const TOP_K: usize = 10;

/// Runs a stand-in classifier on a blocking thread.
pub struct StandinLocal {
    model: Arc<dyn Classifier>,
}

impl StandinLocal {
    /// Wraps a loaded classifier.
    pub fn new(model: Arc<dyn Classifier>) -> StandinLocal {
        StandinLocal { model }
    }
}

impl Provider for StandinLocal {
    fn name(&self) -> &str {
        "standin-local"
    }

    fn classify<'a>(&'a self, images: &'a [Image]) -> BoxFuture<'a, Result<Vec<Answer>>> {
        let model = self.model.clone();
        let images = images.to_vec();
        Box::pin(async move {
            let out = tokio::task::spawn_blocking(move || model.classify(&images, TOP_K))
                .await
                .map_err(|e| Error::Provider {
                    provider: "standin-local".into(),
                    message: e.to_string(),
                })?
                .map_err(|e| Error::Provider {
                    provider: "standin-local".into(),
                    message: e.to_string(),
                })?;
            Ok(out
                .into_iter()
                .map(|labels| Answer {
                    labels: labels
                        .into_iter()
                        .map(|s| ScoredLabel {
                            label: s.label,
                            score: s.score,
                        })
                        .collect(),
                })
                .collect())
        })
    }
}
