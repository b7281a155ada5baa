//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `robustify-providers`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A provider definition file could not be read or is invalid.
    #[error("provider definition {path}: {message}")]
    Definition {
        /// The file (or `builtin:NAME`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No built-in provider has this name and no such file exists.
    #[error("unknown provider {name:?}: not a file, and not one of {known}")]
    UnknownProvider {
        /// What the user asked for.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// A log line is malformed or incomplete.
    #[error("{path}:{line}: {message}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A provider call failed.
    #[error("provider {provider}: {message}")]
    Provider {
        /// The provider's name.
        provider: String,
        /// What went wrong (never contains credentials).
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
