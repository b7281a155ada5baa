//! `robustify envelope`: the Denoised Smoothing paper's headline table from eval runs at
//! several σ of the same images — at each radius the best certified accuracy over the
//! runs (the "outer envelope"), which σ gave it, and one plot of every run with the
//! envelope.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use robustify_pipeline::eval::Summary;
use robustify_smoothing::table::{Outcome, certified_accuracy};
use serde::Serialize;

use crate::plot::{Curve, certified_accuracy_png};
use crate::render::{out, outln};

/// The radii of the paper's headline tables (with 0, the clean certified accuracy).
pub(super) const PAPER_RADII: &str = "0,0.25,0.5,0.75,1,1.25,1.5";

/// Arguments of `robustify envelope`.
#[derive(clap::Args)]
pub struct Args {
    /// Eval output folders (each with `summary.json` and `certify.tsv`), typically one per
    /// σ, all over the same images.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Radii of the table.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = PAPER_RADII
    )]
    radii: Vec<f64>,
    /// The row's name in the table and the plot (e.g. "query access").
    #[arg(long)]
    title: Option<String>,
    /// Output folder: envelope.json, envelope.tsv, envelope.png.
    #[arg(long)]
    out: PathBuf,
    /// Print the envelope as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One eval run, read back.
struct Run {
    dir: PathBuf,
    summary: Summary,
    /// Per image, by its index in the folder: radius and whether it was certified right.
    outcomes: Vec<(usize, Outcome)>,
}

/// One radius of the envelope.
#[derive(Serialize)]
struct Best {
    radius: f64,
    /// The best certified accuracy over the runs.
    certified_accuracy: f64,
    /// σ of the run that gave it (the smallest σ among ties); `null` when every run is 0.
    sigma: Option<f64>,
    /// That run's folder.
    run: Option<String>,
}

/// One run's row of the table.
#[derive(Serialize)]
struct RunRow {
    run: String,
    label: String,
    sigma: f64,
    denoiser: String,
    n0: u64,
    n: u64,
    certified_accuracy: Vec<f64>,
}

/// `envelope.json`.
#[derive(Serialize)]
struct Envelope {
    title: String,
    images: usize,
    radii: Vec<f64>,
    runs: Vec<RunRow>,
    envelope: Vec<Best>,
}

fn read_run(dir: &Path) -> anyhow::Result<Run> {
    let path = dir.join("summary.json");
    let summary: Summary = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
    )
    .with_context(|| format!("{}: not an eval summary", path.display()))?;
    let tsv = dir.join("certify.tsv");
    let text = std::fs::read_to_string(&tsv).with_context(|| format!("{}", tsv.display()))?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no column {name:?}", tsv.display()))
    };
    let (idx, radius, correct) = (col("idx")?, col("radius")?, col("correct")?);
    let mut outcomes = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || format!("{}:{}: malformed row", tsv.display(), n + 2);
        let get = |i: usize| f.get(i).copied().with_context(bad);
        let r: f64 = get(radius)?.parse().with_context(bad)?;
        let ok = get(correct)? == "1";
        outcomes.push((
            get(idx)?.parse().with_context(bad)?,
            Outcome {
                label: ok.then(String::new),
                radius: r,
                correct: ok,
            },
        ));
    }
    if outcomes.is_empty() {
        bail!("{}: no certified image", tsv.display());
    }
    Ok(Run {
        dir: dir.to_owned(),
        summary,
        outcomes,
    })
}

/// Refuses runs over different images (an envelope across them would compare nothing).
fn same_images(runs: &[Run]) -> anyhow::Result<()> {
    let set = |r: &Run| r.outcomes.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>();
    let first = set(&runs[0]);
    for r in &runs[1..] {
        let other = set(r);
        if other != first {
            let missing = first.difference(&other).count();
            let extra = other.difference(&first).count();
            bail!(
                "{} and {} are not over the same images ({missing} of the first's missing, \
                 {extra} others): run eval with the same folder, --skip and --max-images",
                runs[0].dir.display(),
                r.dir.display()
            );
        }
    }
    Ok(())
}

fn accuracy(run: &Run, radii: &[f64]) -> Vec<f64> {
    let outcomes: Vec<Outcome> = run.outcomes.iter().map(|(_, o)| o.clone()).collect();
    certified_accuracy(&outcomes, radii)
        .iter()
        .map(|r| r.certified_accuracy)
        .collect()
}

