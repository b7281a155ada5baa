//! `standin-local`: a stand-in model as a [`Provider`], in this process, no HTTP. It lives
//! here rather than in `robustify-providers` so that the providers crate does not pull
//! candle and the models for one adapter.

use std::sync::Arc;

use robustify_providers::provider::BoxFuture;
use robustify_providers::{
    Answer, Delivered, Error, Ledger, Provider, Receipt, Result, ScoredLabel,
};
use robustify_smoothing::Image;

use crate::model::Classifier;

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
        _allowance: Option<&'a Ledger>,
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
