//! What `certify` and `predict` share: the provider flags, and the session they open (the
//! provider with its traffic gate and budget, the query log, the label rule).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use robustify_denoiser::{Denoised, Denoiser, registry};
use robustify_providers::traffic::TrafficSnapshot;
use robustify_providers::{
    Adapter, BudgetLimits, DrawContext, HttpProvider, LabelRule, Provider, ProviderClassifier,
    ProviderDef, QueryLog,
};
use robustify_smoothing::{BaseClassifier, Image, MemoryBudget};
use robustify_standin::cifar::CifarClassifier;
use robustify_standin::imagenet::ImageNetClassifier;
use robustify_standin::model::Classifier;
use robustify_standin::provider::StandinLocal;
use sha2::{Digest, Sha256};

/// The log a paid provider writes to when `--log` is not given.
pub const DEFAULT_LOG: &str = "robustify-queries.jsonl";

/// Exit code of a run stopped by `--budget-usd` or `--max-queries`.
pub const EXIT_BUDGET: u8 = 3;

/// Provider, traffic, budget and log flags.
#[derive(clap::Args)]
pub struct ProviderArgs {
    /// Provider name (see `robustify providers`) or definition file.
    #[arg(long, default_value = "standin-local")]
    pub provider: String,
    /// Send requests here instead of the definition's endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Denoiser in front of the provider: a shipped name (`robustify denoisers list`) or a
    /// folder with card.json and model.safetensors [default: the shipped one for this
    /// provider's images (photo, or cifar10 for the CIFAR stand-in) at --sigma].
    #[arg(long, conflicts_with = "no_denoiser")]
    pub denoiser: Option<String>,
    /// Send the noisy images to the provider as they are (plain randomized smoothing).
    #[arg(long)]
    pub no_denoiser: bool,
    /// Label map: JSON object or `synonym<TAB>canonical` lines, applied to the top-1 label.
    #[arg(long)]
    pub label_map: Option<PathBuf>,
    /// Compare labels case-insensitively.
    #[arg(long)]
    pub case_fold: bool,
    /// Query log (JSON Lines) every paid answer is appended to
    /// [default for paid providers: robustify-queries.jsonl].
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Reuse the answers in this query log (a crashed or stopped run) and send only the
    /// missing draws; new answers are appended to it unless --log names another file.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop before spending more than this many dollars (reserved before each request).
    #[arg(long)]
    pub budget_usd: Option<f64>,
    /// Stop before more than this many billed images.
    #[arg(long)]
    pub max_queries: Option<u64>,
    /// Requests per second [default: the definition's].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight at once [default: the definition's].
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Seconds before an unanswered request is retried [default: the definition's].
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Retries of one request [default: the definition's].
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Most memory one image's certification may hold, in MB: draws go in smaller batches
    /// to stay under it, and an image too large for even one draw at a time is refused
    /// before anything is sent.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub max_memory_mb: u64,
}

impl ProviderArgs {
    /// The memory ceiling of one image's certification.
    pub fn memory(&self) -> MemoryBudget {
        MemoryBudget::new(self.max_memory_mb * 1_000_000)
    }
}

/// An open provider, ready to classify draws.
pub struct Session {
    /// The definition, with this run's overrides.
    pub def: ProviderDef,
    provider: Arc<dyn Provider>,
    http: Option<Arc<HttpProvider>>,
    /// The query log, when one is written.
    pub log: Option<Arc<QueryLog>>,
    rule: LabelRule,
    denoiser: Option<Arc<Denoiser>>,
}

impl Session {
    /// Loads the definition, applies overrides, reads credentials (failing before any call
    /// when one is missing), loads the denoiser for `sigma`, and opens the log. Call inside
    /// the tokio runtime.
    pub fn open(args: &ProviderArgs, sigma: f64) -> anyhow::Result<Session> {
        let mut def = ProviderDef::load(&args.provider)?;
        if let Some(rate) = args.rate {
            anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be > 0");
            def.limits.requests_per_second = rate;
            def.limits.burst = def.limits.burst.min((rate.ceil() as u32).max(1));
        }
        if let Some(c) = args.concurrency {
            anyhow::ensure!(c > 0, "--concurrency must be ≥ 1");
            def.limits.max_concurrency = c;
        }
        if let Some(t) = args.timeout {
            anyhow::ensure!(t.is_finite() && t > 0.0, "--timeout must be > 0");
            def.limits.timeout_s = t;
        }
        if let Some(r) = args.max_retries {
            def.limits.max_retries = r;
        }
        if let Some(b) = args.budget_usd {
            anyhow::ensure!(b.is_finite() && b >= 0.0, "--budget-usd must be ≥ 0");
        }
        let budget = BudgetLimits {
            max_usd: args.budget_usd,
            max_queries: args.max_queries,
        };
        let (provider, http) = open_provider(&def, args.endpoint.as_deref(), budget)?;
        let paid = !def.pricing.is_free();
        let log_path = args
            .log
            .clone()
            .or_else(|| args.resume.clone())
            .or_else(|| paid.then(|| PathBuf::from(DEFAULT_LOG)));
        let log = match log_path {
            Some(path) => {
                let log = Arc::new(QueryLog::open(&path, args.resume.as_deref())?);
                log.spawn_syncer();
                if args.log.is_none() && args.resume.is_none() {
                    eprintln!("paid answers are logged to {}", path.display());
                }
                if let Some(from) = &args.resume {
                    eprintln!("resuming from {}: {}", from.display(), log.load_report());
                }
                Some(log)
            }
            None => None,
        };
        let mut rule = LabelRule {
            case_fold: args.case_fold,
            ..LabelRule::default()
        };
        if let Some(path) = &args.label_map {
            rule.map = LabelRule::read_map(path)?;
            if rule.case_fold {
                rule.map = rule
                    .map
                    .into_iter()
                    .map(|(k, v)| (k.to_lowercase(), v))
                    .collect();
            }
        }
        let denoiser = load_denoiser(args, &def, sigma)?;
        Ok(Session {
            def,
            provider,
            http,
            log,
            rule,
            denoiser,
        })
    }

    /// The base classifier `f ∘ D` for the draws of `image_bytes` at `sigma` under `seed`.
    pub fn classifier(
        &self,
        image_bytes: &[u8],
        sigma: f64,
        seed: u64,
    ) -> Denoised<ProviderClassifier> {
        let mut c = ProviderClassifier::new(self.provider.clone()).with_rule(self.rule.clone());
        if let Some(log) = &self.log {
            let context = DrawContext {
                image: hex::encode(Sha256::digest(image_bytes)),
                provider: self.def.name.clone(),
                denoiser: self.denoiser_name().to_owned(),
                sigma,
                seed,
                client: None,
            };
            c = c.with_log(log.clone(), context);
        }
        Denoised::new(c, self.denoiser.clone())
    }

    /// The provider's label for the clean image (no noise, no denoiser): one paid query.
    pub async fn clean_label(&self, image: &Image) -> anyhow::Result<String> {
        let c = ProviderClassifier::new(self.provider.clone()).with_rule(self.rule.clone());
        let labels = c.classify(0..1, std::slice::from_ref(image)).await?;
        labels
            .into_iter()
            .next()
            .context("the provider returned no answer for the clean image")
    }

    /// The denoiser's name, `none` without one.
    pub fn denoiser_name(&self) -> &str {
        self.denoiser.as_ref().map_or("none", |d| d.name())
    }

    /// Images per classifier call that keep the provider busy.
    pub fn preferred_batch(&self) -> usize {
        self.provider.preferred_batch()
    }

    /// Dollars billed so far in this session.
    pub fn spent_usd(&self) -> f64 {
        self.http.as_ref().map_or(0.0, |h| h.ledger().spent_usd())
    }

    /// Traffic counters, for HTTP providers.
    pub fn traffic(&self) -> Option<TrafficSnapshot> {
        self.http.as_ref().map(|h| h.traffic().stats().snapshot())
    }

    /// Flushes the log to disk, and says how much of a resumed log was reused.
    pub fn close(&self) -> anyhow::Result<()> {
        if let Some(log) = &self.log {
            log.sync()
                .with_context(|| format!("syncing {}", log.path().display()))?;
            if log.resumed() > 0 {
                eprintln!("resume: {}", log.reuse_report());
            }
        }
        Ok(())
    }
}

/// An opened provider, and its HTTP client (for the spend and traffic) where it has one.
pub type Opened = (Arc<dyn Provider>, Option<Arc<HttpProvider>>);

/// The provider `def` describes: a stand-in model in this process, or an HTTP client (with
/// its traffic gate and `budget`) reading its credentials from the environment. Call
/// inside the tokio runtime.
pub fn open_provider(
    def: &ProviderDef,
    endpoint: Option<&str>,
    budget: BudgetLimits,
) -> anyhow::Result<Opened> {
    Ok(match def.adapter {
        Adapter::StandinLocal => {
            let model: Arc<dyn Classifier> = match def.options.model.as_deref() {
                None | Some("imagenet") => Arc::new(ImageNetClassifier::load_default()?),
                Some("cifar10") => Arc::new(CifarClassifier::load_default()?),
                Some(other) => anyhow::bail!(
                    "provider {}: unknown stand-in model {other:?} (imagenet or cifar10)",
                    def.name
                ),
            };
            (Arc::new(StandinLocal::new(model)), None)
        }
        _ => {
            let http = Arc::new(HttpProvider::from_env(def, endpoint, budget)?);
            (http.clone(), Some(http))
        }
    })
}

/// `--denoiser`, `--no-denoiser`, or the shipped denoiser for the provider's images at σ.
fn load_denoiser(
    args: &ProviderArgs,
    def: &ProviderDef,
    sigma: f64,
) -> anyhow::Result<Option<Arc<Denoiser>>> {
    if args.no_denoiser {
        return Ok(None);
    }
    let kind = def.images.as_str();
    let dir = match &args.denoiser {
        Some(name) => registry::resolve(name)?,
        None => registry::best_for(kind, sigma)?.ok_or_else(|| {
            let shipped: Vec<String> = registry::list()
                .unwrap_or_default()
                .into_iter()
                .map(|(c, _)| format!("{} ({}, σ = {})", c.name, c.data, c.sigma))
                .collect();
            anyhow::anyhow!(
                "no shipped {kind} denoiser for σ = {sigma} (shipped: {}); pass --denoiser \
                 NAME|PATH, or --no-denoiser for plain randomized smoothing",
                if shipped.is_empty() {
                    "none".into()
                } else {
                    shipped.join(", ")
                }
            )
        })?,
    };
    let denoiser = Denoiser::load(&dir)
        .with_context(|| format!("loading the denoiser in {}", dir.display()))?;
    warn_unfit(&denoiser, sigma, kind);
    Ok(Some(Arc::new(denoiser)))
}

/// Whether any error in the chain is the budget running out.
pub fn is_budget_any(err: &anyhow::Error) -> bool {
    robustify_providers::Error::is_budget_in(err.as_ref())
}

/// Whether a smoothing error came from the budget running out.
pub fn is_budget(err: &robustify_smoothing::Error) -> bool {
    robustify_providers::Error::is_budget_in(err)
}

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

/// Counts draws on a progress bar as they are answered, with the spend so far.
pub struct Progressed<'a, C> {
    /// The classifier.
    pub inner: C,
    /// The bar.
    pub bar: ProgressBar,
    /// For the spend.
    pub session: &'a Session,
}

impl<C: BaseClassifier + Sync> BaseClassifier for Progressed<'_, C> {
    type Error = C::Error;

    async fn classify(
        &self,
        draws: std::ops::Range<u64>,
        batch: &[Image],
    ) -> Result<Vec<String>, Self::Error> {
        let out = self.inner.classify(draws, batch).await?;
        self.bar.inc(batch.len() as u64);
        self.bar
            .set_message(format!("${:.4} spent", self.session.spent_usd()));
        Ok(out)
    }
}

/// Warns when `denoiser` was trained for another σ (more than 10% off) or another kind of
/// image than `kind` (`photo`, `cifar10`): it still runs, but certifies less.
pub fn warn_unfit(denoiser: &Denoiser, sigma: f64, kind: &str) {
    if (denoiser.sigma() - sigma).abs() > 0.1 * sigma {
        eprintln!(
            "{} denoiser {} was trained for σ = {}, not σ = {sigma}",
            crate::render::label("warning"),
            denoiser.name(),
            denoiser.sigma()
        );
    }
    let trained = denoiser.card().data.as_str();
    if trained != kind {
        eprintln!(
            "{} denoiser {} was trained on {trained} images, these are {kind} images",
            crate::render::label("warning"),
            denoiser.name(),
        );
    }
}
