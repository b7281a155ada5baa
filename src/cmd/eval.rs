//! `robustify eval`: certify every K-th image of a folder and report certified accuracy
//! against radius — the paper's tables and curves — as TSV, JSON and PNG.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use robustify_smoothing::table::{Outcome, certified_accuracy};
use robustify_smoothing::{CertifyParams, Decision};
use serde::{Deserialize, Serialize};

use robustify_pipeline::{
    CertificateRecord, CleanLabel, Mode, Observer, Plan, RunSettings, Status, run_images,
};

use super::sequential::SequentialArgs;
use super::session::{Bar, ProviderArgs, draw_bar};
use crate::plot::{Curve, certified_accuracy_png};
use crate::render::outln;

/// Where the reference label of an image comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Truth {
    /// The name of the folder the image is in (`cifar10/test/cat/0001.jpg` → `cat`).
    Folder,
    /// The provider's own label for the clean image (the paper's API protocol).
    Clean,
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
    truth: Truth,
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

/// What `summary.json` holds.
#[derive(Serialize, Deserialize)]
struct Summary {
    /// Legend of this run's curve.
    label: String,
    provider: String,
    denoiser: String,
    sigma: f64,
    n0: u64,
    n: u64,
    alpha: f64,
    /// `fixed` or `sequential` (absent in summaries written before sequential mode).
    #[serde(default)]
    mode: Option<String>,
    /// Sequential mode's target radius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_radius: Option<f64>,
    skip: usize,
    truth: Truth,
    seed: u64,
    images: usize,
    /// Share of images whose clean image the provider labels as the truth.
    clean_accuracy: f64,
    /// Share of images abstained.
    abstained: f64,
    /// Images that failed (errors), not counted anywhere else.
    failed: usize,
    mean_queries: f64,
    mean_seconds: f64,
    cost_usd: f64,
    table: Vec<robustify_smoothing::table::AccuracyRow>,
}

fn images_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files = robustify_denoiser::data::image_files(dir)?;
    anyhow::ensure!(!files.is_empty(), "{}: no images found", dir.display());
    Ok(files)
}

/// Radii of the table: 0 to 4σ in steps of σ/10.
fn radii(sigma: f64) -> Vec<f64> {
    (0..=40).map(|i| f64::from(i) * sigma / 10.0).collect()
}

/// The curve of an eval output folder (`summary.json` + `certify.tsv`).
fn curve_of(dir: &Path) -> anyhow::Result<Curve> {
    let path = dir.join("summary.json");
    let summary: Summary = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
    )
    .with_context(|| format!("{}: not an eval summary", path.display()))?;
    Ok(Curve {
        label: summary.label,
        points: summary
            .table
            .iter()
            .map(|r| (r.radius, r.certified_accuracy))
            .collect(),
    })
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
        curve_of(dir)?;
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
    let mut tsv =
        std::fs::File::create(&tsv_path).with_context(|| format!("{}", tsv_path.display()))?;
    let sequential = plan.mode() == Mode::Sequential;
    writeln!(
        tsv,
        "idx\tpath\ttruth\tprediction\tradius\tcorrect\tqueries\tseconds{}",
        if sequential { "\tdecision" } else { "" }
    )?;
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(picked.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("images [{bar:30}] {pos}/{len} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let settings = RunSettings {
        plan,
        seed: args.seed,
        clean: CleanLabel::Always,
        memory: args.provider.config().memory(),
    };
    let paths: Vec<PathBuf> = picked.iter().map(|(_, p)| p.clone()).collect();
    let mut tally = Tally {
        picked: &picked,
        next: 0,
        truth: args.truth,
        sigma: args.sigma,
        tsv,
        sequential,
        multi: &multi,
        overall: &overall,
        outcomes: Vec::new(),
        budget_said: false,
        clean_right: 0,
        queries: 0,
        seconds: 0.0,
    };
    let run = runtime.block_on(run_images(&session, &settings, &paths, &mut tally))?;
    overall.finish_and_clear();
    super::session::close(&session, true, false)?;
    let Tally {
        outcomes,
        clean_right,
        queries,
        seconds,
        ..
    } = tally;
    let failed = run.failed;
    let n = outcomes.len();
    let summary = Summary {
        label: format!(
            "{} · {} · σ={}",
            session.def.name,
            match session.denoiser_name() {
                "none" => "no denoiser".to_owned(),
                d => d.to_owned(),
            },
            args.sigma
        ),
        provider: session.def.name.clone(),
        denoiser: session.denoiser_name().to_owned(),
        sigma: args.sigma,
        n0: args.n0,
        n: args.n,
        alpha: args.alpha,
        mode: Some(if sequential { "sequential" } else { "fixed" }.into()),
        target_radius: args.sequential.target_radius.filter(|_| sequential),
        skip: args.skip,
        truth: args.truth,
        seed: args.seed,
        images: n,
        clean_accuracy: clean_right as f64 / n.max(1) as f64,
        abstained: outcomes.iter().filter(|o| o.label.is_none()).count() as f64 / n.max(1) as f64,
        failed,
        mean_queries: queries as f64 / n.max(1) as f64,
        mean_seconds: seconds / n.max(1) as f64,
        cost_usd: session.spent_usd(),
        table: certified_accuracy(&outcomes, &radii(args.sigma)),
    };
    let summary_path = args.out.join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("{}", summary_path.display()))?;
    let mut curves = vec![curve_of(&args.out)?];
    for dir in &args.compare {
        curves.push(curve_of(dir)?);
    }
    let png = certified_accuracy_png(&format!("{} images of {}", n, args.dir.display()), &curves)?;
    let png_path = args.out.join("curve.png");
    std::fs::write(&png_path, png).with_context(|| format!("{}", png_path.display()))?;
    outln!(
        "{}: {n} images, clean accuracy {:.1}%, abstained {:.1}%, {:.0} queries and {:.1} s per image",
        summary.label,
        100.0 * summary.clean_accuracy,
        100.0 * summary.abstained,
        summary.mean_queries,
        summary.mean_seconds
    )?;
    outln!("{:>8}  certified accuracy", "radius")?;
    for row in summary.table.iter().step_by(5) {
        outln!(
            "{:>8.3}  {:>6.1}%",
            row.radius,
            100.0 * row.certified_accuracy
        )?;
    }
    outln!(
        "wrote {}, {}, {}",
        tsv_path.display(),
        summary_path.display(),
        png_path.display()
    )?;
    if run.budget_hit {
        eprintln!(
            "{} the budget stopped the run: ${:.4} spent in all",
            crate::render::label("error"),
            session.spent_usd()
        );
    }
    Ok(ExitCode::from(run.exit_code()))
}

