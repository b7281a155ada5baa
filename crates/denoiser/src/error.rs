//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `robustify-denoiser`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed (shape mismatch, missing weight, …).
    #[error("denoiser: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weights file or model card is missing or invalid.
    #[error("{path}: {message}")]
    Model {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No shipped denoiser has this name, and it is not a path.
    #[error(
        "unknown denoiser {name:?}; shipped: {known} (or give a folder with card.json and model.safetensors)"
    )]
    Unknown {
        /// What was asked for.
        name: String,
        /// The shipped names, comma-separated.
        known: String,
    },
    /// A parameter is out of range.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// Training data, optimiser or checkpoint trouble.
    #[error(transparent)]
    Train(#[from] robustify_train::Error),
    /// An image is unusable.
    #[error(transparent)]
    Image(#[from] robustify_smoothing::Error),
    /// The base classifier behind the denoiser failed.
    #[error("{0}")]
    Classifier(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
