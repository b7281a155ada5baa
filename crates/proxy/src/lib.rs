//! # robustify-proxy
//!
//! The robustify HTTP service: clients send an image, the proxy certifies it against a
//! paid vision API and answers with the certificate. All clients share each provider's
//! traffic gate (one rate limit, one retry budget), query log and optional global budget;
//! each client has its own key (stored hashed), dollar budget and request rate.
//!
//! - [`config`]: the `robustify.toml` file.
//! - `state`: the providers, clients and shared limits ([`ProxyState`]); `auth`: client
//!   and operator keys; `routes`: certify, predict, providers; `metrics`: `/metrics`;
//!   [`ApiError`]: every error answer as one JSON shape.
//! - [`serve()`]: the router on a bound listener with a shutdown future, under header and
//!   body timeouts.
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

mod api_error;
mod auth;
pub mod config;
mod error;
mod hold;
mod metrics;
mod routes;
mod serve;
mod spend;
mod state;
mod wallets;

pub use api_error::ApiError;
pub use config::{Config, hash_key};
pub use error::{Error, Result};
pub use serve::{router, serve};
pub use state::ProxyState;
