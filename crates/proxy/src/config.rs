//! `robustify.toml`: what the proxy serves, to whom, and within which limits.
//!
//! ```toml
//! # Query logs (one per provider), reused after a restart.
//! log_dir = "robustify-proxy-logs"
//! max_body_bytes = 10_000_000
//!
//! [limits]           # what one request may ask for
//! max_n = 10_000
//!
//! [[providers]]
//! name = "google"                    # built-in name or definition file
//! # endpoint = "https://…"           # override the definition's
//! # budget_usd = 500.0               # cap over all clients
//!
//! [[clients]]
//! name = "team-a"
//! key_sha256 = "…"                   # hex SHA-256 of the client's key (never the key)
//! budget_usd = 20.0
//! requests_per_minute = 60
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where each provider's query log goes (`<log_dir>/<provider>.jsonl`); none when absent.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// Largest request body.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Limits on what one request may ask.
    #[serde(default)]
    pub limits: RequestLimits,
    /// Providers served.
    pub providers: Vec<ProviderEntry>,
    /// Clients allowed.
    pub clients: Vec<ClientEntry>,
}

fn default_body() -> usize {
    10_000_000
}

/// Limits on one request's parameters.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLimits {
    /// Most draws (n0 + n) one request may ask for.
    #[serde(default = "default_max_n")]
    pub max_n: u64,
}

fn default_max_n() -> u64 {
    10_000
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_n: default_max_n(),
        }
    }
}

/// One provider the proxy forwards to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Built-in name or definition file.
    pub name: String,
    /// Endpoint override.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Cap over all clients, in dollars.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Denoisers clients may put in front of this provider (shipped names or folders);
    /// by default every shipped denoiser for the provider's kind of images. A request
    /// picks one with `denoiser=NAME` (or `none`); without it, the one trained at the
    /// request's σ.
    #[serde(default)]
    pub denoisers: Option<Vec<String>>,
}

/// One client and its allowance.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// For logs and metrics.
    pub name: String,
    /// Hex SHA-256 of the client's API key.
    pub key_sha256: String,
    /// Most dollars this client may spend.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Most requests a minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

/// Hex SHA-256 of a key, as stored in the config.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks a config; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config> {
        let err = |message: String| Error::Config {
            path: origin.to_path_buf(),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if config.providers.is_empty() {
            return Err(err("at least one [[providers]] entry is needed".into()));
        }
        for c in &config.clients {
            if c.key_sha256.len() != 64 || hex::decode(&c.key_sha256).is_err() {
                return Err(err(format!(
                    "client {:?}: key_sha256 must be 64 hex digits (`robustify serve --hash-key KEY` prints it)",
                    c.name
                )));
            }
            if c.requests_per_minute == Some(0) {
                return Err(err(format!(
                    "client {:?}: requests_per_minute must be ≥ 1",
                    c.name
                )));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_plain_keys() {
        let ok = format!(
            "[[providers]]\nname = \"google\"\n[[clients]]\nname = \"a\"\nkey_sha256 = \"{}\"\nbudget_usd = 1.5\n",
            hash_key("k")
        );
        let c = Config::parse(&ok, Path::new("x.toml")).unwrap();
        assert_eq!(c.clients[0].budget_usd, Some(1.5));
        assert_eq!(c.limits.max_n, 10_000);
        let bad = "[[providers]]\nname = \"google\"\n[[clients]]\nname = \"a\"\nkey_sha256 = \"plain-key\"\n";
        let err = Config::parse(bad, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
