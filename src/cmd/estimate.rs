//! `robustify estimate`: the cost dry run — nothing is sent.

use std::process::ExitCode;

use robustify_providers::ProviderDef;
use robustify_smoothing::stats::{max_certifiable_radius, min_draws_for_radius};
use robustify_smoothing::{
    CertifyParams, Decision, SequenceKind, SequentialParams, certify_sequential_labels, forecast,
};
use serde::Serialize;

use super::sequential::{Mode, SequenceArg};
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

#[derive(Serialize)]
struct ForecastJson {
    provider: String,
    mode: &'static str,
    target_radius: f64,
    sequence: SequenceKind,
    images: u64,
    fixed_queries_per_image: u64,
    forecasts: Vec<ForecastRow>,
}

#[derive(Serialize)]
struct ForecastRow {
    /// Assumed p_A, or null for a replayed log.
    p_a: Option<f64>,
    mean_queries_per_image: f64,
    cost_usd: f64,
    /// Time for all the images at the vendor's rate and the assumed latency.
    seconds: f64,
    certified: f64,
    not_certifiable: f64,
    undecided: f64,
}

/// `--mode sequential`: expected queries and cost of sequential certification.
fn run_sequential(args: &Args, def: &ProviderDef, n0: u64, n: u64) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let r = args
        .target_radius
        .context("--mode sequential needs --target-radius")?;
    let params = SequentialParams::new(args.sigma, n0, n, args.alpha, Some(r))?
        .with_kind(args.sequence.into())
        .with_batch_size(args.batch_size)?;
    let k = args.images;
    let row = |p_a, mean_queries: f64, c, nc, u| ForecastRow {
        p_a,
        mean_queries_per_image: mean_queries,
        cost_usd: def
            .pricing
            .cost_usd((mean_queries * k as f64).ceil() as u64, args.free_tier),
        seconds: seconds_for(def, args.latency_ms, k as f64 * mean_queries),
        certified: c,
        not_certifiable: nc,
        undecided: u,
    };
    let mut rows = Vec::new();
    if let Some(log) = &args.from_log {
        // A query log may mix σ values: replay the one being estimated.
        let records = robustify_providers::replay::read_replay_log_filtered(
            log,
            &robustify_providers::replay::QueryFilter {
                sigma: Some(args.sigma),
                ..Default::default()
            },
        )?;
        let (mut queries, mut c, mut nc) = (0.0, 0.0, 0.0);
        for rec in &records {
            let cert = certify_sequential_labels(&rec.labels, &params)?;
            queries += cert.queries as f64;
            c += f64::from(u8::from(cert.decision == Some(Decision::Certified)));
            nc += f64::from(u8::from(cert.decision == Some(Decision::NotCertifiable)));
        }
        let m = records.len() as f64;
        rows.push(row(None, queries / m, c / m, nc / m, 1.0 - (c + nc) / m));
    } else {
        for &p in &args.p_a {
            let f = forecast(&params, p, 2_000, 0)?;
            rows.push(row(
                Some(p),
                f.mean_selection + f.mean_draws,
                f.certified,
                f.not_certifiable,
                f.undecided,
            ));
        }
    }
    let out = ForecastJson {
        provider: def.name.clone(),
        mode: "sequential",
        target_radius: r,
        sequence: args.sequence.into(),
        images: k,
        fixed_queries_per_image: params.draws(),
        forecasts: rows,
    };
    if args.json {
        render::print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("provider    {} — {}", def.name, def.description)?;
    outln!(
        "sequential  target radius {r} at σ = {}, α = {}: {n0} selection + at most {n} estimation draws, checked every {}",
        args.sigma,
        args.alpha,
        args.batch_size
    )?;
    outln!(
        "fixed n     {} queries per image, ${:.2} for {} images\n",
        params.draws(),
        def.pricing
            .cost_usd(k.saturating_mul(params.draws()), args.free_tier),
        thousands(k)
    )?;
    outln!(
        "p_A      queries/image      cost $        time   certified  not certifiable  undecided"
    )?;
    for r in &out.forecasts {
        outln!(
            "{:<8} {:>13.1} {:>11.2} {:>11} {:>10.1}% {:>15.1}% {:>9.1}%",
            r.p_a.map_or("log".into(), |p| p.to_string()),
            r.mean_queries_per_image,
            r.cost_usd,
            duration(r.seconds),
            100.0 * r.certified,
            100.0 * r.not_certifiable,
            100.0 * r.undecided
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct EstimateJson {
    provider: String,
    images: u64,
    queries: u64,
    clean_queries: u64,
    requests: u64,
    cost_usd: f64,
    prices_verified: bool,
    min_seconds: f64,
    sigma: f64,
    alpha: f64,
    /// `null` when even n agreeing draws cannot certify at α.
    max_radius: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_for_target_radius: Option<Option<u64>>,
    /// Time at the vendor's rate, its concurrency and the assumed latency.
    seconds: f64,
    latency_ms: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.images == 0 {
        anyhow::bail!("invalid parameter images: must be at least 1");
    }
    if let Some(r) = args.target_radius
        && !(r.is_finite() && r >= 0.0)
    {
        anyhow::bail!("invalid parameter target-radius: must be finite and ≥ 0, got {r}");
    }
    if !(args.latency_ms.is_finite() && args.latency_ms >= 0.0) {
        anyhow::bail!("invalid parameter latency-ms: must be finite and ≥ 0");
    }
    let def = ProviderDef::load(&args.provider)?;
    let (Some(n0), Some(n)) = (args.n0, args.n) else {
        return super::recommend::run(&args_view(&args), &def);
    };
    let params = CertifyParams::new(args.sigma, n0, n, args.alpha)?;
    if args.mode == Mode::Sequential {
        return run_sequential(&args, &def, n0, n);
    }
    let k = args.images;
    let clean = u64::from(args.clean_query);
    let too_many = || {
        anyhow::anyhow!(
            "invalid parameter images: {k} images × {} queries is more than can be counted",
            params.draws() + clean
        )
    };
    // Checked: a hostile --images must not wrap the bill to a small number.
    let queries = k.checked_mul(params.draws() + clean).ok_or_else(too_many)?;
    let requests = k
        .checked_mul(def.limits.requests_for(n0) + def.limits.requests_for(n) + clean)
        .ok_or_else(too_many)?;
    let cost = def.pricing.cost_usd(queries, args.free_tier);
    let min_seconds = def.limits.min_seconds(requests);
    // From the requests counted above (each image's selection and estimation batched
    // apart), so the time agrees with the requests line.
    let seconds = seconds_for_requests(&def, args.latency_ms, requests as f64);
    let max_radius = max_certifiable_radius(params.sigma(), params.alpha(), n);
    let n_for_target = args
        .target_radius
        .map(|r| min_draws_for_radius(params.sigma(), params.alpha(), r));

    if args.json {
        render::print_json(&EstimateJson {
            provider: def.name.clone(),
            images: k,
            queries,
            clean_queries: k * clean,
            requests,
            cost_usd: cost,
            prices_verified: def.pricing.verified,
            min_seconds,
            sigma: args.sigma,
            alpha: args.alpha,
            max_radius,
            n_for_target_radius: n_for_target,
            seconds,
            latency_ms: args.latency_ms,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("provider    {} — {}", def.name, def.description)?;
    let clean_note = if clean > 0 { " + 1 clean" } else { "" };
    outln!(
        "queries     {} = {} images × ({} selection + {} estimation{clean_note})",
        thousands(queries),
        thousands(k),
        thousands(n0),
        thousands(n)
    )?;
    if clean > 0 {
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
    match max_radius {
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
    if let (Some(r), Some(n)) = (args.target_radius, n_for_target) {
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
fn args_view(a: &Args) -> super::recommend::Asked {
    super::recommend::Asked {
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

/// Seconds for `queries` images sent `images_per_request` to a request (an estimate for
/// mean draws; [`seconds_for_requests`] when the requests are counted).
pub fn seconds_for(def: &ProviderDef, latency_ms: f64, queries: f64) -> f64 {
    let requests = (queries / f64::from(def.limits.images_per_request.max(1))).ceil();
    seconds_for_requests(def, latency_ms, requests)
}

/// Seconds for `requests` requests: at the vendor's request rate, or, when slower, its
/// concurrency at the assumed latency.
pub fn seconds_for_requests(def: &ProviderDef, latency_ms: f64, requests: f64) -> f64 {
    let by_rate = requests / def.limits.requests_per_second;
    let by_latency = requests * latency_ms / 1000.0 / f64::from(def.limits.max_concurrency.max(1));
    by_rate.max(by_latency)
}

pub fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}
