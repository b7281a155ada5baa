//! `robustify eval`: certify every K-th image of a folder and report certified accuracy
//! against radius — the paper's tables and curves — as TSV, JSON and PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::MultiProgress;
use robustify_pipeline::eval::{Summary, Truth};
use robustify_pipeline::{CleanLabel, Mode, Plan, RunSettings, run_images};
use robustify_smoothing::CertifyParams;

use super::sequential::SequentialArgs;
use super::session::ProviderArgs;

mod report;
mod rows;
use rows::Rows;

/// Where the reference label of an image comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TruthArg {
    /// The name of the folder the image is in (`cifar10/test/cat/0001.jpg` → `cat`).
    Folder,
    /// The provider's own label for the clean image (the paper's API protocol).
    Clean,
}

impl From<TruthArg> for Truth {
    fn from(t: TruthArg) -> Truth {
        match t {
            TruthArg::Folder => Truth::Folder,
            TruthArg::Clean => Truth::Clean,
        }
    }
}

/// Arguments of `robustify eval`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Image folder, searched recursively; images are taken in sorted path order.
    dir: PathBuf,
    #[command(flatten)]
    provider: ProviderArgs,
    /// Noise level σ.
    #[arg(long)]
    sigma: f64,
    /// Selection draws per image.
    #[arg(long, default_value_t = 100)]
    n0: u64,
    /// Estimation draws per image (in sequential mode, the default --max-draws).
    #[arg(long, default_value_t = 1000)]
    n: u64,
    #[command(flatten)]
    sequential: SequentialArgs,
    /// Failure probability α.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Certify every K-th image (indices 0, K, 2K, …).
    #[arg(long, default_value_t = 1)]
    skip: usize,
    /// Certify at most this many images.
    #[arg(long)]
    max_images: Option<usize>,
    /// Reference labels: the image's folder name, or the provider's label for the clean
    /// image.
    #[arg(long, value_enum, default_value = "folder")]
    truth: TruthArg,
    /// Master seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noisy images per provider call [default: the provider's preferred batch].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Other eval output folders whose curves go on the same plot.
    #[arg(long)]
    compare: Vec<PathBuf>,
    /// Output folder: certify.tsv, summary.json, curve.png.
    #[arg(long)]
    out: PathBuf,
}

fn images_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files = robustify_denoiser::data::image_files(dir)?;
    anyhow::ensure!(!files.is_empty(), "{}: no images found", dir.display());
    Ok(files)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.skip >= 1, "--skip must be ≥ 1");
    // Checks σ, n0, n and α before any image is read.
    CertifyParams::new(args.sigma, args.n0, args.n, args.alpha)?;
    let all = images_under(&args.dir)?;
    let mut picked: Vec<(usize, PathBuf)> =
        all.into_iter().enumerate().step_by(args.skip).collect();
    if let Some(m) = args.max_images {
        picked.truncate(m);
    }
    // Curves to compare with must exist before hours are spent.
    for dir in &args.compare {
        report::curve_of(dir)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let session = args.provider.open(args.sigma)?;
    let batch = args.batch_size.unwrap_or_else(|| session.preferred_batch());
    let plan = Plan::new(
        &args
            .sequential
            .request(args.sigma, args.n0, Some(args.n), args.alpha),
        batch,
    )?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let tsv_path = args.out.join("certify.tsv");
    let sequential = plan.mode() == Mode::Sequential;
    let multi = MultiProgress::new();
    let settings = RunSettings {
        plan,
        seed: args.seed,
        clean: CleanLabel::Always,
        memory: args.provider.config().memory(),
    };
    let paths: Vec<PathBuf> = picked.iter().map(|(_, p)| p.clone()).collect();
    let mut rows = Rows::create(
        &tsv_path,
        &picked,
        args.truth.into(),
        args.sigma,
        sequential,
        &multi,
    )?;
    let run = runtime.block_on(run_images(&session, &settings, &paths, &mut rows))?;
    rows.overall.finish_and_clear();
    super::session::close(&session, true, false)?;
    let denoiser = session.denoiser_name().to_owned();
    let summary = rows.tally.summary(Summary {
        label: format!(
            "{} · {} · σ={}",
            session.def.name,
            if denoiser == "none" {
                "no denoiser"
            } else {
                &denoiser
            },
            args.sigma
        ),
        provider: session.def.name.clone(),
        denoiser,
        sigma: args.sigma,
        n0: args.n0,
        n: args.n,
        alpha: args.alpha,
        mode: Some(if sequential { "sequential" } else { "fixed" }.into()),
        target_radius: args.sequential.target_radius.filter(|_| sequential),
        skip: args.skip,
        truth: args.truth.into(),
        seed: args.seed,
        images: 0,
        clean_accuracy: 0.0,
        abstained: 0.0,
        failed: run.failed,
        mean_queries: 0.0,
        mean_seconds: 0.0,
        cost_usd: session.spent_usd(),
        table: Vec::new(),
    });
    report::write(&summary, &args.out, &args.dir, &args.compare)?;
    if run.budget_hit {
        eprintln!(
            "{} the budget stopped the run: ${:.4} spent in all",
            crate::render::label("error"),
            session.spent_usd()
        );
    }
    Ok(ExitCode::from(run.exit_code()))
}
