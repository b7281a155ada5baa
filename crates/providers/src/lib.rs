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
//! - [`adapters`]: one file per vendor (`standin_local` so far).
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
pub mod cost;
pub mod definition;
mod error;
pub mod provider;
pub mod replay;

pub use cost::{Pricing, Tier};
pub use definition::{Adapter, Limits, ProviderDef};
pub use error::{Error, Result};
pub use provider::{Answer, Provider, ProviderClassifier, ScoredLabel};
