//! Sequential certification: stop drawing as soon as an anytime-valid confidence sequence
//! for p_A settles the question.
//!
//! CERTIFY (Cohen et al.) fixes n in advance and pays for every draw even when the first 40
//! already agree. A *confidence sequence* is a sequence of intervals that contains p_A at
//! every n simultaneously with probability ≥ 1 − α (Darling & Robbins 1967; Howard et al.
//! 2021), so it may be checked after every batch and the run stopped at any data-dependent
//! time without losing the guarantee. Two are offered:
//!
//! - [`SequenceKind::Betting`] (default): the Krichevsky–Trofimov mixture martingale. For a
//!   hypothesised mean m, `M_n(m) = B(½ + S, ½ + n − S) / B(½, ½) / (m^S (1 − m)^{n − S})`
//!   (S agreeing draws of n) is the wealth of a bettor who stakes by the KT estimator
//!   against m; under p_A = m it is a nonnegative martingale, so by Ville's inequality
//!   `P(∃n: M_n(p_A) ≥ 1/α) ≤ α`. The sequence is `{m : M_n(m) < 1/α}`.
//! - [`SequenceKind::UnionBound`]: Clopper–Pearson intervals at the geometric schedule
//!   n_k = ⌈n_min · 1.25^k⌉ with levels α_k = 6α / (π²(k + 1)²), which sum to α.
//!
//! With a target radius R, certifying at R means p_A ≥ p* = Φ(R/σ). The run stops with
//! [`Decision::Certified`] once the sequence lies above p*, with
//! [`Decision::NotCertifiable`] once it lies below, and with [`Decision::Undecided`] when
//! `max_draws` run out — or as soon as the draws left could not certify even if all agreed
//! (futility: it saves the draws that cannot change the answer). Either decision is wrong only if the sequence missed p_A: probability
//! ≤ α at any stopping time. The candidate label comes from up to `n0` separate selection
//! draws, as in CERTIFY, which stop as soon as the leader's lead over the runner-up
//! exceeds the selection draws left: all `n0` would then choose the same label, so the
//! early stop changes the bill and nothing else (the estimation draws keep their indices
//! `n0, n0 + 1, …`, hence their noise). Draws come in batches; the sequence is checked
//! between batches, and every draw of the last batch counts (it was paid for).

mod forecast;
mod selection;
mod sequence;

use serde::{Deserialize, Serialize};

use crate::stats::{normal_cdf, normal_quantile};
use crate::{Alpha, BaseClassifier, Error, Image, NoiseSampler, Result, Sigma};

pub use forecast::{SequentialForecast, forecast};
use selection::Selection;
pub use sequence::Sequence;

/// Which confidence sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequenceKind {
    /// Krichevsky–Trofimov mixture (a betting martingale).
    #[default]
    Betting,
    /// Clopper–Pearson on a geometric schedule, union bound.
    UnionBound,
}

/// What a sequential certification decided about the target radius.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// p_A ≥ Φ(R/σ): certified at radius ≥ R.
    Certified,
    /// p_A < Φ(R/σ): not certifiable at R, however many draws.
    NotCertifiable,
    /// The draw budget ran out first.
    Undecided,
}

impl Decision {
    /// Its name, as serialised: `certified`, `not_certifiable`, `undecided`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Certified => "certified",
            Decision::NotCertifiable => "not_certifiable",
            Decision::Undecided => "undecided",
        }
    }
}

/// Parameters of a sequential certification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SequentialParams {
    sigma: Sigma,
    n0: u64,
    max_draws: u64,
    alpha: Alpha,
    target_radius: Option<f64>,
    kind: SequenceKind,
    batch_size: usize,
}

