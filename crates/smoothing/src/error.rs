//! The crate's one error type.

/// Everything that can go wrong in `robustify-smoothing`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its valid range (σ ≤ 0, α ∉ (0, 1), n0 = 0, …).
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name as users know it (`sigma`, `alpha`, `n0`, …).
        name: &'static str,
        /// Why the value was refused.
        reason: String,
    },
    /// The bytes are not an image in a supported format, or are truncated or corrupt.
    #[error("not a decodable image ({0})")]
    Decode(String),
    /// The image is larger than the configured limits allow.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// The base classifier failed (network, provider, model …); the draws answered before
    /// the failure are not part of any result.
    #[error("base classifier failed: {0}")]
    Classifier(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A logged label sequence is shorter than the protocol needs.
    #[error("{got} labels, but n0 + n = {needed} are needed")]
    TooFewLabels {
        /// n0 + n.
        needed: u64,
        /// Labels available.
        got: u64,
    },
    /// The base classifier answered a batch with the wrong number of labels.
    #[error("base classifier returned {got} labels for a batch of {expected} images")]
    BatchMismatch {
        /// Images sent.
        expected: usize,
        /// Labels received.
        got: usize,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
