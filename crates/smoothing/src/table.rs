//! Certified accuracy at a list of radii — the tables and curves of the papers.

use serde::{Deserialize, Serialize};

use crate::Certificate;

/// One image's outcome against its reference label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The certified label, `None` when abstained.
    pub label: Option<String>,
    /// The certified radius (0 when abstained).
    pub radius: f64,
    /// Whether `label` equals the reference label.
    pub correct: bool,
}

impl Outcome {
    /// Scores `cert` against the reference label `truth`.
    pub fn new(cert: &Certificate, truth: &str) -> Outcome {
        Outcome {
            label: cert.label.clone(),
            radius: cert.radius,
            correct: cert.label.as_deref() == Some(truth),
        }
    }
}

/// Certified accuracy at one radius.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// The radius r.
    pub radius: f64,
    /// Share of all images that are certified, correct and have radius ≥ r.
    pub certified_accuracy: f64,
}

/// The default radii: 0, 0.05, …, 0.50.
pub fn default_radii() -> Vec<f64> {
    (0..=10).map(|i| f64::from(i) / 20.0).collect()
}

/// Certified accuracy at each radius: an image counts at `r` if it was not abstained, its
/// label is correct and its radius is at least `r`. The denominator is all images,
/// abstentions included; an empty list gives 0.
pub fn certified_accuracy(outcomes: &[Outcome], radii: &[f64]) -> Vec<AccuracyRow> {
    let total = outcomes.len().max(1) as f64;
    radii
        .iter()
        .map(|&r| AccuracyRow {
            radius: r,
            certified_accuracy: outcomes
                .iter()
                .filter(|o| o.label.is_some() && o.correct && o.radius >= r)
                .count() as f64
                / total,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_correct_certified_images_at_each_radius() {
        let o = |label: Option<&str>, radius: f64, correct: bool| Outcome {
            label: label.map(str::to_owned),
            radius,
            correct,
        };
        let outcomes = [
            o(Some("a"), 0.30, true),
            o(Some("b"), 0.10, true),
            o(Some("c"), 0.40, false),
            o(None, 0.0, false),
        ];
        let table = certified_accuracy(&outcomes, &[0.0, 0.1, 0.2, 0.35]);
        let acc: Vec<f64> = table.iter().map(|r| r.certified_accuracy).collect();
        assert_eq!(acc, vec![0.5, 0.5, 0.25, 0.0]);
        assert_eq!(default_radii().len(), 11);
        assert_eq!(default_radii()[3], 0.15);
        assert!(certified_accuracy(&[], &[0.0])[0].certified_accuracy == 0.0);
    }
}
