//! `standin-local`: the stand-in ImageNet model in this process, no HTTP.

use std::sync::Arc;

use robustify_smoothing::Image;
use robustify_standin::model::Classifier;

use crate::provider::{Answer, BoxFuture, Delivered, Provider, Receipt, ScoredLabel};
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

    /// Free and in-process: nothing to reserve.
    fn classify_within<'a>(
        &'a self,
        images: &'a [Image],
        _allowance: Option<&'a crate::budget::Ledger>,
    ) -> BoxFuture<'a, Vec<Result<Delivered>>> {
        let model = self.model.clone();
        let images = images.to_vec();
        let n = images.len();
        Box::pin(async move {
            let fail = |message: String| Error::Provider {
                provider: "standin-local".into(),
                message,
            };
            let start = std::time::Instant::now();
            let out =
                match tokio::task::spawn_blocking(move || model.classify(&images, TOP_K)).await {
                    Ok(Ok(out)) => out,
                    Ok(Err(e)) => return (0..n).map(|_| Err(fail(e.to_string()))).collect(),
                    Err(e) => return (0..n).map(|_| Err(fail(e.to_string()))).collect(),
                };
            let latency_ms = start.elapsed().as_secs_f64() * 1e3;
            out.into_iter()
                .map(|labels| {
                    Ok(Delivered {
                        answer: Answer {
                            labels: labels
                                .into_iter()
                                .map(|s| ScoredLabel {
                                    label: s.label,
                                    score: s.score,
                                })
                                .collect(),
                        },
                        receipt: Receipt {
                            status: 0,
                            latency_ms,
                            cost_usd: 0.0,
                            attempts: 1,
                        },
                    })
                })
                .collect()
        })
    }
}
