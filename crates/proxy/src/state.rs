//! [`ProxyState`]: the providers served, the clients allowed, and the shared limits.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use robustify_denoiser::{Denoiser, registry};
use robustify_providers::{
    AnswerStore, BudgetLimits, Credentials, HttpProvider, Ledger, QueryLog, Traffic,
};
use robustify_smoothing::MemoryBudget;
use tokio::sync::Semaphore;

use crate::config::{Config, ProviderEntry, RequestLimits, Timeouts};
use crate::wallets::Wallets;
use crate::{Error, Result};

/// One provider as served: shared by every client.
pub(crate) struct Served {
    pub(crate) def: robustify_providers::ProviderDef,
    pub(crate) http: Arc<HttpProvider>,
    pub(crate) log: Option<Arc<QueryLog>>,
    pub(crate) denoisers: Vec<Arc<Denoiser>>,
    /// The cap over all clients, as configured.
    pub(crate) budget_usd: Option<f64>,
    /// The provider as answers are keyed ([`robustify_providers::ProviderDef::answer_key`]: its endpoint
    /// included when it is not the definition's).
    pub(crate) answer_key: String,
}

impl Served {
    /// The denoiser a request asked for (`none` for none), or by default the one trained
    /// at σ (within 10%).
    pub(crate) fn denoiser(
        &self,
        asked: Option<&str>,
        sigma: f64,
    ) -> Result<Option<Arc<Denoiser>>, String> {
        let names = || {
            let n: Vec<&str> = self.denoisers.iter().map(|d| d.name()).collect();
            if n.is_empty() {
                "none".to_owned()
            } else {
                n.join(", ")
            }
        };
        match asked {
            Some("none") => Ok(None),
            Some(name) => self
                .denoisers
                .iter()
                .find(|d| d.name() == name)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("no denoiser {name:?} here; offered: {}", names())),
            None => registry::nearest_sigma(&self.denoisers, sigma, |d| d.sigma())
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "no denoiser for σ = {sigma} here (offered: {}); pass denoiser=none for plain randomized smoothing",
                        names()
                    )
                }),
        }
    }
}

/// Loads the denoisers `entry` offers (default: the shipped ones for `images`).
fn load_denoisers(entry: &ProviderEntry, images: &str) -> Result<Vec<Arc<Denoiser>>> {
    let err = |path: PathBuf, message: String| Error::Config { path, message };
    let dirs: Vec<PathBuf> = match &entry.denoisers {
        Some(names) => names
            .iter()
            .map(|n| registry::resolve(n).map_err(|e| err(n.into(), e.to_string())))
            .collect::<Result<_>>()?,
        None => registry::list()
            .map_err(|e| err(registry::shipped_dir(), e.to_string()))?
            .into_iter()
            .filter(|(c, _)| c.data == images)
            .map(|(_, dir)| dir)
            .collect(),
    };
    dirs.into_iter()
        .map(|d| {
            Denoiser::load(&d)
                .map(Arc::new)
                .map_err(|e| err(d, e.to_string()))
        })
        .collect()
}

/// One client: its key (hashed), wallet and rate.
pub(crate) struct Client {
    pub(crate) name: String,
    pub(crate) key_sha256: String,
    /// Dollars spent and held, under the client's budgets (ever, per day, per month).
    pub(crate) wallet: Wallets,
    /// The budgets, as configured: ever, per UTC day, per UTC month.
    pub(crate) budget_usd: Option<f64>,
    pub(crate) budget_usd_per_day: Option<f64>,
    pub(crate) budget_usd_per_month: Option<f64>,
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
    /// Requests of this client in flight at once (its connections beyond are refused).
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) max_in_flight: u32,
}

