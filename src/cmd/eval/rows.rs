//! What `eval` does with each image as it ends: its TSV row, the tally, the progress bars.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use robustify_pipeline::eval::{Tally, Truth};
use robustify_pipeline::{CertificateRecord, Observer, Status};
use robustify_smoothing::Decision;

use crate::cmd::progress::{Bar, draw_bar};

/// Writes each image's TSV row and keeps the tally for the table.
pub(super) struct Rows<'a> {
    /// The images in run order, with their index in the folder.
    picked: &'a [(usize, PathBuf)],
    next: usize,
    truth: Truth,
    /// With `--truth imagenet`: the stand-in's class names by WordNet id.
    class_names: Option<std::collections::HashMap<String, String>>,
    sigma: f64,
    tsv: std::fs::File,
    sequential: bool,
    multi: &'a MultiProgress,
    pub(super) overall: ProgressBar,
    pub(super) tally: Tally,
    /// The budget's stop is said once; the images it did not start are neither failures
    /// nor results.
    budget_said: bool,
}

impl<'a> Rows<'a> {
    /// Creates `certify.tsv` at `tsv_path` with its head, and the overall bar.
    pub(super) fn create(
        tsv_path: &Path,
        picked: &'a [(usize, PathBuf)],
        truth: Truth,
        sigma: f64,
        sequential: bool,
        multi: &'a MultiProgress,
    ) -> anyhow::Result<Rows<'a>> {
        let mut tsv =
            std::fs::File::create(tsv_path).with_context(|| format!("{}", tsv_path.display()))?;
        writeln!(
            tsv,
            "idx\tpath\ttruth\tprediction\tradius\tcorrect\tqueries\tseconds{}",
            if sequential { "\tdecision" } else { "" }
        )?;
        let overall = multi.add(ProgressBar::new(picked.len() as u64));
        overall.set_style(
            ProgressStyle::with_template("images [{bar:30}] {pos}/{len} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let class_names = match truth {
            Truth::Imagenet => {
                let path = robustify_standin::imagenet::repo_root()
                    .join(robustify_standin::imagenet::CLASSES);
                Some(
                    robustify_standin::imagenet::read_classes(&path)?
                        .into_iter()
                        .map(|c| (c.wnid, c.name))
                        .collect(),
                )
            }
            _ => None,
        };
        Ok(Rows {
            picked,
            next: 0,
            truth,
            class_names,
            sigma,
            tsv,
            sequential,
            multi,
            overall,
            tally: Tally::default(),
            budget_said: false,
        })
    }
}

impl Observer for Rows<'_> {
    type Progress = Bar;
    type Error = anyhow::Error;

    fn start(&mut self, image: &str, max_draws: u64) -> Bar {
        Bar(self.multi.add(draw_bar(max_draws, image.to_owned())))
    }

    fn finish(&mut self, r: CertificateRecord, elapsed: Duration) -> anyhow::Result<()> {
        let (idx, path) = &self.picked[self.next.min(self.picked.len() - 1)];
        self.next += 1;
        self.overall.inc(1);
        if !r.finished() {
            let first_budget = r.status == Status::BudgetExhausted && !self.budget_said;
            self.budget_said |= r.status == Status::BudgetExhausted;
            if r.status == Status::Error || first_budget {
                let e = r.error.as_deref().unwrap_or("failed");
                self.overall.println(format!(
                    "{} {}: {e}",
                    crate::render::label("error"),
                    r.image
                ));
            }
            return Ok(());
        }
        let mut truth = self.truth.label(path, r.clean_label.as_deref());
        if let Some(names) = &self.class_names {
            truth = names.get(&truth).cloned().unwrap_or_default();
        }
        let secs = elapsed.as_secs_f64();
        let correct = self.tally.add(&r, &truth, secs).correct;
        write!(
            self.tsv,
            "{idx}\t{}\t{truth}\t{}\t{:.4}\t{}\t{}\t{secs:.2}",
            path.display(),
            r.label.as_deref().unwrap_or("-1"),
            r.radius,
            u8::from(correct),
            r.queries + 1,
        )?;
        if self.sequential {
            writeln!(self.tsv, "\t{}", r.decision.map_or("-", Decision::as_str))?;
        } else {
            writeln!(self.tsv)?;
        }
        self.tsv.flush()?;
        let table = self.tally.table(&[0.0, self.sigma]);
        self.overall.set_message(format!(
            "certified acc {:.0}% at r=0, {:.0}% at r=σ",
            100.0 * table[0].certified_accuracy,
            100.0 * table[1].certified_accuracy
        ));
        Ok(())
    }
}
