//! What `certify`, `predict` and `eval` show while they run: a draw bar per image, and
//! the observer that prints each finished image as a table row or a JSON line.

use indicatif::{ProgressBar, ProgressStyle};

use crate::render::outln;

/// A progress bar for one image's draws: `12.3 draws/s` (indicatif's own `{per_sec}`
/// prints four decimals), and the spend from the first frame on.
pub fn draw_bar(total: u64, label: String) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} draws, {rate}, {msg}, eta {eta}",
        )
        .map(|s| {
            s.with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", rate(state.per_sec(), "draws"));
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label);
    bar.set_message("$0.0000 spent");
    bar
}

/// A rate for people: `12.3 draws/s`, one decimal below 100 a second, none above.
pub fn rate(per_sec: f64, unit: &str) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        format!("– {unit}/s")
    } else if per_sec < 100.0 {
        format!("{per_sec:.1} {unit}/s")
    } else {
        format!("{per_sec:.0} {unit}/s")
    }
}

/// A draw bar as the pipeline's progress handle.
pub struct Bar(pub ProgressBar);

impl robustify_pipeline::Progress for Bar {
    fn answered(&self, draws: u64, spent_usd: f64) {
        self.0.inc(draws);
        self.0.set_message(format!("${spent_usd:.4} spent"));
    }

    fn done(&self) {
        self.0.finish_and_clear();
    }
}

/// The observer `certify` and `predict` share: a draw bar per image, each failure on
/// stderr, then each record as a JSON line (`--json`) or as the row `row` prints.
pub struct Lines<F> {
    /// `--json`.
    pub json: bool,
    /// Prints a record as a table row.
    pub row: F,
}

impl<F: FnMut(&robustify_pipeline::CertificateRecord) -> anyhow::Result<()>>
    robustify_pipeline::Observer for Lines<F>
{
    type Progress = Bar;
    type Error = anyhow::Error;

    fn start(&mut self, image: &str, max_draws: u64) -> Bar {
        Bar(draw_bar(max_draws, image.to_owned()))
    }

    fn finish(
        &mut self,
        r: robustify_pipeline::CertificateRecord,
        _: std::time::Duration,
    ) -> anyhow::Result<()> {
        if let Some(e) = r.error.as_deref().filter(|_| !r.finished()) {
            eprintln!("{} {}: {e}", crate::render::label("error"), r.image);
        }
        if self.json {
            outln!("{}", r.to_json_line())
        } else {
            (self.row)(&r)
        }
    }
}
