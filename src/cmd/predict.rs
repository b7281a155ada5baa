//! `robustify predict`: PREDICT each image (the smoothed label, or abstain) against a
//! provider, with the same provider, budget and log flags as `certify`.

use std::path::PathBuf;
use std::process::ExitCode;

use robustify_smoothing::{PredictParams, predict};
use serde::Serialize;

use super::certify::report_traffic;
use super::session::{EXIT_BUDGET, Progressed, ProviderArgs, Session, draw_bar, is_budget};
use crate::input::read_image_within;
use crate::render;
use crate::render::outln;

/// Arguments of `robustify predict`. Exit status as for `certify`.
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
    /// Draws per image.
    #[arg(long)]
    n: u64,
    /// Probability of returning a label other than the smoothed classifier's.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Master seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noisy images per provider call [default: the provider's preferred batch].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print one JSON object per image (JSON Lines) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PredictJson<'a> {
    image: String,
    status: &'a str,
    label: Option<&'a str>,
    /// The two most frequent labels with their counts, so an abstention says between what.
    #[serde(skip_serializing_if = "Option::is_none")]
    top_two: Option<Vec<(&'a str, u64)>>,
    p_value: Option<f64>,
    counts: Option<&'a std::collections::BTreeMap<String, u64>>,
    queries: u64,
    reused: u64,
    cost_usd: f64,
    seed: u64,
    sigma: f64,
    n: u64,
    alpha: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let session = Session::open(&args.provider, args.sigma)?;
    let batch = args.batch_size.unwrap_or_else(|| session.preferred_batch());
    let params = PredictParams::new(args.sigma, args.n, args.alpha)?.with_batch_size(batch)?;
    let (mut failed, mut budget_hit) = (false, false);
    if !args.json {
        outln!(
            "provider {} · denoiser {} · σ = {} · n = {} · α = {} · seed {}\n",
            session.def.name,
            session.denoiser_name(),
            args.sigma,
            args.n,
            args.alpha,
            args.seed
        )?;
        outln!(
            "{:<36} {:<24} {:>10} {:>9}",
            "image",
            "label",
            "p-value",
            "cost $"
        )?;
    }
    for path in &args.images {
        let mut out = PredictJson {
            image: path.display().to_string(),
            status: "budget_exhausted",
            label: None,
            top_two: None,
            p_value: None,
            counts: None,
            queries: 0,
            reused: 0,
            cost_usd: 0.0,
            seed: args.seed,
            sigma: args.sigma,
            n: args.n,
            alpha: args.alpha,
            error: None,
        };
        if budget_hit {
            out.error = Some("not started: budget reached".into());
            emit(&args, &out)?;
            continue;
        }
        let memory = args.provider.memory();
        let fitted = read_image_within(path, &memory).and_then(|(bytes, image)| {
            let batch = memory.batch_for(image.width(), image.height(), params.batch_size())?;
            Ok((bytes, image, params.with_batch_size(batch)?))
        });
        let (bytes, image, params) = match fitted {
            Ok(x) => x,
            Err(err) => {
                eprintln!("{} {err:#}", crate::render::label("error"));
                out.status = "error";
                out.error = Some(format!("{err:#}"));
                emit(&args, &out)?;
                failed = true;
                continue;
            }
        };
        let classifier = session.classifier(&bytes, args.sigma, args.seed);
        let bar = draw_bar(args.n, path.display().to_string());
        let progressed = Progressed {
            inner: classifier.clone(),
            bar: bar.clone(),
            session: &session,
        };
        let before = session.spent_usd();
        let result = runtime.block_on(predict(&progressed, &image, &params, args.seed));
        bar.finish_and_clear();
        out.cost_usd = session.spent_usd() - before;
        out.reused = classifier.inner().reused();
        match result {
            Ok(p) => {
                out.status = if p.label.is_some() {
                    "predicted"
                } else {
                    "abstained"
                };
                out.label = p.label.as_deref();
                out.top_two = Some(top_two(&p.counts));
                out.p_value = Some(p.p_value);
                out.counts = Some(&p.counts);
                out.queries = p.queries;
                emit(&args, &out)?;
                continue;
            }
            Err(err) => {
                eprintln!(
                    "{} {}: {err}",
                    crate::render::label("error"),
                    path.display()
                );
                if is_budget(&err) {
                    budget_hit = true;
                } else {
                    out.status = "error";
                    failed = true;
                }
                out.error = Some(err.to_string());
                emit(&args, &out)?;
            }
        }
    }
    session.close()?;
    report_traffic(&session, args.json)?;
    Ok(if budget_hit {
        ExitCode::from(EXIT_BUDGET)
    } else if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn emit(args: &Args, out: &PredictJson<'_>) -> anyhow::Result<()> {
    if args.json {
        return render::print_json(out);
    }
    let label = match (out.status, out.label, out.top_two.as_deref()) {
        (_, Some(l), _) => l.to_owned(),
        // An abstention names the two labels it could not tell apart.
        ("abstained", None, Some([(a, na), (b, nb), ..])) => {
            format!("abstain ({a} {na} vs {b} {nb})")
        }
        (s, None, _) => s.replace('_', " "),
    };
    outln!(
        "{:<36} {:<24} {:>10} {:>9.4}",
        out.image,
        label,
        out.p_value.map_or("-".into(), |p| format!("{p:.3e}")),
        out.cost_usd
    )?;
    Ok(())
}

/// The two most frequent labels (ties by name), with their counts.
fn top_two(counts: &std::collections::BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut all: Vec<(&str, u64)> = counts.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    all.truncate(2);
    all
}
