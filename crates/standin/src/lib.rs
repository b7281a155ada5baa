//! # robustify-standin
//!
//! A local stand-in for the vendors' vision APIs: real pretrained classifiers that were
//! never trained on noise (the premise of denoised smoothing), runnable in-process or
//! behind each vendor's wire format.
//!
//! - [`imagenet::ImageNetClassifier`]: EfficientNet-Lite0 ([`efficientnet_lite`]) on the
//!   1,000 ImageNet classes, weights in `providers/standin/`.
//! - [`preprocess`]: crop, resize and normalisation.
//!
//! ```no_run
//! use robustify_standin::imagenet::ImageNetClassifier;
//! use robustify_standin::model::Classifier;
//! use robustify_smoothing::{DecodeLimits, Image};
//!
//! let model = ImageNetClassifier::load_default()?;
//! let bytes = std::fs::read("examples/images/goldfish.jpg").unwrap();
//! let image = Image::decode(&bytes, &DecodeLimits::default())?;
//! let top5 = &model.classify(&[image], 5)?[0];
//! println!("{} ({:.2})", top5[0].label, top5[0].score);
//! # Ok::<(), robustify_standin::Error>(())
//! ```

pub mod cifar;
pub mod cifar_train;
pub mod efficientnet_lite;
mod error;
pub mod imagenet;
pub mod model;
pub mod preprocess;
pub mod provider;
pub mod server;
pub mod sigv4;
pub mod weights;

pub use error::{Error, Result};