/// Everything the handlers share.
pub struct ProxyState {
    pub(crate) providers: Vec<Served>,
    /// Paid answers of every provider and client, kept across restarts (SQLite).
    pub(crate) store: Option<Arc<AnswerStore>>,
    /// What replicas share (Redis).
    pub(crate) shared: Option<Shared>,
    pub(crate) clients: Vec<Client>,
    pub(crate) operator_key_sha256: Option<String>,
    pub(crate) share_answers: bool,
    pub(crate) limits: RequestLimits,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_body: usize,
    /// Megabytes of request memory free, for all requests in flight together.
    pub(crate) memory: Semaphore,
    /// The semaphore's size in megabytes.
    pub(crate) memory_mb: u32,
    pub(crate) responses: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Request latency per route: counts per bucket of [`LATENCY_BUCKETS`], and the sum.
    pub(crate) latency: Mutex<BTreeMap<&'static str, Latency>>,
}

/// Upper bounds of the request-latency histogram, in seconds (a cached answer takes
/// milliseconds, a certification against a rate-limited vendor minutes).
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// One route's latency histogram.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Requests at or under each bound (cumulative, as Prometheus wants).
    pub(crate) buckets: [u64; LATENCY_BUCKETS.len()],
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
}

/// What replicas share through Redis (`store = "redis://…"`).
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) redis: robustify_redis::Redis,
    /// How long a hold outlives a replica that stopped renewing it.
    pub(crate) lease: Duration,
}

/// Whether the configured store is a Redis URL.
fn redis_url(config: &Config) -> Option<String> {
    let s = config.store.as_ref()?.to_str()?;
    (s.starts_with("redis://") || s.starts_with("rediss://")).then(|| s.to_owned())
}

impl ProxyState {
    /// Sets up every provider (credentials from `env`, failing on a missing one) and client.
    /// A Redis store needs [`ProxyState::connect`].
    pub fn new(config: &Config, env: impl Fn(&str) -> Option<String>) -> Result<Arc<ProxyState>> {
        if redis_url(config).is_some() {
            return Err(Error::Config {
                path: "store".into(),
                message: "a Redis store is connected to: use ProxyState::connect".into(),
            });
        }
        ProxyState::build(config, env, None)
    }

