//! # robustify-bench
//!
//! The cases `robustify bench` times, all in one process so that the ratios compare like
//! with like: DnCNN's 17 convolutions through our kernels (with and without Winograd)
//! against candle's own, the shipped denoisers' U-Net (inference and a training step),
//! and the stand-in models as shipped; and the proxy's replicas over one Redis
//! ([`run_replicas`]: the vendor's rate kept, no budget overshot, the overhead of a stored
//! answer). PyTorch's figures, when the binary finds them,
//! are joined by case name ([`Case::with_torch`]).
//!
//! ```no_run
//! let cases = robustify_bench::run(&robustify_bench::Options {
//!     quick: true,
//!     candle: false,
//!     only: Some("forward".into()),
//! })?;
//! for c in &cases {
//!     println!("{}: {:.1} images/s", c.name, c.ours_img_s);
//! }
//! # Ok::<(), robustify_bench::Error>(())
//! ```

mod cases;
mod replicas;
mod timing;

pub use cases::{Case, Options, dncnn_case_names, run, torch_case_names};
pub use replicas::{ReplicaFigures, ReplicaOptions, run_replicas, windows};
pub use timing::{both, timed};

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A denoiser could not be built.
    #[error(transparent)]
    Denoiser(#[from] robustify_denoiser::Error),
    /// A stand-in model could not be loaded.
    #[error("loading a stand-in model: {0}")]
    Standin(#[from] robustify_standin::Error),
    /// An image could not be made.
    #[error(transparent)]
    Smoothing(#[from] robustify_smoothing::Error),
    /// The replicas' scenario could not run (no redis-server, a replica failed).
    #[error("replicas: {0}")]
    Replicas(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
