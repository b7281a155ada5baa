//! # robustify-smoothing
//!
//! The statistics of randomized smoothing, with no I/O: turn a base classifier's labels on
//! noisy copies of an image into a certificate — a label and an ℓ2 radius within which no
//! perturbation can change the smoothed prediction, with probability ≥ 1 − α.
//!
//! - [`Image`]: planar RGB `f32` in `[0, 1]`; [`Image::decode`] with size limits.
//! - [`NoiseSampler`]: seeded Gaussian draws, reproducible per draw index.
//! - [`BaseClassifier`]: async and batched; remote APIs, local models and simulations all
//!   implement it.
//! - [`certify()`] / [`predict()`]: Cohen et al.'s CERTIFY and PREDICT; [`certify_counts`] and
//!   [`certify_labels`] do the same from counts or logged labels.
//! - [`stats`]: the Clopper–Pearson bound, the binomial test and radius arithmetic.
//! - [`table`]: certified accuracy at a list of radii.
//!
//! Certify a made-up vote: 10 selection draws, then 990 of 1,000 estimation draws agree.
//!
//! ```
//! use robustify_smoothing::{certify_counts, CertifyParams, LabelCounts};
//!
//! let params = CertifyParams::new(0.25, 10, 1000, 0.001)?;
//! let selection = LabelCounts::from_labels(["cat"; 10]);
//! let mut estimation = LabelCounts::from_labels(["cat"; 990]);
//! for _ in 0..10 { estimation.add("dog"); }
//! let cert = certify_counts(&selection, &estimation, &params);
//! assert_eq!(cert.label.as_deref(), Some("cat"));
//! assert!((cert.radius - 0.4945023955).abs() < 1e-9); // σ·Φ⁻¹(p̲), p̲ = 0.9760
//! # Ok::<(), robustify_smoothing::Error>(())
//! ```

pub mod certificate;
pub mod certify;
pub mod classifier;
pub mod counts;
mod error;
pub mod image;
mod jpeg;
pub mod memory;
pub mod noise;
pub mod params;
pub mod sequential;
pub mod stats;
pub mod table;

pub use certificate::{Certificate, Prediction};
pub use certify::{certify, certify_counts, certify_labels, predict, predict_counts, sample};
pub use classifier::{BaseClassifier, NO_LABEL};
pub use counts::LabelCounts;
pub use error::{Error, Result};
pub use image::{DecodeLimits, Image};
pub use memory::MemoryBudget;
pub use noise::NoiseSampler;
pub use params::{Alpha, CertifyParams, MAX_DRAWS, MIN_SIGMA, PredictParams, Sigma};
pub use sequential::{
    Decision, SequenceKind, SequentialCertificate, SequentialForecast, SequentialParams,
    certify_sequential, certify_sequential_labels, forecast,
};
