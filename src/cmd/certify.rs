//! `robustify certify`: CERTIFY each image against a provider.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use robustify_smoothing::{Certificate, Decision, SequenceKind, SequentialCertificate};
use serde::Serialize;

use super::sequential::{Outcome, Plan, SequentialArgs};
use super::session::{EXIT_BUDGET, Progressed, ProviderArgs, Session, draw_bar, is_budget};
use crate::input::read_image_within;
use crate::render;
use crate::render::outln;

/// Arguments of `robustify certify`.
///
/// Exit status: 0 when every image was certified or abstained, 2 on an error (the other
/// images still run), 3 when the budget stopped the run (images not reached are listed).
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
    /// Selection draws per image.
    #[arg(long)]
    n0: u64,
    /// Estimation draws per image (fixed mode; in sequential mode the default --max-draws).
    #[arg(long, required_unless_present = "target_radius")]
    n: Option<u64>,
    #[command(flatten)]
    sequential: SequentialArgs,
    /// Failure probability α.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Master seed of the noise (recorded in the result).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noisy images per provider call [default: the provider's images per request × its
    /// concurrency].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Print one JSON object per image (JSON Lines) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also ask a paid provider for each image's clean (noise-free) label, shown beside the
    /// certified one: one more paid query per image, not logged (free providers always
    /// get it unless --no-clean).
    #[arg(long, conflicts_with = "no_clean")]
    clean: bool,
    /// No clean query: the table's clean-label column stays empty.
    #[arg(long)]
    no_clean: bool,
}

#[derive(Serialize)]
struct CertJson<'a> {
    image: String,
    status: &'a str,
    label: Option<&'a str>,
    clean_label: Option<&'a str>,
    radius: f64,
    p_lower: f64,
    counts: &'a std::collections::BTreeMap<String, u64>,
    queries: u64,
    reused: u64,
    cost_usd: f64,
    seed: Option<u64>,
    sigma: f64,
    n0: u64,
    n: u64,
    alpha: f64,
}

#[derive(Serialize)]
struct Unfinished<'a> {
    image: String,
    status: &'a str,
    label: Option<&'a str>,
    error: String,
}

