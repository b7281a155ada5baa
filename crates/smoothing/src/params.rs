//! Validated parameters: a value of these types is always usable.
//!
//! Following ripgrep's `RegexMatcherBuilder::build`, checks happen where values are built,
//! so no invalid σ, α or sample count can be held anywhere downstream.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Noise level σ of the smoothing distribution N(0, σ²I), in `[0, 1]` pixel units:
/// `0 < σ ≤ 1` (the images themselves span 1; more noise than that carries no image).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Sigma(f64);

impl Sigma {
    /// Checks `0 < σ ≤ 1`.
    pub fn new(value: f64) -> Result<Sigma> {
        if value > 0.0 && value <= 1.0 {
            Ok(Sigma(value))
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

/// Failure probability α of a certificate; strictly between 0 and 1.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Alpha(f64);

impl Alpha {
    /// Checks `0 < α < 1`.
    pub fn new(value: f64) -> Result<Alpha> {
        if value > 0.0 && value < 1.0 {
            Ok(Alpha(value))
        } else {
            Err(Error::InvalidParameter {
                name: "alpha",
                reason: format!("must lie strictly between 0 and 1, got {value}"),
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
            match crate::SequentialParams::new(0.25, n0, n, 0.001, Some(0.1)) {
                Ok(p) => proptest::prop_assert_eq!(u128::from(p.draws()), exact),
                Err(_) => proptest::prop_assert!(n0 == 0 || n == 0 || exact > u128::from(MAX_DRAWS)),
            }
        }
    }
}
