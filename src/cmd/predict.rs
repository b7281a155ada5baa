//! `robustify predict`: PREDICT each image (the smoothed label, or abstain) against a
//! provider, with the same provider, budget and log flags as `certify`.

use std::path::PathBuf;
use std::process::ExitCode;

use robustify_pipeline::{
    CertificateRecord, CleanLabel, Mode, Plan, PlanRequest, RunSettings, Status, run_images,
};

use super::progress::Lines;
use super::session::ProviderArgs;
use crate::render::outln;

/// Arguments of `robustify predict`. Exit status as for `certify`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Image files (PNG, JPEG, WebP or BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    provider: ProviderArgs,
    /// Noise level σ, in (0, 1] (pixel units: images span [0, 1]).
    #[arg(long)]
    sigma: f64,
    /// Draws per image.
    #[arg(long)]
    n: u64,
    /// Probability of returning a label other than the smoothed classifier's.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Master seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noisy images per provider call [default: the provider's preferred batch].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print one JSON object per image (JSON Lines) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let session = args.provider.open(args.sigma)?;
    let batch = args.batch_size.unwrap_or_else(|| session.preferred_batch());
    let plan = Plan::new(
        &PlanRequest {
            n: Some(args.n),
            mode: Some(Mode::Predict),
            ..PlanRequest::new(args.sigma, args.alpha)
        },
        batch,
    )?;
    if !args.json {
        outln!(
            "provider {} · denoiser {} · σ = {} · n = {} · α = {} · seed {}\n",
            session.def.name,
            session.denoiser_name(),
            args.sigma,
            args.n,
            args.alpha,
            args.seed
        )?;
        outln!(
            "{:<36} {:<24} {:>10} {:>9}",
            "image",
            "label",
            "p-value",
            "cost $"
        )?;
    }
    let settings = RunSettings {
        plan,
        seed: args.seed,
        clean: CleanLabel::Never,
        memory: args.provider.config().memory(),
    };
    let mut table = Lines {
        json: args.json,
        row,
    };
    let summary = runtime.block_on(run_images(&session, &settings, &args.images, &mut table))?;
    super::session::close(&session, args.json, summary.budget_hit)?;
    Ok(ExitCode::from(summary.exit_code()))
}

/// One image's table row.
fn row(r: &CertificateRecord) -> anyhow::Result<()> {
    let label = match (&r.label, r.status, r.top_two.as_deref()) {
        (Some(l), _, _) => l.clone(),
        // An abstention names the two labels it could not tell apart.
        (None, Status::Abstained, Some([(a, na), (b, nb), ..])) => {
            format!("abstain ({a} {na} vs {b} {nb})")
        }
        (None, s, _) => s.as_str().replace('_', " "),
    };
    outln!(
        "{:<36} {:<24} {:>10} {:>9.4}",
        crate::render::printable(&r.image),
        crate::render::printable(&label),
        r.p_value.map_or("-".into(), |p| format!("{p:.3e}")),
        r.cost_usd
    )
}