#[derive(Serialize)]
struct SeqJson<'a> {
    image: String,
    status: &'a str,
    mode: &'a str,
    label: Option<&'a str>,
    clean_label: Option<&'a str>,
    decision: Option<Decision>,
    target_radius: Option<f64>,
    radius: f64,
    p_lower: f64,
    p_upper: f64,
    n_a: u64,
    queries: u64,
    reused: u64,
    cost_usd: f64,
    seed: Option<u64>,
    sigma: f64,
    n0: u64,
    n: u64,
    alpha: f64,
    sequence: SequenceKind,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let session = Session::open(&args.provider, args.sigma)?;
    let batch = args.batch_size.unwrap_or_else(|| session.preferred_batch());
    let paid = !session.def.pricing.is_free();
    let plan = args
        .sequential
        .plan((args.sigma, args.n0, args.n, args.alpha), batch)?;
    let total_draws = plan.max_draws();
    let mut failed = false;
    let mut budget_hit = false;
    if !args.json {
        let how = match &plan {
            Plan::Fixed(p) => format!("n = {}", p.n()),
            Plan::Sequential(p) => format!(
                "sequential ({:?}), ≤ {} draws{}",
                SequenceKind::from(args.sequential.sequence),
                p.max_draws(),
                args.sequential
                    .target_radius
                    .map(|r| format!(", target radius {r}"))
                    .unwrap_or_default()
            ),
        };
        outln!(
            "provider {} · denoiser {} · σ = {} · n0 = {} · {how} · α = {} · seed {}\n",
            session.def.name,
            session.denoiser_name(),
            args.sigma,
            args.n0,
            args.alpha,
            args.seed
        )?;
        outln!(
            "{:<IMAGE_W$} {:<LABEL_W$} {:<LABEL_W$} {:>7} {:>7} {:>8} {:>8}",
            "image",
            "clean label",
            "certified label",
            "radius",
            "p_lower",
            "n_A/n",
            "cost $"
        )?;
    }
    for path in &args.images {
        if budget_hit {
            unfinished(
                &args,
                path,
                "budget_exhausted",
                "not started: budget reached",
            )?;
            continue;
        }
        let memory = args.provider.memory();
        let fitted = read_image_within(path, &memory).and_then(|(bytes, image)| {
            let plan = plan.fitted(image.width(), image.height(), &memory)?;
            Ok((bytes, image, plan))
        });
        let (bytes, image, plan) = match fitted {
            Ok(x) => x,
            Err(err) => {
                eprintln!("{} {err:#}", crate::render::label("error"));
                unfinished(&args, path, "error", &format!("{err:#}"))?;
                failed = true;
                continue;
            }
        };
        let spent_before = session.spent_usd();
        let clean = if args.no_clean || (paid && !args.clean) {
            None
        } else {
            match runtime.block_on(session.clean_label(&image)) {
                Ok(label) => Some(label),
                Err(err) => {
                    let budget = super::session::is_budget_any(&err);
                    failure(&args, path, &format!("{err:#}"), budget)?;
                    budget_hit |= budget;
                    failed |= !budget;
                    continue;
                }
            }
        };
        let classifier = session.classifier(&bytes, args.sigma, args.seed);
        let bar = draw_bar(total_draws, path.display().to_string());
        let progressed = Progressed {
            inner: classifier.clone(),
            bar: bar.clone(),
            session: &session,
        };
        let result = runtime.block_on(plan.run(&progressed, &image, args.seed));
        bar.finish_and_clear();
        let cost = session.spent_usd() - spent_before;
        match result {
            Ok(Outcome::Fixed(cert)) => print_cert(
                &args,
                path,
                &cert,
                clean.as_deref(),
                cost,
                classifier.inner().reused(),
            )?,
            Ok(Outcome::Sequential(cert)) => print_sequential(
                &args,
                path,
                &cert,
                clean.as_deref(),
                cost,
                classifier.inner().reused(),
            )?,
            Err(err) => {
                let budget = is_budget(&err);
                failure(&args, path, &err.to_string(), budget)?;
                budget_hit |= budget;
                failed |= !budget;
            }
        }
    }
    if !args.json {
        outln!("\n{LEGEND}")?;
    }
    session.close()?;
    report_traffic(&session, args.json)?;
    if budget_hit {
        // The one figure for the spend: after every request in flight has settled.
        eprintln!(
            "{} the budget stopped the run: ${:.4} spent in all",
            crate::render::label("error"),
            session.spent_usd()
        );
    }
    Ok(if budget_hit {
        ExitCode::from(EXIT_BUDGET)
    } else if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Spend and traffic: after the table, or on stderr under `--json` (never mixed into JSON).
pub fn report_traffic(session: &Session, json: bool) -> anyhow::Result<()> {
    if let Some(t) = session.traffic() {
        let line = format!(
            "{}: {} requests ({} retries, {} throttled, {} transient failures), {} images answered, ${:.4} spent{}",
            session.def.name,
            t.requests,
            t.retries,
            t.throttled,
            t.transient,
            t.images,
            session.spent_usd(),
            session
                .log
                .as_ref()
                .map(|l| format!(", log {}", l.path().display()))
                .unwrap_or_default()
        );
        if json {
            eprintln!("{line}");
        } else {
            outln!("\n{line}")?;
        }
    }
    Ok(())
}

fn unfinished(args: &Args, path: &Path, status: &str, error: &str) -> anyhow::Result<()> {
    if args.json {
        render::print_json(&Unfinished {
            image: path.display().to_string(),
            status,
            label: None,
            error: error.to_owned(),
        })
    } else {
        outln!(
            "{:<IMAGE_W$} {:<LABEL_W$} {}",
            fit(&path.display().to_string(), IMAGE_W),
            "",
            status.replace('_', " ")
        )?;
        Ok(())
    }
}

/// An image that ended without a certificate: the error on stderr, its row or JSON line
/// as `budget_exhausted` or `error`.
fn failure(args: &Args, path: &Path, message: &str, budget: bool) -> anyhow::Result<()> {
    eprintln!(
        "{} {}: {message}",
        crate::render::label("error"),
        path.display()
    );
    let status = if budget { "budget_exhausted" } else { "error" };
    unfinished(args, path, status, message)
}

fn print_sequential(
    args: &Args,
    path: &Path,
    cert: &SequentialCertificate,
    clean: Option<&str>,
    cost: f64,
    reused: u64,
) -> anyhow::Result<()> {
    let status = match (cert.decision, &cert.label) {
        (Some(d), _) => d.as_str(),
        (None, Some(_)) => "certified",
        (None, None) => "abstained",
    };
    if args.json {
        return render::print_json(&SeqJson {
            image: path.display().to_string(),
            status,
            mode: "sequential",
            label: cert.label.as_deref(),
            clean_label: clean,
            decision: cert.decision,
            target_radius: cert.target_radius,
            radius: cert.radius,
            p_lower: cert.p_lower,
            p_upper: cert.p_upper,
            n_a: cert.n_a,
            queries: cert.queries,
            reused,
            cost_usd: cost,
            seed: cert.seed,
            sigma: cert.sigma,
            n0: cert.n0,
            n: cert.n,
            alpha: cert.alpha,
            sequence: cert.sequence,
        });
    }
    let label = match (&cert.label, &cert.candidate) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => format!("{} ({c}?)", status.replace('_', " ")),
        (None, None) => status.replace('_', " "),
    };
    row(
        path,
        clean,
        &label,
        cert.radius,
        cert.p_lower,
        cert.n_a,
        cert.n,
        cost,
    )
}

