//! [`SessionConfig`]: what a session is opened from — plain data, no command-line parser.

use std::path::PathBuf;

use robustify_providers::BudgetLimits;
use robustify_smoothing::MemoryBudget;

use crate::{Error, Result};

/// Which denoiser goes in front of the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DenoiserChoice {
    /// The shipped one for the provider's kind of images at σ.
    #[default]
    Default,
    /// None: plain randomized smoothing.
    None,
    /// A shipped name or a folder with `card.json` and `model.safetensors`.
    Named(String),
}

/// Everything a [`crate::Session`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionConfig {
    /// A provider name (see `robustify providers`) or a definition file.
    pub provider: String,
    /// Send requests here instead of the definition's endpoint.
    pub endpoint: Option<String>,
    /// The denoiser.
    pub denoiser: DenoiserChoice,
    /// A label map file (JSON object or `synonym<TAB>canonical` lines).
    pub label_map: Option<PathBuf>,
    /// Compare labels case-insensitively.
    pub case_fold: bool,
    /// A JSON Lines log every paid answer is also appended to (an export `replay` reads).
    pub log: Option<PathBuf>,
    /// The answer store of a paid provider ([`DEFAULT_STORE`]): every paid answer kept,
    /// and reused when the same draw is asked again; `None`: no store.
    pub store: Option<PathBuf>,
    /// Pay again: reuse nothing from the store (new answers replace the stored ones).
    pub fresh: bool,
    /// A log whose answers are reused.
    pub resume: Option<PathBuf>,
    /// Spending limits.
    pub budget: BudgetLimits,
    /// Requests per second, instead of the definition's.
    pub rate: Option<f64>,
    /// Requests in flight, instead of the definition's.
    pub concurrency: Option<u32>,
    /// Seconds before an unanswered request is retried, instead of the definition's.
    pub timeout_s: Option<f64>,
    /// Retries of one request, instead of the definition's.
    pub max_retries: Option<u32>,
    /// The most memory one image's certification may hold.
    pub max_memory_bytes: u64,
}

/// The answer store of paid providers when none is named (in the current folder).
pub const DEFAULT_STORE: &str = "robustify-answers.sqlite";

/// The default memory ceiling of one image's certification: 2,048 MB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 2_048_000_000;

impl SessionConfig {
    /// `provider` with every other setting at its default.
    pub fn new(provider: impl Into<String>) -> SessionConfig {
        SessionConfig {
            provider: provider.into(),
            endpoint: None,
            denoiser: DenoiserChoice::Default,
            label_map: None,
            case_fold: false,
            log: None,
            store: Some(PathBuf::from(DEFAULT_STORE)),
            fresh: false,
            resume: None,
            budget: BudgetLimits::default(),
            rate: None,
            concurrency: None,
            timeout_s: None,
            max_retries: None,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
        }
    }

    /// Refuses values no run can use (a NaN rate, a negative budget, …).
    pub fn validate(&self) -> Result<()> {
        let positive = |v: Option<f64>, name: &str| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(Error::Config(format!("{name} must be > 0, got {x}")))
            }
            _ => Ok(()),
        };
        positive(self.rate, "the rate")?;
        positive(self.timeout_s, "the timeout")?;
        if self.concurrency == Some(0) {
            return Err(Error::Config("the concurrency must be ≥ 1".into()));
        }
        if let Some(b) = self.budget.max_usd
            && !(b.is_finite() && b >= 0.0)
        {
            return Err(Error::Config(format!(
                "the budget must be ≥ 0 dollars, got {b}"
            )));
        }
        if self.max_memory_bytes == 0 {
            return Err(Error::Config("the memory ceiling must be > 0".into()));
        }
        Ok(())
    }

    /// The memory ceiling of one image's certification.
    pub fn memory(&self) -> MemoryBudget {
        MemoryBudget::new(self.max_memory_bytes)
    }
}
