//! `robustify replay`: CERTIFY from logged labels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use robustify_providers::replay::read_replay_log;
use robustify_smoothing::table::{Outcome, certified_accuracy, default_radii};
use robustify_smoothing::{CertifyParams, certify_labels};
use serde::Serialize;

use crate::render;

/// Arguments of `robustify replay`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// JSON Lines log, gzip'd or not: one image a line with `labels` (query order) and
    /// `clean` (the reference label).
    log: PathBuf,
    /// Noise level σ the log was made with, in [0, 1] pixel units.
    #[arg(long)]
    sigma: f64,
    /// Selection draws: the first N0 labels of each line.
    #[arg(long)]
    n0: u64,
    /// Estimation draws: the N labels after those.
    #[arg(long)]
    n: u64,
    /// Failure probability α of each certificate.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Radii of the table, comma-separated [default: 0,0.05,…,0.5].
    #[arg(long, value_delimiter = ',')]
    radii: Option<Vec<f64>>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ImageJson<'a> {
    image: u64,
    label: Option<&'a str>,
    radius: f64,
    correct: bool,
}

#[derive(Serialize)]
struct ReplayJson<'a> {
    table: Vec<robustify_smoothing::table::AccuracyRow>,
    abstained: usize,
    images: Vec<ImageJson<'a>>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let params = CertifyParams::new(args.sigma, args.n0, args.n, args.alpha)?;
    let radii = args.radii.unwrap_or_else(default_radii);
    if let Some(r) = radii.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        anyhow::bail!("invalid radius {r}: radii must be finite and ≥ 0");
    }
    let records = read_replay_log(&args.log)?;
    let mut outcomes = Vec::with_capacity(records.len());
    for record in &records {
        let cert = certify_labels(&record.labels, &params)
            .with_context(|| format!("{}:{}", args.log.display(), record.line))?;
        // Without a reference label (a query log), count a certified image as correct: the
        // table is then the share of images certified at each radius.
        let truth = record
            .clean
            .as_deref()
            .or(cert.label.as_deref())
            .unwrap_or("");
        outcomes.push(Outcome::new(&cert, truth));
    }
    let table = certified_accuracy(&outcomes, &radii);
    let abstained = outcomes.iter().filter(|o| o.label.is_none()).count();
    if args.json {
        let images = records
            .iter()
            .zip(&outcomes)
            .enumerate()
            .map(|(i, (rec, o))| ImageJson {
                image: rec.image.unwrap_or(i as u64),
                label: o.label.as_deref(),
                radius: o.radius,
                correct: o.correct,
            })
            .collect();
        render::print_json(&ReplayJson {
            table,
            abstained,
            images,
        })?;
    } else {
        println!(
            "{}: {} images, σ = {}, n0 = {}, n = {}, α = {}\n",
            args.log.display(),
            records.len(),
            args.sigma,
            args.n0,
            args.n,
            args.alpha
        );
        if records.iter().any(|r| r.clean.is_none()) {
            println!(
                "(a query log has no reference labels: the table is the share of images certified)\n"
            );
        }
        print!("{}", render::accuracy_table(&table));
        println!("\nabstained: {abstained} of {} images", records.len());
    }
    Ok(ExitCode::SUCCESS)
}
