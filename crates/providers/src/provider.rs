//! The `Provider` trait: a batch of images in, each image's labels in the vendor's order out.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use robustify_smoothing::{BaseClassifier, Image, NO_LABEL};

use crate::budget::Ledger;
use crate::querylog::{DrawContext, LogEntry, QueryLog};
use crate::store::{AnswerBackend, Charge};
use crate::{Error, Result};

/// One label as the vendor returned it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredLabel {
    /// The label text, exactly as returned.
    pub label: String,
    /// The vendor's score on its own scale.
    pub score: f32,
}

/// A vendor's answer for one image: its labels in the vendor's order (possibly empty).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// Labels in the order the vendor listed them.
    pub labels: Vec<ScoredLabel>,
}

impl Answer {
    /// The label a certificate counts: the first in the vendor's order (the rule of the
    /// Denoised Smoothing paper's API experiments), or [`NO_LABEL`] for an empty answer.
    pub fn top1(&self) -> &str {
        self.labels.first().map_or(NO_LABEL, |l| l.label.as_str())
    }
}

/// What one answered image cost and how it came back.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// HTTP status of the answering response (0 in-process).
    pub status: u16,
    /// Milliseconds from send to answer of the request that carried the image.
    pub latency_ms: f64,
    /// What this image cost.
    pub cost_usd: f64,
    /// Attempts the request took (1 without retries).
    pub attempts: u32,
}

/// An answer with its receipt.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// The labels.
    pub answer: Answer,
    /// Cost and timing.
    pub receipt: Receipt,
}

/// A boxed future, so that providers can be held as `Arc<dyn Provider>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A vision API (or local model) that labels images.
pub trait Provider: Send + Sync {
    /// The provider's name (`standin-local`, `google`, …).
    fn name(&self) -> &str;

    /// Images worth sending in one call to [`Provider::classify`] to keep the vendor busy
    /// (its images per request × requests in flight).
    fn preferred_batch(&self) -> usize {
        32
    }

    /// Images one vendor request carries: a batch is sent (and its answers kept) in
    /// pieces this large [default: the whole batch at once].
    fn images_per_request(&self) -> usize {
        usize::MAX
    }

    /// Labels each image of `images`: one result per image, in order. Images answered
    /// before another failed keep their answers (they are paid for).
    fn classify<'a>(&'a self, images: &'a [Image]) -> BoxFuture<'a, Vec<Result<Delivered>>> {
        self.classify_within(images, None)
    }

    /// As [`Provider::classify`], with every unit the vendor may bill also reserved in
    /// `allowance` (a request's own cap, on top of the provider's budget): no request or
    /// retry is sent that the allowance cannot hold, so a proxy client is never billed more
    /// than it was held for, timed-out requests included.
    fn classify_within<'a>(
        &'a self,
        images: &'a [Image],
        allowance: Option<&'a Ledger>,
    ) -> BoxFuture<'a, Vec<Result<Delivered>>>;
}

/// How a vendor's label becomes the label a certificate counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelRule {
    /// Synonym → canonical label, applied after case folding.
    pub map: HashMap<String, String>,
    /// Compare labels case-insensitively (folded to lower case).
    pub case_fold: bool,
}

impl LabelRule {
    /// Reads a label map: a JSON object `{"synonym": "canonical"}`, or lines
    /// `synonym<TAB>canonical` (blank lines and `#` comments skipped).
    pub fn read_map(path: &Path) -> Result<HashMap<String, String>> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if text.trim_start().starts_with('{') {
            return serde_json::from_str(&text).map_err(|e| Error::Log {
                path: path.to_path_buf(),
                line: e.line(),
                message: format!("label map: {e}"),
            });
        }
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (from, to) = line.split_once('\t').ok_or_else(|| Error::Log {
                path: path.to_path_buf(),
                line: i + 1,
                message: "label map lines are `synonym<TAB>canonical`".into(),
            })?;
            map.insert(from.trim().to_owned(), to.trim().to_owned());
        }
        Ok(map)
    }

    /// The label counted for `answer`: its first label, folded and mapped.
    pub fn apply(&self, answer: &Answer) -> String {
        let top = answer.top1();
        let folded = if self.case_fold {
            top.to_lowercase()
        } else {
            top.to_owned()
        };
        match self.map.get(&folded) {
            Some(canonical) if self.case_fold => canonical.to_lowercase(),
            Some(canonical) => canonical.clone(),
            None => folded,
        }
    }
}

