//! `robustify.toml`: what the proxy serves, to whom, and within which limits.
//!
//! ```toml
//! # Query logs (one per provider, JSON Lines), reused after a restart.
//! log_dir = "robustify-proxy-logs"
//! # The answer store (SQLite): every paid answer kept and reused for the same draw of
//! # the same client; it survives restarts. A config with budgets needs one (or
//! # store = "memory", which forgets every spend at a restart: said, never assumed).
//! store = "robustify-proxy.sqlite"
//! # Replicas behind a load balancer share one Redis instead (rate limits, budgets,
//! # answers): store = "redis://127.0.0.1:6379/"; hold_lease_s = 60
//! max_body_bytes = 10_000_000
//! # /metrics answers only this key (hex SHA-256); without it /metrics is off.
//! # operator_key_sha256 = "…"
//! # Reuse one client's logged answers for another (off: a client never learns of
//! # another client's queries).
//! # share_answers = false
//!
//! [limits]           # what one request may ask for
//! max_n = 10_000
//! max_request_memory_bytes = 2_147_483_648   # one request's images, at its peak
//! max_memory_bytes = 4_294_967_296           # all requests in flight together
//! billed_retry_slack = 0.1                   # extra draws held for billed timeouts
//!
//! [timeouts]         # seconds
//! header_s = 10      # a request's head, from connect or from the previous response
//! body_s = 60        # a request's body
//!
//! [[providers]]
//! name = "google"                    # built-in name or definition file
//! # endpoint = "https://…"           # override the definition's
//! # budget_usd = 500.0               # cap over all clients
//! # timeout_s = 30                   # per vendor request [default: the definition's]
//! # requests_per_second = 10.0       # this account's quota [default: the definition's]
//! # burst = 10
//!
//! [[clients]]
//! name = "team-a"
//! key_sha256 = "…"                   # hex SHA-256 of the client's key (never the key)
//! budget_usd = 20.0                  # ever (kept across restarts with a store)
//! budget_usd_per_day = 2.0           # each UTC day
//! budget_usd_per_month = 10.0        # each UTC calendar month
//! requests_per_minute = 60
//! max_concurrent_requests = 8        # in flight at once; more get 429
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
    /// The SQLite file of paid answers and charges (what survives a restart), or
    /// `redis://…`: the Redis replicas share (rate limits, budgets, answers).
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// With a SQLite store: seconds a write waits for another process's lock before the
    /// paid answers it carries are kept in memory instead (and retried; no new paid work
    /// starts meanwhile, and `/readyz` answers 503).
    #[serde(default = "default_busy")]
    pub store_busy_timeout_s: f64,
    /// With a Redis store: the prefix of every key (one per deployment).
    #[serde(default = "default_prefix")]
    pub redis_prefix: String,
    /// With a Redis store: seconds a request's budget hold outlives a replica that stopped
    /// renewing it (killed); live replicas renew every third of it.
    #[serde(default = "default_lease")]
    pub hold_lease_s: f64,
    /// Largest request body.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Limits on what one request may ask.
    #[serde(default)]
    pub limits: RequestLimits,
    /// HTTP server timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Hex SHA-256 of the operator's key, which `/metrics` asks for; `/metrics` is off
    /// without one.
    #[serde(default)]
    pub operator_key_sha256: Option<String>,
    /// Reuse logged answers across clients (off: answers are reused only for the client
    /// whose request paid for them).
    #[serde(default)]
    pub share_answers: bool,
    /// Providers served.
    pub providers: Vec<ProviderEntry>,
    /// Clients allowed.
    pub clients: Vec<ClientEntry>,
}

fn default_busy() -> f64 {
    10.0
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
    /// Most bytes one request's images may hold at their peak (the image, and the noisy,
    /// denoised and encoded copies of the draws in flight): draws go in smaller batches to
    /// stay under it, and an image too large for even one draw is refused (413).
    #[serde(default = "default_request_memory")]
    pub max_request_memory_bytes: u64,
    /// Most bytes all requests in flight may hold together; a request waits for its share
    /// (up to the body timeout, then 503).
    #[serde(default = "default_memory")]
    pub max_memory_bytes: u64,
    /// Extra share of a request's draws held in the client's wallet for vendor requests that
    /// time out after the vendor billed them (retried, so billed twice). The client pays
    /// what the vendor billed, never more than it held: a request whose timeouts use up
    /// the slack stops (402) instead of spending on.
    #[serde(default = "default_slack")]
    pub billed_retry_slack: f64,
}

fn default_slack() -> f64 {
    0.1
}

fn default_max_n() -> u64 {
    10_000
}

fn default_request_memory() -> u64 {
    2 << 30
}

fn default_memory() -> u64 {
    4 << 30
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_n: default_max_n(),
            max_request_memory_bytes: default_request_memory(),
            max_memory_bytes: default_memory(),
            billed_retry_slack: default_slack(),
        }
    }
}

/// HTTP server timeouts, in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// A request's head must arrive within this long of the connection opening or of the
    /// previous response: slow headers and idle keep-alive connections are closed.
    #[serde(default = "default_header_s")]
    pub header_s: f64,
    /// A request's body must arrive within this long (408 otherwise).
    #[serde(default = "default_body_s")]
    pub body_s: f64,
}

