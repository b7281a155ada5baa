//! Soundness of CERTIFY by simulation, and end to end through the noise.
//!
//! A certificate is a probabilistic claim: over many runs with a known truth, the share of
//! wrong claims must stay within α (plus sampling error). These tests run the real
//! [`certify`] with real noise and batching, against base classifiers whose smoothed
//! behaviour is known in closed form.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use robustify_smoothing::stats::{normal_cdf, normal_quantile};
use robustify_smoothing::{BaseClassifier, CertifyParams, Image, certify};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Answers "true" with probability `p_a`, otherwise one of three other labels uniformly,
/// whatever the image: P[f(x+δ) = c] is known exactly.
struct Biased {
    p_a: f64,
    rng: Mutex<ChaCha8Rng>,
}

impl BaseClassifier for Biased {
    type Error = Infallible;
    async fn classify(
        &self,
        _draws: std::ops::Range<u64>,
        batch: &[Image],
    ) -> Result<Vec<String>, Infallible> {
        let mut rng = self.rng.lock().unwrap();
        Ok(batch
            .iter()
            .map(|_| {
                if rng.random::<f64>() < self.p_a {
                    "true".to_string()
                } else {
                    format!("other{}", rng.random_range(0..3))
                }
            })
            .collect())
    }
}

/// Runs `runs` certifications per p_A and returns (runs, failures), where a failure is a
/// returned label other than "true" or a radius above σ·Φ⁻¹(p_A).
fn failures(p_as: &[f64], runs: u64, alpha: f64, n0: u64, n: u64, batch: usize) -> (u64, u64) {
    let sigma = 0.25;
    let params = CertifyParams::new(sigma, n0, n, alpha)
        .unwrap()
        .with_batch_size(batch)
        .unwrap();
    let image = Image::filled(1, 1, 0.5).unwrap();
    let mut bad = 0;
    block_on(async {
        for (k, &p_a) in p_as.iter().enumerate() {
            let clf = Biased {
                p_a,
                rng: Mutex::new(ChaCha8Rng::seed_from_u64(1000 + k as u64)),
            };
            let exact = sigma * normal_quantile(p_a);
            for seed in 0..runs {
                let cert = certify(&clf, &image, &params, seed).await.unwrap();
                match cert.label.as_deref() {
                    None => {}
                    Some("true") if p_a > 0.5 && cert.radius <= exact => {}
                    Some(_) => bad += 1,
                }
            }
        }
    });
    (runs * p_as.len() as u64, bad)
}

fn bound(alpha: f64, runs: u64) -> f64 {
    alpha + 3.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt()
}

#[test]
fn wrong_certificates_stay_within_alpha() {
    // 20,000 certifications near and away from the decision boundary, one below 1/2 where
    // any returned label is wrong. Batches of 7 so that batch edges fall inside both steps.
    let alpha = 0.001;
    let (runs, bad) = failures(&[0.45, 0.55, 0.75, 0.9, 0.97], 4000, alpha, 10, 100, 7);
    let rate = bad as f64 / runs as f64;
    assert!(rate <= bound(alpha, runs), "{bad} wrong of {runs}: {rate}");
}

#[test]
fn the_simulation_detects_a_loose_bound() {
    // The same check must fail for certificates made at a 200x larger α: the simulation
    // has the power to catch an unsound bound.
    let (runs, bad) = failures(&[0.75, 0.9], 1000, 0.2, 10, 100, 100);
    assert!(
        bad as f64 / runs as f64 > bound(0.001, runs),
        "{bad} of {runs}"
    );
}

/// f(x) = [w·x + b > 0] on 3×8×8 images: g's exact radius is |w·x + b| / ‖w‖.
struct Linear {
    w: Vec<f32>,
    b: f32,
}

impl BaseClassifier for Linear {
    type Error = Infallible;
    async fn classify(
        &self,
        _draws: std::ops::Range<u64>,
        batch: &[Image],
    ) -> Result<Vec<String>, Infallible> {
        Ok(batch
            .iter()
            .map(|img| {
                let s: f32 = img.data().iter().zip(&self.w).map(|(x, w)| x * w).sum();
                if s + self.b > 0.0 { "pos" } else { "neg" }.to_string()
            })
            .collect())
    }
}

/// A random linear classifier and image with exact smoothed probability `p_a` for "pos".
fn linear_case(sigma: f64, p_a: f64) -> (Linear, Image, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let w: Vec<f32> = (0..192).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x: Vec<f32> = (0..192).map(|_| rng.random_range(0.0..1.0)).collect();
    let norm = w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
    let wx: f64 = w
        .iter()
        .zip(&x)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum();
    // margin / ‖w‖ = σ Φ⁻¹(p_A)  ⇒  b = σ Φ⁻¹(p_A) ‖w‖ − w·x
    let exact = sigma * normal_quantile(p_a);
    let b = (exact * norm - wx) as f32;
    let image = Image::new(8, 8, x).unwrap();
    (Linear { w, b }, image, exact)
}

#[test]
fn linear_classifier_radius_is_sound_and_tight() {
    let sigma = 0.25;
    let (clf, image, exact) = linear_case(sigma, 0.9);
    // Sanity of the construction: P[pos] = Φ(exact / σ) = 0.9.
    assert!((normal_cdf(exact / sigma) - 0.9).abs() < 1e-9);
    block_on(async {
        // Above the exact radius no more often than α allows at n = 1,000, over 1,000
        // seeds (CP is conservative: expect well under 1).
        let runs = 1000;
        let p = CertifyParams::new(sigma, 10, 1000, 0.001).unwrap();
        let mut above = 0;
        let mut mean = 0.0;
        for seed in 0..runs {
            let c = certify(&clf, &image, &p, seed).await.unwrap();
            assert_eq!(c.label.as_deref(), Some("pos"));
            if c.radius > exact {
                above += 1;
            }
            mean += c.radius / runs as f64;
        }
        let allowed = bound(0.001, runs) * runs as f64;
        assert!(
            f64::from(above) <= allowed,
            "{above} of {runs} radii above the exact {exact}"
        );
        // Approaches the exact radius as n grows.
        let mut last = 0.0;
        for (n, floor) in [(100, 0.5), (10_000, 0.9), (100_000, 0.97)] {
            let p = CertifyParams::new(sigma, 10, n, 0.001).unwrap();
            let r = certify(&clf, &image, &p, 7).await.unwrap().radius;
            assert!(
                r <= exact && r >= floor * exact,
                "n={n}: {r} vs exact {exact}"
            );
            assert!(r > last, "n={n}: {r} not above {last}");
            last = r;
        }
        assert!(
            mean < last,
            "mean radius at n=1000 {mean} vs n=100000 {last}"
        );
    });
}

#[test]
fn batch_size_does_not_change_the_result() {
    let (clf, image, _) = linear_case(0.5, 0.7);
    let base = CertifyParams::new(0.5, 13, 257, 0.001).unwrap();
    block_on(async {
        let a = certify(&clf, &image, &base.with_batch_size(1).unwrap(), 3)
            .await
            .unwrap();
        let b = certify(&clf, &image, &base.with_batch_size(64).unwrap(), 3)
            .await
            .unwrap();
        let c = certify(&clf, &image, &base, 4).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.seed, Some(3));
        assert_ne!(a.counts, c.counts);
    });
}
