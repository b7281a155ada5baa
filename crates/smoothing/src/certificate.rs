//! What CERTIFY and PREDICT return.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The result of CERTIFY for one image.
///
/// When `label` is `Some(c)`, the smoothed classifier `g(x) = argmax_c P[f(x + δ) = c]`
/// is claimed to return `c` at every point within ℓ2 distance `radius` of the image, and
/// the claim is wrong with probability at most `alpha` over the draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// The certified label; `None` when CERTIFY abstained.
    pub label: Option<String>,
    /// The label the selection draws chose (certified or not); `None` only without draws.
    pub candidate: Option<String>,
    /// Certified ℓ2 radius σ·Φ⁻¹(p̲) in `[0, 1]` pixel units; 0 when abstained.
    pub radius: f64,
    /// One-sided `(1 − α)` Clopper–Pearson lower bound p̲ on the candidate's probability.
    pub p_lower: f64,
    /// Estimation draws that returned the candidate.
    pub n_a: u64,
    /// Labels of the estimation draws.
    pub counts: BTreeMap<String, u64>,
    /// Labels of the selection draws.
    pub selection_counts: BTreeMap<String, u64>,
    /// Selection draws.
    pub n0: u64,
    /// Estimation draws.
    pub n: u64,
    /// Noise level σ.
    pub sigma: f64,
    /// Failure probability α.
    pub alpha: f64,
    /// Master seed of the noise; `None` when certified from logged labels.
    pub seed: Option<u64>,
    /// Base-classifier queries spent (`n0 + n`).
    pub queries: u64,
}

impl Certificate {
    /// Whether CERTIFY abstained.
    pub fn abstained(&self) -> bool {
        self.label.is_none()
    }

    /// Whether this certificate says `truth` at radius at least `r`.
    pub fn certifies(&self, truth: &str, r: f64) -> bool {
        self.label.as_deref() == Some(truth) && self.radius >= r
    }
}

/// The result of PREDICT for one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The smoothed classifier's label; `None` when PREDICT abstained.
    pub label: Option<String>,
    /// Two-sided binomial p-value of the top two counts; abstain when > α.
    pub p_value: f64,
    /// Labels of the draws.
    pub counts: BTreeMap<String, u64>,
    /// Draws.
    pub n: u64,
    /// Noise level σ.
    pub sigma: f64,
    /// α.
    pub alpha: f64,
    /// Master seed of the noise.
    pub seed: Option<u64>,
    /// Base-classifier queries spent.
    pub queries: u64,
}
