//! Validated parameters: a value of these types is always usable.
//!
//! Following ripgrep's `RegexMatcherBuilder::build`, checks happen where values are built,
//! so no invalid σ, α or sample count can be held anywhere downstream.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Noise level σ of the smoothing distribution N(0, σ²I), in `[0, 1]` pixel units:
/// [`MIN_SIGMA`] `≤ σ ≤ 1` (the images themselves span 1; more noise than that carries no
/// image).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Sigma(f64);

/// The smallest σ accepted: half an 8-bit step (1/510 ≈ 0.00196) rounded up. Below it
/// the noise is mostly rounded away when a copy is encoded for a vendor, and the radius
/// (at most a few σ) is too small to mean anything; such a run would be paid for nothing.
pub const MIN_SIGMA: f64 = 0.002;

impl Sigma {
    /// Checks [`MIN_SIGMA`] `≤ σ ≤ 1`.
    pub fn new(value: f64) -> Result<Sigma> {
        if (MIN_SIGMA..=1.0).contains(&value) {
            Ok(Sigma(value))
        } else if value > 0.0 && value < MIN_SIGMA {
            Err(Error::InvalidParameter {
                name: "sigma",
                reason: format!(
                    "{value} is below {MIN_SIGMA}, half an 8-bit step: the noise would mostly \
                     be rounded away before the classifier sees it"
                ),
            })
        } else {
            Err(Error::InvalidParameter {
                name: "sigma",
                reason: format!("must lie in (0, 1] (pixel units), got {value}"),
            })
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Sigma {
    type Error = Error;
    fn try_from(value: f64) -> Result<Sigma> {
        Sigma::new(value)
    }
}

impl From<Sigma> for f64 {
    fn from(s: Sigma) -> f64 {
        s.0
    }
}

/// Failure probability α of a certificate: `0 < α < 0.5` (a certificate allowed to be
/// wrong half the time or more says nothing; the usual value is 0.001).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Alpha(f64);

impl Alpha {
    /// Checks `0 < α < 0.5`.
    pub fn new(value: f64) -> Result<Alpha> {
        if value > 0.0 && value < 0.5 {
            Ok(Alpha(value))
        } else if (0.5..1.0).contains(&value) {
            Err(Error::InvalidParameter {
                name: "alpha",
                reason: format!(
                    "{value} would let a certificate be wrong with probability {value}: it must \
                     be below 0.5 (the usual value is 0.001)"
                ),
            })
        } else {
            Err(Error::InvalidParameter {
                name: "alpha",
                reason: format!("must lie strictly between 0 and 0.5, got {value}"),
            })
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Alpha {
    type Error = Error;
    fn try_from(value: f64) -> Result<Alpha> {
        Alpha::new(value)
    }
}

impl From<Alpha> for f64 {
    fn from(a: Alpha) -> f64 {
        a.0
    }
}

/// How many noisy images go to the base classifier in one call unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Most draws one certification may make, all counts together (2^40 ≈ 1.1 × 10^12: more
/// than any budget buys, and small enough that no sum, product with a price, or conversion
/// to `usize` or `f64` of a draw count can overflow or lose precision).
pub const MAX_DRAWS: u64 = 1 << 40;

fn positive(name: &'static str, value: u64) -> Result<u64> {
    if value == 0 {
        Err(Error::InvalidParameter {
            name,
            reason: "must be at least 1".into(),
        })
    } else if value > MAX_DRAWS {
        Err(Error::InvalidParameter {
            name,
            reason: format!("must be at most {MAX_DRAWS}, got {value}"),
        })
    } else {
        Ok(value)
    }
}

/// `a + b` draws, refused past [`MAX_DRAWS`] (and never wrapped).
pub(crate) fn total_draws(names: &'static str, a: u64, b: u64) -> Result<u64> {
    match a.checked_add(b) {
        Some(sum) if sum <= MAX_DRAWS => Ok(sum),
        _ => Err(Error::InvalidParameter {
            name: names,
            reason: format!("{a} + {b} draws are more than the {MAX_DRAWS} allowed"),
        }),
    }
}

/// Parameters of CERTIFY (Cohen et al. 2019, Algorithm "CERTIFY").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CertifyParams {
    sigma: Sigma,
    n0: u64,
    n: u64,
    alpha: Alpha,
    batch_size: usize,
}

impl CertifyParams {
    /// `n0` selection draws pick the candidate label, `n` separate estimation draws bound
    /// its probability at confidence `1 − alpha`. Both counts must be ≥ 1.
    pub fn new(sigma: f64, n0: u64, n: u64, alpha: f64) -> Result<CertifyParams> {
        total_draws("n0 + n", positive("n0", n0)?, positive("n", n)?)?;
        Ok(CertifyParams {
            sigma: Sigma::new(sigma)?,
            n0,
            n,
            alpha: Alpha::new(alpha)?,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Draws per classifier call (≥ 1). Batching changes cost and speed, never the result:
    /// draw `i` gets the same noise whatever the batch size.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<CertifyParams> {
        self.batch_size = positive("batch_size", batch_size as u64)? as usize;
        Ok(self)
    }

    /// σ.
    pub fn sigma(&self) -> Sigma {
        self.sigma
    }
    /// Selection draws.
    pub fn n0(&self) -> u64 {
        self.n0
    }
    /// Estimation draws.
    pub fn n(&self) -> u64 {
        self.n
    }
    /// Every draw the certification sends: `n0 + n` (checked when built: never wraps).
    pub fn draws(&self) -> u64 {
        self.n0 + self.n
    }
    /// α.
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }
    /// Draws per classifier call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

/// Parameters of PREDICT (Cohen et al. 2019, Algorithm "PREDICT").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PredictParams {
    sigma: Sigma,
    n: u64,
    alpha: Alpha,
    batch_size: usize,
}

impl PredictParams {
    /// `n` draws; the top label is returned unless a two-sided binomial test of the top two
    /// counts has p-value > `alpha`.
    pub fn new(sigma: f64, n: u64, alpha: f64) -> Result<PredictParams> {
        Ok(PredictParams {
            sigma: Sigma::new(sigma)?,
            n: positive("n", n)?,
            alpha: Alpha::new(alpha)?,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Draws per classifier call (≥ 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<PredictParams> {
        self.batch_size = positive("batch_size", batch_size as u64)? as usize;
        Ok(self)
    }

    /// σ.
    pub fn sigma(&self) -> Sigma {
        self.sigma
    }
    /// Draws.
    pub fn n(&self) -> u64 {
        self.n
    }
    /// Every draw the prediction sends (`n`).
    pub fn draws(&self) -> u64 {
        self.n
    }
    /// α.
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }
    /// Draws per classifier call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meaningless_certificates_are_refused() {
        // σ = 5e-324 was accepted and paid for; α near 1 certified at radius 1.45.
        for s in [5e-324, 1e-9, 0.001, 0.0019] {
            let e = Sigma::new(s).unwrap_err().to_string();
            assert!(e.contains("half an 8-bit step"), "{s}: {e}");
        }
        assert!(Sigma::new(MIN_SIGMA).is_ok());
        for a in [0.5, 0.9, 0.99999999] {
            let e = Alpha::new(a).unwrap_err().to_string();
            assert!(e.contains("below 0.5"), "{a}: {e}");
        }
        assert!(Alpha::new(0.499).is_ok() && Alpha::new(0.001).is_ok());
        // A target radius that max_draws can never reach, even if all of them agree.
        let e = crate::SequentialParams::new(0.25, 10, 100, 0.001, Some(1.0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot be reached") && e.contains("draws are needed"),
            "{e}"
        );
        assert!(crate::SequentialParams::new(0.25, 10, 100, 0.001, Some(0.3)).is_ok());
    }

    #[test]
    fn invalid_values_cannot_be_built() {
        for s in [0.0, -0.25, f64::NAN, f64::INFINITY, 1e300, 1.0001] {
            assert!(Sigma::new(s).is_err(), "{s}");
        }
        for a in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            assert!(Alpha::new(a).is_err(), "{a}");
        }
        assert!(CertifyParams::new(0.25, 0, 100, 0.001).is_err());
        assert!(CertifyParams::new(0.25, 10, 0, 0.001).is_err());
        assert!(PredictParams::new(0.25, 0, 0.001).is_err());
        let p = CertifyParams::new(0.25, 10, 100, 0.001).unwrap();
        assert!(p.with_batch_size(0).is_err());
        let msg = CertifyParams::new(-1.0, 1, 1, 0.5).unwrap_err().to_string();
        assert!(msg.contains("sigma"), "{msg}");
        assert!(Sigma::new(1.0).is_ok());
    }

    #[test]
    fn draw_counts_never_wrap() {
        // n0 + n = 2^64 + 1 wraps to 1 in u64: the proxy once billed 300 draws as 1.
        let err = CertifyParams::new(0.25, 300, 18446744073709551317, 0.001).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        assert!(CertifyParams::new(0.25, MAX_DRAWS, 1, 0.001).is_err());
        assert!(CertifyParams::new(0.25, MAX_DRAWS / 2, MAX_DRAWS / 2 + 1, 0.001).is_err());
        let p = CertifyParams::new(0.25, MAX_DRAWS / 2, MAX_DRAWS / 2, 0.001).unwrap();
        assert_eq!(p.draws(), MAX_DRAWS);
        assert!(PredictParams::new(0.25, MAX_DRAWS + 1, 0.001).is_err());
        assert!(PredictParams::new(0.25, u64::MAX, 0.001).is_err());
    }

    #[test]
    fn serde_refuses_invalid_values() {
        assert!(serde_json::from_str::<Sigma>("0.5").is_ok());
        assert!(serde_json::from_str::<Sigma>("-0.5").is_err());
        assert!(serde_json::from_str::<Alpha>("1.0").is_err());
    }

    proptest::proptest! {
        /// Whatever counts the command line or the proxy passes, a built parameter set
        /// declares exactly the draws asked for (never a wrapped sum) and at most
        /// `MAX_DRAWS`; everything else is refused.
        #[test]
        fn built_params_declare_exactly_the_draws_asked(
            n0 in proptest::prop_oneof![0u64..100, proptest::prelude::any::<u64>()],
            n in proptest::prop_oneof![0u64..100, proptest::prelude::any::<u64>()],
        ) {
            let exact = u128::from(n0) + u128::from(n);
            match CertifyParams::new(0.25, n0, n, 0.001) {
                Ok(p) => {
                    proptest::prop_assert_eq!(u128::from(p.draws()), exact);
                    proptest::prop_assert!(p.draws() <= MAX_DRAWS);
                }
                Err(_) => proptest::prop_assert!(n0 == 0 || n == 0 || exact > u128::from(MAX_DRAWS)),
            }
            // r = 0.1 at σ = 0.25 needs 17 draws agreeing: fewer can never reach it.
            let reach = crate::stats::min_draws_for_radius(Sigma::new(0.25).unwrap(), Alpha::new(0.001).unwrap(), 0.1).unwrap();
            proptest::prop_assert_eq!(reach, 17);
            match crate::SequentialParams::new(0.25, n0, n, 0.001, Some(0.1)) {
                Ok(p) => proptest::prop_assert_eq!(u128::from(p.draws()), exact),
                Err(_) => proptest::prop_assert!(n0 == 0 || n < reach || exact > u128::from(MAX_DRAWS)),
            }
        }
    }
}
