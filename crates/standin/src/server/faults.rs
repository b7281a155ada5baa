//! Seeded, reproducible fault injection.

use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How often each fault happens, per request. Rates add up to at most 1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Share of requests answered with the vendor's 5xx error.
    pub fail_rate: f64,
    /// Share of requests never answered (the client's timeout must fire).
    pub timeout_rate: f64,
    /// Share of requests answered 200 with a malformed JSON body.
    pub garbage_rate: f64,
    /// Share of requests answered with the vendor's throttling response.
    pub throttle_rate: f64,
    /// Extra latency before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Seed of the fault sequence: the k-th request to arrive gets the same fate each run.
    pub seed: u64,
}

impl FaultConfig {
    /// Checks each rate is in `[0, 1]` and their sum ≤ 1.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            self.fail_rate,
            self.timeout_rate,
            self.garbage_rate,
            self.throttle_rate,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) || rates.iter().sum::<f64>() > 1.0 + 1e-12
        {
            return Err("fault rates must each be in [0, 1] and sum to at most 1".into());
        }
        Ok(())
    }
}

/// The fate of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// 5xx.
    Fail,
    /// Never answer.
    Timeout,
    /// Malformed body.
    Garbage,
    /// Throttled.
    Throttle,
}

/// Draws a [`Fault`] per request from a seeded generator.
pub struct Faults {
    config: FaultConfig,
    rng: Mutex<ChaCha8Rng>,
}

impl Faults {
    /// A fault source for `config`.
    pub fn new(config: FaultConfig) -> Faults {
        Faults {
            config,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The next request's fate.
    pub fn next(&self) -> Fault {
        let c = &self.config;
        if c.fail_rate + c.timeout_rate + c.garbage_rate + c.throttle_rate == 0.0 {
            return Fault::None;
        }
        let u: f64 = match self.rng.lock() {
            Ok(mut rng) => rng.random(),
            Err(poisoned) => poisoned.into_inner().random(),
        };
        let mut edge = c.fail_rate;
        if u < edge {
            return Fault::Fail;
        }
        edge += c.timeout_rate;
        if u < edge {
            return Fault::Timeout;
        }
        edge += c.garbage_rate;
        if u < edge {
            return Fault::Garbage;
        }
        edge += c.throttle_rate;
        if u < edge {
            return Fault::Throttle;
        }
        Fault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_reproducibility() {
        let cfg = FaultConfig {
            fail_rate: 0.1,
            timeout_rate: 0.05,
            garbage_rate: 0.05,
            throttle_rate: 0.2,
            seed: 9,
            ..Default::default()
        };
        let a: Vec<Fault> = {
            let f = Faults::new(cfg);
            (0..20_000).map(|_| f.next()).collect()
        };
        let b: Vec<Fault> = {
            let f = Faults::new(cfg);
            (0..20_000).map(|_| f.next()).collect()
        };
        assert_eq!(a, b);
        let share = |k| a.iter().filter(|f| **f == k).count() as f64 / 20_000.0;
        // 3 standard errors at n = 20,000 are below 0.009 for every rate here.
        assert!((share(Fault::Fail) - 0.1).abs() < 0.009);
        assert!((share(Fault::Timeout) - 0.05).abs() < 0.007);
        assert!((share(Fault::Garbage) - 0.05).abs() < 0.007);
        assert!((share(Fault::Throttle) - 0.2).abs() < 0.009);
        assert!(
            FaultConfig {
                fail_rate: 0.7,
                timeout_rate: 0.7,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert_eq!(Faults::new(FaultConfig::default()).next(), Fault::None);
    }
}
