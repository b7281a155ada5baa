//! Proxy replicas over one Redis, measured: N replicas on loopback behind one shared
//! `redis-server`, a stand-in vendor that throttles past its rate, and many concurrent
//! clients on one capped wallet. What it reports is what the replicas promise — the
//! vendor's rate kept (never above, ≥ 90% of it while there is work, in one-second
//! windows as the vendor sees them), no budget overshot, answers paid once — and the
//! proxy's overhead for a certification answered from the shared store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use robustify_proxy::{Config, ProxyState, hash_key, serve};
use robustify_smoothing::Image;
use robustify_standin::model::BrightestChannel;
use robustify_standin::server::{AppState, Keys, ServerConfig};
use serde::Serialize;

use crate::{Error, Result};

/// The vendor's price per image (the stand-in plays Google: $1.50 per 1,000).
const PRICE_USD: f64 = 0.0015;
/// Each certification: 4 + 12 draws, one vendor request each of ≤ 16 images.
const CERTIFY: &str = "sigma=0.25&n0=4&n=12&denoiser=none";
const VENDOR_KEY: &str = "bench-vendor-key";

/// The scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaOptions {
    /// Proxy replicas.
    pub replicas: usize,
    /// Clients certifying at once (spread over the replicas), one certification each.
    pub clients: usize,
    /// The vendor's limit, requests a second (it throttles what passes it, burst 2).
    pub vendor_rps: f64,
    /// The one wallet every client draws on.
    pub budget_usd: f64,
    /// Certifications answered from the shared store, timed (the overhead).
    pub cached_rounds: usize,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            replicas: 3,
            clients: 100,
            vendor_rps: 20.0,
            budget_usd: 1.20,
            cached_rounds: 200,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaFigures {
    /// The scenario.
    pub options: ReplicaOptions,
    /// Certifications answered (200) and refused for the budget (402).
    pub certified: usize,
    /// Refused for the budget (402).
    pub refused: usize,
    /// Dollars the answered certifications cost, by their certificates.
    pub spent_usd: f64,
    /// Dollars the vendor billed (images it classified × price).
    pub vendor_billed_usd: f64,
    /// The wallet's spend as `/v1/spend` reports it (from the last replica).
    pub wallet_spent_usd: f64,
    /// Requests the vendor received, and how many it throttled.
    pub vendor_requests: u64,
    /// Requests the vendor answered with a throttle (over its rate).
    pub vendor_throttled: u64,
    /// Seconds from the first vendor request to the last.
    pub busy_seconds: f64,
    /// Vendor requests a second over that span.
    pub mean_rps: f64,
    /// The most requests in any one-second window (limit + burst at most).
    pub max_rps_1s: u64,
    /// The fewest in a one-second window wholly inside the busy span (every 100 ms);
    /// `None` when the span is shorter than 2 s.
    pub min_rps_1s: Option<u64>,
    /// Certifications answered from the shared store: what the vendor was paid for them
    /// beyond the first (should be nothing).
    pub cached_vendor_images: u64,
    /// The proxy's time for one such certification on loopback (16 draws, Redis
    /// included), median and 99th percentile, ms.
    pub cached_p50_ms: f64,
    /// See [`ReplicaFigures::cached_p50_ms`].
    pub cached_p99_ms: f64,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Replicas(format!("{what}: {e}"))
}

/// A small test image.
fn image_png() -> Result<Vec<u8>> {
    let mut data = vec![0.2f32; 64];
    data.extend(vec![0.7f32; 64]);
    data.extend(vec![0.3f32; 64]);
    Ok(Image::new(8, 8, data)?.to_png()?)
}

async fn listen() -> Result<(tokio::net::TcpListener, String)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| failed("binding a loopback port", e))?;
    let url = format!(
        "http://{}",
        l.local_addr().map_err(|e| failed("loopback port", e))?
    );
    Ok((l, url))
}

