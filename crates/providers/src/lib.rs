//! # robustify-providers
//!
//! Everything between robustify and a paid vision API: provider definitions (endpoint,
//! credentials, limits, prices), cost arithmetic, and the logs that make paid responses
//! reusable.
//!
//! - [`ProviderDef`]: a provider as its `providers/*.toml` file describes it; the built-in
//!   files ship inside the binary.
//! - [`Pricing`]: tiered prices; [`Pricing::cost_usd`].
//! - [`Provider`]: a vision API behind one trait; [`ProviderClassifier`] turns it into a
//!   smoothing base classifier (top-1 label in the vendor's order, `(none)` when empty).
//! - [`adapters`]: one file per vendor wire format (Azure 4.0 and 3.2, Google, AWS,
//!   Clarifai, Hugging Face, generic JSON) and the in-process stand-in.
//! - [`HttpProvider`]: a wire format behind [`Traffic`] (GCRA rate limit, bounded
//!   concurrency, throttling pause, jittered retries under a retry budget) and a [`Ledger`]
//!   (reserve before sending, settle after: a budget is never overshot).
//! - [`AnswerStore`]: every paid answer in SQLite, reused whenever the same draw is asked
//!   again; [`QueryLog`]: the same answers as JSON Lines, fsync'd each second; `--resume`.
//! - [`replay`]: reading logged label sequences (`robustify replay`).
//!
//! What a certification on Google costs, 100 images of 20 + 100 draws each:
//!
//! ```
//! use robustify_providers::ProviderDef;
//!
//! let google = ProviderDef::load("google")?;
//! let queries = 100 * (20 + 100);
//! assert_eq!(google.pricing.cost_usd(queries, false), 18.0); // $1.50 per 1,000
//! assert_eq!(google.pricing.cost_usd(queries, true), 16.5); // first 1,000 free
//! # Ok::<(), robustify_providers::Error>(())
//! ```

pub mod adapters;
pub mod budget;
pub mod cost;
pub mod credentials;
pub mod definition;
mod error;
pub mod http;
pub mod provider;
pub mod querylog;
pub mod redact;
pub mod replay;
pub mod store;
pub mod traffic;

pub use budget::{BudgetLimits, Ledger};
pub use cost::{Pricing, Tier};
pub use credentials::{Credentials, Secret};
pub use definition::{Adapter, GenericSpec, Limits, Options, ProviderDef};
pub use error::{Error, Result};
pub use http::HttpProvider;
pub use provider::{
    Answer, Delivered, LabelRule, Provider, ProviderClassifier, Receipt, ScoredLabel,
};
pub use querylog::{DrawContext, LoadReport, LogEntry, QueryLog, ReuseReport};
pub use redact::Redactor;
pub use store::{AnswerBackend, AnswerStore, Charge};
pub use traffic::{RetryPolicy, Traffic};
