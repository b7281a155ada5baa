//! `robustify denoise` and `robustify denoisers`: look at what a denoiser does, and list
//! the shipped ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use robustify_denoiser::{Denoiser, registry};
use robustify_smoothing::{DecodeLimits, Image, NoiseSampler, Sigma};

use crate::input::read_image;
use crate::render;

/// Arguments of `robustify denoise`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct DenoiseArgs {
    /// Image file (PNG, JPEG, WebP or BMP).
    image: PathBuf,
    /// Noise level σ in [0, 1] pixel units.
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

/// PSNR (dB) of `other` clipped to [0, 1] against `clean`.
fn psnr(clean: &Image, other: &Image) -> f64 {
    let n = clean.data().len() as f64;
    let mse: f64 = clean
        .data()
        .iter()
        .zip(other.data())
        .map(|(a, b)| f64::from(b.clamp(0.0, 1.0) - a).powi(2))
        .sum::<f64>()
        / n;
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

pub fn denoise(args: DenoiseArgs) -> anyhow::Result<ExitCode> {
    let sigma = Sigma::new(args.sigma)?;
    let image = read_image(&args.image, &DecodeLimits::default())?;
    let dir = match &args.denoiser {
        Some(name) => registry::resolve(name)?,
        None => {
            let kind = if image.width().max(image.height()) <= 32 {
                "cifar10"
            } else {
                "photo"
            };
            registry::best_for(kind, args.sigma)?.with_context(|| {
                format!(
                    "no shipped {kind} denoiser for σ = {}; see `robustify denoisers list` and pass --denoiser",
                    args.sigma
                )
            })?
        }
    };
    let denoiser = Denoiser::load(&dir)?;
    let noisy = NoiseSampler::new(sigma, args.seed).draw(&image, 0);
    let denoised = denoiser
        .denoise(std::slice::from_ref(&noisy))?
        .pop()
        .context("the denoiser returned no image")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    for (name, img) in [("noisy.png", &noisy), ("denoised.png", &denoised)] {
        let path = args.out.join(name);
        std::fs::write(&path, img.to_png()?).with_context(|| format!("{}", path.display()))?;
        println!("{}", path.display());
    }
    println!(
        "denoiser {} (σ = {}): PSNR noisy {:.2} dB, denoised {:.2} dB",
        denoiser.name(),
        denoiser.sigma(),
        psnr(&image, &noisy),
        psnr(&image, &denoised)
    );
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
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    arch: String,
    sigma: f64,
    data: String,
    test_psnr: Option<f64>,
    path: String,
}

pub fn denoisers(args: DenoisersArgs) -> anyhow::Result<ExitCode> {
    let DenoisersCommand::List { json } = args.command;
    let rows: Vec<Row> = registry::list()?
        .into_iter()
        .map(|(c, dir)| Row {
            test_psnr: c.extra.get("test_psnr").and_then(|v| v.as_f64()),
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
    println!(
        "{:<24} {:<22} {:>6} {:<8} {:>10}",
        "name", "arch", "σ", "data", "test PSNR"
    );
    for r in &rows {
        let psnr = r.test_psnr.map_or("-".into(), |p| format!("{p:.2} dB"));
        println!(
            "{:<24} {:<22} {:>6} {:<8} {:>10}",
            r.name, r.arch, r.sigma, r.data, psnr
        );
    }
    if rows.is_empty() {
        println!("(none in {})", registry::shipped_dir().display());
    }
    Ok(ExitCode::SUCCESS)
}
