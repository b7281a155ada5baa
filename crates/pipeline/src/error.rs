//! The pipeline's one error type.

use std::path::PathBuf;

/// What can go wrong between settings and a certificate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or contradicts another.
    #[error("{0}")]
    Config(String),
    /// A file could not be read, or is not what it should be.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The provider: its definition, credentials, traffic, budget or log.
    #[error(transparent)]
    Provider(#[from] robustify_providers::Error),
    /// The denoiser could not be found or loaded.
    #[error(transparent)]
    Denoiser(#[from] robustify_denoiser::Error),
    /// Parameters, an image, or the certification itself.
    #[error(transparent)]
    Smoothing(#[from] robustify_smoothing::Error),
    /// A stand-in model could not be loaded.
    #[cfg(feature = "standin")]
    #[error(transparent)]
    Standin(#[from] robustify_standin::Error),
}

impl Error {
    /// Whether this error, or any error it wraps, is a budget running out (a typed
    /// [`robustify_providers::Error::BudgetExhausted`] anywhere in the chain).
    pub fn is_budget(&self) -> bool {
        robustify_providers::Error::is_budget_in(self)
    }

    /// The message without the file's path, for a report that names the file already.
    pub fn detail(&self) -> String {
        match self {
            Error::File { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn file(path: &std::path::Path, message: impl std::fmt::Display) -> Error {
        Error::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
