//! `robustify denoise` and `robustify denoisers`: look at what a denoiser does, and list
//! the shipped ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use robustify_denoiser::{Denoiser, registry};
use robustify_smoothing::{DecodeLimits, NoiseSampler, Sigma};

use super::score;
use crate::render;
use crate::render::outln;
use robustify_pipeline::input::read_image;

/// Arguments of `robustify denoise`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct DenoiseArgs {
    /// Image file (PNG, JPEG, WebP or BMP).
    image: PathBuf,
    /// Noise level σ, in (0, 1] (pixel units: images span [0, 1]).
    #[arg(long)]
    sigma: f64,
    /// Shipped denoiser name or folder [default: the shipped one for this image's size
    /// (cifar10 up to 32×32, else photo) at --sigma].
    #[arg(long)]
    denoiser: Option<String>,
    /// Noise seed (draw 0 of this seed, as certification would draw it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: `noisy.png` and `denoised.png`.
    #[arg(long)]
    out: PathBuf,
}

pub fn denoise(args: DenoiseArgs) -> anyhow::Result<ExitCode> {
    let sigma = Sigma::new(args.sigma)?;
    let image = read_image(&args.image, &DecodeLimits::default())?.1;
    let dir = match &args.denoiser {
        Some(name) => registry::resolve(name)?,
        None => {
            let kind = registry::data_for_size(image.width().max(image.height()) as usize);
            registry::best_for(kind, args.sigma)?.with_context(|| {
                format!(
                    "no shipped {kind} denoiser for σ = {}; see `robustify denoisers list` and pass --denoiser",
                    args.sigma
                )
            })?
        }
    };
    let denoiser = Denoiser::load(&dir)?;
    let kind = registry::data_for_size(image.width().max(image.height()) as usize);
    for n in robustify_pipeline::unfit(&denoiser, args.sigma, kind) {
        super::session::notice(&n);
    }
    let noisy = NoiseSampler::new(sigma, args.seed).draw(&image, 0);
    let denoised = denoiser
        .denoise(std::slice::from_ref(&noisy))?
        .pop()
        .context("the denoiser returned no image")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    for (name, img) in [("noisy.png", &noisy), ("denoised.png", &denoised)] {
        let path = args.out.join(name);
        std::fs::write(&path, img.to_png()?).with_context(|| format!("{}", path.display()))?;
        outln!("{}", path.display())?;
    }
    outln!(
        "denoiser {} (σ = {}): PSNR noisy {:.2} dB, denoised {:.2} dB",
        denoiser.name(),
        denoiser.sigma(),
        image.psnr(&noisy),
        image.psnr(&denoised)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `robustify denoisers`.
#[derive(clap::Args)]
pub struct DenoisersArgs {
    #[command(subcommand)]
    command: DenoisersCommand,
}

#[derive(clap::Subcommand)]
enum DenoisersCommand {
    /// The shipped denoisers.
    List {
        /// JSON: `[{"name", "arch", "sigma", "data"}]`.
        #[arg(long)]
        json: bool,
    },
    /// PSNR and the stand-in's accuracy on clean, noisy and denoised labelled images.
    Score(score::ScoreArgs),
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    arch: String,
    sigma: f64,
    data: String,
    /// Mean PSNR on held-out images: `denoisers score`'s if it was run, else training's.
    test_psnr: Option<f64>,
    /// The stand-in's top-1 accuracy on noisy and on denoised images (`denoisers score`).
    accuracy_noisy: Option<f64>,
    accuracy_denoised: Option<f64>,
    /// The classifiers a stab denoiser was tuned through (empty: MSE).
    tuned_through: Vec<String>,
    path: String,
}

/// A number `denoisers score` wrote into the card.
fn score_of(card: &robustify_denoiser::Card, key: &str) -> Option<f64> {
    card.extra.get("score")?.get(key)?.as_f64()
}

pub fn denoisers(args: DenoisersArgs) -> anyhow::Result<ExitCode> {
    let json = match args.command {
        DenoisersCommand::List { json } => json,
        DenoisersCommand::Score(args) => return score::run(args),
    };
    let rows: Vec<Row> = registry::list()?
        .into_iter()
        .map(|(c, dir)| Row {
            test_psnr: score_of(&c, "psnr_denoised")
                .or_else(|| c.extra.get("test_psnr").and_then(|v| v.as_f64())),
            accuracy_noisy: score_of(&c, "accuracy_noisy"),
            accuracy_denoised: score_of(&c, "accuracy_denoised"),
            tuned_through: c.tuned_through(),
            name: c.name,
            arch: c.arch.name(),
            sigma: c.sigma,
            data: c.data,
            path: dir.display().to_string(),
        })
        .collect();
    if json {
        render::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The name column fits the longest name (a fixed width broke the table's columns).
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    outln!(
        "{:<width$} {:<14} {:>5} {:<8} {:>10}  {:<32} tuned through",
        "name",
        "arch",
        "σ",
        "data",
        "test PSNR",
        "stand-in top-1 noisy → denoised"
    )?;
    for r in &rows {
        let psnr = r.test_psnr.map_or("-".into(), |p| format!("{p:.2} dB"));
        let acc = match (r.accuracy_noisy, r.accuracy_denoised) {
            (Some(n), Some(d)) => format!("{:.1}% → {:.1}%", 100.0 * n, 100.0 * d),
            _ => "-".into(),
        };
        let tuned = if r.tuned_through.is_empty() {
            "- (MSE)".to_owned()
        } else {
            r.tuned_through.join(", ")
        };
        outln!(
            "{:<width$} {:<14} {:>5} {:<8} {:>10}  {acc:<32} {tuned}",
            r.name,
            r.arch,
            r.sigma,
            r.data,
            psnr
        )?;
    }
    if rows.is_empty() {
        outln!("(none in {})", registry::shipped_dir().display())?;
    }
    Ok(ExitCode::SUCCESS)
}
