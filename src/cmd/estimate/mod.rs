//! `robustify estimate`: the cost dry run — nothing is sent. Fixed n here; `--mode
//! sequential` in [`sequential`]; without `--n0/--n`, [`recommend`]'s table.

use std::process::ExitCode;

use robustify_pipeline::estimate::FixedJob;
use robustify_providers::ProviderDef;
use robustify_smoothing::CertifyParams;
use robustify_smoothing::stats::min_draws_for_radius;

use super::sequential::{Mode, SequenceArg};

mod recommend;
mod sequential;
use crate::render::outln;
use crate::render::{self, thousands};

/// Arguments of `robustify estimate`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Provider name (see `robustify providers`) or path to a definition file.
    #[arg(long)]
    provider: String,
    /// Images to certify.
    #[arg(long)]
    images: u64,
    /// Selection draws per image (with --n; leave both out, with --target-radius, for a
    /// recommendation).
    #[arg(long, requires = "n")]
    n0: Option<u64>,
    /// Estimation draws per image (with --n0).
    #[arg(long, requires = "n0")]
    n: Option<u64>,
    /// Seconds a vendor takes to answer one request, assumed for the time estimates
    /// (milliseconds).
    #[arg(long, default_value_t = 300.0)]
    latency_ms: f64,
    /// Noise level σ.
    #[arg(long, default_value_t = 0.25)]
    sigma: f64,
    /// Failure probability α.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Also report the smallest n that can certify this radius.
    #[arg(long)]
    target_radius: Option<f64>,
    /// Count the provider's free monthly units (assumes none used yet this month).
    #[arg(long)]
    free_tier: bool,
    /// Add one clean (noise-free) query per image, as the paper's API protocol does to
    /// get the reference label.
    #[arg(long)]
    clean_query: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// `sequential`: forecast the draws sequential certification at --target-radius would
    /// use (at most --n per image), from assumed p_A values or a replay log.
    #[arg(long, value_enum, default_value = "fixed")]
    mode: Mode,
    /// Sequential forecast: assumed probabilities that a draw agrees with the candidate,
    /// comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.9, 0.99, 0.999])]
    p_a: Vec<f64>,
    /// Sequential forecast: replay this log (the paper's format or a query log) instead of
    /// assuming p_A.
    #[arg(long)]
    from_log: Option<std::path::PathBuf>,
    /// Sequential forecast: the confidence sequence.
    #[arg(long, value_enum, default_value = "betting")]
    sequence: SequenceArg,
    /// Sequential forecast: draws per check (the provider's batch).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    robustify_pipeline::estimate::check(args.images, args.target_radius, args.latency_ms)?;
    let def = ProviderDef::load(&args.provider)?;
    let (Some(n0), Some(n)) = (args.n0, args.n) else {
        return recommend::run(&args_view(&args), &def);
    };
    let params = CertifyParams::new(args.sigma, n0, n, args.alpha)?;
    if args.mode == Mode::Sequential {
        return sequential::run(&args, &def, n0, n);
    }
    let e = robustify_pipeline::estimate::fixed(
        &def,
        &FixedJob {
            images: args.images,
            params,
            clean_query: args.clean_query,
            free_tier: args.free_tier,
            latency_ms: args.latency_ms,
            target_radius: args.target_radius,
        },
    )?;
    if args.json {
        render::print_json(&e)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (k, clean, queries, requests) = (e.images, e.clean_queries > 0, e.queries, e.requests);
    let (cost, seconds, min_seconds) = (e.cost_usd, e.seconds, e.min_seconds);
    outln!("provider    {} — {}", def.name, def.description)?;
    let clean_note = if clean { " + 1 clean" } else { "" };
    outln!(
        "queries     {} = {} images × ({} selection + {} estimation{clean_note})",
        thousands(queries),
        thousands(k),
        thousands(n0),
        thousands(n)
    )?;
    if clean {
        outln!(
            "            includes {} clean queries for the reference label",
            thousands(k)
        )?;
    }
    outln!(
        "requests    {} ({} image(s) per request)",
        thousands(requests),
        def.limits.images_per_request
    )?;
    let free_note = if args.free_tier {
        format!(
            "the first {} units free",
            thousands(def.pricing.free_units_per_month)
        )
    } else {
        "free tier not counted; --free-tier counts it".to_owned()
    };
    let verified = if def.pricing.verified {
        ""
    } else {
        "; UNVERIFIED prices"
    };
    outln!("cost        ${cost:.2} ({free_note}{verified})")?;
    outln!(
        "time        {} ({} at {} requests/s, {} in flight, {} ms a request assumed: --latency-ms)",
        duration(seconds),
        if seconds > min_seconds + 1e-9 {
            "latency-bound"
        } else {
            "rate-bound"
        },
        def.limits.requests_per_second,
        def.limits.max_concurrency,
        args.latency_ms
    )?;
    match e.max_radius {
        Some(r) => outln!(
            "max radius  {r:.4} (σ = {}, α = {}: all {n} estimation draws agree)",
            args.sigma,
            args.alpha,
        )?,
        None => outln!(
            "max radius  none: {n} draws cannot certify anything at α = {} (need ≥ {})",
            args.alpha,
            min_draws_for_radius(params.sigma(), params.alpha(), 0.0).unwrap_or(0)
        )?,
    }
    if let (Some(r), Some(n)) = (args.target_radius, e.n_for_target_radius) {
        match n {
            Some(n) => outln!(
                "target      radius {r} is out of reach below n = {}, and then only if every \
                 draw agrees; leave out --n0/--n for the n an image with a given p_A needs",
                thousands(n)
            )?,
            None => outln!(
                "target      radius {r} is out of reach at σ = {}",
                args.sigma
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The view of the flags a recommendation needs.
fn args_view(a: &Args) -> recommend::Asked {
    recommend::Asked {
        images: a.images,
        sigma: a.sigma,
        alpha: a.alpha,
        target_radius: a.target_radius,
        free_tier: a.free_tier,
        latency_ms: a.latency_ms,
        p_a: a.p_a.clone(),
        sequence: a.sequence.into(),
        json: a.json,
    }
}

/// A duration for people: seconds, minutes or hours.
pub fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}
