//! `robustify classify`: one clean query per image, top-5 labels with scores.

use std::path::PathBuf;
use std::process::ExitCode;

use robustify_smoothing::DecodeLimits;
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::model::Classifier;
use serde::Serialize;

use crate::input::read_image;
use crate::render;

/// Where the labels come from.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ClassifyProvider {
    /// The ImageNet stand-in (EfficientNet-Lite0) in this process.
    StandinLocal,
}

/// Arguments of `robustify classify`.
#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG, WebP or BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Provider to ask.
    #[arg(long, value_enum, default_value = "standin-local")]
    provider: ClassifyProvider,
    /// How many labels to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LabelJson {
    label: String,
    score: f32,
}

#[derive(Serialize)]
struct ImageJson {
    image: String,
    labels: Vec<LabelJson>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let model = match args.provider {
        ClassifyProvider::StandinLocal => ImageNetClassifier::load_default()?,
    };
    let mut results = Vec::new();
    let mut failed = false;
    for path in &args.images {
        // A bad image is reported and skipped; the exit code tells (ripgrep's habit).
        let outcome = read_image(path, &DecodeLimits::default())
            .and_then(|img| Ok(model.classify(&[img], args.top)?));
        match outcome {
            Ok(mut top) => {
                let labels = top.pop().unwrap_or_default();
                results.push(ImageJson {
                    image: path.display().to_string(),
                    labels: labels
                        .into_iter()
                        .map(|s| LabelJson {
                            label: s.label,
                            score: s.score,
                        })
                        .collect(),
                });
            }
            Err(err) => {
                eprintln!("error: {err:#}");
                failed = true;
            }
        }
    }
    if args.json {
        render::print_json(&results)?;
    } else {
        for r in &results {
            println!("{}", r.image);
            for l in &r.labels {
                println!("  {:>6.3}  {}", l.score, l.label);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
