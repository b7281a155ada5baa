//! CERTIFY and PREDICT (Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
//! Randomized Smoothing", ICML 2019, <https://arxiv.org/abs/1902.02918>).
#![doc = include_str!("../docs/certify.md")]

use crate::counts::LabelCounts;
use crate::stats::{binomial_test_half, clopper_pearson_lower, radius};
use crate::{
    BaseClassifier, Certificate, CertifyParams, Error, Image, NoiseSampler, PredictParams,
    Prediction, Result,
};

/// CERTIFY from counts already made: `selection` (the n0 draws) picks the candidate, and
/// `estimation` (separate draws) bounds its probability.
///
/// `n` in the result is `estimation.total()`, whatever `params.n()` says, so partial data
/// can never be passed off as more draws than there were.
pub fn certify_counts(
    selection: &LabelCounts,
    estimation: &LabelCounts,
    params: &CertifyParams,
) -> Certificate {
    let candidate = selection.top().map(|(label, _)| label.to_owned());
    let n = estimation.total();
    let n_a = candidate.as_deref().map_or(0, |c| estimation.get(c));
    let p_lower = clopper_pearson_lower(n_a, n, params.alpha());
    let certified = candidate.is_some() && n_a > 0 && p_lower >= 0.5;
    Certificate {
        label: if certified { candidate.clone() } else { None },
        candidate,
        radius: if certified {
            radius(params.sigma(), p_lower).max(0.0)
        } else {
            0.0
        },
        p_lower,
        n_a,
        counts: estimation.to_map(),
        selection_counts: selection.to_map(),
        n0: selection.total(),
        n,
        sigma: params.sigma().get(),
        alpha: params.alpha().get(),
        seed: None,
        queries: selection.total() + n,
    }
}

/// CERTIFY from a logged label sequence in query order: the first n0 labels are the
/// selection draws, the next n the estimation draws; labels beyond are ignored.
pub fn certify_labels<S: AsRef<str>>(labels: &[S], params: &CertifyParams) -> Result<Certificate> {
    let (n0, n) = (params.n0() as usize, params.n() as usize);
    if labels.len() < n0 + n {
        return Err(Error::TooFewLabels {
            needed: (n0 + n) as u64,
            got: labels.len() as u64,
        });
    }
    let selection = LabelCounts::from_labels(&labels[..n0]);
    let estimation = LabelCounts::from_labels(&labels[n0..n0 + n]);
    Ok(certify_counts(&selection, &estimation, params))
}

/// PREDICT from counts: the top label unless the two-sided binomial test of the top two
/// counts has p-value above α.
pub fn predict_counts(counts: &LabelCounts, params: &PredictParams) -> Prediction {
    let (c1, c2) = counts.top_two_counts();
    let p_value = binomial_test_half(c1, c1 + c2);
    let label = if c1 > 0 && p_value <= params.alpha().get() {
        counts.top().map(|(l, _)| l.to_owned())
    } else {
        None
    };
    Prediction {
        label,
        p_value,
        counts: counts.to_map(),
        n: counts.total(),
        sigma: params.sigma().get(),
        alpha: params.alpha().get(),
        seed: None,
        queries: counts.total(),
    }
}

/// Sends the draws `range` of `image` to `classifier` in batches and counts the labels.
pub async fn sample<C: BaseClassifier>(
    classifier: &C,
    image: &Image,
    noise: &NoiseSampler,
    range: std::ops::Range<u64>,
    batch_size: usize,
) -> Result<LabelCounts> {
    let mut counts = LabelCounts::new();
    let mut start = range.start;
    while start < range.end {
        let end = range.end.min(start + batch_size as u64);
        for label in &classify_draws(classifier, image, noise, start..end).await? {
            counts.add(label);
        }
        start = end;
    }
    Ok(counts)
}

/// The labels of draws `draws` of `image` (one classifier call), checked for count.
pub async fn classify_draws<C: BaseClassifier>(
    classifier: &C,
    image: &Image,
    noise: &NoiseSampler,
    draws: std::ops::Range<u64>,
) -> Result<Vec<String>> {
    let batch = noise.draws(image, draws.clone());
    let labels = classifier
        .classify(draws, &batch)
        .await
        .map_err(|e| Error::Classifier(Box::new(e)))?;
    if labels.len() != batch.len() {
        return Err(Error::BatchMismatch {
            expected: batch.len(),
            got: labels.len(),
        });
    }
    Ok(labels)
}

