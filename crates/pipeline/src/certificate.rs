//! The certificate document: one JSON shape, versioned, for `certify --json`, `predict
//! --json`, `replay --json`, `eval` and the proxy's answers (documented field by field in
//! `docs/certificate.md`).

use std::collections::BTreeMap;

use robustify_smoothing::{Decision, SequenceKind};
use serde::{Deserialize, Serialize};

use crate::plan::{Mode, Outcome};

/// The version of [`CertificateRecord`]'s shape; raised whenever a field changes meaning or
/// goes away (adding a field keeps it).
pub const SCHEMA: u32 = 1;

/// How an image ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A label with a radius (fixed mode; sequential mode without a target radius, or
    /// decided certified at it).
    Certified,
    /// No label: the draws did not single one out.
    Abstained,
    /// Sequential mode: the label's probability is below what the target radius needs.
    NotCertifiable,
    /// Sequential mode: the draws ran out before a decision.
    Undecided,
    /// PREDICT returned a label.
    Predicted,
    /// The budget stopped this image (or it was not started because of it).
    BudgetExhausted,
    /// Something failed; `error` says what.
    Error,
}

impl Status {
    /// The name as serialised (`budget_exhausted`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Certified => "certified",
            Status::Abstained => "abstained",
            Status::NotCertifiable => "not_certifiable",
            Status::Undecided => "undecided",
            Status::Predicted => "predicted",
            Status::BudgetExhausted => "budget_exhausted",
            Status::Error => "error",
        }
    }
}

/// One image's certificate (or prediction, or failure), as every command and the proxy
/// write it. Every field is always present (`null` where it does not apply), in this order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The image's name: the path given on the command line, the name a proxy client
    /// sent, or the index or name of a replayed log's image.
    pub image: String,
    /// SHA-256 of the image file (hex), when its bytes were read.
    pub image_sha256: Option<String>,
    /// The provider asked.
    pub provider: String,
    /// The denoiser in front of it (`none` without one).
    pub denoiser: String,
    /// `fixed`, `sequential` or `predict`.
    pub mode: Mode,
    /// How the image ended.
    pub status: Status,
    /// The certified (or predicted) label; `null` otherwise.
    pub label: Option<String>,
    /// The label the selection draws chose, certified or not.
    pub candidate: Option<String>,
    /// The provider's label for the clean image, when it was asked.
    pub clean_label: Option<String>,
    /// Whether `label` equals a known reference label (eval, replay of a labelled log).
    pub correct: Option<bool>,
    /// Certified ℓ2 radius in [0, 1] pixel units; 0 when none.
    pub radius: f64,
    /// Lower bound on the candidate's probability under noise.
    pub p_lower: Option<f64>,
    /// Upper bound (sequential mode).
    pub p_upper: Option<f64>,
    /// PREDICT's binomial p-value.
    pub p_value: Option<f64>,
    /// Estimation draws that agreed with the candidate.
    pub n_a: Option<u64>,
    /// Labels of the estimation draws (fixed mode and PREDICT).
    pub counts: Option<BTreeMap<String, u64>>,
    /// The two most frequent labels of `counts` with their counts (ties by name).
    pub top_two: Option<Vec<(String, u64)>>,
    /// Sequential mode's decision about the target radius.
    pub decision: Option<Decision>,
    /// Sequential mode's target radius.
    pub target_radius: Option<f64>,
    /// Sequential mode's confidence sequence.
    pub sequence: Option<SequenceKind>,
    /// Draws answered (by the provider, or reused from the answer log).
    pub queries: u64,
    /// Of those, answers reused from the log (not paid again).
    pub reused: u64,
    /// Dollars the provider billed for this image.
    pub cost_usd: f64,
    /// Noise level σ.
    pub sigma: f64,
    /// Selection draws made (certifications).
    pub n0: Option<u64>,
    /// Estimation draws made.
    pub n: u64,
    /// Failure probability α.
    pub alpha: f64,
    /// Master seed of the noise; `null` when certified from logged labels.
    pub seed: Option<u64>,
    /// What went wrong, for `error` and `budget_exhausted`.
    pub error: Option<String>,
}

/// What a record says besides the outcome: the image, where its draws went, what they cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordContext {
    /// The image's name.
    pub image: String,
    /// SHA-256 of its bytes.
    pub image_sha256: Option<String>,
    /// The provider's name.
    pub provider: String,
    /// The denoiser's name (`none` without one).
    pub denoiser: String,
    /// The clean label, when asked.
    pub clean_label: Option<String>,
    /// Answers reused from the log.
    pub reused: u64,
    /// Dollars billed.
    pub cost_usd: f64,
}