/// Writes each image's TSV row and keeps the outcomes for the table.
struct Tally<'a> {
    picked: &'a [(usize, PathBuf)],
    next: usize,
    truth: Truth,
    sigma: f64,
    tsv: std::fs::File,
    sequential: bool,
    multi: &'a MultiProgress,
    overall: &'a ProgressBar,
    outcomes: Vec<Outcome>,
    budget_said: bool,
    clean_right: usize,
    queries: u64,
    seconds: f64,
}

impl Observer for Tally<'_> {
    type Progress = Bar;
    type Error = anyhow::Error;

    fn start(&mut self, image: &str, max_draws: u64) -> Bar {
        Bar(self.multi.add(draw_bar(max_draws, image.to_owned())))
    }

    fn finish(&mut self, r: CertificateRecord, elapsed: Duration) -> anyhow::Result<()> {
        let (idx, path) = &self.picked[self.next.min(self.picked.len() - 1)];
        self.next += 1;
        if !r.finished() {
            // Said once: the images the budget did not start are neither failures nor
            // results.
            let first_budget = r.status == Status::BudgetExhausted && !self.budget_said;
            self.budget_said |= r.status == Status::BudgetExhausted;
            if r.status == Status::Error || first_budget {
                let e = r.error.as_deref().unwrap_or("failed");
                self.overall.println(format!(
                    "{} {}: {e}",
                    crate::render::label("error"),
                    r.image
                ));
            }
            self.overall.inc(1);
            return Ok(());
        }
        let clean = r.clean_label.clone().unwrap_or_default();
        let truth = match self.truth {
            Truth::Clean => clean.clone(),
            Truth::Folder => path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let secs = elapsed.as_secs_f64();
        let outcome = Outcome {
            label: r.label.clone(),
            radius: r.radius,
            correct: r.label.as_deref() == Some(truth.as_str()),
        };
        self.clean_right += usize::from(clean == truth);
        self.queries += r.queries + 1;
        self.seconds += secs;
        write!(
            self.tsv,
            "{idx}\t{}\t{truth}\t{}\t{:.4}\t{}\t{}\t{secs:.2}",
            path.display(),
            r.label.as_deref().unwrap_or("-1"),
            r.radius,
            u8::from(outcome.correct),
            r.queries + 1,
        )?;
        if self.sequential {
            writeln!(self.tsv, "\t{}", r.decision.map_or("-", Decision::as_str))?;
        } else {
            writeln!(self.tsv)?;
        }
        self.tsv.flush()?;
        self.outcomes.push(outcome);
        let table = certified_accuracy(&self.outcomes, &[0.0, self.sigma]);
        self.overall.set_message(format!(
            "certified acc {:.0}% at r=0, {:.0}% at r=σ",
            100.0 * table[0].certified_accuracy,
            100.0 * table[1].certified_accuracy
        ));
        self.overall.inc(1);
        Ok(())
    }
}
