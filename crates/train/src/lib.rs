//! # robustify-train
//!
//! What every robustify training run needs, kept apart from the models so that the
//! stand-in's CIFAR-10 classifier and the denoisers train the same way:
//!
//! - [`dataset::ImageFolder`]: `<root>/<class>/<file>` loaded into memory as 8-bit CHW.
//! - [`augment`]: seeded random crops with padding and horizontal flips.
//! - [`optim::Sgd`] and [`optim::Adam`]: optimisers whose state is saved with the model, so a
//!   resumed run continues exactly where it stopped.
//! - [`checkpoint`]: atomic checkpoints (model, optimiser, progress) and `--resume`.
//! - [`run`]: the epoch loop both trainings share (resume, stop, periodic saves).
//!
//! ```
//! use robustify_train::augment::random_crop_flip;
//! use rand::SeedableRng;
//!
//! let image = vec![7u8; 3 * 4 * 4];
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let out = random_crop_flip(&image, 4, 4, 4, 4, 1, &mut rng);
//! assert_eq!(out.len(), 3 * 4 * 4);
//! ```

pub mod augment;
pub mod checkpoint;
pub mod dataset;
mod error;
pub mod optim;
pub mod run;

pub use error::{Error, Result};