impl SequentialParams {
    /// `n0` selection draws, then at most `max_draws` estimation draws, at confidence
    /// `1 − alpha`; with `target_radius`, stop as soon as the answer at that radius is known.
    pub fn new(
        sigma: f64,
        n0: u64,
        max_draws: u64,
        alpha: f64,
        target_radius: Option<f64>,
    ) -> Result<SequentialParams> {
        let bad = |name, reason: &str| Error::InvalidParameter {
            name,
            reason: reason.into(),
        };
        if n0 == 0 {
            return Err(bad("n0", "must be ≥ 1"));
        }
        if max_draws == 0 {
            return Err(bad("max_draws", "must be ≥ 1"));
        }
        crate::params::total_draws("n0 + max_draws", n0, max_draws)?;
        if let Some(r) = target_radius
            && !(r.is_finite() && r >= 0.0)
        {
            return Err(bad("target_radius", "must be finite and ≥ 0"));
        }
        let (sigma, alpha) = (Sigma::new(sigma)?, Alpha::new(alpha)?);
        if let Some(r) = target_radius {
            // Even if every one of the max_draws agreed, a fixed-n certificate would reach
            // at most this; a sequential one, whose bound is wider, reaches less. Paying
            // for draws that can never decide is refused up front.
            let best = crate::stats::max_certifiable_radius(sigma, alpha, max_draws).unwrap_or(0.0);
            if r > best {
                let needed = crate::stats::min_draws_for_radius(sigma, alpha, r);
                return Err(Error::InvalidParameter {
                    name: "target_radius",
                    reason: format!(
                        "{r} cannot be reached with at most {max_draws} draws at σ = {}: even \
                         if all of them agreed the radius would be {best:.4}{}",
                        sigma.get(),
                        needed.map_or(String::new(), |n| format!(
                            " (at least {n} draws are needed)"
                        ))
                    ),
                });
            }
        }
        Ok(SequentialParams {
            sigma,
            n0,
            max_draws,
            alpha,
            target_radius,
            kind: SequenceKind::default(),
            batch_size: 32,
        })
    }

    /// Uses `kind` of confidence sequence.
    pub fn with_kind(mut self, kind: SequenceKind) -> SequentialParams {
        self.kind = kind;
        self
    }

    /// Draws per classifier call (≥ 1); the sequence is checked after each.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<SequentialParams> {
        if batch_size == 0 {
            return Err(Error::InvalidParameter {
                name: "batch_size",
                reason: "must be ≥ 1".into(),
            });
        }
        self.batch_size = batch_size;
        Ok(self)
    }

    /// The probability p* = Φ(R/σ) that certifying at the target radius needs.
    pub fn p_star(&self) -> Option<f64> {
        self.target_radius.map(|r| normal_cdf(r / self.sigma.get()))
    }

    /// Draws per classifier call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// σ.
    pub fn sigma(&self) -> Sigma {
        self.sigma
    }

    /// α.
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// The radius to decide about, if any.
    pub fn target_radius(&self) -> Option<f64> {
        self.target_radius
    }

    /// The confidence sequence.
    pub fn kind(&self) -> SequenceKind {
        self.kind
    }

    /// Selection draws.
    pub fn n0(&self) -> u64 {
        self.n0
    }

    /// Most estimation draws.
    pub fn max_draws(&self) -> u64 {
        self.max_draws
    }

    /// Most draws the certification can send: `n0 + max_draws` (checked when built).
    pub fn draws(&self) -> u64 {
        self.n0 + self.max_draws
    }
}

