//! `robustify estimate --mode sequential`: expected queries and cost of sequential
//! certification, forecast for assumed p_A or replayed from a log.

use std::process::ExitCode;

use robustify_providers::ProviderDef;
use robustify_smoothing::{
    Decision, SequenceKind, SequentialParams, certify_sequential_labels, forecast,
};
use serde::Serialize;

use super::{Args, duration};
use crate::render::{self, outln, thousands};

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
pub(super) fn run(args: &Args, def: &ProviderDef, n0: u64, n: u64) -> anyhow::Result<ExitCode> {
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
        seconds: def
            .limits
            .seconds_for(args.latency_ms, k as f64 * mean_queries),
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