/// At each radius, the best run (the smallest σ among ties).
fn best(runs: &[Run], table: &[Vec<f64>], radii: &[f64]) -> Vec<Best> {
    radii
        .iter()
        .enumerate()
        .map(|(j, &radius)| {
            let mut top: Option<usize> = None;
            for (k, row) in table.iter().enumerate() {
                let better = match top {
                    None => row[j] > 0.0,
                    Some(t) => {
                        row[j] > table[t][j]
                            || (row[j] == table[t][j]
                                && runs[k].summary.sigma < runs[t].summary.sigma)
                    }
                };
                if better {
                    top = Some(k);
                }
            }
            Best {
                radius,
                certified_accuracy: top.map_or(0.0, |t| table[t][j]),
                sigma: top.map(|t| runs[t].summary.sigma),
                run: top.map(|t| runs[t].dir.display().to_string()),
            }
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    write(
        &args.runs,
        &args.radii,
        args.title.as_deref(),
        &args.out,
        args.json,
    )
}

/// The envelope of the eval runs in `dirs` at `radii`, written into `out` and printed (as
/// JSON with `json`).
pub(super) fn write(
    dirs: &[PathBuf],
    radii: &[f64],
    title: Option<&str>,
    out: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    for &r in radii {
        anyhow::ensure!(
            r.is_finite() && r >= 0.0,
            "--radii: {r} is not a radius ≥ 0"
        );
    }
    let runs = dirs
        .iter()
        .map(|d| read_run(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    same_images(&runs)?;
    let table: Vec<Vec<f64>> = runs.iter().map(|r| accuracy(r, radii)).collect();
    let envelope = best(&runs, &table, radii);
    let images = runs[0].outcomes.len();
    let title = title.unwrap_or("best over σ").to_owned();

    // The plot: every run's curve on a fine grid, and the envelope over them.
    let max_radius = runs
        .iter()
        .flat_map(|r| r.outcomes.iter().map(|(_, o)| o.radius))
        .fold(0.0f64, f64::max);
    let step = runs
        .iter()
        .map(|r| r.summary.sigma)
        .fold(f64::INFINITY, f64::min)
        / 50.0;
    let grid: Vec<f64> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|&r| r <= max_radius + step)
        .collect();
    let fine: Vec<Vec<f64>> = runs.iter().map(|r| accuracy(r, &grid)).collect();
    let mut curves: Vec<Curve> = runs
        .iter()
        .zip(&fine)
        .map(|(r, acc)| Curve {
            label: r.summary.label.clone(),
            points: grid.iter().copied().zip(acc.iter().copied()).collect(),
            wide: false,
        })
        .collect();
    // Drawn first, so that each run's own curve shows on top of it where they coincide.
    curves.insert(
        0,
        Curve {
            label: format!("{title} (envelope)"),
            points: grid
                .iter()
                .enumerate()
                .map(|(j, &r)| (r, fine.iter().map(|a| a[j]).fold(0.0, f64::max)))
                .collect(),
            wide: true,
        },
    );

    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    let doc = Envelope {
        title: title.clone(),
        images,
        radii: radii.to_vec(),
        runs: runs
            .iter()
            .zip(&table)
            .map(|(r, acc)| RunRow {
                run: r.dir.display().to_string(),
                label: r.summary.label.clone(),
                sigma: r.summary.sigma,
                denoiser: r.summary.denoiser.clone(),
                n0: r.summary.n0,
                n: r.summary.n,
                certified_accuracy: acc.clone(),
            })
            .collect(),
        envelope,
    };
    let json_path = out.join("envelope.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("{}", json_path.display()))?;
    let text = table_text(&doc);
    let tsv_path = out.join("envelope.tsv");
    std::fs::write(&tsv_path, tsv_text(&doc)).with_context(|| format!("{}", tsv_path.display()))?;
    let png = certified_accuracy_png(&format!("{title}: {images} images"), &curves)?;
    let png_path = out.join("envelope.png");
    std::fs::write(&png_path, png).with_context(|| format!("{}", png_path.display()))?;
    if json {
        crate::render::print_json(&doc)?;
    } else {
        out!("{text}")?;
        outln!(
            "wrote {}, {}, {}",
            json_path.display(),
            tsv_path.display(),
            png_path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The table for people: a row per run, then the envelope and the σ behind each entry.
fn table_text(doc: &Envelope) -> String {
    let name_w = doc
        .runs
        .iter()
        .map(|r| r.label.chars().count())
        .chain([doc.title.chars().count() + 11, 6])
        .max()
        .unwrap_or(6);
    let mut s = format!("{:<name_w$}", "radius");
    for r in &doc.radii {
        s += &format!(" {r:>6}");
    }
    s.push('\n');
    for row in &doc.runs {
        s += &format!("{:<name_w$}", row.label);
        for a in &row.certified_accuracy {
            s += &format!(" {:>5.1}%", 100.0 * a);
        }
        s.push('\n');
    }
    s += &format!("{:<name_w$}", format!("{} (envelope)", doc.title));
    for b in &doc.envelope {
        s += &format!(" {:>5.1}%", 100.0 * b.certified_accuracy);
    }
    s.push('\n');
    s += &format!("{:<name_w$}", "  from σ =");
    for b in &doc.envelope {
        s += &format!(" {:>6}", b.sigma.map_or("–".into(), |v| v.to_string()));
    }
    s += &format!(
        "\n\n{} images; certified accuracy: the share of all images certified with the right label at radius ≥ r\n",
        doc.images
    );
    s
}

fn tsv_text(doc: &Envelope) -> String {
    let mut s = String::from("row");
    for r in &doc.radii {
        s += &format!("\t{r}");
    }
    s.push('\n');
    for row in &doc.runs {
        s += &row.label;
        for a in &row.certified_accuracy {
            s += &format!("\t{a:.4}");
        }
        s.push('\n');
    }
    s += "envelope";
    for b in &doc.envelope {
        s += &format!("\t{:.4}", b.certified_accuracy);
    }
    s += "\nenvelope_sigma";
    for b in &doc.envelope {
        s += &format!("\t{}", b.sigma.map_or("-".into(), |v| v.to_string()));
    }
    s.push('\n');
    s
}
