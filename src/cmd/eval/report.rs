//! What `eval` leaves behind: `summary.json`, `curve.png` (with the curves it is compared
//! with) and the table printed for people.

use std::path::{Path, PathBuf};

use anyhow::Context;
use robustify_pipeline::eval::Summary;

use crate::plot::{Curve, certified_accuracy_png};
use crate::render::outln;

/// The curve of an eval output folder (`summary.json` + `certify.tsv`).
pub(super) fn curve_of(dir: &Path) -> anyhow::Result<Curve> {
    let path = dir.join("summary.json");
    let summary: Summary = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
    )
    .with_context(|| format!("{}: not an eval summary", path.display()))?;
    Ok(Curve {
        label: summary.label,
        points: summary
            .table
            .iter()
            .map(|r| (r.radius, r.certified_accuracy))
            .collect(),
        wide: false,
    })
}

/// Writes `summary.json` and `curve.png` into `out` (beside its `certify.tsv`) and prints
/// the table.
pub(super) fn write(
    summary: &Summary,
    out: &Path,
    dir: &Path,
    compare: &[PathBuf],
) -> anyhow::Result<()> {
    let tsv_path = out.join("certify.tsv");
    let n = summary.images;
    let summary_path = out.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(summary)? + "\n")
        .with_context(|| format!("{}", summary_path.display()))?;
    let mut curves = vec![curve_of(out)?];
    for dir in compare {
        curves.push(curve_of(dir)?);
    }
    let png = certified_accuracy_png(&format!("{} images of {}", n, dir.display()), &curves)?;
    let png_path = out.join("curve.png");
    std::fs::write(&png_path, png).with_context(|| format!("{}", png_path.display()))?;
    outln!(
        "{}: {n} images, clean accuracy {:.1}%, abstained {:.1}%, {:.0} queries and {:.1} s per image",
        summary.label,
        100.0 * summary.clean_accuracy,
        100.0 * summary.abstained,
        summary.mean_queries,
        summary.mean_seconds
    )?;
    outln!("{:>8}  certified accuracy", "radius")?;
    for row in summary.table.iter().step_by(5) {
        outln!(
            "{:>8.3}  {:>6.1}%",
            row.radius,
            100.0 * row.certified_accuracy
        )?;
    }
    outln!(
        "wrote {}, {}, {}",
        tsv_path.display(),
        summary_path.display(),
        png_path.display()
    )?;
    Ok(())
}
