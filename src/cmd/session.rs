//! What `certify`, `predict` and `eval` share on the command line: the provider flags, the
//! session they open (`robustify_pipeline::Session`) and its closing lines.

use std::path::PathBuf;

use robustify_pipeline::{DenoiserChoice, Notice, Session, SessionConfig};
use robustify_providers::BudgetLimits;

use crate::render::outln;

/// Provider, traffic, budget and log flags.
#[derive(Clone, clap::Args)]
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
    /// Also append every paid answer to this query log (JSON Lines: what `replay` and
    /// `--resume` read).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The answer store of paid providers (SQLite): every paid answer is kept there and
    /// reused whenever the same draw (image, provider, denoiser, σ, seed, draw) is asked
    /// again; new draws come from a new --seed.
    #[arg(long, env = "ROBUSTIFY_STORE", default_value = robustify_pipeline::DEFAULT_STORE)]
    pub store: PathBuf,
    /// Pay again: reuse nothing from the store (the new answers replace the stored ones).
    #[arg(long)]
    pub fresh: bool,
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
    /// The pipeline's settings for these flags.
    pub fn config(&self) -> SessionConfig {
        SessionConfig {
            provider: self.provider.clone(),
            endpoint: self.endpoint.clone(),
            denoiser: match (&self.denoiser, self.no_denoiser) {
                (_, true) => DenoiserChoice::None,
                (Some(name), false) => DenoiserChoice::Named(name.clone()),
                (None, false) => DenoiserChoice::Default,
            },
            label_map: self.label_map.clone(),
            case_fold: self.case_fold,
            log: self.log.clone(),
            store: Some(self.store.clone()),
            fresh: self.fresh,
            resume: self.resume.clone(),
            budget: BudgetLimits {
                max_usd: self.budget_usd,
                max_queries: self.max_queries,
            },
            rate: self.rate,
            concurrency: self.concurrency,
            timeout_s: self.timeout,
            max_retries: self.max_retries,
            max_memory_bytes: self.max_memory_mb * 1_000_000,
        }
    }

    /// Opens the session for σ and tells its notices on stderr. Call inside a tokio
    /// runtime.
    pub fn open(&self, sigma: f64) -> anyhow::Result<Session> {
        let session = Session::open(&self.config(), sigma)?;
        for n in session.notices() {
            notice(n);
        }
        Ok(session)
    }
}

/// A notice on stderr (`warning:` in colour where it is one).
pub fn notice(n: &Notice) {
    if n.warning {
        eprintln!("{} {}", crate::render::label("warning"), n.text);
    } else {
        eprintln!("{}", n.text);
    }
}

/// Flushes the log, then the spend and traffic: after the table, or on stderr under
/// `--json` (never mixed into JSON); and the budget's closing line when it stopped the run.
pub fn close(session: &Session, json: bool, budget_hit: bool) -> anyhow::Result<()> {
    for n in session.close()? {
        notice(&n);
    }
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
    if budget_hit {
        // The one figure for the spend: after every request in flight has settled.
        eprintln!(
            "{} the budget stopped the run: ${:.4} spent in all",
            crate::render::label("error"),
            session.spent_usd()
        );
    }
    Ok(())
}
