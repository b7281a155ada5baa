//! Pricing a fixed-n job before paying for it: queries, requests, dollars, time and the
//! largest radius it can reach — nothing is sent.

use robustify_providers::ProviderDef;
use robustify_smoothing::CertifyParams;
use robustify_smoothing::stats::{max_certifiable_radius, min_draws_for_radius};
use serde::Serialize;

use crate::{Error, Result};

/// A fixed-n job to price.
#[derive(Clone, Debug, PartialEq)]
pub struct FixedJob {
    /// Images to certify.
    pub images: u64,
    /// σ, n0, n and α.
    pub params: CertifyParams,
    /// One clean (noise-free) query per image for the reference label.
    pub clean_query: bool,
    /// Count the provider's free monthly units.
    pub free_tier: bool,
    /// Milliseconds a vendor takes per request, assumed.
    pub latency_ms: f64,
    /// Also find the smallest n that can certify this radius.
    pub target_radius: Option<f64>,
}

/// The price of a [`FixedJob`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FixedEstimate {
    /// The provider.
    pub provider: String,
    /// Images.
    pub images: u64,
    /// Billed images in all, clean queries included.
    pub queries: u64,
    /// Of those, clean queries.
    pub clean_queries: u64,
    /// Requests (each image's selection and estimation batched apart).
    pub requests: u64,
    /// Dollars.
    pub cost_usd: f64,
    /// Whether the definition's prices were checked against the vendor's page.
    pub prices_verified: bool,
    /// The least time at the sustained request rate.
    pub min_seconds: f64,
    /// σ.
    pub sigma: f64,
    /// α.
    pub alpha: f64,
    /// The radius when every estimation draw agrees; `null` when even that cannot
    /// certify at α.
    pub max_radius: Option<f64>,
    /// The smallest n that can certify the target radius (`null` inside: out of reach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_for_target_radius: Option<Option<u64>>,
    /// Time at the vendor's rate, its concurrency and the assumed latency.
    pub seconds: f64,
    /// The assumed latency.
    pub latency_ms: f64,
}

fn bad(m: String) -> Error {
    Error::Config(format!("invalid parameter {m}"))
}

/// Refuses what no estimate can use: no images, a target radius or latency that is not a
/// finite number ≥ 0.
pub fn check(images: u64, target_radius: Option<f64>, latency_ms: f64) -> Result<()> {
    if images == 0 {
        return Err(bad("images: must be at least 1".into()));
    }
    if let Some(r) = target_radius
        && !(r.is_finite() && r >= 0.0)
    {
        return Err(bad(format!(
            "target-radius: must be finite and ≥ 0, got {r}"
        )));
    }
    if !(latency_ms.is_finite() && latency_ms >= 0.0) {
        return Err(bad("latency-ms: must be finite and ≥ 0".into()));
    }
    Ok(())
}

/// Prices `job` at `def`'s tiers, limits and the assumed latency. Every product is
/// checked: a hostile image count cannot wrap the bill to a small number.
pub fn fixed(def: &ProviderDef, job: &FixedJob) -> Result<FixedEstimate> {
    check(job.images, job.target_radius, job.latency_ms)?;
    let p = &job.params;
    let k = job.images;
    let clean = u64::from(job.clean_query);
    let too_many = || {
        bad(format!(
            "images: {k} images × {} queries is more than can be counted",
            p.draws() + clean
        ))
    };
    let queries = k.checked_mul(p.draws() + clean).ok_or_else(too_many)?;
    let requests = k
        .checked_mul(def.limits.requests_for(p.n0()) + def.limits.requests_for(p.n()) + clean)
        .ok_or_else(too_many)?;
    Ok(FixedEstimate {
        provider: def.name.clone(),
        images: k,
        queries,
        clean_queries: k * clean,
        requests,
        cost_usd: def.pricing.cost_usd(queries, job.free_tier),
        prices_verified: def.pricing.verified,
        min_seconds: def.limits.min_seconds(requests),
        sigma: p.sigma().get(),
        alpha: p.alpha().get(),
        max_radius: max_certifiable_radius(p.sigma(), p.alpha(), p.n()),
        n_for_target_radius: job
            .target_radius
            .map(|r| min_draws_for_radius(p.sigma(), p.alpha(), r)),
        // From the requests counted above, so the time agrees with the requests line.
        seconds: def
            .limits
            .seconds_for_requests(job.latency_ms, requests as f64),
        latency_ms: job.latency_ms,
    })
}