/// Adapts a provider to the smoothing crate's [`BaseClassifier`]: the top-1 label of each
/// answer under a [`LabelRule`], `(none)` for an empty one. With a [`QueryLog`], every
/// answer is logged under its draw, and draws already in the resumed log are not sent;
/// with an [`AnswerStore`], every answer is stored, and draws already stored (by this run
/// or any before it) are not sent.
#[derive(Clone)]
pub struct ProviderClassifier {
    provider: Arc<dyn Provider>,
    rule: LabelRule,
    log: Option<(Arc<QueryLog>, DrawContext)>,
    store: Option<(Arc<dyn AnswerBackend>, DrawContext)>,
    /// Who the store charges (a proxy client; `""` from the command line).
    payer: String,
    reused: Arc<AtomicU64>,
    /// Dollars of the answers this classifier received, in micro-dollars.
    spent_micro_usd: Arc<AtomicU64>,
    allowance: Option<Arc<Ledger>>,
}

impl ProviderClassifier {
    /// Wraps `provider`.
    pub fn new(provider: Arc<dyn Provider>) -> ProviderClassifier {
        ProviderClassifier {
            provider,
            rule: LabelRule::default(),
            log: None,
            store: None,
            payer: String::new(),
            reused: Arc::default(),
            spent_micro_usd: Arc::default(),
            allowance: None,
        }
    }

    /// Reserves every billed unit in `allowance` too (see [`Provider::classify_within`]).
    pub fn with_allowance(mut self, allowance: Arc<Ledger>) -> ProviderClassifier {
        self.allowance = Some(allowance);
        self
    }

    /// Counts labels under `rule`.
    pub fn with_rule(mut self, rule: LabelRule) -> ProviderClassifier {
        self.rule = rule;
        self
    }

    /// Logs to (and resumes from) `log`, keying draws by `context`.
    pub fn with_log(mut self, log: Arc<QueryLog>, context: DrawContext) -> ProviderClassifier {
        self.log = Some((log, context));
        self
    }

    /// Stores every answer in `store` and reuses what it holds, keying draws by `context`.
    pub fn with_store(
        mut self,
        store: Arc<dyn AnswerBackend>,
        context: DrawContext,
    ) -> ProviderClassifier {
        self.store = Some((store, context));
        self
    }

    /// Charges what the vendor bills to `payer` in the store.
    pub fn with_payer(mut self, payer: impl Into<String>) -> ProviderClassifier {
        self.payer = payer.into();
        self
    }