impl CertificateRecord {
    /// The record of a finished `outcome`.
    pub fn new(outcome: &Outcome, ctx: RecordContext) -> CertificateRecord {
        let mut r = CertificateRecord::blank(ctx);
        match outcome {
            Outcome::Fixed(c) => {
                r.mode = Mode::Fixed;
                r.status = if c.label.is_some() {
                    Status::Certified
                } else {
                    Status::Abstained
                };
                r.label = c.label.clone();
                r.candidate = c.candidate.clone();
                r.radius = c.radius;
                r.p_lower = Some(c.p_lower);
                r.n_a = Some(c.n_a);
                r.top_two = Some(top_two(&c.counts));
                r.counts = Some(c.counts.clone());
                r.queries = c.queries;
                r.sigma = c.sigma;
                r.n0 = Some(c.n0);
                r.n = c.n;
                r.alpha = c.alpha;
                r.seed = c.seed;
            }
            Outcome::Sequential(c) => {
                r.mode = Mode::Sequential;
                r.status = match (c.decision, &c.label) {
                    (Some(Decision::Certified), _) | (None, Some(_)) => Status::Certified,
                    (Some(Decision::NotCertifiable), _) => Status::NotCertifiable,
                    (Some(Decision::Undecided), _) => Status::Undecided,
                    (None, None) => Status::Abstained,
                };
                r.label = c.label.clone();
                r.candidate = c.candidate.clone();
                r.radius = c.radius;
                r.p_lower = Some(c.p_lower);
                r.p_upper = Some(c.p_upper);
                r.n_a = Some(c.n_a);
                r.decision = c.decision;
                r.target_radius = c.target_radius;
                r.sequence = Some(c.sequence);
                r.queries = c.queries;
                r.sigma = c.sigma;
                r.n0 = Some(c.n0);
                r.n = c.n;
                r.alpha = c.alpha;
                r.seed = c.seed;
            }
            Outcome::Predicted(p) => {
                r.mode = Mode::Predict;
                r.status = if p.label.is_some() {
                    Status::Predicted
                } else {
                    Status::Abstained
                };
                r.label = p.label.clone();
                r.p_value = Some(p.p_value);
                r.top_two = Some(top_two(&p.counts));
                r.counts = Some(p.counts.clone());
                r.queries = p.queries;
                r.sigma = p.sigma;
                r.n = p.n;
                r.alpha = p.alpha;
                r.seed = p.seed;
            }
        }
        r
    }

    /// The record of an image that ended without a result: `status` is
    /// [`Status::Error`] or [`Status::BudgetExhausted`]; `plan` gives σ, the counts and α
    /// it was asked with.
    pub fn unfinished(
        plan: &crate::Plan,
        seed: u64,
        status: Status,
        error: String,
        ctx: RecordContext,
    ) -> CertificateRecord {
        let mut r = CertificateRecord::blank(ctx);
        r.mode = plan.mode();
        r.status = status;
        r.sigma = plan.sigma();
        r.seed = Some(seed);
        r.error = Some(error);
        match plan {
            crate::Plan::Fixed(p) => {
                (r.n0, r.n, r.alpha) = (Some(p.n0()), p.n(), p.alpha().get());
            }
            crate::Plan::Sequential(p) => {
                (r.n0, r.n, r.alpha) = (Some(p.n0()), p.max_draws(), p.alpha().get());
                r.target_radius = p.target_radius();
                r.sequence = Some(p.kind());
            }
            crate::Plan::Predict(p) => (r.n, r.alpha) = (p.n(), p.alpha().get()),
        }
        r
    }

    fn blank(ctx: RecordContext) -> CertificateRecord {
        CertificateRecord {
            schema: SCHEMA,
            image: ctx.image,
            image_sha256: ctx.image_sha256,
            provider: ctx.provider,
            denoiser: ctx.denoiser,
            mode: Mode::Fixed,
            status: Status::Error,
            label: None,
            candidate: None,
            clean_label: ctx.clean_label,
            correct: None,
            radius: 0.0,
            p_lower: None,
            p_upper: None,
            p_value: None,
            n_a: None,
            counts: None,
            top_two: None,
            decision: None,
            target_radius: None,
            sequence: None,
            queries: 0,
            reused: ctx.reused,
            cost_usd: ctx.cost_usd,
            sigma: 0.0,
            n0: None,
            n: 0,
            alpha: 0.0,
            seed: None,
            error: None,
        }
    }

    /// Sets `correct` against a reference label.
    pub fn with_truth(mut self, truth: Option<&str>) -> CertificateRecord {
        self.correct = truth.map(|t| self.label.as_deref() == Some(t));
        self
    }

    /// Whether the image ended with a result (certified, abstained, decided, predicted).
    pub fn finished(&self) -> bool {
        !matches!(self.status, Status::Error | Status::BudgetExhausted)
    }

    /// The record as one line of JSON.
    pub fn to_json_line(&self) -> String {
        // A record holds strings, numbers and maps with string keys: it always serialises
        // (a NaN becomes null).
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The two most frequent labels (ties by name), with their counts.
pub fn top_two(counts: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut all: Vec<(&String, u64)> = counts.iter().map(|(l, n)| (l, *n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    all.into_iter()
        .take(2)
        .map(|(l, n)| (l.clone(), n))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use robustify_smoothing::{CertifyParams, LabelCounts, certify_counts};

    #[test]
    fn every_field_is_present_in_order() {
        let params = CertifyParams::new(0.25, 10, 100, 0.001).unwrap();
        let cert = certify_counts(
            &LabelCounts::from_labels(["cat"; 10]),
            &LabelCounts::from_labels(["cat"; 100]),
            &params,
        );
        let r = CertificateRecord::new(
            &Outcome::Fixed(cert),
            RecordContext {
                image: "cat.png".into(),
                provider: "p".into(),
                denoiser: "none".into(),
                ..RecordContext::default()
            },
        );
        let line = r.to_json_line();
        assert!(
            line.starts_with(r#"{"schema":1,"image":"cat.png","image_sha256":null,"provider""#),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 30, "{v}");
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["status"], "certified");
        assert_eq!(v["mode"], "fixed");
        assert!(v["p_upper"].is_null());
        let back: CertificateRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn top_two_breaks_ties_by_name() {
        let counts: BTreeMap<String, u64> = [("b", 3), ("a", 3), ("c", 5)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(top_two(&counts), [("c".into(), 5), ("a".into(), 3)]);
    }
}
