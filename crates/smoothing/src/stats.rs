//! The exact statistics behind CERTIFY and PREDICT.
//!
//! Reference values in the tests come from SciPy 1.17 (`scipy.stats.beta.ppf`,
//! `scipy.stats.norm.ppf`, `scipy.stats.binomtest`); each test shows its snippet.

use statrs::distribution::{Binomial, DiscreteCDF};
use statrs::function::beta::beta_reg;
use statrs::function::erf::{erfc, erfc_inv};

use crate::params::{Alpha, Sigma};

/// Standard normal quantile Φ⁻¹(p), for `p` in (0, 1); ±∞ at the ends.
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        f64::NEG_INFINITY
    } else if p >= 1.0 {
        f64::INFINITY
    } else {
        -std::f64::consts::SQRT_2 * erfc_inv(2.0 * p)
    }
}

/// Standard normal CDF Φ(z).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// One-sided `(1 − α)` Clopper–Pearson lower confidence bound on a binomial proportion
/// from `successes` out of `trials`: `Beta⁻¹(α; k, n − k + 1)`, and 0 when `k = 0`.
///
/// Solved by bisection on the regularized incomplete beta function to full double
/// precision; `k = n` uses the closed form `α^{1/n}`.
pub fn clopper_pearson_lower(successes: u64, trials: u64, alpha: Alpha) -> f64 {
    assert!(successes <= trials, "successes > trials");
    if successes == 0 {
        return 0.0;
    }
    let alpha = alpha.get();
    if successes == trials {
        return alpha.powf(1.0 / trials as f64);
    }
    let a = successes as f64;
    let b = (trials - successes + 1) as f64;
    // I_x(a, b) increases in x from 0 to 1; find I_x = α.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if beta_reg(a, b, mid) < alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One-sided `(1 − α)` Clopper–Pearson upper confidence bound: by symmetry, one minus the
/// lower bound of the failures; 1 when every trial succeeded.
pub fn clopper_pearson_upper(successes: u64, trials: u64, alpha: Alpha) -> f64 {
    assert!(successes <= trials, "successes > trials");
    1.0 - clopper_pearson_lower(trials - successes, trials, alpha)
}

/// Two-sided exact binomial test of `successes` in `trials` at p = 1/2 (SciPy's
/// `binomtest(k, n, 0.5).pvalue`): the probability of an outcome at least as far from
/// `n/2`. Returns 1 when `trials = 0`.
pub fn binomial_test_half(successes: u64, trials: u64) -> f64 {
    assert!(successes <= trials, "successes > trials");
    if trials == 0 || 2 * successes == trials {
        return 1.0;
    }
    let far = successes.max(trials - successes);
    let Ok(bin) = Binomial::new(0.5, trials) else {
        return 1.0;
    };
    // P(X ≥ far) = sf(far − 1); symmetric at p = 1/2.
    (2.0 * bin.sf(far - 1)).min(1.0)
}

/// The certified ℓ2 radius σ·Φ⁻¹(p̲) for a lower bound `p_lower` on the top class's
/// probability; meaningful when `p_lower ≥ 1/2`.
pub fn radius(sigma: Sigma, p_lower: f64) -> f64 {
    sigma.get() * normal_quantile(p_lower)
}

/// The largest radius `n` estimation draws can certify: all `n` agree, so
/// p̲ = α^{1/n} and R = σ·Φ⁻¹(α^{1/n}). `None` when even that bound is below 1/2.
pub fn max_certifiable_radius(sigma: Sigma, alpha: Alpha, n: u64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let p = alpha.get().powf(1.0 / n as f64);
    (p >= 0.5).then(|| radius(sigma, p))
}

/// The smallest number of estimation draws that can certify `target` (all draws agreeing),
/// or `None` for a negative or non-finite target.
pub fn min_draws_for_radius(sigma: Sigma, alpha: Alpha, target: f64) -> Option<u64> {
    if !(target.is_finite() && target >= 0.0) {
        return None;
    }
    let q = normal_cdf(target / sigma.get());
    if q >= 1.0 {
        return None; // Φ(R/σ) rounds to 1: no finite sample reaches it in double precision.
    }
    let guess = (alpha.get().ln() / q.ln()).ceil().max(1.0);
    if !guess.is_finite() || guess > 1e15 {
        return None;
    }
    let mut n = guess as u64;
    let reaches = |n: u64| max_certifiable_radius(sigma, alpha, n).is_some_and(|r| r >= target);
    while !reaches(n) {
        n += 1;
    }
    while n > 1 && reaches(n - 1) {
        n -= 1;
    }
    Some(n)
}

/// The fewest estimation draws with which an image whose draws agree with probability
/// `p_a` is certified at `target` with probability at least `power` (exact binomial:
/// certified means `clopper_pearson_lower(n_A, n, α) ≥ Φ(target/σ)`). `None` when no n can
/// (p_A ≤ Φ(target/σ): the smoothed classifier itself falls short of that radius) or when
/// more than ten million draws would be needed.
pub fn draws_for_power(
    sigma: Sigma,
    alpha: Alpha,
    target: f64,
    p_a: f64,
    power: f64,
) -> Option<u64> {
    let q = normal_cdf(target / sigma.get());
    if !(p_a > q && p_a <= 1.0 && power > 0.0 && power < 1.0) {
        return None;
    }
    // The fewest agreeing draws of n that certify, if any.
    let needed = |n: u64| -> Option<u64> {
        if clopper_pearson_lower(n, n, alpha) < q {
            return None;
        }
        let (mut lo, mut hi) = (0u64, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if clopper_pearson_lower(mid, n, alpha) >= q {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    };
    let chance = |n: u64| -> f64 {
        match needed(n) {
            None => 0.0,
            Some(0) => 1.0,
            Some(k) => match Binomial::new(p_a, n) {
                Ok(b) => 1.0 - b.cdf(k - 1),
                Err(_) => 0.0,
            },
        }
    };
    let mut lo = min_draws_for_radius(sigma, alpha, target)?;
    if chance(lo) >= power {
        return Some(lo);
    }
    // Grow until it is enough, then narrow down (the chance grows with n but for the
    // binomial's steps: the answer is the smallest n found, within the last doubling).
    let mut hi = lo;
    while chance(hi) < power {
        lo = hi;
        hi = hi.saturating_mul(2);
        if hi > 10_000_000 {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if chance(mid) >= power {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs()
    }

    fn a(alpha: f64) -> Alpha {
        Alpha::new(alpha).unwrap()
    }

    fn s(sigma: f64) -> Sigma {
        Sigma::new(sigma).unwrap()
    }

    // from scipy.stats import beta, norm
    // for k, n in [(66,100), (100,100), (990,1000), (999,1000), (9990,10000), (1,10), (5000,10000)]:
    //     p = beta.ppf(0.001, k, n - k + 1); print(k, n, repr(p), repr(0.25 * norm.ppf(p)))
    const CP_REFERENCE: [(u64, u64, f64, f64); 7] = [
        (66, 100, 0.5016499513368726, 0.0010339566158333888),
        (100, 100, 0.933254300796991, 0.3751187560301591),
        (990, 1000, 0.9760361871553114, 0.49450239553529984),
        (999, 1000, 0.9908045023646124, 0.5894126426487887),
        (9990, 10000, 0.9975883080325683, 0.7046495750995613),
        (1, 10, 0.00010004502852067863, -0.9297256893630772),
        (5000, 10000, 0.484502946113578, -0.009713781991284344),
    ];

    #[test]
    fn clopper_pearson_matches_scipy() {
        for (k, n, p, r) in CP_REFERENCE {
            let got = clopper_pearson_lower(k, n, a(0.001));
            assert!(close(got, p, 1e-10), "{k}/{n}: {got} vs {p}");
            let got_r = radius(s(0.25), got);
            assert!(close(got_r, r, 1e-8), "{k}/{n}: R {got_r} vs {r}");
        }
        assert_eq!(clopper_pearson_lower(0, 100, a(0.001)), 0.0);
    }

    #[test]
    fn issue_reference_values() {
        // The values quoted in issue #2 (10 significant digits).
        let cp = |k, n| clopper_pearson_lower(k, n, a(0.001));
        assert!(close(cp(66, 100), 0.5016499513, 1e-8));
        assert!(close(radius(s(0.25), cp(66, 100)), 0.0010339566, 1e-7));
        assert!(close(cp(100, 100), 0.9332543008, 1e-8));
        assert!(close(radius(s(0.25), cp(100, 100)), 0.3751187560, 1e-8));
        assert!(close(cp(990, 1000), 0.9760361872, 1e-8));
        assert!(close(radius(s(0.25), cp(990, 1000)), 0.4945023955, 1e-8));
        assert!(cp(50, 100) < 0.5);
    }

    // from scipy.stats import binomtest
    // binomtest(60, 100, 0.5).pvalue, binomtest(70, 100, 0.5).pvalue,
    // binomtest(3, 3).pvalue, binomtest(900, 1000).pvalue
    #[test]
    fn binomial_test_matches_scipy() {
        assert!(close(
            binomial_test_half(60, 100),
            0.05688793364098089,
            1e-10
        ));
        assert!(close(
            binomial_test_half(40, 100),
            0.05688793364098089,
            1e-10
        ));
        assert!(close(
            binomial_test_half(70, 100),
            7.85013964559367e-05,
            1e-9
        ));
        assert!(close(binomial_test_half(3, 3), 0.25, 1e-12));
        assert!(close(
            binomial_test_half(900, 1000),
            1.3403435580012363e-161,
            1e-8
        ));
        assert_eq!(binomial_test_half(50, 100), 1.0);
        assert_eq!(binomial_test_half(0, 0), 1.0);
    }

    #[test]
    fn normal_quantile_and_cdf_invert() {
        // norm.ppf(0.975) = 1.959963984540054
        assert!(close(normal_quantile(0.975), 1.959963984540054, 1e-13));
        assert_eq!(normal_quantile(0.5), 0.0);
        for z in [-3.0, -0.5, 0.0, 0.1, 2.5] {
            let back = normal_quantile(normal_cdf(z));
            assert!((back - z).abs() < 1e-10, "{z}: {back}");
        }
        assert!(normal_quantile(0.0).is_infinite() && normal_quantile(1.0).is_infinite());
    }

    #[test]
    fn max_radius_and_min_draws_are_inverse() {
        let (sigma, alpha) = (s(0.25), a(0.001));
        // All 100 agree: the p̲ of 100/100.
        let r = max_certifiable_radius(sigma, alpha, 100).unwrap();
        assert!(close(r, 0.3751187560301591, 1e-12));
        // α^{1/9} < 1/2 < α^{1/10}: nine draws can never certify at α = 0.001.
        assert_eq!(max_certifiable_radius(sigma, alpha, 9), None);
        assert!(max_certifiable_radius(sigma, alpha, 10).is_some());
        assert_eq!(min_draws_for_radius(sigma, alpha, 0.0), Some(10));
        assert_eq!(min_draws_for_radius(sigma, alpha, r), Some(100));
        for target in [0.05, 0.25, 0.5, 0.75] {
            let n = min_draws_for_radius(sigma, alpha, target).unwrap();
            assert!(max_certifiable_radius(sigma, alpha, n).unwrap() >= target);
            assert!(max_certifiable_radius(sigma, alpha, n - 1).is_none_or(|r| r < target));
        }
        assert_eq!(min_draws_for_radius(sigma, alpha, -1.0), None);
    }

    #[test]
    fn draws_for_power_are_enough_and_not_much_more() {
        let (sig, al) = (s(0.25), a(0.001));
        // All draws agreeing: the bare minimum.
        assert_eq!(
            draws_for_power(sig, al, 0.25, 1.0, 0.9),
            min_draws_for_radius(sig, al, 0.25)
        );
        // p_A at or under Φ(R/σ) = 0.8413: no n.
        assert_eq!(draws_for_power(sig, al, 0.25, 0.84, 0.9), None);
        for p_a in [0.9, 0.95, 0.99] {
            let n = draws_for_power(sig, al, 0.25, p_a, 0.9).unwrap();
            // Checked by simulation: at n, about 90% certify; at n / 2 clearly fewer.
            let rate = |n: u64| {
                use rand::{Rng, SeedableRng};
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n);
                let q = normal_cdf(1.0);
                let runs = 4000;
                let ok = (0..runs)
                    .filter(|_| {
                        let k = (0..n).filter(|_| rng.random::<f64>() < p_a).count() as u64;
                        clopper_pearson_lower(k, n, al) >= q
                    })
                    .count();
                ok as f64 / runs as f64
            };
            assert!(rate(n) >= 0.87, "p_A {p_a}: n {n}, rate {}", rate(n));
            assert!(
                rate(n / 2) < 0.87,
                "p_A {p_a}: n/2 {} rate {}",
                n / 2,
                rate(n / 2)
            );
        }
    }
}
