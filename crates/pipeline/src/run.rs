//! The per-image loop `certify`, `predict` and `eval` share: read each image within the
//! memory ceiling, ask for its clean label when wanted, run the plan through the session,
//! stop at the budget, and hand every image's [`CertificateRecord`] to an [`Observer`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use robustify_smoothing::{BaseClassifier, Image, MemoryBudget};

use crate::certificate::{CertificateRecord, RecordContext, Status};
use crate::input::read_image_within;
use crate::plan::Plan;
use crate::session::{Session, sha256_hex};

/// Exit status of a run the budget stopped.
pub const EXIT_BUDGET: u8 = 3;

/// Exit status of a run where an image failed (the others still ran).
pub const EXIT_FAILED: u8 = 2;

/// When the provider is asked for the clean image's label (one query per image, not
/// logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanLabel {
    /// Every image.
    Always,
    /// Never.
    Never,
}

/// How each image of a run is treated.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The plan (its batch is cut per image to fit `memory`).
    pub plan: Plan,
    /// Master seed of the noise.
    pub seed: u64,
    /// Whether to ask for clean labels.
    pub clean: CleanLabel,
    /// The memory ceiling of one image.
    pub memory: MemoryBudget,
}

/// Progress of one image's draws, told as they are answered.
pub trait Progress: Sync {
    /// `draws` more were answered; `spent_usd` is the session's spend so far.
    fn answered(&self, draws: u64, spent_usd: f64);
    /// The image's draws are over.
    fn done(&self) {}
}

/// No progress shown.
impl Progress for () {
    fn answered(&self, _: u64, _: f64) {}
}

/// What the loop tells its caller.
pub trait Observer {
    /// The progress handle of one image.
    type Progress: Progress;
    /// What a failed report is (its output gone, say).
    type Error;
    /// An image's draws start: at most `max_draws`.
    fn start(&mut self, image: &str, max_draws: u64) -> Self::Progress;
    /// An image ended (certified, abstained, failed, or not started because the budget
    /// ran out), after `elapsed`.
    fn finish(&mut self, record: CertificateRecord, elapsed: Duration) -> Result<(), Self::Error>;
}

/// How a run went, for its exit status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Images that ended with a result.
    pub finished: usize,
    /// Images that failed.
    pub failed: usize,
    /// Whether the budget stopped the run.
    pub budget_hit: bool,
}

impl RunSummary {
    /// 0 when every image ended with a result, [`EXIT_BUDGET`] when the budget stopped the
    /// run, [`EXIT_FAILED`] when an image failed.
    pub fn exit_code(&self) -> u8 {
        if self.budget_hit {
            EXIT_BUDGET
        } else if self.failed > 0 {
            EXIT_FAILED
        } else {
            0
        }
    }
}

/// Runs `settings` on every image, in order; once the budget stops an image, the rest are
/// reported as not started. Returns early only when the observer fails (its output is
/// gone).
pub async fn run_images<O: Observer>(
    session: &Session,
    settings: &RunSettings,
    images: &[PathBuf],
    observer: &mut O,
) -> Result<RunSummary, O::Error> {
    let mut summary = RunSummary::default();
    for path in images {
        let started = Instant::now();
        let ctx = RecordContext {
            image: path.display().to_string(),
            provider: session.def.name.clone(),
            denoiser: session.denoiser_name().to_owned(),
            ..RecordContext::default()
        };
        let record = if summary.budget_hit {
            CertificateRecord::unfinished(
                &settings.plan,
                settings.seed,
                Status::BudgetExhausted,
                "not started: budget reached".into(),
                ctx,
            )
        } else {
            one_image(session, settings, path, ctx, observer).await
        };
        match record.status {
            Status::BudgetExhausted => summary.budget_hit = true,
            Status::Error => summary.failed += 1,
            _ => summary.finished += 1,
        }
        observer.finish(record, started.elapsed())?;
    }
    Ok(summary)
}

async fn one_image<O: Observer>(
    session: &Session,
    settings: &RunSettings,
    path: &std::path::Path,
    mut ctx: RecordContext,
    observer: &mut O,
) -> CertificateRecord {
    let unfinished = |ctx: RecordContext, budget: bool, error: String| {
        let status = if budget {
            Status::BudgetExhausted
        } else {
            Status::Error
        };
        CertificateRecord::unfinished(&settings.plan, settings.seed, status, error, ctx)
    };
    let read = read_image_within(path, &settings.memory).and_then(|(bytes, image)| {
        let plan = settings
            .plan
            .fitted(image.width(), image.height(), &settings.memory)?;
        Ok((bytes, image, plan))
    });
    let (bytes, image, plan) = match read {
        Ok(x) => x,
        Err(e) => return unfinished(ctx, false, e.detail()),
    };
    let image_sha256 = sha256_hex(&bytes);
    ctx.image_sha256 = Some(image_sha256.clone());
    // The file's bytes served only for the hash: not held through the draws.
    drop(bytes);
    let before = session.spent_usd();
    if settings.clean == CleanLabel::Always {
        match session.clean_label(&image_sha256, &image).await {
            Ok(label) => ctx.clean_label = Some(label),
            Err(e) => {
                ctx.cost_usd = session.spent_usd() - before;
                return unfinished(ctx, e.is_budget(), e.to_string());
            }
        }
    }
    let classifier = session.classifier(&image_sha256, plan.sigma(), settings.seed);
    let progress = observer.start(&ctx.image, plan.max_draws());
    let result = {
        let counted = Counted {
            inner: &classifier,
            progress: &progress,
            session,
        };
        plan.run(&counted, &image, settings.seed).await
    };
    progress.done();
    ctx.cost_usd = session.spent_usd() - before;
    ctx.reused = classifier.inner().reused();
    match result {
        Ok(outcome) => CertificateRecord::new(&outcome, ctx),
        Err(e) => {
            let budget = robustify_providers::Error::is_budget_in(&e);
            unfinished(ctx, budget, e.to_string())
        }
    }
}

/// Tells `progress` about each answered batch.
struct Counted<'a, C, P> {
    inner: &'a C,
    progress: &'a P,
    session: &'a Session,
}

impl<C: BaseClassifier + Sync, P: Progress> BaseClassifier for Counted<'_, C, P> {
    type Error = C::Error;

    async fn classify(
        &self,
        draws: std::ops::Range<u64>,
        batch: &[Image],
    ) -> Result<Vec<String>, Self::Error> {
        let out = self.inner.classify(draws, batch).await?;
        self.progress
            .answered(batch.len() as u64, self.session.spent_usd());
        Ok(out)
    }
}