    /// Draws answered from the resumed log or the store instead of the provider.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// What the vendor billed for this classifier's (and its clones') queries, in dollars:
    /// the answers received and the requests billed without an answer (timeouts).
    pub fn spent_usd(&self) -> f64 {
        self.spent_micro_usd.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// One vendor request's results for the images at `idx` of the batch: counted, kept in
    /// the store (one transaction, with what they cost) and the log, then put in `out`;
    /// the first failure is returned after the rest are kept.
    async fn keep(
        &self,
        draws: &Range<u64>,
        idx: &[usize],
        results: Vec<Result<Delivered>>,
        out: &mut [Option<Answer>],
    ) -> Result<()> {
        let mut first_error = None;
        let mut received = Vec::new();
        let mut billed_usd = 0.0;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let context = (self.log.as_ref().map(|(_, c)| c)).or(self.store.as_ref().map(|(_, c)| c));
        let mut answered = Vec::new();
        for (&i, result) in idx.iter().zip(results) {
            match result {
                Ok(delivered) => {
                    billed_usd += delivered.receipt.cost_usd;
                    self.spent_micro_usd.fetch_add(
                        (delivered.receipt.cost_usd * 1e6).round() as u64,
                        Ordering::Relaxed,
                    );
                    if let Some(ctx) = context {
                        received.push(LogEntry {
                            context: ctx.clone(),
                            draw: draws.start + i as u64,
                            labels: delivered.answer.labels.clone(),
                            status: delivered.receipt.status,
                            latency_ms: delivered.receipt.latency_ms,
                            cost_usd: delivered.receipt.cost_usd,
                            attempts: delivered.receipt.attempts,
                            unix_ms,
                            reused: false,
                        });
                    }
                    answered.push((i, delivered.answer));
                }
                Err(err) => {
                    // A timed-out request the vendor billed: whoever pays for this
                    // classifier's queries pays for it too.
                    billed_usd += err.billed_usd();
                    self.spent_micro_usd
                        .fetch_add((err.billed_usd() * 1e6).round() as u64, Ordering::Relaxed);
                    first_error.get_or_insert(err);
                }
            }
        }
        // Kept before anything counts them: one transaction for the store, a line each
        // for the log.
        if let Some((store, _)) = &self.store {
            let charge = Charge {
                payer: self.payer.clone(),
                provider: self.provider.name().to_owned(),
                usd: billed_usd,
                unix_ms,
            };
            store.insert(&received, Some(&charge)).await?;
        }
        if let Some((log, _)) = &self.log {
            for entry in &received {
                log.append(entry)?;
            }
        }
        for (i, answer) in answered {
            out[i] = Some(answer);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn answers(&self, draws: Range<u64>, batch: &[Image]) -> Result<Vec<Answer>> {
        let mut out: Vec<Option<Answer>> = vec![None; batch.len()];
        if let Some((log, ctx)) = &self.log {
            for (slot, draw) in out.iter_mut().zip(draws.clone()) {
                *slot = log.lookup(ctx, draw);
            }
        }
        if let Some((store, ctx)) = &self.store
            && out.iter().any(Option::is_none)
        {
            let mut from_store = Vec::new();
            for ((slot, stored), draw) in out
                .iter_mut()
                .zip(store.lookup(ctx, draws.clone()).await?)
                .zip(draws.clone())
            {
                if slot.is_none()
                    && let Some(answer) = stored
                {
                    from_store.push((draw, answer.clone()));
                    *slot = Some(answer);
                }
            }
            // The log of this run holds every answer its certificate counts, those paid
            // by an earlier run marked `reused`: `replay LOG` rebuilds the certificate.
            if let Some((log, log_ctx)) = &self.log {
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                for (draw, answer) in from_store {
                    log.append(&LogEntry {
                        context: log_ctx.clone(),
                        draw,
                        labels: answer.labels,
                        status: 200,
                        latency_ms: 0.0,
                        cost_usd: 0.0,
                        attempts: 0,
                        unix_ms,
                        reused: true,
                    })?;
                }
            }
        }
        let missing: Vec<usize> = (0..batch.len()).filter(|&i| out[i].is_none()).collect();
        self.reused
            .fetch_add((batch.len() - missing.len()) as u64, Ordering::Relaxed);
        if missing.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        // Nothing new is bought while paid answers cannot be kept.
        if let Some((store, _)) = &self.store {
            store.ready().await?;
        }
        // One vendor request's worth at a time, all in flight together: each chunk's
        // answers are kept (store, log) as soon as they arrive, so a process killed while
        // the others are still out loses only those in flight.
        let chunk = self.provider.images_per_request().max(1);
        let mut pending: futures_util::stream::FuturesUnordered<_> = missing
            .chunks(chunk)
            .map(|idx| {
                let images: Vec<Image> = idx.iter().map(|&i| batch[i].clone()).collect();
                async move {
                    let results = self
                        .provider
                        .classify_within(&images, self.allowance.as_deref())
                        .await;
                    (idx, results)
                }
            })
            .collect();
        let mut first_error = None;
        while let Some((idx, results)) = futures_util::StreamExt::next(&mut pending).await {
            if results.len() != idx.len() {
                first_error.get_or_insert(Error::Provider {
                    provider: self.provider.name().to_owned(),
                    message: format!("{} answers for {} images", results.len(), idx.len()),
                });
                continue;
            }
            if let Err(e) = self.keep(&draws, idx, results, &mut out).await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(out.into_iter().flatten().collect()),
        }
    }
}

impl BaseClassifier for ProviderClassifier {
    type Error = crate::Error;

    fn classify(
        &self,
        draws: Range<u64>,
        batch: &[Image],
    ) -> impl Future<Output = Result<Vec<String>>> + Send {
        let this = self.clone();
        let batch = batch.to_vec();
        async move {
            let answers = this.answers(draws, &batch).await?;
            Ok(answers.iter().map(|a| this.rule.apply(a)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_label_in_vendor_order_or_none() {
        let a = Answer {
            labels: vec![
                ScoredLabel {
                    label: "pattern".into(),
                    score: 0.55,
                },
                ScoredLabel {
                    label: "window".into(),
                    score: 0.9,
                },
            ],
        };
        // Not the top score: the vendor's first label.
        assert_eq!(a.top1(), "pattern");
        assert_eq!(Answer::default().top1(), "(none)");
    }

    #[test]
    fn label_rule_folds_then_maps() {
        let answer = |l: &str| Answer {
            labels: vec![ScoredLabel {
                label: l.into(),
                score: 1.0,
            }],
        };
        let rule = LabelRule {
            map: [("puppy".to_string(), "Dog".to_string())].into(),
            case_fold: true,
        };
        assert_eq!(rule.apply(&answer("PUPPY")), "dog");
        assert_eq!(rule.apply(&answer("Cat")), "cat");
        assert_eq!(LabelRule::default().apply(&answer("Cat")), "Cat");
        assert_eq!(rule.apply(&Answer::default()), "(none)");
    }
}
