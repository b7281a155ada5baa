//! End-to-end tests of the `robustify` binary. One test binary (ripgrep's layout): each
//! file below is a module, so the suite links once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod certify;
mod classify;
mod denoise;
mod envelope;
mod errors;
mod estimate;
mod firsthour;
#[cfg(feature = "cuda")]
mod gpu;
mod hostile;
mod noise;
mod pipeline;
mod providers;
mod replay;
mod replicas;
mod store;
