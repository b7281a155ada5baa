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
    /// The ImageNet class whose WordNet id the file name starts with
    /// (`n01443537_goldfish.JPEG`, as in ../shared/data/imagenet-samples), by the name the
    /// ImageNet stand-in gives it.
    Imagenet,
}

impl From<TruthArg> for Truth {
    fn from(t: TruthArg) -> Truth {
        match t {
            TruthArg::Folder => Truth::Folder,
            TruthArg::Clean => Truth::Clean,
            TruthArg::Imagenet => Truth::Imagenet,
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
    /// Noise level σ. Several, comma-separated (`0.25,0.5,1.0`): one eval per σ into
    /// OUT/sigma-S/, then the paper's table over them in OUT (`robustify envelope`).
    #[arg(long, value_delimiter = ',', required = true)]
    sigma: Vec<f64>,
    /// With several σ: the radii of the envelope table.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = super::envelope::PAPER_RADII
    )]
    radii: Vec<f64>,
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
    /// Certify every K-th image (indices O, O + K, O + 2K, … with O = --offset).
    #[arg(long, default_value_t = 1)]
    skip: usize,
    /// The first image's index (`--skip 20 --offset 19`: the photos `train denoiser
    /// --hold-out 20` kept out of training).
    #[arg(long, default_value_t = 0)]
    offset: usize,
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
    /// Go on with the eval whose certify.tsv is in --out (the same settings): the images it
    /// finished are counted, not certified again (a killed run loses at most the image it
    /// was on).
    #[arg(long = "continue")]
    continue_: bool,
    /// Output folder: certify.tsv, summary.json, curve.png (with several σ: a folder per σ,
    /// and envelope.json, envelope.tsv, envelope.png).
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
    // Checks every σ, n0, n and α before any image is read.
    for &sigma in &args.sigma {
        CertifyParams::new(sigma, args.n0, args.n, args.alpha)?;
    }
    if let [sigma] = args.sigma[..] {
        return run_one(&args, sigma, &args.provider, &args.out, &args.compare);
    }
    // Several σ: a denoiser per σ, named in order, or each σ's default.
    let denoisers: Vec<Option<String>> = match &args.provider.denoiser {
        None => vec![None; args.sigma.len()],
        Some(list) => {
            let names: Vec<Option<String>> =
                list.split(',').map(|d| Some(d.trim().to_owned())).collect();
            anyhow::ensure!(
                names.len() == args.sigma.len(),
                "--denoiser {list}: with {} values of --sigma, give one denoiser per σ \
                 (comma-separated, in the same order), or none for each σ's default",
                args.sigma.len()
            );
            names
        }
    };
    let mut dirs = Vec::new();
    for (&sigma, denoiser) in args.sigma.iter().zip(denoisers) {
        let mut provider = args.provider.clone();
        provider.denoiser = denoiser;
        let out = args.out.join(format!("sigma-{sigma}"));
        eprintln!("σ = {sigma}: {}", out.display());
        let code = run_one(&args, sigma, &provider, &out, &[])?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        dirs.push(out);
    }
    super::envelope::write(&dirs, &args.radii, None, &args.out, false)
}

/// One eval at `sigma` through `provider`'s settings into `out`.
fn run_one(
    args: &Args,
    sigma: f64,
    provider: &ProviderArgs,
    out: &Path,
    compare: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let all = images_under(&args.dir)?;
    let mut picked: Vec<(usize, PathBuf)> = all
        .into_iter()
        .enumerate()
        .skip(args.offset)
        .step_by(args.skip)
        .collect();
    anyhow::ensure!(
        !picked.is_empty(),
        "--offset {}: past the last of the folder's images",
        args.offset
    );
    if let Some(m) = args.max_images {
        picked.truncate(m);
    }
    // Curves to compare with must exist before hours are spent.
    for dir in compare {
        report::curve_of(dir)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let session = provider.open(sigma)?;
    let batch = args.batch_size.unwrap_or_else(|| session.preferred_batch());
    let plan = Plan::new(
        &args
            .sequential
            .request(sigma, args.n0, Some(args.n), args.alpha),
        batch,
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let tsv_path = out.join("certify.tsv");
    let sequential = plan.mode() == Mode::Sequential;
    let multi = MultiProgress::new();
    let settings = RunSettings {
        plan,
        seed: args.seed,
        clean: CleanLabel::Always,
        memory: provider.config().memory(),
    };
    let done = if args.continue_ {
        rows::read_done(&tsv_path, sequential)?
    } else {
        Vec::new()
    };
    let finished: std::collections::HashSet<usize> = done.iter().map(|d| d.idx).collect();
    picked.retain(|(i, _)| !finished.contains(i));
    if !done.is_empty() {
        eprintln!(
            "resuming {}: {} images done, {} to go",
            tsv_path.display(),
            done.len(),
            picked.len()
        );
    }
    let paths: Vec<PathBuf> = picked.iter().map(|(_, p)| p.clone()).collect();
    let mut rows = Rows::create(
        &tsv_path,
        &picked,
        args.truth.into(),
        sigma,
        sequential,
        &multi,
        &done,
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
            sigma
        ),
        provider: session.def.name.clone(),
        denoiser,
        sigma,
        n0: args.n0,
        n: args.n,
        alpha: args.alpha,
        mode: Some(if sequential { "sequential" } else { "fixed" }.into()),
        target_radius: args.sequential.target_radius.filter(|_| sequential),
        skip: args.skip,
        offset: args.offset,
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
    report::write(&summary, out, &args.dir, compare)?;
    if run.budget_hit {
        eprintln!(
            "{} the budget stopped the run: ${:.4} spent in all",
            crate::render::label("error"),
            session.spent_usd()
        );
    }
    Ok(ExitCode::from(run.exit_code()))
}
