//! `robustify replay`: CERTIFY from logged labels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use robustify_pipeline::{CertificateRecord, Outcome, RecordContext};
use robustify_smoothing::table::{Outcome as TableOutcome, certified_accuracy, default_radii};
use robustify_smoothing::{CertifyParams, certify_labels};
use serde::Serialize;

use crate::cmd::sequential::{Mode, SequenceArg};

mod sequential;
use crate::render;
use crate::render::{out, outln};

/// Arguments of `robustify replay`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// JSON Lines log, gzip'd or not: one image a line with `labels` (query order) and
    /// `clean` (the reference label).
    log: PathBuf,
    /// Noise level σ the log was made with, in (0, 1] (pixel units).
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
    /// `fixed` (CERTIFY with exactly n estimation draws) or `sequential` (stop as soon as
    /// an anytime-valid confidence sequence decides; needs --target-radius).
    #[arg(long, value_enum, default_value = "fixed")]
    mode: Mode,
    /// Sequential mode: the radius to decide about.
    #[arg(long)]
    target_radius: Option<f64>,
    /// Sequential mode: the confidence sequence.
    #[arg(long, value_enum, default_value = "betting")]
    sequence: SequenceArg,
    /// Sequential mode: draws consumed between checks (as a concurrent client would).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// A query log: only this provider's answers (a proxy's log mixes them).
    #[arg(long)]
    provider: Option<String>,
    /// A query log: only answers through this denoiser (`none` for none).
    #[arg(long)]
    denoiser: Option<String>,
    /// A query log: only this seed's draws.
    #[arg(long)]
    seed: Option<u64>,
}

/// The records of the log: for a query log, only the answers at --sigma (and the provider,
/// denoiser and seed asked for).
pub(super) fn records(
    args: &Args,
) -> anyhow::Result<Vec<robustify_providers::replay::ReplayRecord>> {
    let filter = robustify_providers::replay::QueryFilter {
        sigma: Some(args.sigma),
        provider: args.provider.clone(),
        denoiser: args.denoiser.clone(),
        seed: args.seed,
    };
    Ok(robustify_providers::replay::read_replay_log_filtered(
        &args.log, &filter,
    )?)
}

/// An image's certificate as every command writes it: named by its index in a
/// paper-format log, else by what identifies it in a query log (hash prefix, provider,
/// denoiser, σ, seed); its reference label, when the log has one, as the clean label.
pub(super) fn record_of(
    args: &Args,
    record: &robustify_providers::replay::ReplayRecord,
    i: usize,
    outcome: &Outcome,
) -> CertificateRecord {
    let image = match (&record.name, record.image) {
        (Some(name), None) => name.clone(),
        (_, Some(index)) => index.to_string(),
        (None, None) => i.to_string(),
    };
    let ctx = RecordContext {
        image,
        provider: args.provider.clone().unwrap_or_else(|| "-".into()),
        denoiser: args.denoiser.clone().unwrap_or_else(|| "-".into()),
        clean_label: record.clean.clone(),
        ..RecordContext::default()
    };
    CertificateRecord::new(outcome, ctx).with_truth(record.clean.as_deref())
}

#[derive(Serialize)]
struct ReplayJson {
    table: Vec<robustify_smoothing::table::AccuracyRow>,
    abstained: usize,
    /// Each image's certificate (`correct` is null without a reference label).
    images: Vec<CertificateRecord>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let params = CertifyParams::new(args.sigma, args.n0, args.n, args.alpha)?;
    if args.mode == Mode::Sequential {
        return sequential::run(&args, &params);
    }
    let radii = args.radii.clone().unwrap_or_else(default_radii);
    if let Some(r) = radii.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        anyhow::bail!("invalid radius {r}: radii must be finite and ≥ 0");
    }
    let records = records(&args)?;
    let mut outcomes = Vec::with_capacity(records.len());
    let mut certs = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let cert = certify_labels(&record.labels, &params)
            .with_context(|| format!("{}:{}", args.log.display(), record.line))?;
        // Without a reference label (a query log), count a certified image as correct: the
        // table is then the share of images certified at each radius.
        let truth = record
            .clean
            .as_deref()
            .or(cert.label.as_deref())
            .unwrap_or("");
        outcomes.push(TableOutcome::new(&cert, truth));
        certs.push(record_of(&args, record, i, &Outcome::Fixed(cert)));
    }
    let table = certified_accuracy(&outcomes, &radii);
    let abstained = outcomes.iter().filter(|o| o.label.is_none()).count();
    if args.json {
        render::print_json(&ReplayJson {
            table,
            abstained,
            images: certs,
        })?;
    } else {
        outln!(
            "{}: {} images, σ = {}, n0 = {}, n = {}, α = {}\n",
            args.log.display(),
            records.len(),
            args.sigma,
            args.n0,
            args.n,
            args.alpha
        )?;
        if records.iter().any(|r| r.clean.is_none()) {
            outln!(
                "(a query log has no reference labels: the table is the share of images certified)\n"
            )?;
        }
        out!("{}", render::accuracy_table(&table))?;
        outln!("\nabstained: {abstained} of {} images", records.len())?;
    }
    Ok(ExitCode::SUCCESS)
}