/// The result of a sequential certification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequentialCertificate {
    /// The certified label: the candidate when the sequence's lower bound exceeds ½ (and,
    /// with a target, when the decision is `certified`); `None` otherwise.
    pub label: Option<String>,
    /// The label the selection draws chose.
    pub candidate: Option<String>,
    /// The decision about the target radius, if one was given.
    pub decision: Option<Decision>,
    /// The radius the sequence supports when the run stopped: σ·Φ⁻¹(p_lower), 0 if none.
    pub radius: f64,
    /// The sequence's lower bound on p_A when the run stopped.
    pub p_lower: f64,
    /// Its upper bound.
    pub p_upper: f64,
    /// Estimation draws that agreed with the candidate.
    pub n_a: u64,
    /// Estimation draws made (every draw of the last batch counts).
    pub n: u64,
    /// Selection draws made (at most the configured `n0`: selection stops once its
    /// leader cannot be overtaken).
    pub n0: u64,
    /// All draws sent: n0 + n.
    pub queries: u64,
    /// σ.
    pub sigma: f64,
    /// α.
    pub alpha: f64,
    /// The target radius, if any.
    pub target_radius: Option<f64>,
    /// The confidence sequence used.
    pub sequence: SequenceKind,
    /// The noise seed, when draws were made here.
    pub seed: Option<u64>,
}

/// The decision the sequence supports now, if any; `Undecided` as soon as the `remaining`
/// draws could not certify even if every one agreed.
fn decide(seq: &Sequence, p_star: f64, remaining: u64) -> Option<Decision> {
    if seq.excludes(p_star, true) {
        Some(Decision::Certified)
    } else if seq.excludes(p_star, false) {
        Some(Decision::NotCertifiable)
    } else if !seq.could_exclude_below(p_star, remaining) {
        Some(Decision::Undecided)
    } else {
        None
    }
}

fn finish(
    seq: &Sequence,
    candidate: Option<String>,
    decision: Option<Decision>,
    params: &SequentialParams,
    n0: u64,
) -> SequentialCertificate {
    // With a target, running out of draws without a decision is a decision: undecided.
    let decision = decision.or(params.target_radius.map(|_| Decision::Undecided));
    let (p_lower, p_upper) = seq.bounds();
    let sigma = params.sigma.get();
    let supported = if p_lower > 0.5 {
        sigma * normal_quantile(p_lower)
    } else {
        0.0
    };
    let certified =
        candidate.is_some() && p_lower > 0.5 && decision.is_none_or(|d| d == Decision::Certified);
    SequentialCertificate {
        label: if certified { candidate.clone() } else { None },
        candidate,
        decision,
        radius: if certified { supported } else { 0.0 },
        p_lower,
        p_upper,
        n_a: seq.agreeing(),
        n: seq.n(),
        n0,
        queries: n0 + seq.n(),
        sigma,
        alpha: params.alpha.get(),
        target_radius: params.target_radius,
        sequence: params.kind,
        seed: None,
    }
}

/// Sequential certification of a logged label sequence (query order): the first `n0`
/// labels select (those after the leader is settled go unused), then labels are consumed
/// in batches until the sequence decides or `max_draws` are used. Fewer labels than needed
/// end the run early as `undecided`.
pub fn certify_sequential_labels<S: AsRef<str>>(
    labels: &[S],
    params: &SequentialParams,
) -> Result<SequentialCertificate> {
    let n0 = params.n0 as usize;
    if labels.len() < n0 {
        return Err(Error::TooFewLabels {
            needed: params.n0,
            got: labels.len() as u64,
        });
    }
    let mut selection = Selection::new(params);
    while let Some(draws) = selection.next_batch() {
        let batch = &labels[draws.start as usize..draws.end as usize];
        selection.add(batch.iter().map(|l| l.as_ref()));
    }
    let (candidate, used) = selection.finish();
    let rest = &labels[n0..labels.len().min(n0 + params.max_draws as usize)];
    let mut seq = Sequence::new(params.kind, params.alpha.get());
    let mut decision = None;
    for batch in rest.chunks(params.batch_size) {
        for l in batch {
            seq.observe(candidate.as_deref() == Some(l.as_ref()));
        }
        if let Some(p) = params.p_star()
            && let Some(d) = decide(&seq, p, params.max_draws - seq.n())
        {
            decision = Some(d);
            break;
        }
    }
    Ok(finish(&seq, candidate, decision, params, used))
}