    /// As [`ProxyState::new`], connecting first to the Redis a `store = "redis://…"` names
    /// (the replicas' shared rate limits, budgets and answers).
    pub async fn connect(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<ProxyState>> {
        let shared = match redis_url(config) {
            Some(url) => Some(Shared {
                redis: robustify_redis::Redis::connect(&url, &config.redis_prefix).await?,
                lease: Duration::from_secs_f64(config.hold_lease_s),
            }),
            None => None,
        };
        ProxyState::build(config, env, shared)
    }

    fn build(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
        shared: Option<Shared>,
    ) -> Result<Arc<ProxyState>> {
        let store = match (&config.store, &shared) {
            (Some(path), None) => Some(Arc::new(
                AnswerStore::open(path)?
                    .with_busy_timeout(Duration::from_secs_f64(config.store_busy_timeout_s))?,
            )),
            _ => None,
        };
        let mut providers = Vec::new();
        for entry in &config.providers {
            let mut def = robustify_providers::ProviderDef::load(&entry.name)?;
            if let Some(t) = entry.timeout_s {
                def.limits.timeout_s = t;
            }
            if let Some(r) = entry.requests_per_second {
                def.limits.requests_per_second = r;
            }
            if let Some(b) = entry.burst {
                def.limits.burst = b;
            }
            let creds = Credentials::from_lookup(&def, &env)?;
            let mut traffic = Traffic::from_limits(&def.limits);
            if let Some(sh) = &shared {
                // Every replica waits for the one shared limit too; the provider's budget
                // is then held per request in Redis (routes), not in this replica alone.
                traffic = traffic.with_shared_gate(Arc::new(sh.redis.rate(
                    &def.name,
                    def.limits.requests_per_second,
                    def.limits.burst,
                )));
            }
            let http = HttpProvider::new(
                &def,
                entry.endpoint.as_deref(),
                creds,
                Arc::new(traffic),
                Arc::new(Ledger::new(
                    def.pricing.clone(),
                    BudgetLimits {
                        max_usd: entry.budget_usd.filter(|_| shared.is_none()),
                        max_queries: None,
                    },
                )),
            )?;
            let log = match &config.log_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| Error::Config {
                        path: dir.clone(),
                        message: e.to_string(),
                    })?;
                    let path = dir.join(format!("{}.jsonl", def.name));
                    let resume = path.exists().then_some(path.as_path());
                    let log = QueryLog::open(&path, resume)?;
                    if log.load_report().skipped() > 0 {
                        tracing::warn!(log = %path.display(), "{}", log.load_report());
                    }
                    Some(Arc::new(log))
                }
                None => None,
            };
            let denoisers = load_denoisers(entry, &def.images)?;
            providers.push(Served {
                answer_key: def.answer_key(entry.endpoint.as_deref()),
                def,
                http: Arc::new(http),
                log,
                denoisers,
                budget_usd: entry.budget_usd,
            });
        }
        let clients = config
            .clients
            .iter()
            .map(|c| {
                Ok(Client {
                    name: c.name.clone(),
                    key_sha256: c.key_sha256.to_ascii_lowercase(),
                    wallet: Wallets::open(c, store.as_deref())?,
                    budget_usd: c.budget_usd,
                    budget_usd_per_day: c.budget_usd_per_day,
                    budget_usd_per_month: c.budget_usd_per_month,
                    limiter: c
                        .requests_per_minute
                        .and_then(NonZeroU32::new)
                        .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm).allow_burst(rpm))),
                    in_flight: Arc::new(Semaphore::new(c.max_concurrent_requests as usize)),
                    max_in_flight: c.max_concurrent_requests,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let megabytes =
            (config.limits.max_memory_bytes / MB).clamp(1, Semaphore::MAX_PERMITS as u64);
        Ok(Arc::new(ProxyState {
            providers,
            store,
            shared,
            clients,
            operator_key_sha256: config
                .operator_key_sha256
                .as_ref()
                .map(|k| k.to_ascii_lowercase()),
            share_answers: config.share_answers,
            limits: config.limits.clone(),
            timeouts: config.timeouts.clone(),
            max_body: config.max_body_bytes,
            memory: Semaphore::new(megabytes as usize),
            memory_mb: u32::try_from(megabytes).unwrap_or(u32::MAX),
            responses: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Where answers are kept and found again: the replicas' Redis, the SQLite store, or
    /// nowhere.
    pub(crate) fn answers(&self) -> Option<Arc<dyn robustify_providers::AnswerBackend>> {
        match (&self.shared, &self.store) {
            (Some(sh), _) => Some(Arc::new(sh.redis.answers())),
            (None, Some(store)) => Some(store.clone()),
            (None, None) => None,
        }
    }

    /// Syncs every query log to disk.
    pub fn flush(&self) {
        for p in &self.providers {
            if let Some(log) = &p.log
                && let Err(e) = log.sync()
            {
                eprintln!("warning: {e}");
            }
        }
    }

    /// Counts a response and its latency.
    pub(crate) fn count(&self, route: &'static str, status: StatusCode, seconds: f64) {
        let mut m = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route, status.as_u16())).or_default() += 1;
        drop(m);
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry(route).or_default();
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        h.count += 1;
        h.sum_seconds += seconds;
    }

    /// The memory ceiling of one request.
    pub(crate) fn request_memory(&self) -> MemoryBudget {
        MemoryBudget::new(self.limits.max_request_memory_bytes)
    }

    /// How long a request body may take.
    pub(crate) fn body_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeouts.body_s)
    }

    /// How long a request head may take.
    pub(crate) fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeouts.header_s)
    }
}

/// Megabytes: the unit of the request-memory semaphore.
pub(crate) const MB: u64 = 1 << 20;
