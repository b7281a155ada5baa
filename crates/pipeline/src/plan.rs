//! How each image is certified: fixed-n CERTIFY, a confidence sequence, or PREDICT — chosen
//! by one rule for the CLI and the proxy.

use robustify_smoothing::{
    BaseClassifier, Certificate, CertifyParams, Image, MemoryBudget, PredictParams, Prediction,
    SequenceKind, SequentialCertificate, SequentialParams, certify, certify_sequential, predict,
};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Estimation draws of a sequential run when neither a cap nor `n` is given.
pub const DEFAULT_MAX_DRAWS: u64 = 10_000;

/// How draws become a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// CERTIFY with exactly n draws.
    Fixed,
    /// Stop as soon as an anytime-valid confidence sequence decides.
    Sequential,
    /// PREDICT: the smoothed label or an abstention, no radius.
    Predict,
}

impl Mode {
    /// The one default rule: a certification is sequential when a target radius is given,
    /// fixed otherwise (the CLI once went sequential only for paid providers).
    pub fn for_certify(asked: Option<Mode>, target_radius: Option<f64>) -> Mode {
        asked.unwrap_or(if target_radius.is_some() {
            Mode::Sequential
        } else {
            Mode::Fixed
        })
    }

    /// `fixed`, `sequential` or `predict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fixed => "fixed",
            Mode::Sequential => "sequential",
            Mode::Predict => "predict",
        }
    }

    /// Parses `fixed` or `sequential` (a certification's modes).
    pub fn parse_certify(text: &str) -> Result<Mode> {
        match text {
            "fixed" => Ok(Mode::Fixed),
            "sequential" => Ok(Mode::Sequential),
            other => Err(Error::Config(format!(
                "mode must be fixed or sequential, not {other:?}"
            ))),
        }
    }
}

/// What a caller asks for, before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRequest {
    /// Noise level σ.
    pub sigma: f64,
    /// Selection draws (certifications only).
    pub n0: Option<u64>,
    /// Estimation draws (fixed, predict), or the sequential cap when `max_draws` is absent.
    pub n: Option<u64>,
    /// Failure probability α.
    pub alpha: f64,
    /// `None`: [`Mode::for_certify`]'s rule. [`Mode::Predict`] for PREDICT.
    pub mode: Option<Mode>,
    /// The radius a sequential run decides about.
    pub target_radius: Option<f64>,
    /// The most estimation draws of a sequential run.
    pub max_draws: Option<u64>,
    /// The confidence sequence of a sequential run.
    pub sequence: SequenceKind,
}

impl PlanRequest {
    /// A request for σ and α with nothing else set.
    pub fn new(sigma: f64, alpha: f64) -> PlanRequest {
        PlanRequest {
            sigma,
            n0: None,
            n: None,
            alpha,
            mode: None,
            target_radius: None,
            max_draws: None,
            sequence: SequenceKind::Betting,
        }
    }
}

/// A validated plan: every count checked, its draws never wrap.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// CERTIFY.
    Fixed(CertifyParams),
    /// A confidence sequence.
    Sequential(SequentialParams),
    /// PREDICT.
    Predict(PredictParams),
}

/// What a plan produced for one image.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// From CERTIFY.
    Fixed(Certificate),
    /// From a confidence sequence.
    Sequential(SequentialCertificate),
    /// From PREDICT.
    Predicted(Prediction),
}

impl Plan {
    /// Validates `req` with `batch` images per classifier call.
    pub fn new(req: &PlanRequest, batch: usize) -> Result<Plan> {
        let n0 = || {
            req.n0
                .ok_or_else(|| Error::Config("a certification needs n0".into()))
        };
        let mode = match req.mode {
            Some(Mode::Predict) => Mode::Predict,
            asked => Mode::for_certify(asked, req.target_radius),
        };
        Ok(match mode {
            Mode::Fixed => {
                let n = req.n.ok_or_else(|| {
                    Error::Config("fixed mode needs n (or use sequential mode)".into())
                })?;
                Plan::Fixed(
                    CertifyParams::new(req.sigma, n0()?, n, req.alpha)?.with_batch_size(batch)?,
                )
            }
            Mode::Sequential => {
                let max = req.max_draws.or(req.n).unwrap_or(DEFAULT_MAX_DRAWS);
                Plan::Sequential(
                    SequentialParams::new(req.sigma, n0()?, max, req.alpha, req.target_radius)?
                        .with_kind(req.sequence)
                        .with_batch_size(batch)?,
                )
            }
            Mode::Predict => {
                let n = req
                    .n
                    .ok_or_else(|| Error::Config("a prediction needs n".into()))?;
                Plan::Predict(PredictParams::new(req.sigma, n, req.alpha)?.with_batch_size(batch)?)
            }
        })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        match self {
            Plan::Fixed(_) => Mode::Fixed,
            Plan::Sequential(_) => Mode::Sequential,
            Plan::Predict(_) => Mode::Predict,
        }
    }