/// Requests in the busiest one-second window, and in the quietest one wholly inside the
/// busy span (windows start every 100 ms; `None` when the span is under 2 s).
pub fn windows(arrivals_ms: &[u64]) -> (u64, Option<u64>) {
    let mut a = arrivals_ms.to_vec();
    a.sort_unstable();
    let count = |from: u64| {
        let lo = a.partition_point(|&t| t < from);
        let hi = a.partition_point(|&t| t < from + 1000);
        (hi - lo) as u64
    };
    let max = a.iter().map(|&t| count(t)).max().unwrap_or(0);
    let (Some(&first), Some(&last)) = (a.first(), a.last()) else {
        return (0, None);
    };
    let min = (last >= first + 2000).then(|| {
        (first..=last - 1000)
            .step_by(100)
            .map(count)
            .min()
            .unwrap_or(0)
    });
    (max, min)
}

/// Runs the scenario against a `redis-server` started here (on loopback, no
/// persistence); an error when there is none to start.
pub fn run_replicas(options: &ReplicaOptions) -> Result<ReplicaFigures> {
    if options.replicas == 0 || options.clients == 0 || options.vendor_rps <= 0.0 {
        return Err(Error::Replicas(
            "replicas, clients and the vendor's rate must be positive".into(),
        ));
    }
    let redis = robustify_redis::server::LocalServer::start().ok_or_else(|| {
        Error::Replicas("redis-server is not installed (apt-get install redis-server)".into())
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("starting the runtime", e))?;
    runtime.block_on(scenario(options, &redis.url))
}

async fn scenario(options: &ReplicaOptions, redis_url: &str) -> Result<ReplicaFigures> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vendor = AppState::new(
        Arc::new(BrightestChannel),
        &ServerConfig {
            keys: Keys {
                key: Some(VENDOR_KEY.into()),
                aws: None,
            },
            rate_limit: Some(options.vendor_rps),
            burst: 2,
            ..ServerConfig::default()
        },
    )
    .map_err(|e| failed("the stand-in vendor", e))?;
    let (l, vendor_url) = listen().await?;
    tokio::spawn(robustify_standin::server::serve(l, vendor.clone(), async {
        std::future::pending::<()>().await
    }));
    let prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    // The proxy's gate: the vendor's rate, one at a time (its burst of 2 is the slack
    // for network jitter: a request admitted later may arrive first).
    let config = Config::parse(
        &format!(
            "store = \"{redis_url}\"\nredis_prefix = \"{prefix}\"\nhold_lease_s = 10\n\n\
             [[providers]]\nname = \"google\"\nendpoint = \"{vendor_url}\"\ndenoisers = []\n\
             requests_per_second = {}\nburst = 1\n\n\
             [[clients]]\nname = \"team\"\nkey_sha256 = \"{}\"\nbudget_usd = {}\n\
             max_concurrent_requests = 10000\n\n\
             [[clients]]\nname = \"rich\"\nkey_sha256 = \"{}\"\n",
            options.vendor_rps,
            hash_key("key-team"),
            options.budget_usd,
            hash_key("key-rich"),
        ),
        Path::new("bench-replicas.toml"),
    )
    .map_err(|e| failed("the proxy's configuration", e))?;
    let mut urls = Vec::new();
    for _ in 0..options.replicas {
        let state = ProxyState::connect(&config, |var| {
            (var == "GOOGLE_API_KEY").then(|| VENDOR_KEY.to_string())
        })
        .await
        .map_err(|e| failed("a replica", e))?;
        let (l, url) = listen().await?;
        tokio::spawn(serve(l, state, std::future::pending::<()>()));
        urls.push(url);
    }
    let png = Arc::new(image_png()?);
    let http = reqwest::Client::new();

    // Every client at once, spread over the replicas, each its own seed.
    let tasks: Vec<_> = (0..options.clients)
        .map(|i| {
            let (http, url, png) = (http.clone(), urls[i % urls.len()].clone(), png.clone());
            tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/v1/certify?{CERTIFY}&seed={i}"))
                    .bearer_auth("key-team")
                    .body(png.as_ref().clone())
                    .send()
                    .await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.json::<serde_json::Value>().await?))
            })
        })
        .collect();
    let (mut certified, mut refused, mut spent_usd) = (0, 0, 0.0);
    for t in tasks {
        let (status, v) = t
            .await
            .map_err(|e| failed("a client", e))?
            .map_err(|e| failed("a client's request", e))?;
        match status {
            200 => {
                certified += 1;
                spent_usd += v["cost_usd"].as_f64().unwrap_or(f64::NAN);
            }
            402 => refused += 1,
            s => return Err(Error::Replicas(format!("a client got {s}: {v}"))),
        }
    }
    let stats = vendor.stats().snapshot();
    let arrivals = vendor.stats().arrivals_ms();
    let (max_rps_1s, min_rps_1s) = windows(&arrivals);
    let busy_seconds = arrivals.iter().max().copied().unwrap_or(0) as f64 / 1e3;
    let vendor_requests = stats["requests"].as_u64().unwrap_or(0);
    let images_paid = stats["images"].as_u64().unwrap_or(0);
    let spend: serde_json::Value = http
        .get(format!("{}/v1/spend", urls[urls.len() - 1]))
        .bearer_auth("key-team")
        .send()
        .await
        .map_err(|e| failed("GET /v1/spend", e))?
        .json()
        .await
        .map_err(|e| failed("GET /v1/spend", e))?;

    // One certification answered from the shared store, asked of every replica in turn
    // (paid once, by the first).
    let mut cached_ms = Vec::new();
    for round in 0..=options.cached_rounds {
        let url = &urls[round % urls.len()];
        let t = Instant::now();
        let r = http
            .post(format!("{url}/v1/certify?{CERTIFY}&seed=1000000"))
            .bearer_auth("key-rich")
            .body(png.as_ref().clone())
            .send()
            .await
            .map_err(|e| failed("a cached certification", e))?;
        if r.status() != 200 {
            return Err(Error::Replicas(format!(
                "a cached certification got {}",
                r.status()
            )));
        }
        r.bytes()
            .await
            .map_err(|e| failed("a cached certification", e))?;
        if round > 0 {
            cached_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    cached_ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        cached_ms
            .get(((cached_ms.len() as f64 * q) as usize).min(cached_ms.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let after = vendor.stats().snapshot()["images"].as_u64().unwrap_or(0);
    Ok(ReplicaFigures {
        options: options.clone(),
        certified,
        refused,
        spent_usd,
        vendor_billed_usd: images_paid as f64 * PRICE_USD,
        wallet_spent_usd: spend["spent_usd"].as_f64().unwrap_or(f64::NAN),
        vendor_requests,
        vendor_throttled: stats["throttled"].as_u64().unwrap_or(0),
        busy_seconds,
        mean_rps: if busy_seconds > 0.0 {
            (vendor_requests.saturating_sub(1)) as f64 / busy_seconds
        } else {
            0.0
        },
        max_rps_1s,
        min_rps_1s,
        cached_vendor_images: after.saturating_sub(images_paid + 16),
        cached_p50_ms: at(0.5),
        cached_p99_ms: at(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_count_the_busiest_and_quietest_second() {
        // 10 a second for 3 s, then a burst of 5 at 3.0 s.
        let mut a: Vec<u64> = (0..30).map(|i| i * 100).collect();
        a.extend([3000, 3001, 3002, 3003, 3004]);
        let (max, min) = windows(&a);
        assert_eq!(max, 14, "the window [2.1, 3.1) s: 9 + the burst of 5");
        assert_eq!(min, Some(10));
        assert_eq!(windows(&[5, 6]), (2, None));
        assert_eq!(windows(&[]), (0, None));
    }
}
