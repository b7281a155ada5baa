//! `robustify certify`: CERTIFY each image against a provider.

use std::path::PathBuf;
use std::process::ExitCode;

use robustify_pipeline::{
    CertificateRecord, CleanLabel, Plan, RunSettings, Session, Status, run_images,
};

use super::progress::Lines;
use super::sequential::SequentialArgs;
use super::session::ProviderArgs;
use crate::render::{fit, fit_start, outln};

/// Arguments of `robustify certify`.
///
/// Exit status: 0 when every image was certified or abstained, 2 on an error (the other
/// images still run), 3 when the budget stopped the run (images not reached are listed).
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
    /// Selection draws per image.
    #[arg(long)]
    n0: u64,
    /// Estimation draws per image (fixed mode; in sequential mode the default --max-draws).
    #[arg(long, required_unless_present = "target_radius")]
    n: Option<u64>,
    #[command(flatten)]
    sequential: SequentialArgs,
    /// Failure probability α.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Master seed of the noise (recorded in the result).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noisy images per provider call [default: the provider's images per request × its
    /// concurrency].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print one JSON object per image (JSON Lines) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also ask a paid provider for each image's clean (noise-free) label, shown beside the
    /// certified one: one more paid query per image, not logged (free providers always
    /// get it unless --no-clean).
    #[arg(long, conflicts_with = "no_clean")]
    clean: bool,
    /// No clean query: the table's clean-label column stays empty.
    #[arg(long)]
    no_clean: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let session = args.provider.open(args.sigma)?;
    let batch = args.batch_size.unwrap_or_else(|| session.preferred_batch());
    let request = args
        .sequential
        .request(args.sigma, args.n0, args.n, args.alpha);
    let plan = Plan::new(&request, batch)?;
    let clean = if args.no_clean || (session.paid() && !args.clean) {
        CleanLabel::Never
    } else {
        CleanLabel::Always
    };
    if !args.json {
        header(&args, &session, &plan)?;
    }
    let settings = RunSettings {
        plan,
        seed: args.seed,
        clean,
        memory: args.provider.config().memory(),
    };
    let mut table = Lines {
        json: args.json,
        row,
    };
    let summary = runtime.block_on(run_images(&session, &settings, &args.images, &mut table))?;
    if !args.json {
        outln!("\n{LEGEND}")?;
    }
    super::session::close(&session, args.json, summary.budget_hit)?;
    Ok(ExitCode::from(summary.exit_code()))
}

/// The run's first lines: what is asked of whom, and the column heads.
fn header(args: &Args, session: &Session, plan: &Plan) -> anyhow::Result<()> {
    let how = match plan {
        Plan::Sequential(p) => format!(
            "sequential ({:?}), ≤ {} draws{}",
            p.kind(),
            p.max_draws(),
            p.target_radius()
                .map(|r| format!(", target radius {r}"))
                .unwrap_or_default()
        ),
        _ => format!("n = {}", plan.max_draws() - args.n0),
    };
    outln!(
        "provider {} · denoiser {} · σ = {} · n0 = {} · {how} · α = {} · seed {}\n",
        session.def.name,
        session.denoiser_name(),
        args.sigma,
        args.n0,
        args.alpha,
        args.seed
    )?;
    outln!(
        "{:<IMAGE_W$} {:<LABEL_W$} {:<LABEL_W$} {:>7} {:>7} {:>8} {:>8}",
        "image",
        "clean label",
        "certified label",
        "radius",
        "p_lower",
        "n_A/n",
        "cost $"
    )?;
    Ok(())
}

/// One image's table row.
fn row(r: &CertificateRecord) -> anyhow::Result<()> {
    let image = fit(&r.image, IMAGE_W);
    if !r.finished() {
        return outln!(
            "{image:<IMAGE_W$} {:<LABEL_W$} {}",
            "",
            r.status.as_str().replace('_', " ")
        );
    }
    let label = match (&r.label, &r.candidate, r.status) {
        (Some(l), _, _) => l.clone(),
        (None, Some(c), Status::Abstained) => format!("abstain ({c}?)"),
        (None, Some(c), s) => format!("{} ({c}?)", s.as_str().replace('_', " ")),
        (None, None, Status::Abstained) => "abstain".into(),
        (None, None, s) => s.as_str().replace('_', " "),
    };
    outln!(
        "{image:<IMAGE_W$} {:<LABEL_W$} {:<LABEL_W$} {:>7.4} {:>7.4} {:>8} {:>8.4}",
        fit_start(r.clean_label.as_deref().unwrap_or("–"), LABEL_W),
        fit_start(&label, LABEL_W),
        r.radius,
        r.p_lower.unwrap_or(0.0),
        format!("{}/{}", r.n_a.unwrap_or(0), r.n),
        r.cost_usd
    )
}

/// Column widths of the table (the labels elided to fit, the image path from its end).
const IMAGE_W: usize = 36;
const LABEL_W: usize = 22;

/// What the columns mean, printed under the table (as wide as the table).
const LEGEND: &str =
    "radius: no ℓ2 perturbation smaller than this changes the certified label (probability ≥ 1 − α)
p_lower: lower bound on the label's probability under noise · n_A/n: draws that agreed with it
clean label: the provider's answer without noise (1 query; free providers only unless --clean)";
