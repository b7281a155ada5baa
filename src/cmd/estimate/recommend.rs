//! `robustify estimate --target-radius R` without `--n0/--n`: what a buyer asks ("certify
//! 1,000 images at radius 0.25 on Google: how many queries, what cost, how long?"),
//! answered for a few assumed p_A — the chance that a noisy draw agrees with the image's
//! label — with fixed n (CERTIFY) and sequential certification side by side.

use std::process::ExitCode;

use anyhow::Context;
use robustify_providers::ProviderDef;
use robustify_smoothing::stats::{draws_for_power, normal_cdf};
use robustify_smoothing::{Alpha, SequenceKind, SequentialParams, Sigma, forecast};
use serde::Serialize;

use super::duration;
use crate::render::{self, outln, thousands};

/// Selection draws recommended: enough to pick the top label when it is a clear majority
/// (p_A ≥ 0.7: a wrong pick with 10 draws is under 5%), cheap beside n.
const N0: u64 = 10;
/// The share of images with the assumed p_A that the recommended n certifies.
const POWER: f64 = 0.9;

/// What the recommendation needs of the flags.
pub struct Asked {
    pub images: u64,
    pub sigma: f64,
    pub alpha: f64,
    pub target_radius: Option<f64>,
    pub free_tier: bool,
    pub latency_ms: f64,
    pub p_a: Vec<f64>,
    pub sequence: SequenceKind,
    pub json: bool,
}

#[derive(Serialize)]
struct Plan {
    queries_per_image: f64,
    cost_usd: f64,
    seconds: f64,
}

#[derive(Serialize)]
struct Row {
    p_a: f64,
    /// `null` when no n certifies at the radius with this p_A.
    n0: Option<u64>,
    n: Option<u64>,
    fixed: Option<Plan>,
    sequential: Option<Plan>,
    /// Share of such images the sequential run certifies (simulated).
    sequential_certified: Option<f64>,
}

#[derive(Serialize)]
struct Recommendation {
    provider: String,
    images: u64,
    target_radius: f64,
    sigma: f64,
    alpha: f64,
    /// p_A must exceed this for the radius to be certifiable at all: Φ(R/σ).
    p_needed: f64,
    power: f64,
    latency_ms: f64,
    rows: Vec<Row>,
}

pub fn run(a: &Asked, def: &ProviderDef) -> anyhow::Result<ExitCode> {
    let r = a.target_radius.context(
        "give --n0 and --n, or leave both out and give --target-radius for a recommendation",
    )?;
    let (sigma, alpha) = (Sigma::new(a.sigma)?, Alpha::new(a.alpha)?);
    let k = a.images as f64;
    let plan = |per_image: f64| Plan {
        queries_per_image: per_image,
        cost_usd: def
            .pricing
            .cost_usd((per_image * k).ceil() as u64, a.free_tier),
        seconds: def.limits.seconds_for(a.latency_ms, per_image * k),
    };
    let mut rows = Vec::new();
    for &p_a in &a.p_a {
        if !(0.0..=1.0).contains(&p_a) {
            anyhow::bail!("invalid parameter p-a: {p_a} is not a probability");
        }
        let n = draws_for_power(sigma, alpha, r, p_a, POWER);
        let (fixed, sequential, certified) = match n {
            None => (None, None, None),
            Some(n) => {
                // An anytime-valid sequence pays for stopping early with a wider bound: give
                // it room (4 n at most) and report what share it certifies.
                let params = SequentialParams::new(a.sigma, N0, 4 * n, a.alpha, Some(r))?
                    .with_kind(a.sequence)
                    .with_batch_size(def.limits.images_per_request.max(1) as usize)?;
                let f = forecast(&params, p_a, 500, 0)?;
                (
                    // Fixed: its requests counted as `estimate` counts them (selection
                    // and estimation batched apart), not estimated from the queries.
                    Some(Plan {
                        seconds: def.limits.seconds_for_requests(
                            a.latency_ms,
                            k * (def.limits.requests_for(N0) + def.limits.requests_for(n)) as f64,
                        ),
                        ..plan((N0 + n) as f64)
                    }),
                    Some(plan(f.mean_selection + f.mean_draws)),
                    Some(f.certified),
                )
            }
        };
        rows.push(Row {
            p_a,
            n0: n.map(|_| N0),
            n,
            fixed,
            sequential,
            sequential_certified: certified,
        });
    }
    let out = Recommendation {
        provider: def.name.clone(),
        images: a.images,
        target_radius: r,
        sigma: a.sigma,
        alpha: a.alpha,
        p_needed: normal_cdf(r / a.sigma),
        power: POWER,
        latency_ms: a.latency_ms,
        rows,
    };
    if a.json {
        render::print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("provider    {} — {}", def.name, def.description)?;
    outln!(
        "target      {} images at radius {r}, σ = {}, α = {}: certifiable only where p_A > Φ(R/σ) = {:.3}",
        thousands(a.images),
        a.sigma,
        a.alpha,
        out.p_needed
    )?;
    outln!(
        "time        at {} requests/s, {} in flight, {} images a request, {} ms a request assumed (--latency-ms)\n",
        def.limits.requests_per_second,
        def.limits.max_concurrency,
        def.limits.images_per_request,
        a.latency_ms
    )?;
    outln!(
        "{:<7} {:>4} {:>7} │ {:>11} {:>11} {:>10} {:>9} │ {:>11} {:>11} {:>10} {:>9}",
        "p_A",
        "n0",
        "n",
        "fixed q/img",
        "cost $",
        "time",
        "certified",
        "seq. q/img",
        "cost $",
        "time",
        "certified"
    )?;
    for row in &out.rows {
        match (&row.fixed, &row.sequential, row.n) {
            (Some(f), Some(s), Some(n)) => outln!(
                "{:<7} {:>4} {:>7} │ {:>11.0} {:>11.2} {:>10} {:>9} │ {:>11.1} {:>11.2} {:>10} {:>8.0}%",
                row.p_a,
                N0,
                thousands(n),
                f.queries_per_image,
                f.cost_usd,
                duration(f.seconds),
                format!("≥ {:.0}%", 100.0 * POWER),
                s.queries_per_image,
                s.cost_usd,
                duration(s.seconds),
                100.0 * row.sequential_certified.unwrap_or(0.0)
            )?,
            _ => outln!(
                "{:<7} {:>4} {:>7} │ not certifiable at radius {r}: p_A ≤ {:.3}, or more than 10,000,000 draws",
                row.p_a,
                "–",
                "–",
                out.p_needed
            )?,
        }
    }
    outln!(
        "\nn: the fewest estimation draws that certify {:.0}% of images with that p_A at the radius\n\
         (exact binomial); n0 = {N0} picks the label. Sequential: the mean draws of runs that stop\n\
         once decided (at most 4 n), simulated, and the share they certify; it pays off when p_A\n\
         varies from image to image, spending little on the easy ones. p_A is the chance that a\n\
         noisy draw (through the denoiser) keeps the image's label: --mode sequential --from-log\n\
         LOG --n0 … --n … uses measured ones.",
        100.0 * POWER
    )?;
    Ok(ExitCode::SUCCESS)
}