fn print_cert(
    args: &Args,
    path: &Path,
    cert: &Certificate,
    clean: Option<&str>,
    cost: f64,
    reused: u64,
) -> anyhow::Result<()> {
    if args.json {
        return render::print_json(&CertJson {
            image: path.display().to_string(),
            status: if cert.label.is_some() {
                "certified"
            } else {
                "abstained"
            },
            label: cert.label.as_deref(),
            clean_label: clean,
            radius: cert.radius,
            p_lower: cert.p_lower,
            counts: &cert.counts,
            queries: cert.queries,
            reused,
            cost_usd: cost,
            seed: cert.seed,
            sigma: cert.sigma,
            n0: cert.n0,
            n: cert.n,
            alpha: cert.alpha,
        });
    }
    let label = match (&cert.label, &cert.candidate) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => format!("abstain ({c}?)"),
        (None, None) => "abstain".into(),
    };
    row(
        path,
        clean,
        &label,
        cert.radius,
        cert.p_lower,
        cert.n_a,
        cert.n,
        cost,
    )
}

/// Column widths of the table (the labels elided to fit, the image path from its end).
const IMAGE_W: usize = 36;
const LABEL_W: usize = 22;

/// What the columns mean, printed under the table (as wide as the table).
const LEGEND: &str =
    "radius: no ℓ2 perturbation smaller than this changes the certified label (probability ≥ 1 − α)
p_lower: lower bound on the label's probability under noise · n_A/n: draws that agreed with it
clean label: the provider's answer without noise (1 query; free providers only unless --clean)";

/// A label in at most `width` characters: its start, then `…`.
fn fit_start(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let head: String = text.chars().take(width - 1).collect();
    format!("{head}…")
}

/// `text` in at most `width` characters: kept whole if it fits, else its end after `…`
/// (paths: the file name matters most).
fn fit(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

/// One table row.
#[allow(clippy::too_many_arguments)]
fn row(
    path: &Path,
    clean: Option<&str>,
    label: &str,
    radius: f64,
    p_lower: f64,
    n_a: u64,
    n: u64,
    cost: f64,
) -> anyhow::Result<()> {
    outln!(
        "{:<IMAGE_W$} {:<LABEL_W$} {:<LABEL_W$} {:>7.4} {:>7.4} {:>8} {:>8.4}",
        fit(&path.display().to_string(), IMAGE_W),
        fit_start(clean.unwrap_or("–"), LABEL_W),
        fit_start(label, LABEL_W),
        radius,
        p_lower,
        format!("{n_a}/{n}"),
        cost
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{fit, fit_start};

    #[test]
    fn long_cells_keep_their_end() {
        assert_eq!(fit("goldfish", 10), "goldfish");
        assert_eq!(
            fit("examples/images/golden_retriever.jpg", 22),
            "…/golden_retriever.jpg"
        );
        assert_eq!(
            fit_start("abstain (Chesapeake Bay retriever?)", 22),
            "abstain (Chesapeake B…"
        );
    }
}
