//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `robustify-proxy`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file is unreadable or invalid.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A provider could not be set up.
    #[error(transparent)]
    Provider(#[from] robustify_providers::Error),
    /// The Redis that replicas share could not be reached.
    #[error(transparent)]
    Redis(#[from] robustify_redis::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