    /// σ.
    pub fn sigma(&self) -> f64 {
        match self {
            Plan::Fixed(p) => p.sigma().get(),
            Plan::Sequential(p) => p.sigma().get(),
            Plan::Predict(p) => p.sigma().get(),
        }
    }

    /// The most draws one image can take (checked when built: never wraps).
    pub fn max_draws(&self) -> u64 {
        match self {
            Plan::Fixed(p) => p.draws(),
            Plan::Sequential(p) => p.draws(),
            Plan::Predict(p) => p.draws(),
        }
    }

    /// Images per classifier call.
    pub fn batch_size(&self) -> usize {
        match self {
            Plan::Fixed(p) => p.batch_size(),
            Plan::Sequential(p) => p.batch_size(),
            Plan::Predict(p) => p.batch_size(),
        }
    }

    /// This plan with `batch` images per classifier call.
    pub fn with_batch_size(&self, batch: usize) -> Result<Plan> {
        Ok(match self {
            Plan::Fixed(p) => Plan::Fixed(p.with_batch_size(batch)?),
            Plan::Sequential(p) => Plan::Sequential(p.with_batch_size(batch)?),
            Plan::Predict(p) => Plan::Predict(p.with_batch_size(batch)?),
        })
    }

    /// This plan with its batch cut so that a `width × height` image stays under `memory`;
    /// an error when not even one draw at a time fits.
    pub fn fitted(&self, width: u32, height: u32, memory: &MemoryBudget) -> Result<Plan> {
        self.with_batch_size(memory.batch_for(width, height, self.batch_size())?)
    }

    /// Runs the plan on `image` through `classifier` with the noise of `seed`.
    pub async fn run<C: BaseClassifier>(
        &self,
        classifier: &C,
        image: &Image,
        seed: u64,
    ) -> Result<Outcome, robustify_smoothing::Error> {
        Ok(match self {
            Plan::Fixed(p) => Outcome::Fixed(certify(classifier, image, p, seed).await?),
            Plan::Sequential(p) => {
                Outcome::Sequential(certify_sequential(classifier, image, p, seed).await?)
            }
            Plan::Predict(p) => Outcome::Predicted(predict(classifier, image, p, seed).await?),
        })
    }
}

impl Outcome {
    /// The certified (or predicted) label; `None` when abstained or not certified.
    pub fn label(&self) -> Option<&str> {
        match self {
            Outcome::Fixed(c) => c.label.as_deref(),
            Outcome::Sequential(c) => c.label.as_deref(),
            Outcome::Predicted(p) => p.label.as_deref(),
        }
    }

    /// The certified radius (0 for a prediction).
    pub fn radius(&self) -> f64 {
        match self {
            Outcome::Fixed(c) => c.radius,
            Outcome::Sequential(c) => c.radius,
            Outcome::Predicted(_) => 0.0,
        }
    }

    /// Draws sent.
    pub fn queries(&self) -> u64 {
        match self {
            Outcome::Fixed(c) => c.queries,
            Outcome::Sequential(c) => c.queries,
            Outcome::Predicted(p) => p.queries,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_default_rule() {
        let mut req = PlanRequest::new(0.25, 0.001);
        req.n0 = Some(10);
        req.n = Some(100);
        assert_eq!(Plan::new(&req, 8).unwrap().mode(), Mode::Fixed);
        req.target_radius = Some(0.25);
        let seq = Plan::new(&req, 8).unwrap();
        assert_eq!(seq.mode(), Mode::Sequential);
        // n caps a sequential run when max_draws is absent.
        assert_eq!(seq.max_draws(), 110);
        req.mode = Some(Mode::Fixed);
        assert_eq!(Plan::new(&req, 8).unwrap().mode(), Mode::Fixed);
        req.n = None;
        req.mode = None;
        assert_eq!(
            Plan::new(&req, 8).unwrap().max_draws(),
            10 + DEFAULT_MAX_DRAWS
        );
        req.mode = Some(Mode::Fixed);
        assert!(Plan::new(&req, 8).is_err());
    }

    #[test]
    fn hostile_counts_are_refused() {
        let mut req = PlanRequest::new(0.25, 0.001);
        req.n0 = Some(300);
        req.n = Some(u64::MAX - 299);
        assert!(Plan::new(&req, 8).is_err());
        req.n = Some(100);
        req.sigma = f64::NAN;
        assert!(Plan::new(&req, 8).is_err());
        req.sigma = 0.25;
        req.mode = Some(Mode::Predict);
        req.n = None;
        assert!(Plan::new(&req, 8).is_err());
    }
}
