//! `robustify bench`: convolution speed, candle's own against robustify's, and PyTorch's
//! when it is installed — all in one run, so the ratios compare like with like (the cases
//! are `robustify-bench`'s; this file runs PyTorch's script and prints the table).

use std::process::ExitCode;

use robustify_bench::{Case, Options, torch_case_names};

use crate::render;
use crate::render::outln;

/// Arguments of `robustify bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Smaller batches: a quick look (best of 2–3 runs per case, like the full run).
    #[arg(long)]
    quick: bool,
    /// Skip the PyTorch baseline even when torch is importable.
    #[arg(long)]
    no_torch: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip stock candle's convolution (the slowest column: minutes of a full run).
    #[arg(long)]
    no_candle: bool,
    /// Run only the cases whose name contains this text (e.g. `dncnn17x64-32x32`,
    /// `forward`, `standin`).
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Instead of the kernels: three proxy replicas over one Redis (started here; needs
    /// `redis-server`), 100 concurrent clients on one $1.20 wallet, a vendor at 20
    /// requests/s — its rate, the spend and the overhead of a stored answer.
    #[arg(long)]
    replicas: bool,
}

/// The PyTorch figures, keyed by case name, if `python3` has torch: the cases whose name
/// contains `only` (all without it).
fn torch_baseline(
    quick: bool,
    only: Option<&str>,
) -> Option<std::collections::HashMap<String, f64>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch.py");
    let out = std::process::Command::new("python3")
        .args([script, if quick { "1" } else { "0" }, only.unwrap_or("")])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("PyTorch baseline skipped: `python3 -c 'import torch'` does not work here");
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!(
            "{} a debug build; measure with `cargo run --release -- bench`",
            crate::render::label("warning")
        );
    }
    if args.replicas {
        return replicas(args.json);
    }
    let options = Options {
        quick: args.quick,
        candle: !args.no_candle,
        only: args.only.clone(),
    };
    // PyTorch times the DnCNN cases and the Lite0 input-gradient step (the cases `--only`
    // selects; nothing when none of them is asked for).
    let torch = if args.no_torch || torch_case_names(&options).is_empty() {
        None
    } else {
        torch_baseline(args.quick, args.only.as_deref())
    };
    let cases: Vec<Case> = robustify_bench::run(&options)?
        .into_iter()
        .map(|c| match &torch {
            Some(t) => c.with_torch(t),
            None => c,
        })
        .collect();
    if args.json {
        render::print_json(&serde_json::json!({ "cases": cases }))?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<52} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "case (images/s)",
        "ours",
        "im2col",
        "candle",
        "torch",
        "÷candle",
        "÷torch",
        "GFLOP/s"
    )?;
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for c in &cases {
        outln!(
            "{:<52} {:>9.1} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8.1}",
            c.name,
            c.ours_img_s,
            opt(c.im2col_img_s, 1),
            opt(c.candle_img_s, 1),
            opt(c.torch_img_s, 1),
            opt(c.ratio_vs_candle, 2),
            opt(c.ratio_vs_torch, 2),
            c.gflop_s
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `robustify bench --replicas`.
fn replicas(json: bool) -> anyhow::Result<ExitCode> {
    let options = robustify_bench::ReplicaOptions::default();
    eprintln!(
        "{} replicas over one Redis, {} clients at once, a vendor at {}/s, a ${:.2} wallet …",
        options.replicas, options.clients, options.vendor_rps, options.budget_usd
    );
    let f = robustify_bench::run_replicas(&options)?;
    if json {
        render::print_json(&f)?;
        return Ok(ExitCode::SUCCESS);
    }
    let limit = options.vendor_rps;
    outln!(
        "{:<44} {}",
        "certified / refused (402)",
        format!("{} / {}", f.certified, f.refused)
    )?;
    outln!(
        "{:<44} ${:.4} of ${:.2} (vendor billed ${:.4}, /v1/spend ${:.4})",
        "spent",
        f.spent_usd,
        options.budget_usd,
        f.vendor_billed_usd,
        f.wallet_spent_usd
    )?;
    outln!(
        "{:<44} {} in {:.2} s, {} throttled",
        "vendor requests",
        f.vendor_requests,
        f.busy_seconds,
        f.vendor_throttled
    )?;
    outln!(
        "{:<44} {:.1}/s ({:.0}% of {limit}/s)",
        "vendor rate, mean over the busy span",
        f.mean_rps,
        100.0 * f.mean_rps / limit
    )?;
    outln!(
        "{:<44} max {} / min {}",
        "vendor requests in any one-second window",
        f.max_rps_1s,
        f.min_rps_1s.map_or("-".into(), |m| m.to_string())
    )?;
    outln!(
        "{:<44} p50 {:.2} ms, p99 {:.2} ms ({} rounds; vendor paid again for {} images)",
        "a certification from the shared store",
        f.cached_p50_ms,
        f.cached_p99_ms,
        options.cached_rounds,
        f.cached_vendor_images
    )?;
    Ok(ExitCode::SUCCESS)
}
