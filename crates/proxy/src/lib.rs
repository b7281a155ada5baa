//! # robustify-proxy
//!
//! The robustify HTTP service: clients send an image, the proxy certifies it against a
//! paid vision API and answers with the certificate. All clients share each provider's
//! traffic gate (one rate limit, one retry budget), query log and optional global budget;
//! each client has its own key (stored hashed), dollar budget and request rate.
//!
//! - [`config`]: the `robustify.toml` file.
//! - [`wallet`]: reserve-then-settle dollar budgets (never overshot under concurrency).
//! - [`server`]: the routes, [`server::serve`] on a bound listener with a shutdown future.
//!
//! ```no_run
//! use std::path::Path;
//! use robustify_proxy::{Config, ProxyState, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(Path::new("robustify.toml"))?;
//! let state = ProxyState::new(&config, |var| std::env::var(var).ok())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
mod error;
pub mod server;
pub mod wallet;

pub use config::{Config, hash_key};
pub use error::{Error, Result};
pub use server::{ProxyState, router, serve};
