//! What sequential certification costs on average, by simulation.

use serde::Serialize;

use super::selection::Selection;
use super::sequence::Sequence;
use super::{Decision, SequentialParams, decide};
use crate::{Error, Result};

/// What sequential certification costs on average when each estimation draw agrees with
/// the candidate with probability `p_a`: simulated over `runs` runs (seeded).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SequentialForecast {
    /// The assumed p_A.
    pub p_a: f64,
    /// Mean selection draws per image (whole batches; disagreeing draws all go to one
    /// rival label, the slowest case for the early stop).
    pub mean_selection: f64,
    /// Mean estimation draws per image (whole batches).
    pub mean_draws: f64,
    /// Share of runs that certified at the target radius.
    pub certified: f64,
    /// Share that decided "not certifiable".
    pub not_certifiable: f64,
    /// Share undecided when the draws ran out (or could no longer certify).
    pub undecided: f64,
}

/// Forecasts [`SequentialForecast`] for `p_a` by simulation; needs a target radius.
pub fn forecast(
    params: &SequentialParams,
    p_a: f64,
    runs: u32,
    seed: u64,
) -> Result<SequentialForecast> {
    use rand::{Rng, SeedableRng};
    let Some(p_star) = params.p_star() else {
        return Err(Error::InvalidParameter {
            name: "target_radius",
            reason: "a forecast needs a target radius".into(),
        });
    };
    if !(0.0..=1.0).contains(&p_a) {
        return Err(Error::InvalidParameter {
            name: "p_a",
            reason: "must be in [0, 1]".into(),
        });
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut draws, mut selection, mut cert, mut not) = (0u64, 0u64, 0u32, 0u32);
    for _ in 0..runs.max(1) {
        let mut votes = Selection::new(params);
        while let Some(draws) = votes.next_batch() {
            votes.add(draws.map(|_| if rng.random::<f64>() < p_a { "A" } else { "B" }));
        }
        selection += votes.finish().1;
        let mut seq = Sequence::new(params.kind, params.alpha.get());
        let mut decision = None;
        while seq.n() < params.max_draws && decision.is_none() {
            let stop = params.max_draws.min(seq.n() + params.batch_size as u64);
            while seq.n() < stop {
                seq.observe(rng.random::<f64>() < p_a);
            }
            decision = decide(&seq, p_star, params.max_draws - seq.n());
        }
        draws += seq.n();
        match decision {
            Some(Decision::Certified) => cert += 1,
            Some(Decision::NotCertifiable) => not += 1,
            _ => {}
        }
    }
    let runs = f64::from(runs.max(1));
    Ok(SequentialForecast {
        p_a,
        mean_selection: selection as f64 / runs,
        mean_draws: draws as f64 / runs,
        certified: f64::from(cert) / runs,
        not_certifiable: f64::from(not) / runs,
        undecided: 1.0 - f64::from(cert + not) / runs,
    })
}
