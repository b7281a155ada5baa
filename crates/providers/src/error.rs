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
    /// The answer store could not be opened, read or written.
    #[error("answer store {path}: {message}")]
    Store {
        /// The SQLite file.
        path: PathBuf,
        /// What went wrong.
        message: String,
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
    /// A credential the provider needs is not in the environment.
    #[error(
        "provider {provider}: environment variable {var} is not set (it holds the provider's \
         credentials; export it before running)"
    )]
    MissingCredential {
        /// The provider's name.
        provider: String,
        /// The variable to set.
        var: String,
    },
    /// An image exceeds what the vendor accepts; nothing was sent.
    #[error("provider {provider}: image not sent: {message}")]
    ImageRejected {
        /// The provider's name.
        provider: String,
        /// Which limit, and by how much.
        message: String,
    },
    /// The run's spending limit would be exceeded by the next request; nothing more is sent.
    #[error("budget reached: {message}")]
    BudgetExhausted {
        /// Which limit.
        message: String,
    },
    /// The vendor refused the request for a reason retrying cannot fix (credentials,
    /// malformed image, unknown route).
    #[error("provider {provider}: {message}")]
    Refused {
        /// The provider's name.
        provider: String,
        /// The HTTP status, if there was a response.
        status: Option<u16>,
        /// The vendor's explanation (never contains credentials).
        message: String,
    },
    /// The vendor billed for an image it never answered (a request that timed out after
    /// the vendor may have done the work, and no retry answered it).
    #[error("{source} (${billed_usd:.4} billed without an answer)")]
    BilledWithoutAnswer {
        /// Why no answer came.
        #[source]
        source: Box<Error>,
        /// Dollars billed for it.
        billed_usd: f64,
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

impl Error {
    /// Dollars the vendor billed for this failed image ([`Error::BilledWithoutAnswer`]);
    /// 0 for any other error.
    pub fn billed_usd(&self) -> f64 {
        match self {
            Error::BilledWithoutAnswer { billed_usd, .. } => *billed_usd,
            _ => 0.0,
        }
    }

    /// A budget error's message without the "budget reached: " prefix it displays with.
    pub fn budget_message(&self) -> &str {
        match self {
            Error::BudgetExhausted { message } => message,
            Error::BilledWithoutAnswer { source, .. } => source.budget_message(),
            _ => "",
        }
    }

    /// Whether `err`, or any error in its chain of sources, is [`Error::BudgetExhausted`]
    /// (however many wrappers — denoiser, smoothing — lie between).
    pub fn is_budget_in(err: &(dyn std::error::Error + 'static)) -> bool {
        Error::any_in(err, |e| matches!(e, Error::BudgetExhausted { .. }))
    }

    /// Whether `err`, or any error in its chain of sources, is [`Error::Store`] (the
    /// answer store cannot be read or written: retry later).
    pub fn is_store_in(err: &(dyn std::error::Error + 'static)) -> bool {
        Error::any_in(err, |e| matches!(e, Error::Store { .. }))
    }

    /// Whether any error of `err`'s chain of sources is one of ours that `pred` accepts.
    fn any_in(err: &(dyn std::error::Error + 'static), pred: impl Fn(&Error) -> bool) -> bool {
        let mut next = Some(err);
        while let Some(e) = next {
            if e.downcast_ref::<Error>().is_some_and(&pred) {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
