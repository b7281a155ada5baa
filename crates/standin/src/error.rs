//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `robustify-standin`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed (shape mismatch, missing weight, …).
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weights or class-name file could not be read or is invalid.
    #[error("{path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Training data, optimiser or checkpoint trouble.
    #[error(transparent)]
    Train(#[from] robustify_train::Error),
    /// An image could not be decoded or is unusable.
    #[error(transparent)]
    Image(#[from] robustify_smoothing::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
