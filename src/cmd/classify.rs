//! `robustify classify`: one clean query per image, top-5 labels with scores.

use std::path::PathBuf;
use std::process::ExitCode;

use robustify_providers::{BudgetLimits, ProviderDef, ScoredLabel};
use robustify_smoothing::DecodeLimits;
use serde::Serialize;

use crate::render;
use robustify_pipeline::input::read_image;
use robustify_pipeline::open_provider;

/// Arguments of `robustify classify`.
#[derive(clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG, WebP or BMP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Provider name (see `robustify providers`) or definition file: `standin-local` (the
    /// ImageNet stand-in in this process), `standin` (the same over HTTP, `robustify standin
    /// serve`), `standin-cifar10-local`, `standin-cifar10`, or a vendor (one paid query per
    /// image).
    #[arg(long, default_value = "standin-local")]
    provider: String,
    /// Send requests here instead of the definition's endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// How many labels to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print one JSON array instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ImageJson {
    image: String,
    /// The vendor's labels, in its order.
    labels: Vec<ScoredLabel>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let def = ProviderDef::load(&args.provider)?;
    let (provider, http) = open_provider(&def, args.endpoint.as_deref(), BudgetLimits::default())?;
    // A bad image is reported and skipped; the exit code tells (ripgrep's habit).
    let mut failed = false;
    let mut good = Vec::new();
    for path in &args.images {
        match read_image(path, &DecodeLimits::default()) {
            Ok((_, image)) => good.push((path, image)),
            Err(err) => {
                eprintln!("{} {err:#}", crate::render::label("error"));
                failed = true;
            }
        }
    }
    let mut results = Vec::new();
    for batch in good.chunks(provider.preferred_batch().max(1)) {
        let images: Vec<_> = batch.iter().map(|(_, image)| image.clone()).collect();
        let answers = runtime.block_on(provider.classify(&images));
        for ((path, _), answer) in batch.iter().zip(answers) {
            match answer {
                Ok(delivered) => results.push(ImageJson {
                    image: path.display().to_string(),
                    labels: delivered.answer.labels.into_iter().take(args.top).collect(),
                }),
                Err(err) => {
                    eprintln!(
                        "{} {}: {err}",
                        crate::render::label("error"),
                        path.display()
                    );
                    failed = true;
                }
            }
        }
    }
    if args.json {
        render::print_json(&results)?;
    } else {
        let mut text = String::new();
        for r in &results {
            text += &format!("{}\n", r.image);
            for l in &r.labels {
                text += &format!(
                    "  {:>6.3}  {}\n",
                    l.score,
                    crate::render::printable(&l.label)
                );
            }
        }
        render::print_text(&text)?;
    }
    if let Some(http) = &http
        && !def.pricing.is_free()
    {
        eprintln!(
            "{} answered by {}, ${:.4} spent",
            results.len(),
            def.name,
            http.ledger().spent_usd()
        );
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
