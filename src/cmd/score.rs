//! `robustify denoisers score`: what a denoiser buys, measured on labelled images — PSNR of
//! the noisy and the denoised copies, and the local stand-in's top-1 accuracy on the clean,
//! the noisy and the denoised images (the paper's "off-the-shelf classifier under noise").

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use robustify_denoiser::{Denoiser, registry};
use robustify_smoothing::{DecodeLimits, Image, NoiseSampler, Sigma};
use robustify_standin::cifar::CifarClassifier;
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::model::Classifier;
use serde::Serialize;

use crate::render;
use crate::render::outln;
use robustify_pipeline::input::read_image;

/// Arguments of `robustify denoisers score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Shipped denoiser name or folder.
    denoiser: String,
    /// Labelled images: class folders (`cifar10/test/cat/0001.jpg` is a cat) or ImageNet
    /// files named `<wnid>_…` (`n01443537_goldfish.JPEG`), searched recursively, sorted.
    #[arg(long)]
    data: PathBuf,
    /// Take every K-th image …
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// … starting at this index (`--every 20 --offset 19` are the images `train denoiser
    /// --hold-out 20` kept out of training).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Noisy copies of each image.
    #[arg(long, default_value_t = 1)]
    draws: u64,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the result into the denoiser's card (`score`).
    #[arg(long)]
    update_card: bool,
}

/// The result (and what the card keeps under `score`).
#[derive(Serialize)]
struct Score {
    denoiser: String,
    sigma: f64,
    data: String,
    every: usize,
    offset: usize,
    images: usize,
    draws: u64,
    seed: u64,
    /// The stand-in classifier (`imagenet`: EfficientNet-Lite0, `cifar10`: ResNet-20).
    classifier: String,
    /// Mean PSNR (dB) of the noisy copies (clipped to [0, 1]) against the clean image.
    psnr_noisy: f64,
    /// Mean PSNR (dB) of the denoised copies.
    psnr_denoised: f64,
    accuracy_clean: f64,
    accuracy_noisy: f64,
    accuracy_denoised: f64,
    command: String,
}

/// The class id an image is labelled with: the WordNet id its file name starts with
/// (`n01443537_goldfish.JPEG`), else the name of its folder.
fn truth_of(path: &Path) -> Option<String> {
    robustify_pipeline::eval::wnid_of(path)
        .or_else(|| Some(path.parent()?.file_name()?.to_str()?.to_owned()))
}

/// The top-1 class ids of `images`.
fn top1(model: &dyn Classifier, images: &[Image]) -> anyhow::Result<Vec<String>> {
    let ranked = model.classify(images, 1)?;
    ranked
        .into_iter()
        .map(|r| {
            r.into_iter()
                .next()
                .map(|s| s.id)
                .context("the classifier returned no class")
        })
        .collect()
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.every > 0, "--every must be ≥ 1");
    anyhow::ensure!(args.draws > 0, "--draws must be ≥ 1");
    let dir = registry::resolve(&args.denoiser)?;
    let denoiser = Denoiser::load(&dir)
        .with_context(|| format!("loading the denoiser in {}", dir.display()))?;
    let sigma = Sigma::new(denoiser.sigma())?;
    let model: Box<dyn Classifier> = match denoiser.card().data.as_str() {
        "cifar10" => Box::new(CifarClassifier::load_default()?),
        _ => Box::new(ImageNetClassifier::load_default()?),
    };
    let files: Vec<PathBuf> = robustify_denoiser::data::image_files(&args.data)?
        .into_iter()
        .skip(args.offset)
        .step_by(args.every)
        .collect();
    anyhow::ensure!(
        !files.is_empty(),
        "{}: no images (after --offset {} --every {})",
        args.data.display(),
        args.offset,
        args.every
    );
    let sampler = NoiseSampler::new(sigma, args.seed);
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} images, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut psnr_noisy, mut psnr_denoised) = (0.0, 0.0);
    let (mut right_clean, mut right_noisy, mut right_denoised) = (0usize, 0usize, 0usize);
    // A few images at a time: CIFAR images batch well, photos are large.
    for chunk in files.chunks(16) {
        let mut cleans = Vec::with_capacity(chunk.len());
        let mut truths = Vec::with_capacity(chunk.len());
        for path in chunk {
            cleans.push(read_image(path, &DecodeLimits::default())?.1);
            truths.push(
                truth_of(path)
                    .with_context(|| format!("{}: cannot tell its class", path.display()))?,
            );
        }
        for (label, truth) in top1(model.as_ref(), &cleans)?.iter().zip(&truths) {
            right_clean += usize::from(label == truth);
        }
        for (clean, truth) in cleans.iter().zip(&truths) {
            let noisy = sampler.draws(clean, 0..args.draws);
            let denoised = denoiser.denoise(&noisy)?;
            for (n, d) in noisy.iter().zip(&denoised) {
                psnr_noisy += clean.psnr(n);
                psnr_denoised += clean.psnr(d);
            }
            right_noisy += top1(model.as_ref(), &noisy)?
                .iter()
                .filter(|l| *l == truth)
                .count();
            right_denoised += top1(model.as_ref(), &denoised)?
                .iter()
                .filter(|l| *l == truth)
                .count();
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let images = files.len();
    let draws = (images as u64 * args.draws) as f64;
    let score = Score {
        denoiser: denoiser.name().to_owned(),
        sigma: denoiser.sigma(),
        data: args.data.display().to_string(),
        every: args.every,
        offset: args.offset,
        images,
        draws: args.draws,
        seed: args.seed,
        classifier: model.name().to_owned(),
        psnr_noisy: psnr_noisy / draws,
        psnr_denoised: psnr_denoised / draws,
        accuracy_clean: right_clean as f64 / images as f64,
        accuracy_noisy: right_noisy as f64 / draws,
        accuracy_denoised: right_denoised as f64 / draws,
        command: std::iter::once("robustify".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    };
    if args.update_card {
        let path = dir.join("card.json");
        let mut card = denoiser.card().clone();
        card.extra
            .insert("score".into(), serde_json::to_value(&score)?);
        card.write(&path)?;
        eprintln!("wrote the score into {}", path.display());
    }
    if args.json {
        render::print_json(&score)?;
    } else {
        outln!(
            "{} (σ = {}) on {} images of {} × {} noisy cop{}, seed {}; stand-in {}",
            score.denoiser,
            score.sigma,
            images,
            score.data,
            args.draws,
            if args.draws == 1 { "y" } else { "ies" },
            args.seed,
            score.classifier
        )?;
        outln!("{:<10} {:>10} {:>16}", "", "PSNR", "stand-in top-1")?;
        outln!(
            "{:<10} {:>10} {:>15.1}%",
            "clean",
            "-",
            100.0 * score.accuracy_clean
        )?;
        for (name, p, a) in [
            ("noisy", score.psnr_noisy, score.accuracy_noisy),
            ("denoised", score.psnr_denoised, score.accuracy_denoised),
        ] {
            outln!("{name:<10} {:>7.2} dB {:>15.1}%", p, 100.0 * a)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
