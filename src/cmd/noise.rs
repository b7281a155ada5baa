//! `robustify noise`: write the noisy copies a provider would receive.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use robustify_smoothing::{DecodeLimits, NoiseSampler, Sigma};

use crate::render::outln;
use robustify_pipeline::input::read_image;

/// Arguments of `robustify noise`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Image file (PNG, JPEG, WebP or BMP).
    image: PathBuf,
    /// Noise level σ, in (0, 1] (pixel units: images span [0, 1]).
    #[arg(long)]
    sigma: f64,
    /// Master seed: draw i of seed s is always the same noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many draws to write (indices 0..count).
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Output folder; files are named `noisy-<seed>-<index>.png`.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sigma = Sigma::new(args.sigma)?;
    if args.count == 0 {
        anyhow::bail!("invalid parameter count: must be at least 1");
    }
    let image = read_image(&args.image, &DecodeLimits::default())?.1;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
    let sampler = NoiseSampler::new(sigma, args.seed);
    for i in 0..args.count {
        let path = args.out.join(format!("noisy-{}-{i}.png", args.seed));
        // Clipped to [0, 1] and rounded to 8 bits: exactly what a remote API is sent.
        let png = sampler.draw(&image, i).to_png()?;
        std::fs::write(&path, png).with_context(|| format!("{}", path.display()))?;
        outln!("{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