fn default_header_s() -> f64 {
    10.0
}

fn default_body_s() -> f64 {
    60.0
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_s: default_header_s(),
            body_s: default_body_s(),
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
    /// Seconds a vendor request may take [default: the definition's].
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Requests per second, instead of the definition's (a quota of this account); with
    /// replicas, the limit they share.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Requests allowed at once after an idle period, instead of the definition's.
    #[serde(default)]
    pub burst: Option<u32>,
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
    /// Most dollars this client may spend, ever (with a store: across restarts).
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Most dollars a UTC day.
    #[serde(default)]
    pub budget_usd_per_day: Option<f64>,
    /// Most dollars a UTC calendar month.
    #[serde(default)]
    pub budget_usd_per_month: Option<f64>,
    /// Most requests a minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Most requests of this client in flight at once (bodies being read included); more
    /// are answered 429 at once.
    #[serde(default = "default_concurrent")]
    pub max_concurrent_requests: u32,
}

fn default_concurrent() -> u32 {
    8
}

fn default_prefix() -> String {
    "robustify".into()
}

fn default_lease() -> f64 {
    60.0
}

/// The `store` value that keeps spends in memory only (forgotten at a restart).
pub const MEMORY_STORE: &str = "memory";

/// Whether `name` may name a client: 1 to 64 of `[A-Za-z0-9._@-]`.
fn valid_client_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
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
        let mut config: Config = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let memory_only = config.store.as_deref() == Some(Path::new(MEMORY_STORE));
        if memory_only {
            config.store = None;
        }
        if config.store.is_none() && !memory_only {
            let budgeted = config.providers.iter().any(|p| p.budget_usd.is_some())
                || config.clients.iter().any(|c| {
                    c.budget_usd.is_some()
                        || c.budget_usd_per_day.is_some()
                        || c.budget_usd_per_month.is_some()
                });
            if budgeted {
                return Err(err(
                    "budgets are set but no store is: spends kept in memory only start again \
                     from $0 at every restart. Set store = \"robustify-proxy.sqlite\" (a SQLite \
                     file, kept across restarts) or store = \"redis://…\" (replicas), or \
                     store = \"memory\" to accept budgets that reset on restart"
                        .into(),
                ));
            }
        }
        if config.providers.is_empty() {
            return Err(err("at least one [[providers]] entry is needed".into()));
        }
        let seconds = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(())
            } else {
                Err(err(format!(
                    "{name} must be in (0, 86400] seconds, got {v}"
                )))
            }
        };
        seconds("timeouts.header_s", config.timeouts.header_s)?;
        seconds("timeouts.body_s", config.timeouts.body_s)?;
        seconds("hold_lease_s", config.hold_lease_s)?;
        seconds("store_busy_timeout_s", config.store_busy_timeout_s)?;
        let l = &config.limits;
        if l.max_n == 0 || l.max_n > robustify_smoothing::MAX_DRAWS {
            return Err(err(format!(
                "limits.max_n must be in [1, {}]",
                robustify_smoothing::MAX_DRAWS
            )));
        }
        if l.max_request_memory_bytes == 0 || l.max_memory_bytes < l.max_request_memory_bytes {
            return Err(err(
                "limits: max_request_memory_bytes must be ≥ 1 and ≤ max_memory_bytes".into(),
            ));
        }
        if !(0.0..=10.0).contains(&l.billed_retry_slack) {
            return Err(err("limits.billed_retry_slack must be in [0, 10]".into()));
        }
        if let Some(key) = &config.operator_key_sha256
            && (key.len() != 64 || hex::decode(key).is_err())
        {
            return Err(err(
                "operator_key_sha256 must be 64 hex digits (`robustify serve --hash-key KEY` prints it)"
                    .into(),
            ));
        }
        for p in &config.providers {
            if let Some(b) = p.budget_usd
                && !(b.is_finite() && b >= 0.0)
            {
                return Err(err(format!(
                    "provider {:?}: budget_usd must be ≥ 0",
                    p.name
                )));
            }
            if let Some(t) = p.timeout_s {
                seconds(&format!("provider {:?}: timeout_s", p.name), t)?;
            }
            if let Some(r) = p.requests_per_second
                && !(r.is_finite() && r > 0.0 && r <= 1e6)
            {
                return Err(err(format!(
                    "provider {:?}: requests_per_second must be in (0, 1e6], got {r}",
                    p.name
                )));
            }
            if p.burst == Some(0) {
                return Err(err(format!("provider {:?}: burst must be ≥ 1", p.name)));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for c in &config.clients {
            if !valid_client_name(&c.name) {
                return Err(err(format!(
                    "client name {:?}: names are 1 to 64 letters, digits, '.', '_', '-' or '@' \
                     (they appear in logs and /metrics)",
                    c.name
                )));
            }
            if !names.insert(c.name.as_str()) {
                return Err(err(format!("client name {:?} is used twice", c.name)));
            }
            if !hashes.insert(c.key_sha256.to_ascii_lowercase()) {
                return Err(err(format!(
                    "client {:?}: its key_sha256 is another client's too (one key, one client: \
                     the later entry would silently win)",
                    c.name
                )));
            }
            for (what, b) in [
                ("budget_usd", c.budget_usd),
                ("budget_usd_per_day", c.budget_usd_per_day),
                ("budget_usd_per_month", c.budget_usd_per_month),
            ] {
                if let Some(b) = b
                    && !(b.is_finite() && b >= 0.0)
                {
                    return Err(err(format!("client {:?}: {what} must be ≥ 0", c.name)));
                }
            }
            if c.key_sha256.len() != 64 || hex::decode(&c.key_sha256).is_err() {
                return Err(err(format!(
                    "client {:?}: key_sha256 must be 64 hex digits (`robustify serve --hash-key KEY` prints it)",
                    c.name
                )));
            }
            if !(1..=10_000).contains(&c.max_concurrent_requests) {
                return Err(err(format!(
                    "client {:?}: max_concurrent_requests must be in [1, 10000]",
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
            "store = \"memory\"\n[[providers]]\nname = \"google\"\n[[clients]]\nname = \"a\"\nkey_sha256 = \"{}\"\nbudget_usd = 1.5\n",
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
        for (extra, what) in [
            ("[timeouts]\nheader_s = nan\n", "header_s"),
            ("[timeouts]\nbody_s = 0\n", "body_s"),
            ("[limits]\nmax_n = 0\n", "max_n"),
            ("[limits]\nmax_n = 18446744073709551615\n", "max_n"),
            (
                "[limits]\nmax_request_memory_bytes = 10\nmax_memory_bytes = 5\n",
                "memory",
            ),
            ("operator_key_sha256 = \"plain\"\n", "operator_key"),
        ] {
            let text = format!("{extra}{ok}");
            // Top-level keys must precede the tables.
            let text = if extra.starts_with('[') {
                format!("{ok}{extra}")
            } else {
                text
            };
            let err = Config::parse(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{extra}: {err}");
        }
        let bad_budget = ok.replace("1.5", "-1.0");
        assert!(Config::parse(&bad_budget, Path::new("x.toml")).is_err());
    }

    fn client(name: &str, key: &str) -> String {
        format!(
            "[[clients]]\nname = {name:?}\nkey_sha256 = \"{}\"\n",
            hash_key(key)
        )
    }

    #[test]
    fn refuses_ambiguous_or_injecting_clients() {
        let head = "[[providers]]\nname = \"google\"\n";
        let parse = |text: String| Config::parse(&text, Path::new("x.toml"));
        assert!(parse(format!("{head}{}{}", client("a", "k1"), client("b", "k2"))).is_ok());
        for (clients, why) in [
            (client("", "k1"), "client name \"\""),
            (
                client("a\"} 1\nfake_metric{x=\"", "k1"),
                "names are 1 to 64",
            ),
            (client(&"x".repeat(65), "k1"), "names are 1 to 64"),
            (client("a", "k1") + &client("a", "k2"), "used twice"),
            (client("a", "k1") + &client("b", "k1"), "another client's"),
        ] {
            let e = parse(format!("{head}{clients}")).unwrap_err().to_string();
            assert!(e.contains(why), "{clients}: {e}");
        }
        // The same hash in capitals is the same key.
        let upper = client("b", "k1").replace(&hash_key("k1"), &hash_key("k1").to_uppercase());
        let e = parse(format!("{head}{}{upper}", client("a", "k1"))).unwrap_err();
        assert!(e.to_string().contains("another client's"), "{e}");
    }

    #[test]
    fn budgets_need_a_store_or_an_explicit_memory_one() {
        let body = format!(
            "[[providers]]\nname = \"google\"\n{}budget_usd = 1.0\n",
            client("a", "k")
        );
        let e = Config::parse(&body, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("store = \"memory\""), "{e}");
        let c = Config::parse(&format!("store = \"memory\"\n{body}"), Path::new("x.toml")).unwrap();
        assert!(c.store.is_none());
        let c = Config::parse(
            &format!("store = \"s.sqlite\"\n{body}"),
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.store.as_deref(), Some(Path::new("s.sqlite")));
        // A provider's cap is a budget too; no budget at all needs no store.
        let capped = format!(
            "[[providers]]\nname = \"google\"\nbudget_usd = 5.0\n{}",
            client("a", "k")
        );
        assert!(Config::parse(&capped, Path::new("x.toml")).is_err());
        let free = format!("[[providers]]\nname = \"google\"\n{}", client("a", "k"));
        assert!(Config::parse(&free, Path::new("x.toml")).is_ok());
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../examples/robustify.toml");
        let c = Config::parse(text, Path::new("examples/robustify.toml")).unwrap();
        assert_eq!(
            c.operator_key_sha256.as_deref(),
            Some(hash_key("demo-operator-key").as_str())
        );
        assert_eq!(c.timeouts.header_s, 10.0);
        assert_eq!(c.limits.billed_retry_slack, 0.1);
    }
}
