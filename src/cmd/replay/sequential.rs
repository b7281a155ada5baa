//! `robustify replay --mode sequential`: each image decided at the target radius, against
//! fixed-n CERTIFY on the same labels.

use std::process::ExitCode;

use anyhow::Context;
use robustify_pipeline::{CertificateRecord, Outcome};
use robustify_smoothing::{
    CertifyParams, Decision, SequenceKind, SequentialParams, certify_labels,
    certify_sequential_labels,
};
use serde::Serialize;

use super::{Args, record_of, records};
use crate::render;
use crate::render::outln;

#[derive(Serialize)]
struct SeqJson {
    mode: &'static str,
    target_radius: f64,
    sequence: SequenceKind,
    image_count: usize,
    mean_queries: f64,
    fixed_queries: u64,
    certified_sequential: usize,
    certified_fixed: usize,
    correct_sequential: usize,
    correct_fixed: usize,
    decisions_differ: usize,
    undecided: usize,
    /// Each image's sequential certificate, under the same name as in fixed mode.
    images: Vec<CertificateRecord>,
    /// Each image's fixed-n certificate from the same labels.
    fixed: Vec<CertificateRecord>,
}

/// Sequential replay.
pub(super) fn run(args: &Args, params: &CertifyParams) -> anyhow::Result<ExitCode> {
    let r = args
        .target_radius
        .context("--mode sequential needs --target-radius")?;
    let seq_params = SequentialParams::new(args.sigma, args.n0, args.n, args.alpha, Some(r))?
        .with_kind(args.sequence.into())
        .with_batch_size(args.batch_size)?;
    let records = records(args)?;
    let mut out = SeqJson {
        mode: "sequential",
        target_radius: r,
        sequence: args.sequence.into(),
        image_count: records.len(),
        mean_queries: 0.0,
        fixed_queries: args.n0 + args.n,
        certified_sequential: 0,
        certified_fixed: 0,
        correct_sequential: 0,
        correct_fixed: 0,
        decisions_differ: 0,
        undecided: 0,
        images: Vec::new(),
        fixed: Vec::new(),
    };
    for (i, record) in records.iter().enumerate() {
        let at = || format!("{}:{}", args.log.display(), record.line);
        let fixed = certify_labels(&record.labels, params).with_context(at)?;
        let seq = certify_sequential_labels(&record.labels, &seq_params).with_context(at)?;
        let fixed_certified = fixed.label.is_some() && fixed.radius >= r;
        let seq_certified = seq.decision == Some(Decision::Certified);
        let truth = record.clean.as_deref();
        out.certified_fixed += usize::from(fixed_certified);
        out.certified_sequential += usize::from(seq_certified);
        out.correct_fixed +=
            usize::from(fixed_certified && truth.is_none_or(|t| fixed.label.as_deref() == Some(t)));
        out.correct_sequential +=
            usize::from(seq_certified && truth.is_none_or(|t| seq.label.as_deref() == Some(t)));
        out.decisions_differ += usize::from(fixed_certified != seq_certified);
        out.undecided += usize::from(seq.decision == Some(Decision::Undecided));
        out.mean_queries += seq.queries as f64;
        out.images
            .push(record_of(args, record, i, &Outcome::Sequential(seq)));
        out.fixed
            .push(record_of(args, record, i, &Outcome::Fixed(fixed)));
    }
    out.mean_queries /= records.len().max(1) as f64;
    if args.json {
        render::print_json(&out)?;
    } else {
        outln!(
            "{}: {} images, σ = {}, target radius {r}, α = {}, {:?} sequence, batches of {}\n",
            args.log.display(),
            out.image_count,
            args.sigma,
            args.alpha,
            out.sequence,
            args.batch_size
        )?;
        outln!("                      sequential   fixed n0 + n")?;
        outln!(
            "mean queries          {:>10.1}   {:>12}",
            out.mean_queries,
            out.fixed_queries
        )?;
        outln!(
            "certified at R        {:>10}   {:>12}",
            out.certified_sequential,
            out.certified_fixed
        )?;
        outln!(
            "certified, correct    {:>10}   {:>12}",
            out.correct_sequential,
            out.correct_fixed
        )?;
        outln!(
            "\ndecisions that differ: {} · undecided when the draws ran out: {}",
            out.decisions_differ,
            out.undecided
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