/// Sequential certification of one image: draws `0..n0` select the candidate (stopping
/// early once it is settled); draws `n0, n0 + 1, …` are sent in batches until the
/// sequence decides or `max_draws` are used.
pub async fn certify_sequential<C: BaseClassifier>(
    classifier: &C,
    image: &Image,
    params: &SequentialParams,
    seed: u64,
) -> Result<SequentialCertificate> {
    let noise = NoiseSampler::new(params.sigma, seed);
    let mut selection = Selection::new(params);
    while let Some(draws) = selection.next_batch() {
        let labels = crate::certify::classify_draws(classifier, image, &noise, draws).await?;
        selection.add(labels.iter().map(String::as_str));
    }
    let (candidate, used) = selection.finish();
    let mut seq = Sequence::new(params.kind, params.alpha.get());
    let mut decision = None;
    let end = params.n0 + params.max_draws;
    let mut start = params.n0;
    while start < end {
        let stop = end.min(start + params.batch_size as u64);
        let labels = crate::certify::classify_draws(classifier, image, &noise, start..stop).await?;
        for l in &labels {
            seq.observe(candidate.as_deref() == Some(l.as_str()));
        }
        start = stop;
        if let Some(p) = params.p_star()
            && let Some(d) = decide(&seq, p, end - stop)
        {
            decision = Some(d);
            break;
        }
    }
    let mut cert = finish(&seq, candidate, decision, params, used);
    cert.seed = Some(seed);
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::sequence::kt_log_wealth;
    use super::*;
    use crate::counts::LabelCounts;

    #[test]
    fn decision_names_are_their_serialised_names() {
        for d in [
            Decision::Certified,
            Decision::NotCertifiable,
            Decision::Undecided,
        ] {
            assert_eq!(serde_json::to_value(d).ok(), Some(d.as_str().into()));
        }
    }

    #[test]
    fn forecasts_follow_p_a() {
        let p = SequentialParams::new(0.25, 10, 10_000, 0.001, Some(0.25))
            .unwrap()
            .with_batch_size(10)
            .unwrap();
        let easy = forecast(&p, 0.999, 200, 1).unwrap();
        assert!(easy.certified > 0.99 && easy.mean_draws < 100.0, "{easy:?}");
        let hopeless = forecast(&p, 0.5, 200, 1).unwrap();
        assert!(
            hopeless.not_certifiable > 0.99 && hopeless.mean_draws < 100.0,
            "{hopeless:?}"
        );
        // Near p* = 0.841 it takes thousands.
        let hard = forecast(&p, 0.87, 200, 1).unwrap();
        assert!(hard.mean_draws > 500.0, "{hard:?}");
    }

    #[test]
    fn kt_wealth_reference_values() {
        // 10 of 10 agree, m = 0.5: B(10.5, 0.5)/B(0.5, 0.5) · 2^10 = 189.0 / π · … :
        // computed directly as Γ(10.5)Γ(0.5)/Γ(11) / π · 1024 = 0.17620 · 1024 = 180.43.
        let w = kt_log_wealth(10, 10, 0.5).exp();
        assert!((w - 180.42).abs() < 0.01, "{w}");
        // Symmetric: 0 of 10 at 0.5 is the same wealth.
        assert!((kt_log_wealth(0, 10, 0.5) - kt_log_wealth(10, 10, 0.5)).abs() < 1e-12);
    }

    #[test]
    fn bounds_and_exclusion_agree() {
        for kind in [SequenceKind::Betting, SequenceKind::UnionBound] {
            let mut seq = Sequence::new(kind, 0.001);
            for i in 0..400 {
                seq.observe(i % 10 != 0); // 90% agree
            }
            let (lo, hi) = seq.bounds();
            assert!(lo < 0.9 && 0.9 < hi, "{kind:?}: {lo} {hi}");
            assert!(seq.excludes(lo - 1e-6, true) || kind == SequenceKind::UnionBound);
            assert!(!seq.excludes(lo + 1e-3, true));
            assert!(seq.excludes(hi + 1e-3, false));
            assert!(!seq.excludes(hi - 1e-3, false));
        }
    }

    #[test]
    fn easy_images_stop_early_and_agree_with_fixed_n() {
        // Every draw agrees; σ = 0.25, R = 0.25: p* = Φ(1) = 0.841.
        let mut labels = vec!["cat"; 10];
        labels.extend(vec!["cat"; 1000]);
        for kind in [SequenceKind::Betting, SequenceKind::UnionBound] {
            let p = SequentialParams::new(0.25, 10, 1000, 0.001, Some(0.25))
                .unwrap()
                .with_kind(kind)
                .with_batch_size(8)
                .unwrap();
            let c = certify_sequential_labels(&labels, &p).unwrap();
            assert_eq!(c.decision, Some(Decision::Certified), "{kind:?}");
            assert_eq!(c.label.as_deref(), Some("cat"));
            assert!(c.radius >= 0.25 && c.n <= 100, "{kind:?}: {c:?}");
        }
        // Half the draws disagree: not certifiable at R (fixed-n abstains too).
        let mut labels = vec!["cat"; 10];
        labels.extend((0..1000).map(|i| if i % 2 == 0 { "cat" } else { "dog" }));
        for kind in [SequenceKind::Betting, SequenceKind::UnionBound] {
            let p = SequentialParams::new(0.25, 10, 1000, 0.001, Some(0.25))
                .unwrap()
                .with_kind(kind);
            let c = certify_sequential_labels(&labels, &p).unwrap();
            assert_eq!(c.decision, Some(Decision::NotCertifiable), "{kind:?}");
            assert_eq!(c.label, None);
            assert!(c.n < 200, "{kind:?}: {}", c.n);
        }
    }

    #[test]
    fn selection_stops_once_its_leader_is_settled_and_picks_what_all_n0_would() {
        let p = |batch| {
            SequentialParams::new(0.25, 20, 100, 0.001, Some(0.25))
                .unwrap()
                .with_batch_size(batch)
                .unwrap()
        };
        // 20 selection labels: 11 "cat" first settle it (lead 11 > 9 left).
        let mut labels = vec!["cat"; 20];
        labels.extend(vec!["cat"; 100]);
        assert_eq!(certify_sequential_labels(&labels, &p(1)).unwrap().n0, 11);
        // In batches of 8 the check falls after 16.
        assert_eq!(certify_sequential_labels(&labels, &p(8)).unwrap().n0, 16);
        // A close race is never cut short, and the runner-up of the first draws can win:
        // dog leads 3–0, then cat takes 12 of the remaining 17.
        let mut labels = vec!["dog"; 3];
        labels.extend((0..17).map(|i| if i < 12 { "cat" } else { "dog" }));
        labels.extend(vec!["cat"; 100]);
        let c = certify_sequential_labels(&labels, &p(1)).unwrap();
        let full = LabelCounts::from_labels(&labels[..20]);
        assert_eq!(c.candidate.as_deref(), full.top().map(|(l, _)| l));
        assert_eq!(c.candidate.as_deref(), Some("cat"));
        // cat 11, dog 3 after 14: lead 8 > 6 left (after 13, 7 is not > 7).
        assert_eq!(c.n0, 14);
        assert_eq!(c.queries, c.n0 + c.n);
        // The estimation draws start at label n0 = 20 all the same.
        assert_eq!(c.n_a, c.n);
    }

    #[test]
    fn without_a_target_the_supported_radius_is_reported() {
        let labels = vec!["cat"; 110];
        let p = SequentialParams::new(0.25, 10, 100, 0.001, None).unwrap();
        let c = certify_sequential_labels(&labels, &p).unwrap();
        assert_eq!((c.n, c.decision), (100, None));
        assert_eq!(c.label.as_deref(), Some("cat"));
        // Anytime-valid costs a little against fixed-n's 0.3751 at n = 100.
        assert!(c.radius > 0.25 && c.radius < 0.3751, "{}", c.radius);
    }
}