/// CERTIFY one image: draws `0..n0` select, draws `n0..n0+n` estimate.
pub async fn certify<C: BaseClassifier>(
    classifier: &C,
    image: &Image,
    params: &CertifyParams,
    seed: u64,
) -> Result<Certificate> {
    let noise = NoiseSampler::new(params.sigma(), seed);
    let (n0, n, batch) = (params.n0(), params.n(), params.batch_size());
    let selection = sample(classifier, image, &noise, 0..n0, batch).await?;
    let estimation = sample(classifier, image, &noise, n0..n0 + n, batch).await?;
    let mut cert = certify_counts(&selection, &estimation, params);
    cert.seed = Some(seed);
    Ok(cert)
}

/// PREDICT one image with draws `0..n`.
pub async fn predict<C: BaseClassifier>(
    classifier: &C,
    image: &Image,
    params: &PredictParams,
    seed: u64,
) -> Result<Prediction> {
    let noise = NoiseSampler::new(params.sigma(), seed);
    let counts = sample(
        classifier,
        image,
        &noise,
        0..params.n(),
        params.batch_size(),
    )
    .await?;
    let mut prediction = predict_counts(&counts, params);
    prediction.seed = Some(seed);
    Ok(prediction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n0: u64, n: u64) -> CertifyParams {
        CertifyParams::new(0.25, n0, n, 0.001).unwrap()
    }

    fn labels(spec: &[(&str, usize)]) -> Vec<String> {
        spec.iter()
            .flat_map(|(l, k)| std::iter::repeat_n(l.to_string(), *k))
            .collect()
    }

    #[test]
    fn reference_certificates() {
        // 66 of 100 estimation draws agree with the candidate: p̲ = 0.50165, R = 0.00103.
        let mut log = labels(&[("cat", 10)]);
        log.extend(labels(&[("cat", 66), ("dog", 34)]));
        let c = certify_labels(&log, &params(10, 100)).unwrap();
        assert_eq!(c.label.as_deref(), Some("cat"));
        assert_eq!(c.n_a, 66);
        assert!((c.radius - 0.0010339566158333888).abs() < 1e-11);
        // 50/100 abstains, keeping the candidate.
        let mut log = labels(&[("cat", 10)]);
        log.extend(labels(&[("dog", 50), ("cat", 50)]));
        let c = certify_labels(&log, &params(10, 100)).unwrap();
        assert_eq!(c.label, None);
        assert_eq!(c.candidate.as_deref(), Some("cat"));
        assert_eq!(c.radius, 0.0);
        assert!(c.abstained());
    }

    #[test]
    fn selection_and_estimation_are_separate() {
        // Selection says "dog"; estimation is all "cat": n_A = 0 → abstain, no NaN.
        let mut log = labels(&[("dog", 5)]);
        log.extend(labels(&[("cat", 100)]));
        let c = certify_labels(&log, &params(5, 100)).unwrap();
        assert_eq!(
            (c.label.clone(), c.n_a, c.p_lower, c.radius),
            (None, 0, 0.0, 0.0)
        );
        assert_eq!(c.queries, 105);
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .contains("\"label\":null")
        );
    }

    #[test]
    fn ties_in_selection_go_to_the_first_label_seen() {
        let mut log = vec!["b".to_string(), "a".into(), "a".into(), "b".into()];
        log.extend(labels(&[("a", 100)]));
        let c = certify_labels(&log, &params(4, 100)).unwrap();
        assert_eq!(c.candidate.as_deref(), Some("b"));
        assert_eq!(c.label, None);
    }

    #[test]
    fn extra_labels_are_ignored_and_too_few_is_an_error() {
        let log = labels(&[("cat", 130)]);
        let c = certify_labels(&log, &params(20, 100)).unwrap();
        assert_eq!(c.n, 100);
        assert!(matches!(
            certify_labels(&log[..119], &params(20, 100)),
            Err(Error::TooFewLabels {
                needed: 120,
                got: 119
            })
        ));
    }

    #[test]
    fn predict_uses_the_binomial_test() {
        let p = PredictParams::new(0.25, 100, 0.1).unwrap();
        // (60, 40): p = 0.0569 ≤ 0.1 → predict; (55, 45): p = 0.368 → abstain.
        let c = LabelCounts::from_labels(labels(&[("cat", 60), ("dog", 40)]));
        let out = predict_counts(&c, &p);
        assert_eq!(out.label.as_deref(), Some("cat"));
        assert!((out.p_value - 0.05688793364098089).abs() < 1e-12);
        let c = LabelCounts::from_labels(labels(&[("cat", 55), ("dog", 45)]));
        assert_eq!(predict_counts(&c, &p).label, None);
        let strict = PredictParams::new(0.25, 100, 0.001).unwrap();
        let c = LabelCounts::from_labels(labels(&[("cat", 60), ("dog", 40)]));
        assert_eq!(predict_counts(&c, &strict).label, None);
    }
}
