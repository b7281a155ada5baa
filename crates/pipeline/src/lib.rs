//! # robustify-pipeline
//!
//! From "an image and some settings" to a certificate, once, for the `robustify` CLI and
//! the proxy:
//!
//! - [`SessionConfig`] → [`Session`]: the provider (a vendor over HTTP with its traffic
//!   gate, budget and answer log, or a stand-in model in this process), the label rule and
//!   the denoiser; [`compose`] builds the base classifier `f ∘ D` both callers send draws
//!   through.
//! - [`PlanRequest`] → [`Plan`]: fixed-n CERTIFY, a confidence sequence, or PREDICT, with
//!   ONE default rule ([`Mode::for_certify`]: sequential exactly when a target radius is
//!   given) and every count checked.
//! - [`run_images`]: the per-image loop (read within the memory ceiling, clean label,
//!   draws, budget stop) reporting to an [`Observer`]; [`RunSummary::exit_code`].
//! - [`eval`]: certified accuracy over a folder, the paper's table.
//! - [`estimate::fixed`]: the price of a job before it is paid for.
//! - [`CertificateRecord`]: the one JSON document every command and the proxy write
//!   (versioned by [`SCHEMA`]; `docs/certificate.md`).
//!
//! Plan a certification and write its certificate from counts already drawn:
//!
//! ```
//! use robustify_pipeline::{CertificateRecord, Mode, Outcome, Plan, PlanRequest, RecordContext};
//! use robustify_smoothing::{certify_counts, LabelCounts};
//!
//! let mut request = PlanRequest::new(0.25, 0.001);
//! (request.n0, request.n) = (Some(10), Some(100));
//! let plan = Plan::new(&request, 16)?;
//! assert_eq!(plan.mode(), Mode::Fixed); // no target radius: fixed n
//! let Plan::Fixed(params) = &plan else { unreachable!() };
//! let cert = certify_counts(
//!     &LabelCounts::from_labels(["cat"; 10]),
//!     &LabelCounts::from_labels(["cat"; 100]),
//!     params,
//! );
//! let record = CertificateRecord::new(&Outcome::Fixed(cert), RecordContext {
//!     image: "cat.png".into(),
//!     provider: "standin-local".into(),
//!     denoiser: "none".into(),
//!     ..RecordContext::default()
//! });
//! assert_eq!(record.status.as_str(), "certified");
//! assert!(record.to_json_line().starts_with(r#"{"schema":1,"image":"cat.png""#));
//! # Ok::<(), robustify_pipeline::Error>(())
//! ```

mod certificate;
mod config;
mod error;
pub mod estimate;
pub mod eval;
pub mod input;
mod plan;
mod run;
mod session;

pub use certificate::{CertificateRecord, RecordContext, SCHEMA, Status, top_two};
pub use config::{DEFAULT_MAX_MEMORY_BYTES, DEFAULT_STORE, DenoiserChoice, SessionConfig};
pub use error::{Error, Result};
pub use plan::{DEFAULT_MAX_DRAWS, Mode, Outcome, Plan, PlanRequest};
pub use run::{
    CleanLabel, EXIT_BUDGET, EXIT_FAILED, Observer, Progress, RunSettings, RunSummary, run_images,
};
pub use session::{
    Answers, Notice, Opened, Session, compose, draw_context, open_provider, sha256_hex, unfit,
};
