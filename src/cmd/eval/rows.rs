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
    /// Creates `certify.tsv` at `tsv_path` with its head (or, resuming, appends to it and
    /// counts the rows `done` read back from it), and the overall bar.
    pub(super) fn create(
        tsv_path: &Path,
        picked: &'a [(usize, PathBuf)],
        truth: Truth,
        sigma: f64,
        sequential: bool,
        multi: &'a MultiProgress,
        done: &[Done],
    ) -> anyhow::Result<Rows<'a>> {
        let mut tally = Tally::default();
        let tsv = if done.is_empty() {
            let mut tsv = std::fs::File::create(tsv_path)
                .with_context(|| format!("{}", tsv_path.display()))?;
            writeln!(tsv, "{}", head(sequential))?;
            tsv
        } else {
            for d in done {
                tally.add_done(
                    d.label.clone(),
                    d.radius,
                    d.correct,
                    d.clean_right,
                    d.queries,
                    d.seconds,
                );
            }
            std::fs::OpenOptions::new()
                .append(true)
                .open(tsv_path)
                .with_context(|| format!("{}", tsv_path.display()))?
        };
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
            tally,
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
            write!(self.tsv, "\t{}", r.decision.map_or("-", Decision::as_str))?;
        }
        writeln!(
            self.tsv,
            "\t{}",
            r.clean_label
                .as_deref()
                .unwrap_or("")
                .replace(['\t', '\n', '\r'], " ")
        )?;
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

/// The TSV's head line.
fn head(sequential: bool) -> String {
    format!(
        "idx\tpath\ttruth\tprediction\tradius\tcorrect\tqueries\tseconds{}\tclean",
        if sequential { "\tdecision" } else { "" }
    )
}

/// An image an earlier run of the same eval finished, read back from its TSV row.
pub(super) struct Done {
    pub(super) idx: usize,
    label: Option<String>,
    radius: f64,
    correct: bool,
    clean_right: bool,
    queries: u64,
    seconds: f64,
}

/// The rows of an earlier run's `certify.tsv` (none when there is no file). A file with
/// another head (another mode, or written before the `clean` column) cannot be resumed.
/// A row cut short by a kill (the last line, without its end) is cut off the file and run
/// again.
pub(super) fn read_done(tsv_path: &Path, sequential: bool) -> anyhow::Result<Vec<Done>> {
    let text = match std::fs::read_to_string(tsv_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}", tsv_path.display())),
    };
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(tsv_path)
            .with_context(|| format!("{}", tsv_path.display()))?;
        file.set_len(whole as u64)
            .with_context(|| format!("{}", tsv_path.display()))?;
    }
    let text = &text[..whole];
    let mut lines = text.lines();
    let want = head(sequential);
    let got = lines.next().unwrap_or_default();
    anyhow::ensure!(
        got == want,
        "{}: cannot resume: its columns are {got:?}, this run writes {want:?} (another mode, \
         or an older robustify); start afresh with another --out",
        tsv_path.display()
    );
    let mut done = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || format!("{}:{}: malformed row", tsv_path.display(), n + 2);
        anyhow::ensure!(f.len() == want.split('\t').count(), "{}", bad());
        let prediction = f[3];
        done.push(Done {
            idx: f[0].parse().with_context(bad)?,
            label: (prediction != "-1").then(|| prediction.to_owned()),
            radius: f[4].parse().with_context(bad)?,
            correct: f[5] == "1",
            clean_right: f[f.len() - 1] == f[2],
            queries: f[6].parse().with_context(bad)?,
            seconds: f[7].parse().with_context(bad)?,
        });
    }
    Ok(done)
}
