//! Certified accuracy over a folder of images (`robustify eval`): each image's certificate
//! against a reference label, tallied into the paper's table (certified accuracy by
//! radius) and written as `summary.json`.

use std::path::Path;

use robustify_smoothing::table::{AccuracyRow, Outcome, certified_accuracy};
use serde::{Deserialize, Serialize};

use crate::certificate::CertificateRecord;

/// Where the reference label of an image comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truth {
    /// The name of the folder the image is in (`cifar10/test/cat/0001.jpg` → `cat`).
    Folder,
    /// The provider's own label for the clean image (the paper's API protocol).
    Clean,
    /// The ImageNet class whose WordNet id the file name starts with
    /// (`n01443537_goldfish.JPEG`): [`Truth::label`] gives the id, which the caller names
    /// as its classifier names that class.
    Imagenet,
}

impl Truth {
    /// The reference label of the image at `path` whose clean label is `clean`.
    pub fn label(self, path: &Path, clean: Option<&str>) -> String {
        match self {
            Truth::Clean => clean.unwrap_or_default().to_owned(),
            Truth::Imagenet => wnid_of(path).unwrap_or_default(),
            Truth::Folder => path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The WordNet id a file name starts with (`n01443537_goldfish.JPEG` → `n01443537`).
pub fn wnid_of(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let head = stem.split('_').next().unwrap_or("");
    (head.len() == 9 && head.starts_with('n') && head[1..].bytes().all(|b| b.is_ascii_digit()))
        .then(|| head.to_owned())
}

/// Radii of the table: 0 to 4σ in steps of σ/10.
pub fn radii(sigma: f64) -> Vec<f64> {
    (0..=40).map(|i| f64::from(i) * sigma / 10.0).collect()
}

/// What `summary.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Legend of this run's curve.
    pub label: String,
    /// The provider.
    pub provider: String,
    /// The denoiser (`none` without one).
    pub denoiser: String,
    /// σ.
    pub sigma: f64,
    /// Selection draws.
    pub n0: u64,
    /// Estimation draws (sequential: the cap).
    pub n: u64,
    /// α.
    pub alpha: f64,
    /// `fixed` or `sequential` (absent in summaries written before sequential mode).
    #[serde(default)]
    pub mode: Option<String>,
    /// Sequential mode's target radius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_radius: Option<f64>,
    /// Every K-th image was certified …
    pub skip: usize,
    /// … from this index on.
    #[serde(default)]
    pub offset: usize,
    /// Where the reference labels came from.
    pub truth: Truth,
    /// Master seed of the noise.
    pub seed: u64,
    /// Images with a result.
    pub images: usize,
    /// Share of images whose clean image the provider labels as the truth.
    pub clean_accuracy: f64,
    /// Share of images abstained.
    pub abstained: f64,
    /// Images that failed (errors), not counted anywhere else.
    pub failed: usize,
    /// Mean queries per image (the clean query included).
    pub mean_queries: f64,
    /// Mean seconds per image.
    pub mean_seconds: f64,
    /// Dollars.
    pub cost_usd: f64,
    /// Certified accuracy at [`radii`].
    pub table: Vec<AccuracyRow>,
}

/// The running tally of an eval.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    outcomes: Vec<Outcome>,
    clean_right: usize,
    queries: u64,
    seconds: f64,
}

impl Tally {
    /// Counts a finished image whose reference label is `truth`; returns its outcome.
    pub fn add(&mut self, record: &CertificateRecord, truth: &str, seconds: f64) -> &Outcome {
        self.add_done(
            record.label.clone(),
            record.radius,
            record.label.as_deref() == Some(truth),
            record.clean_label.as_deref().unwrap_or_default() == truth,
            record.queries + 1,
            seconds,
        );
        &self.outcomes[self.outcomes.len() - 1]
    }

    /// Counts an image finished by an earlier run (`eval --continue` reads it back from its
    /// TSV row): its certified label (`None`: abstained), radius, whether that label is the
    /// truth, whether the clean label is, its queries (the clean one included) and seconds.
    pub fn add_done(
        &mut self,
        label: Option<String>,
        radius: f64,
        correct: bool,
        clean_right: bool,
        queries: u64,
        seconds: f64,
    ) {
        self.clean_right += usize::from(clean_right);
        self.queries += queries;
        self.seconds += seconds;
        self.outcomes.push(Outcome {
            label,
            radius,
            correct,
        });
    }

    /// Certified accuracy so far at `radii`.
    pub fn table(&self, radii: &[f64]) -> Vec<AccuracyRow> {
        certified_accuracy(&self.outcomes, radii)
    }

    /// The summary: `head` with its counts and table filled in from the tally.
    pub fn summary(&self, mut head: Summary) -> Summary {
        let n = self.outcomes.len();
        let share = |k: usize| k as f64 / n.max(1) as f64;
        head.images = n;
        head.clean_accuracy = share(self.clean_right);
        head.abstained = share(self.outcomes.iter().filter(|o| o.label.is_none()).count());
        head.mean_queries = self.queries as f64 / n.max(1) as f64;
        head.mean_seconds = self.seconds / n.max(1) as f64;
        head.table = self.table(&radii(head.sigma));
        head
    }
}
